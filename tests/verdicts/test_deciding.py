"""A verdict cites the few SPEC clauses that decide it (klconform/deciding.py), not every
clause the case touches; values in its detail print as numbers.

Outcomes are planted: the reference's own answer at a point, with one thing changed, so the
deciding clause is known from SPEC.md (which clause defines the changed entry)."""
import numpy as np

from klconform.adapters.base import Outcome
from klconform.case import Case
from klconform.compare import format_array, format_number
from klconform.reference.evaluate import evaluate
from klconform.reference.family import Point
from klconform.verdicts import classify

# Few: a verdict that cites more than this many clauses is not telling the user what decides it.
FEW = 6


def _outcome(case, point, **changes):
    exp = evaluate(case, point)
    out = Outcome(status="ok", value=np.array(exp.value_in_dtype, dtype=float), dtype=case.dtype,
                  shape=tuple(exp.value.shape), grads={k: np.array(g, dtype=float) for k, g in exp.grads.items()},
                  grad_dtypes={k: case.dtype for k in exp.grads})
    for k, v in changes.items():
        setattr(out, k, v)
    return out


def _classify(case, out, point=None, **kw):
    return classify(case, out, adapter="x", against="canonical", point=point or Point(case.reduction), **kw)


def _only(vs, cls):
    got = [v for v in vs if v.cls == cls]
    assert got, vs
    for v in got:
        assert v.clauses[-1].startswith("KL-VERDICT-") and len(v.clauses) <= FEW, v.clauses
    return got[0]


def test_special_value_names_the_clause_of_the_entry_that_differs():
    """Entry 0 has p > 0, q = 0 (KL-ZERO-2: +inf); entry 1 has p = 0 (KL-ZERO-1). A framework
    returning a finite value at entry 0 is wrong about KL-ZERO-2 only."""
    c = Case(target=np.array([[0.5, 0.0, 0.5]]), pred=np.log([[0.0, 0.5, 0.5]]), reduction="none", grad=False)
    exp = evaluate(c)
    assert {"KL-ZERO-1", "KL-ZERO-2", "KL-DEF-1", "KL-BOUND-2"} <= set(exp.clauses) and len(exp.clauses) > FEW
    value = np.array(exp.value_in_dtype, dtype=float)
    assert np.isposinf(value[0, 0])
    value[0, 0] = 30.0
    v = _only(_classify(c, _outcome(c, Point("none"), value=value)), "special_value")
    assert "KL-ZERO-2" in v.clauses and "KL-ZERO-1" not in v.clauses, v.clauses
    assert "KL-DEF-1" not in v.clauses and "KL-BOUND-2" not in v.clauses


def test_special_value_of_a_sum_names_the_special_term_and_how_sums_combine():
    c = Case(target=np.array([[0.5, 0.5], [0.5, 0.5]]), pred=np.log([[np.inf, 0.5], [0.5, 0.5]]),
             reduction="distribution", grad=False)
    exp = evaluate(c)
    value = np.array(exp.value_in_dtype, dtype=float)
    assert np.isneginf(value[0])            # KL-INF-1: q = +inf gives -inf
    value[0] = np.nan
    v = _only(_classify(c, _outcome(c, Point("distribution"), value=value)), "special_value")
    assert {"KL-INF-1", "KL-SPECIAL-SUM-1"} <= set(v.clauses), v.clauses
    assert "KL-INVALID-1" not in v.clauses


def test_semantic_names_the_reductions_whose_divisor_differs():
    c = Case(target=np.array([[0.25, 0.75]] * 3), pred=np.log([[0.5, 0.5]] * 3), reduction="batchmean")
    v = _only(_classify(c, _outcome(c, Point("mean"))), "semantic")
    assert v.explained_by == "mean"
    assert v.clauses == ("KL-RED-BATCHMEAN", "KL-RED-MEAN", "KL-VERDICT-SEMANTIC")


def test_semantic_epsilon_names_both_epsilon_policies():
    c = Case(target=np.array([[1e-13, 1 - 1e-13]] * 2), pred=np.log([[0.5, 0.5]] * 2), reduction="sum")
    v = _only(_classify(c, _outcome(c, Point("sum", epsilon="target_log_eps", eps=1e-6))), "semantic")
    assert {"KL-EPS-NONE", "KL-EPS-TARGET-LOG"} <= set(v.clauses) and "KL-RED-SUM" not in v.clauses, v.clauses


