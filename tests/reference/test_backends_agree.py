"""The two fast paths of the accurate core are one algorithm: the vectorised numpy code
(reference/_accurate.py) and the compiled numba kernel (reference/_kernel.py) return
bitwise-identical results on every regime of SPEC.md KL-DEF-2.

Neither path is the oracle here (tests/reference/test_accuracy.py checks both against
mpmath); this test catches the two drifting apart."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from klconform.reference import _accurate

_kernel = pytest.importorskip("klconform.reference._kernel", reason="numba not installed")

REGIMES = ("near", "unrelated", "tiny", "subnormal", "mixed-subnormal", "zeros", "one-hot",
           "huge-range", "specials", "unnormalised")


def _run(backend, p, q, w, monkeypatch):
    monkeypatch.setattr(_accurate, "_BACKEND", backend)
    with np.errstate(all="ignore"):
        return _accurate.kl_divergence(p, q, weights=w)


def _rows(regime, rng, m, n):
    p = rng.random((m, n)) + 1e-3
    p /= p.sum(axis=1, keepdims=True)
    q = rng.random((m, n)) + 1e-3
    q /= q.sum(axis=1, keepdims=True)
    if regime == "near":
        q = p * (1 + 10.0 ** -rng.integers(3, 16) * rng.standard_normal((m, n)))
    elif regime == "tiny":
        p, q = p * 1e-300, p * (1 + 1e-8 * rng.standard_normal((m, n))) * 1e-300
    elif regime == "subnormal":
        p, q = p * 2.0 ** -1030, q * 2.0 ** -1030
    elif regime == "mixed-subnormal":
        tiny = rng.random((m, n)) < 0.3
        p, q = np.where(tiny, p * 1e-310, p), np.where(tiny, q * 3e-311, q)
    elif regime == "zeros":
        p = p * (rng.random((m, n)) < 0.5)
    elif regime == "one-hot":
        p = np.zeros((m, n))
        p[np.arange(m), rng.integers(0, n, m)] = 1.0
    elif regime == "huge-range":        # several bands of 2**800 in one row
        p = p * 2.0 ** rng.integers(-1070, 1000, (m, n)).astype(float)
        q = q * 2.0 ** rng.integers(-1070, 1000, (m, n)).astype(float)
    elif regime == "specials":
        pick = rng.random((m, n))
        p = np.where(pick < 0.05, np.inf, np.where(pick < 0.1, 0.0, p))
        q = np.where(pick > 0.95, 0.0, np.where(pick > 0.9, np.inf, q))
    elif regime == "unnormalised":
        p, q = p * rng.random((m, 1)) * 10, q * 3
    return p, q


@given(regime=st.sampled_from(REGIMES), seed=st.integers(0, 2**32 - 1),
       m=st.integers(1, 6), n=st.sampled_from([1, 2, 3, 7, 64, 1000, 5000]),
       weighted=st.booleans())
def test_numpy_and_numba_paths_are_bitwise_identical(regime, seed, m, n, weighted):
    rng = np.random.default_rng(seed)
    p, q = _rows(regime, rng, m, n)
    w = rng.standard_normal((m, n)) * 2.0 ** rng.integers(-60, 60) if weighted else None
    with pytest.MonkeyPatch.context() as mp:
        a = _run("numpy", p, q, w, mp)
        b = _run("numba", p, q, w, mp)
    assert a.view(np.int64).tolist() == b.view(np.int64).tolist() or \
        np.array_equal(a, b, equal_nan=True), (a, b)
