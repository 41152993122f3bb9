"""Conformance, area 'dtypes': float16 / bfloat16 / float32 / float64 results and silent casts.

Unrecorded discrepancies of this area fail the plugin's item klconform::<adapter>::dtypes
(klconform/pytest_plugin.py); this module checks that the corpus exercises it. SPEC: KL-DTYPE-1, KL-DTYPE-2, KL-DTYPE-3.
"""


def test_every_declared_dtype_is_sent(adapter_result):
    sent = {e.sent.case.dtype for e in adapter_result.evaluated}
    declared = set(adapter_result.run.capabilities["dtypes"])
    assert declared <= sent, f"never sent: {sorted(declared - sent)}"