def test_gradient_off_by_a_divisor_names_the_gradient_reduction():
    """Value right, d/d(log q) divided by N = 6 instead of S[ba] = 3 (a wrong batchmean
    divisor in the backward pass): KL-GRAD-RED and KL-RED-BATCHMEAN, with the formula."""
    c = Case(target=np.array([[0.25, 0.75]] * 3), pred=np.log([[0.5, 0.5]] * 3), reduction="batchmean")
    good = _outcome(c, Point("batchmean"))
    out = _outcome(c, Point("batchmean"), grads={**good.grads, "pred": good.grads["pred"] / 2})
    v = _only(_classify(c, out, gradients=("pred",)), "gradient")
    assert {"KL-GRAD-RED", "KL-RED-BATCHMEAN", "KL-GRAD-PRED-LOGPROB"} <= set(v.clauses), v.clauses
    assert "KL-BOUND-3" not in v.clauses and "KL-GRAD-TARGET-PROB" not in v.clauses


def test_gradient_at_an_infinite_prediction_names_the_ieee_gradient_clause():
    """log q = +inf, p > 0: SPEC gives d/d(log q) = -p (KL-GRAD-PRED-LOGPROB, KL-GRAD-INF); a NaN
    there is wrong about those, not about the reduction or the bound."""
    c = Case(target=np.array([[0.5, 0.5]]), pred=np.array([[np.inf, 0.0]]), reduction="sum")
    good = _outcome(c, Point("sum"))
    g = good.grads["pred"].copy()
    g[0, 0] = np.nan
    out = _outcome(c, Point("sum"), grads={**good.grads, "pred": g})
    v = _only(_classify(c, out, gradients=("pred",)), "gradient")
    assert {"KL-GRAD-PRED-LOGPROB", "KL-GRAD-INF"} <= set(v.clauses), v.clauses
    assert "KL-BOUND-3" not in v.clauses and "KL-RED-SUM" not in v.clauses


def test_precision_names_the_bound():
    c = Case(target=np.array([[0.25, 0.75]] * 2), pred=np.log([[0.5, 0.5]] * 2), reduction="none", grad=False)
    exp = evaluate(c)
    value = np.array(exp.value_in_dtype, dtype=float)
    value[1, 1] += 50 * float(np.asarray(exp.bound)[1, 1])
    v = _only(_classify(c, _outcome(c, Point("none"), value=value)), "precision")
    assert v.clauses == ("KL-BOUND-2", "KL-BOUND-4", "KL-VERDICT-PRECISION")


def test_shape_and_dtype_name_their_clauses():
    c = Case(target=np.array([[0.25, 0.75]] * 2), pred=np.log([[0.5, 0.5]] * 2), reduction="sum", grad=False)
    exp = evaluate(c)
    out = _outcome(c, Point("sum"), value=np.array([float(exp.value)]), shape=(1,))
    assert _only(_classify(c, out), "shape").clauses == ("KL-SHAPE-2", "KL-RED-SUM", "KL-VERDICT-SHAPE")
    c32 = Case(target=np.array([[0.25, 0.75]] * 2), pred=np.array([[-0.5, -1.0]] * 2), reduction="sum",
               grad=False, dtype="float32")
    out = _outcome(c32, Point("sum"), dtype="float64")
    assert _only(_classify(c32, out), "dtype").clauses == ("KL-DTYPE-1", "KL-VERDICT-DTYPE")


def test_match_cites_only_its_class():
    c = Case(target=np.array([[0.25, 0.75]]), pred=np.log([[0.5, 0.5]]), reduction="sum")
    assert [v.clauses for v in _classify(c, _outcome(c, Point("sum")))] == [("KL-VERDICT-MATCH",)]


# ----------------------------------------------------------------------------- numbers
def test_numbers_print_as_numbers():
    assert format_number(np.float64(-0.5)) == "-0.5"
    assert format_number(np.float32(0.1)) == repr(float(np.float32(0.1)))
    assert format_number(np.int64(3)) == "3"
    assert [format_number(x) for x in (np.nan, -np.inf, 1e-12)] == ["nan", "-inf", "1e-12"]
    assert format_array(np.array([np.float64(-0.5), np.inf])) == "[-0.5, inf]"
    assert format_array(np.float64(2.0)) == "2.0" and format_array(np.zeros((3, 4))) == "array[3, 4]"


def test_verdict_details_carry_no_numpy_reprs():
    """Details of special_value, precision and gradient verdicts print entries as numbers
    (numpy 2 reprs scalars as np.float64(...))."""
    c = Case(target=np.array([[0.5, 0.5]]), pred=np.array([[np.inf, 0.0]]), reduction="sum")
    good = _outcome(c, Point("sum"))
    g = good.grads["pred"].copy()
    g[0, 0] = np.nan
    details = [v.detail for v in _classify(c, _outcome(c, Point("sum"), grads={**good.grads, "pred": g}))]
    c2 = Case(target=np.array([[0.5, 0.0, 0.5]]), pred=np.log([[0.0, 0.5, 0.5]]), reduction="none", grad=False)
    details += [v.detail for v in _classify(c2, _outcome(c2, Point("none"), value=np.zeros((1, 3))))]
    assert details and all("np." not in d and "array(" not in d for d in details), details
    assert any("observed nan, expected -0.5" in d for d in details), details
