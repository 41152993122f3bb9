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


@pytest.mark.parametrize("dtype,reduction,pred_kind", [("float32", "batchmean", "logprob"),
                                                       ("float16", "none", "logprob"),
                                                       ("bfloat16", "sum", "prob")])
def test_value_bound_fused_pass_is_bitwise_the_numpy_steps(dtype, reduction, pred_kind, monkeypatch):
    """A large lower-precision case (KL-BOUND-8: float64 working precision) takes
    ``bounds.value_bound``'s compiled one-pass budgets: entry for entry, special values
    included, they are bitwise what the numpy steps (``bounds._budgets``) give on the same
    arrays, and so is the bound with the numpy backend."""
    from klconform.case import Case
    from klconform.reference import bounds, evaluate
    from klconform.reference.dtypes import round_to
    rng = np.random.default_rng(7)
    m, n = 4, 20000                                      # 80000 entries > variants.BIG
    p = rng.random((m, n)) + 1e-3
    p /= p.sum(axis=1, keepdims=True)
    q = rng.random((m, n)) + 1e-3
    q /= q.sum(axis=1, keepdims=True)
    pick = rng.random((m, n))
    p = np.where(pick < 0.02, 0.0, np.where(pick < 0.03, np.nan, np.where(pick < 0.04, np.inf, p)))
    p = np.where((pick > 0.5) & (pick < 0.51), 1e-6 * p, p)       # subnormal in float16
    q = np.where(pick > 0.98, 0.0, np.where(pick > 0.97, np.inf, q))
    with np.errstate(divide="ignore"):
        pred = np.log(q) if pred_kind == "logprob" else q
        case = Case(target=round_to(p, dtype), pred=round_to(pred, dtype), dtype=dtype, pred_kind=pred_kind,
                    reduction=reduction, grad=False)
    calls = []
    real = bounds._fused_budgets

    def spy(*args):
        calls.append((args, real(*args)))
        return calls[-1][1]

    monkeypatch.setattr(bounds, "_fused_budgets", spy)
    results = {}
    for backend in ("numba", "numpy"):
        monkeypatch.setattr(_accurate, "_BACKEND", backend)
        with np.errstate(all="ignore"):
            results[backend] = evaluate(case).bound
    (args, fused), (_, unfused) = calls
    assert fused is not None and unfused is None       # the compiled pass ran, then the numpy steps
    pt, work, a2, la2, lb2, t, lam, c = args
    with np.errstate(all="ignore"):
        steps = bounds._budgets(pt, work, a2, la2, None, lb2, t, lam, c, None, None)
    for x, y in zip(fused, steps):
        assert x.shape == y.shape and (x != 0).any()
        assert np.array_equal(x.view(np.int64), y.view(np.int64))
    a, b = results["numba"], results["numpy"]
    assert a.shape == b.shape and np.array_equal(a.view(np.int64), b.view(np.int64))
