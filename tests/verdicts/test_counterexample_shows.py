"""The smallest counterexample shows the defect it stands for (engine.showing_rank): a wrong
batchmean divisor is not shown by an empty batch, where the value is 0 or NaN whatever the
divisor, however small that case is."""
import numpy as np

import kl_doubles as D
from klconform import engine
from klconform.case import Case
from klconform.evaluator import make_evaluator


def _cases():
    empty = Case(target=np.zeros((2, 0)), pred=np.zeros((2, 0)), reduction="batchmean")
    rows = Case(target=np.array([[0.25, 0.75]] * 3), pred=np.log([[0.5, 0.5]] * 3), reduction="batchmean")
    wide = Case(target=np.full((4, 4), 0.25), pred=np.log(np.array([[0.5, 0.25, 0.125, 0.125]] * 4)),
                reduction="batchmean")
    return empty, rows, wide


def _run(cases, shrink_rounds=0):
    a = D.WrongBatchmeanDivisor()
    t = engine.Target(run_id=a.name, adapter=a, runner=engine.InProcessRunner(a), env={"version": "0"})
    run, _ = engine.run_adapter(t, list(cases), records=[], evaluator=make_evaluator(), shrink_rounds=shrink_rounds)
    return run


def test_an_empty_batch_shows_no_divisor_and_is_not_the_counterexample():
    empty, rows, wide = _cases()
    run = _run([empty, rows, wide])
    on_empty = [v for v in run.verdicts if v.case == empty.digest and v.against == "canonical"]
    # the planted defect is visible on the empty batch only as NaN (0/0) against 0: a verdict
    # of the same class that shows nothing of a divisor
    assert any(v.cls == "semantic" for v in on_empty), on_empty
    ce = run.counterexamples["semantic"]
    assert ce["case"] == rows.digest, ce
    assert ce["verdict"]["explained_by"] == "mean"


def test_showing_rank_orders_numbers_before_nan_before_nothing():
    empty, rows, _ = _cases()
    run = _run([empty, rows])
    by_case = {v.case: v for v in run.verdicts if v.cls == "semantic" and v.against == "canonical"}
    assert engine.showing_rank(empty, by_case[empty.digest]) == 2
    assert engine.showing_rank(rows, by_case[rows.digest]) == 0


def test_shrinking_keeps_a_case_that_shows_the_divisor():
    _, _, wide = _cases()
    run = _run([wide], shrink_rounds=4)
    case = engine.case_from_blob(run.counterexamples["semantic"]["blob"])
    assert case.target.size > 0, case.target.shape       # 1 row of 2 still shows it: sum/1 vs sum/2
    v = run.counterexamples["semantic"]["verdict"]
    assert v["explained_by"] == "mean" and "nan" not in v["detail"], v
