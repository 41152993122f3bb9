"""Conformance, area 'gradients': gradients w.r.t. every differentiable input in every supported dtype.

Every discrepancy in this area must be recorded in the adapter's known TOML file
(klconform/known/); an unrecorded one fails with its case and detail. SPEC: KL-GRAD-1 .. KL-GRAD-EPS, KL-BOUND-3.
"""
from conformance_area import new_in_area


def test_no_unrecorded_discrepancy(adapter_result):
    lines = new_in_area(adapter_result, "gradients")
    assert not lines, "\n".join(lines)


def test_gradients_requested_in_every_dtype(adapter_result):
    caps = adapter_result.run.capabilities
    if not caps["gradients"]:
        return
    with_grad = {e.sent.case.dtype for e in adapter_result.evaluated if e.sent.case.grad}
    assert set(caps["dtypes"]) <= with_grad


def test_declared_gradients_come_back(adapter_result):
    declared = set(adapter_result.run.capabilities["gradients"])
    returned = set()
    for e in adapter_result.evaluated:
        returned |= set(e.outcome.grads)
    assert declared <= returned, f"never returned: {sorted(declared - returned)}"
