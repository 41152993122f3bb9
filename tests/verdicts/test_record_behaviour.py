"""Records say what the framework computes where it departs (klconform/behaviour.py): a
record covers a verdict only when the outcome does what its ``observed`` rules say, so a
wrong value at a recorded place stays unexpected.  Outcomes here are hand-built doubles;
expected values come from SPEC.md's formulas, the reference judges them."""
import dataclasses

import numpy as np
import pytest

from klconform import behaviour, records
from klconform.adapters.base import Outcome
from klconform.case import Case
from klconform.evaluator import make_evaluator
from klconform.facts import facts
from klconform.reference.family import Point
from klconform.verdicts import classify

NAN, INF = np.nan, np.inf


def _record(cls, observed, **match):
    entry = {"id": "r", "class": cls, "against": ["canonical"], "clauses": ["KL-GRAD-INF"],
             "when": "w", "citation": "https://example.invalid", "match": match}
    if observed is not None:
        entry["observed"] = observed
    return records.parse_records({"discrepancy": [entry]}, "t.toml")[0]


def _covered(rec, case, outcome, point=None):
    ev = make_evaluator()
    point = point or Point(reduction=case.reduction)
    vs = [v for v in classify(case, outcome, adapter="a", against="canonical", point=point, evaluate=ev,
                              gradients=("pred",)) if v.cls != "match"]
    obs = behaviour.Observation(case, outcome, point, point, ev)
    return vs, [records.record_matches(rec, v, facts(case, v, outcome), obs) for v in vs]


# p = [0.5, 0.5], log q = [NaN, log 0.5]: the term is NaN at entry 0 (KL-INVALID-1), so are
# its partials; a framework computing d/d(log q) = -p everywhere gives -0.5 there.
CASE = Case(target=np.array([0.5, 0.5]), pred=np.array([NAN, np.log(0.5)]), reduction="sum")


def _ok(value, grad):
    return Outcome(status="ok", value=np.asarray(value, dtype=float), dtype="float64", shape=np.shape(value),
                   grads={"pred": np.asarray(grad, dtype=float)}, grad_dtypes={"pred": "float64"})


def test_minus_p_rule_covers_the_formula_and_not_a_planted_value():
    """KL-GRAD-PRED-LOGPROB KL-GRAD-INF: ``grad = "-p"`` covers d/d(log q) = -p where the
    reference's partial is NaN, and a wrong finite value there (-0.3) is not covered."""
    rec = _record("gradient", {"grad": "-p"}, grad_input="pred")
    vs, cov = _covered(rec, CASE, _ok(NAN, [-0.5, -0.5]))
    assert [v.cls for v in vs] == ["gradient"] and cov == [True]
    vs, cov = _covered(rec, CASE, _ok(NAN, [-0.3, -0.5]))
    assert [v.cls for v in vs] == ["gradient"] and cov == [False]
    # the planting helper the conformance suite uses makes it uncovered too
    planted = behaviour.planted(_ok(NAN, [-0.5, -0.5]), vs[0])
    assert _covered(rec, CASE, planted)[1] == [False]


def test_a_record_without_observed_is_refused():
    """A record naming only where (match) and not what: refused with the rule to write."""
    with pytest.raises(records.KnownError, match="observed"):
        _record("gradient", None, grad_input="pred")
    # a semantic record's explained_by states the behaviour already
    entry = {"id": "s", "class": "semantic", "against": "canonical", "clauses": ["KL-RED-MEAN"],
             "when": "w", "citation": "c", "explained_by": "sum"}
    assert records.parse_records({"discrepancy": [entry]}, "t.toml")[0].observed == {}


@pytest.mark.parametrize("observed,error", [
    ({"grad": "purple"}, "not one of"), ({"within": 0.5}, "at least 1"), ({"dtype": "float32"}, "says nothing"),
    ({"point": {"zero_inf": "maybe"}}, "zero_inf"), ({"colour": 1}, "not a rule")])
def test_malformed_rules_name_the_problem(observed, error):
    with pytest.raises(records.KnownError, match=error):
        _record("gradient", observed)


def test_value_kind_rule():
    """KL-BOUND-4: ``value = "nan"`` covers a NaN where the reference gives 0 (P == Q); a wrong
    finite value at that place is not covered."""
    case = Case(target=np.array([0.5, 1.0]), pred=np.log(np.array([0.5, 1.0])), reduction="none", grad=False)
    rec = _record("special_value", {"value": "nan"})
    assert _covered(rec, case, _ok([NAN, 0.0], [0, 0]))[1] == [True]
    assert _covered(rec, case, _ok([0.25, 0.0], [0, 0]))[1] == [False]


