"""Assertions the adapter tests share: an outcome against the reference within its bound."""
from __future__ import annotations

import numpy as np


def assert_within(observed, expected, bound, what=""):
    """Same NaN/±inf pattern, finite entries within ``bound`` (SPEC.md KL-BOUND-4)."""
    obs = np.asarray(observed, dtype=np.float64)
    exp = np.asarray(expected, dtype=np.float64)
    assert obs.shape == exp.shape, f"{what}: shape {obs.shape} != {exp.shape}"
    assert np.array_equal(np.isnan(obs), np.isnan(exp)), f"{what}: NaN pattern {obs} vs {exp}"
    inf = np.isinf(exp)
    assert np.array_equal(np.isinf(obs), inf) and np.array_equal(obs[inf], exp[inf]), \
        f"{what}: infinities {obs} vs {exp}"
    fin = np.isfinite(exp)
    err = np.abs(obs[fin] - exp[fin])
    b = np.broadcast_to(np.asarray(bound, dtype=np.float64), exp.shape)[fin]
    assert np.all(err <= b), f"{what}: |observed - expected| = {err} exceeds bound {b} ({obs} vs {exp})"
