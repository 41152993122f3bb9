"""Conformance, area 'reductions': every reduction the adapter exposes.

Every discrepancy in this area must be recorded in the adapter's known TOML file
(klconform/known/); an unrecorded one fails with its case and detail. SPEC: KL-RED-NONE .. KL-RED-SAMPLE-MEAN, KL-SHAPE-2.
"""
from conformance_area import new_in_area


def test_no_unrecorded_discrepancy(adapter_result):
    lines = new_in_area(adapter_result, "reductions")
    assert not lines, "\n".join(lines)


def test_every_declared_reduction_is_sent(adapter_result):
    sent = {e.sent.case.reduction for e in adapter_result.evaluated}
    declared = set(adapter_result.run.capabilities["reductions"])
    assert declared <= sent, f"never sent: {sorted(declared - sent)}"