def test_point_rule_for_gradients():
    """KL-GRAD-RED: ``point = {reduction = "sum"}`` covers a gradient of the sum where mean
    was asked, not one scaled by yet another divisor."""
    p = np.array([[0.25, 0.75], [0.5, 0.5]])
    lq = np.log(np.array([[0.5, 0.5], [0.25, 0.75]]))
    case = Case(target=p, pred=lq, reduction="mean")
    rec = _record("gradient", {"point": {"reduction": "sum"}}, grad_input="pred")
    mean_value = float(np.sum(p * (np.log(p) - lq)) / 4)
    assert _covered(rec, case, _ok(mean_value, -p))[1] == [True]          # d sum / d log q = -p
    assert _covered(rec, case, _ok(mean_value, -p / 3))[1] == [False]     # a divisor of 3


def test_within_rule_bounds_how_far_beyond():
    """KL-BOUND-2: ``within = 4`` covers an error up to 4 bounds, not 40."""
    case = Case(target=np.array([0.25, 0.75]), pred=np.log(np.array([0.5, 0.5])), reduction="sum", grad=False)
    ev = make_evaluator()
    exp = ev(case, Point(reduction="sum"))
    rec = _record("precision", {"within": 4})
    for factor, want in ((3.0, True), (40.0, False)):
        value = float(exp.value) + factor * float(exp.bound)
        vs, cov = _covered(rec, case, _ok(value, [0, 0]))
        assert [v.cls for v in vs] == ["precision"] and cov == [want]


# SPEC's one-row example: P = [0.25, 0.75], Q = [0.5, 0.5]; KL = 0.25 log 0.5 + 0.75 log 1.5
ONE_ROW_KL = 0.25 * np.log(0.5) + 0.75 * np.log(1.5)


def test_shape_rule_squeezed_covers_the_squeezed_value_only():
    """KL-SHAPE-2: ``shape = "squeezed"`` covers a one-sample 'distribution' result returned
    with shape [] where [1] is due, when the value is the compared point's; a wrong value,
    another shape or a planted value at that place stays unexpected."""
    case = Case(target=np.array([[0.25, 0.75]]), pred=np.array([[0.5, 0.5]]), pred_kind="prob",
                reduction="distribution")
    rec = _record("shape", {"shape": "squeezed"})
    good = _ok(ONE_ROW_KL, [[0.0, 0.0]])
    vs, cov = _covered(rec, case, good)
    assert [v.cls for v in vs] == ["shape"] and cov == [True]
    assert _covered(rec, case, _ok(ONE_ROW_KL + 0.01, [[0.0, 0.0]]))[1] == [False]
    assert _covered(rec, case, _ok([[ONE_ROW_KL]], [[0.0, 0.0]]))[1] == [False]      # [1, 1] is not [1] squeezed
    assert _covered(rec, case, behaviour.planted(good, vs[0]))[1] == [False]


def test_shape_rule_with_a_value_kind():
    """``shape`` + ``value``: the squeezed value's departing entries are of that kind (NaN
    where the KL is finite), not any value."""
    case = Case(target=np.array([[0.25, 0.75]]), pred=np.array([[0.5, 0.5]]), pred_kind="prob",
                reduction="distribution")
    rec = _record("shape", {"shape": "squeezed", "value": "nan"})
    assert _covered(rec, case, _ok(NAN, [[0.0, 0.0]]))[1] == [True]
    assert _covered(rec, case, _ok(0.5, [[0.0, 0.0]]))[1] == [False]
    assert not any(_covered(rec, case, _ok([NAN], [[0.0, 0.0]]))[1])      # the right shape: no shape verdict
    with pytest.raises(records.KnownError, match="not one of"):
        _record("shape", {"shape": "flattened"})
    with pytest.raises(records.KnownError, match="says nothing"):
        _record("gradient", {"shape": "squeezed"})


def test_non_finite_grad_kind_covers_mixed_nan_and_inf_only():
    """KL-GRAD-PRED-PROB: ``grad = "non-finite"`` covers a gradient NaN at one departing entry
    and -inf at another (d/dq = -p/q = [-0.5, -1.5] here); a finite wrong entry among them is
    not covered, nor is a planted value."""
    case = Case(target=np.array([0.25, 0.75]), pred=np.array([0.5, 0.5]), pred_kind="prob", reduction="sum")
    rec = _record("gradient", {"grad": "non-finite"}, grad_input="pred")
    mixed = _ok(ONE_ROW_KL, [NAN, -INF])
    vs, cov = _covered(rec, case, mixed)
    assert [v.cls for v in vs] == ["gradient"] and cov == [True]
    assert _covered(rec, case, _ok(ONE_ROW_KL, [NAN, -1.0]))[1] == [False]
    assert _covered(rec, case, behaviour.planted(mixed, vs[0]))[1] == [False]
    # neither single kind covers the mix
    assert _covered(_record("gradient", {"grad": "nan"}, grad_input="pred"), case, mixed)[1] == [False]
    assert _covered(_record("gradient", {"grad": "-inf"}, grad_input="pred"), case, mixed)[1] == [False]
