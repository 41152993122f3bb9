"""Conformance, area 'gradients': gradients w.r.t. every differentiable input in every supported dtype.

Unrecorded discrepancies of this area fail the plugin's item klconform::<adapter>::gradients
(klconform/pytest_plugin.py); this module checks that the corpus exercises it. SPEC: KL-GRAD-1 .. KL-GRAD-EPS, KL-BOUND-3.
"""


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
