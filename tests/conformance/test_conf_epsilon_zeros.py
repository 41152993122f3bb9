"""Conformance, area 'epsilon_zeros': zeros in target and prediction, one-hot and tiny entries, epsilon policies.

Every discrepancy in this area must be recorded in the adapter's known TOML file
(klconform/known/); an unrecorded one fails with its case and detail. SPEC: KL-ZERO-1, KL-ZERO-2, KL-ZERO-3, KL-EPS-TARGET-LOG, KL-EPS-CLIP.
"""
from conformance_area import cases_in_area, new_in_area


def test_no_unrecorded_discrepancy(adapter_result):
    lines = new_in_area(adapter_result, "epsilon_zeros")
    assert not lines, "\n".join(lines)


def test_area_is_exercised(adapter_result):
    assert cases_in_area(adapter_result, "epsilon_zeros") > 0


def test_zero_entries_are_sent(adapter_result):
    from klconform.facts import facts
    f = [facts(e.sent.case) for e in adapter_result.evaluated]
    assert any(x["has_zero_target"] for x in f) and any(x["has_zero_pred"] for x in f)
