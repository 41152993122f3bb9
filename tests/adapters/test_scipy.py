"""SciPy adapters (scipy.special.rel_entr, scipy.special.kl_div, scipy.stats.entropy)
against the reference's §11 points, through a real worker.  Expected values come from
``reference.evaluate`` under the documented points (KL-NEG-INF, KL-GEN-1/2, KL-NORM-1);
the canonical point must differ where the records say so."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from klconform.case import Case
from klconform.reference import evaluate
from klconform.reference.dtypes import round_to
from klconform.reference.family import Point
from klconform.workers import AdapterUnavailable, run_in_worker

pytestmark = [pytest.mark.framework,
              pytest.mark.skipif(importlib.util.find_spec("scipy") is None, reason="scipy is not installed")]

INF, NAN = np.inf, np.nan
REL = "klconform.adapters.scipy_kl:ScipyRelEntr"
GEN = "klconform.adapters.scipy_kl:ScipyKLDiv"
ENT = "klconform.adapters.scipy_kl:ScipyEntropy"


def prob_case(p, q, reduction, dtype="float64", class_axis=-1):
    p, q = (round_to(np.asarray(v, dtype=float), dtype) for v in (p, q))
    return Case(p, q, dtype=dtype, pred_kind="prob",
                reduction=reduction, class_axis=class_axis, grad=False)


def run(ref, cases):
    try:
        env, outs = run_in_worker(ref, cases)
    except AdapterUnavailable as exc:
        pytest.skip(str(exc))
    return list(outs)


def within(out, exp) -> bool:
    o, e = np.asarray(out.value, dtype=float), exp.value_in_dtype
    if o.shape != e.shape or not np.array_equal(np.isnan(o), np.isnan(e)):
        return False
    fin = np.isfinite(e)
    return bool(np.array_equal(o[~fin & ~np.isnan(e)], e[~fin & ~np.isnan(e)])
                and np.all(np.abs(o[fin] - e[fin]) <= exp.bound[fin]))


P = [[0.2, 0.3, 0.5], [0.0, 0.6, 0.4]]
Q = [[0.3, 0.3, 0.4], [0.5, 0.0, 0.5]]


def test_rel_entr_is_the_term_with_negative_inf():
    """KL-NEG-INF KL-ZERO-1 KL-ZERO-2: rel_entr matches Point(none, negative=inf), and the
    canonical point except at negative entries (NaN there)."""
    cases = [prob_case(P, Q, "none"), prob_case([-0.5, 0.5, 0.0], [0.5, 0.5, -1.0], "none"),
             prob_case(P, Q, "none", dtype="float32")]
    outs = run(REL, cases)
    for c, o in zip(cases, outs):
        assert within(o, evaluate(c, Point("none", negative="inf"))), (c.label, o.value)
    assert not within(outs[1], evaluate(cases[1]))
    np.testing.assert_array_equal(outs[1].value, [INF, 0.0, INF])
    assert outs[2].dtype == "float32"


def test_kl_div_is_the_generalised_term():
    """KL-GEN-1 KL-GEN-2: kl_div = p log(p/q) - p + q, q at p = 0; not the canonical term."""
    cases = [prob_case(P, Q, "none"), prob_case([[2.0, 0.5]], [[0.5, 0.5]], "none")]
    outs = run(GEN, cases)
    for c, o in zip(cases, outs):
        assert within(o, evaluate(c, Point("none", generalised=True, negative="inf")))
        assert not within(o, evaluate(c))
    # independent check of one entry: 2 log 4 - 2 + 0.5
    assert outs[1].value[0, 0] == pytest.approx(2 * np.log(4.0) - 1.5, rel=1e-15)


def test_kl_div_infinite_side_is_nan_not_inf():
    """KL-GEN-2, record scipy-kl-div-infinite-side-is-nan: x = inf or y = inf with the other
    side finite and positive gives NaN (inf - inf), the limit is +inf."""
    c = prob_case([INF, 0.5, 0.0], [0.5, INF, INF], "none")
    (o,) = run(GEN, [c])
    np.testing.assert_array_equal(evaluate(c, Point("none", generalised=True, negative="inf")).value, [INF, INF, INF])
    np.testing.assert_array_equal(o.value, [NAN, NAN, INF])


def test_entropy_normalises_along_the_given_axis():
    """KL-NORM-1: entropy(pk, qk, axis) = KL of the normalised rows; the adapter passes the
    class axis (axis=0 is scipy's default), so a class axis 0 case works too."""
    p, q = np.array([[2.0, 1.0, 1.0], [0.1, 0.1, 0.2]]), np.array([[1.0, 2.0, 1.0], [1.0, 1.0, 1.0]])
    cases = [prob_case(p, q, "distribution"), prob_case(p.T, q.T, "distribution", class_axis=0),
             prob_case(P, Q, "distribution")]
    outs = run(ENT, cases)
    for c, o in zip(cases, outs):
        assert within(o, evaluate(c, Point("distribution", normalise=True, negative="inf"))), (o.value,)
    assert not within(outs[0], evaluate(cases[0]))
    np.testing.assert_allclose(outs[0].value, outs[1].value, rtol=1e-15)
    assert "scipy.stats.entropy" in outs[1].native_call and "axis=0" in outs[1].native_call
