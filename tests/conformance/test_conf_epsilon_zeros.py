"""Conformance, area 'epsilon_zeros': zeros in target and prediction, one-hot and tiny entries, epsilon policies.

Unrecorded discrepancies of this area fail the plugin's item klconform::<adapter>::epsilon_zeros
(klconform/pytest_plugin.py); this module checks that the corpus exercises it. SPEC: KL-ZERO-1, KL-ZERO-2, KL-ZERO-3, KL-EPS-TARGET-LOG, KL-EPS-CLIP.
"""
from conformance_area import cases_in_area



def test_area_is_exercised(adapter_result):
    assert cases_in_area(adapter_result, "epsilon_zeros") > 0


def test_zero_entries_are_sent(adapter_result):
    from klconform.facts import facts
    f = [facts(e.sent.case) for e in adapter_result.evaluated]
    assert any(x["has_zero_target"] for x in f) and any(x["has_zero_pred"] for x in f)
