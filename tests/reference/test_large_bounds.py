"""KL-BOUND-7: the bound of a sum of many terms is the blocked summation's, tight enough
that a sequential float32 loop over 5·10⁵ terms exceeds it while blocked and pairwise
float32 sums of the same terms stay well inside (simulated frameworks: the terms are
computed in float32 as a framework does; only the summation differs)."""
import dataclasses

import numpy as np
import pytest

from klconform import large
from klconform.reference import variants
from klconform.reference.bounds import value_bound
from klconform.reference.evaluate import evaluate
from klconform.reference.family import Point
from klconform.reference.summation import LEAF, accumulation_units
from klconform.reference.variants import BIG, LD, prepare


def test_accumulation_units_small_sums_unchanged_and_large_sums_blocked():
    for k in (0, 1, 2, 10, 1000, LEAF):
        for dtype in ("float16", "bfloat16", "float32", "float64"):
            assert accumulation_units(k, dtype) == max(k - 1, 0)
    assert accumulation_units(LEAF + 1, "float32") == LEAF - 1 + 1
    assert accumulation_units(64 * 131072, "float32") == LEAF - 1 + 13
    assert accumulation_units(64 * 131072, "float64") == LEAF - 1 + 13
    # half precision accumulates in float32: in units of its own u, 2**-13 (2**-16) of that
    assert accumulation_units(200_000, "float16") == (LEAF - 1 + 8) * 2.0**-13
    assert accumulation_units(200_000, "bfloat16") == (LEAF - 1 + 8) * 2.0**-16


def _float32_terms(case):
    p = case.target.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(p == 0, np.float32(0), p * (np.log(p) - case.pred.astype(np.float32)))
    return t.ravel()


def _blocked(terms, leaf):
    sums = [np.cumsum(terms[i:i + leaf], dtype=np.float32)[-1] for i in range(0, terms.size, leaf)]
    while len(sums) > 1:
        sums = [np.float32(sums[i] + sums[i + 1]) if i + 1 < len(sums) else sums[i] for i in range(0, len(sums), 2)]
    return float(sums[0])


@pytest.fixture(scope="module")
def quick_case():
    return large.generate(large.QUICK[0][0])     # 16 x 32000 float32, prob/logprob, batchmean


def test_blocked_and_pairwise_float32_sums_pass_sequential_fails(quick_case):
    case = quick_case
    exp = evaluate(case, Point(reduction="batchmean"))
    value, bound = float(exp.value), float(exp.bound)
    assert bound < 1e-3 * abs(value)           # tight: the recursive worst case was ~ |value|
    terms = _float32_terms(case)
    batch = case.shape[0]
    pairwise = float(np.sum(terms, dtype=np.float32)) / batch       # numpy: pairwise, leaves 128
    blocked = _blocked(terms, LEAF) / batch                           # Eigen-like leaves of 1024
    sequential = float(np.cumsum(terms, dtype=np.float32)[-1]) / batch
    assert abs(pairwise - value) <= 0.05 * bound
    assert abs(blocked - value) <= 0.5 * bound
    assert abs(sequential - value) > bound      # the bound tells a plain loop apart


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_float64_bound_path_agrees_with_extended_path(quick_case, monkeypatch, dtype):
    """Above BIG elements the bound is summed in float64 (a float32 case is computed in
    float64 throughout, KL-BOUND-8; a float64 one sums its extended-precision budgets in
    float64): it must equal the extended one to 1e-12 relative and not fall below it (the
    slack covers the difference)."""
    case = quick_case if dtype == "float32" else dataclasses.replace(quick_case, dtype="float64")
    assert case.target.size > BIG
    for point in (Point(reduction="batchmean"), Point(reduction="distribution"), Point(reduction="batchmean", normalise=True)):
        value = np.zeros((case.shape[0],) if point.reduction == "distribution" else ())
        fast = value_bound(prepare(case, point), value)
        with monkeypatch.context() as m:
            m.setattr(variants, "BIG", 10**12)
            prep = prepare(case, point)
            assert prep.work is LD
            slow = value_bound(prep, value)
        np.testing.assert_allclose(fast, slow, rtol=1e-12)
        assert np.all(fast >= slow)
