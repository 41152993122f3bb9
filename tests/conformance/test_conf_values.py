"""Conformance, area 'values': plain, near-equal, equal and unnormalised values; precision and value-level semantics.

Unrecorded discrepancies of this area fail the plugin's item klconform::<adapter>::values
(klconform/pytest_plugin.py); this module checks that the corpus exercises it. SPEC: KL-DEF-1, KL-DEF-2, KL-BOUND-4.
"""
from conformance_area import cases_in_area



def test_area_is_exercised(adapter_result):
    assert cases_in_area(adapter_result, "values") > 0


def test_seed_examples_are_sent(adapter_result):
    labels = {e.sent.case.label for e in adapter_result.evaluated}
    assert {"curated/seed_mxnet_d2_vs_d1", "curated/hand_checked_example"} <= labels
