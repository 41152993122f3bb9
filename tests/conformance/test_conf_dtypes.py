"""Conformance, area 'dtypes': float16 / bfloat16 / float32 / float64 results and silent casts.

Every discrepancy in this area must be recorded in the adapter's known TOML file
(klconform/known/); an unrecorded one fails with its case and detail. SPEC: KL-DTYPE-1, KL-DTYPE-2, KL-DTYPE-3.
"""
from conformance_area import new_in_area


def test_no_unrecorded_discrepancy(adapter_result):
    lines = new_in_area(adapter_result, "dtypes")
    assert not lines, "\n".join(lines)


def test_every_declared_dtype_is_sent(adapter_result):
    sent = {e.sent.case.dtype for e in adapter_result.evaluated}
    declared = set(adapter_result.run.capabilities["dtypes"])
    assert declared <= sent, f"never sent: {sorted(declared - sent)}"
