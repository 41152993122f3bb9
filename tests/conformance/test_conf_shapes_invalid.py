"""Conformance, area 'shapes_invalid': 0-D..4-D, size-1 and empty dims, broadcasting, invalid values, errors, crashes and hangs.

Unrecorded discrepancies of this area fail the plugin's item klconform::<adapter>::shapes_invalid
(klconform/pytest_plugin.py); this module checks that the corpus exercises it. SPEC: KL-SHAPE-1, KL-SHAPE-2, KL-INVALID-1, KL-INF-1, KL-EMPTY-1, KL-EMPTY-2, KL-RED-0D.
"""
from conformance_area import cases_in_area



def test_area_is_exercised(adapter_result):
    assert cases_in_area(adapter_result, "shapes_invalid") > 0


def test_shapes_and_invalid_values_are_sent(adapter_result):
    import numpy as np
    caps = adapter_result.run.capabilities
    cases = [e.sent.case for e in adapter_result.evaluated]
    ndims = {len(c.shape) for c in cases}
    wanted = set(range(max(caps["min_ndim"], 0), min(caps["max_ndim"], 4) + 1))
    assert wanted <= ndims, f"ndims never sent: {sorted(wanted - ndims)}"
    assert any(0 in c.shape for c in cases), "no empty case"
    assert any(np.isnan(c.target).any() or np.isnan(c.pred).any() for c in cases), "no NaN input"
