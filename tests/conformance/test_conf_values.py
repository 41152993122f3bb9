"""Conformance, area 'values': plain, near-equal, equal and unnormalised values; precision and value-level semantics.

Every discrepancy in this area must be recorded in the adapter's known TOML file
(klconform/known/); an unrecorded one fails with its case and detail. SPEC: KL-DEF-1, KL-DEF-2, KL-BOUND-4.
"""
from conformance_area import cases_in_area, new_in_area


def test_no_unrecorded_discrepancy(adapter_result):
    lines = new_in_area(adapter_result, "values")
    assert not lines, "\n".join(lines)


def test_area_is_exercised(adapter_result):
    assert cases_in_area(adapter_result, "values") > 0


def test_seed_examples_are_sent(adapter_result):
    labels = {e.sent.case.label for e in adapter_result.evaluated}
    assert {"curated/seed_mxnet_d2_vs_d1", "curated/hand_checked_example"} <= labels
