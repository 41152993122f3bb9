"""Conformance, area 'reductions': every reduction the adapter exposes.

Unrecorded discrepancies of this area fail the plugin's item klconform::<adapter>::reductions
(klconform/pytest_plugin.py); this module checks that the corpus exercises it. SPEC: KL-RED-NONE .. KL-RED-SAMPLE-MEAN, KL-SHAPE-2.
"""


def test_every_declared_reduction_is_sent(adapter_result):
    sent = {e.sent.case.reduction for e in adapter_result.evaluated}
    declared = set(adapter_result.run.capabilities["reductions"])
    assert declared <= sent, f"never sent: {sorted(declared - sent)}"
