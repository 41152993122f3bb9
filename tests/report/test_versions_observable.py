"""A version sentence claims a change only where the evidence tells the two behaviours
apart (report/versions.py): MXNet 2.0.0b1 still adds 1e-12 to the target, but computed in
float32 that epsilon agrees with 'none' within every bound, so the report says "no longer
observable", not "epsilon changed from target_log_eps(1e-12) to none".

Results doubles: two versions of one adapter, the old fingerprinted at target_log_eps(1e-12),
the new computing (and fingerprinted at) the canonical point."""
import numpy as np

from klconform import engine
from klconform.case import Case
from klconform.reference.dtypes import round_to
from klconform.reference.family import Point
from klconform.report import versions
from tests.report import doubles


class Old(doubles.TargetEps):
    name = "double.kl"

    def setup(self):
        return {**super().setup(), "version": "1.0"}


class New(doubles.PointAdapter):
    name = "double.kl"

    def setup(self):
        return {**super().setup(), "version": "2.0"}


def _result(cases):
    targets = [engine.Target(run_id=run_id, adapter=a, runner=engine.InProcessRunner(a), env=a.setup())
               for run_id, a in (("double.kl", Old()), ("double.kl@new", New()))]
    result = engine.run_conformance([], cases, targets=targets, shrink_rounds=0)
    eps, canon = Point("batchmean", epsilon="target_log_eps", eps=1e-12), Point("batchmean")
    for run, pt in zip(result.runs, (eps, canon)):     # the fingerprints the two versions got
        run.fingerprint = {"observed": {"name": pt.name, "points": {"batchmean": pt.to_json()}}, "status": "exact"}
    versions._last = None
    return result


def _fingerprint_lines(result):
    [(_, _, changes)] = versions.version_changes(result)
    return [c for c in changes if c.kind == "fingerprint"]


def test_an_epsilon_invisible_in_float32_is_no_longer_observable_not_changed():
    p = round_to(np.array([[0.25, 0.75], [0.5, 0.5]]), "float32")
    q = round_to(np.log(np.array([[0.5, 0.5], [0.25, 0.75]])), "float32")
    cases = [Case(target=p, pred=q, reduction="batchmean", dtype="float32")]
    [line] = _fingerprint_lines(_result(cases))
    assert line.sentence.startswith("no longer observable: epsilon target_log_eps(1e-12)"), line.sentence
    assert "changed" not in line.sentence and not line.is_change
    assert "double.kl@new 2.0" in line.sentence


def test_an_epsilon_that_moves_a_float64_value_is_a_change():
    """p = 1e-13: log(p + 1e-12) differs from log(p) by log 11, far beyond a float64 bound."""
    cases = [Case(target=np.array([[1e-13, 1 - 1e-13], [0.5, 0.5]]), pred=np.log([[0.5, 0.5], [0.25, 0.75]]),
                  reduction="batchmean")]
    [line] = _fingerprint_lines(_result(cases))
    assert line.sentence == "epsilon changed from target_log_eps(1e-12) to none" and line.is_change


def test_version_steps_are_titled_with_the_runs_environment():
    p = round_to(np.array([[0.25, 0.75]]), "float32")
    result = _result([Case(target=p, pred=round_to(np.log(np.array([[0.5, 0.5]])), "float32"),
                           reduction="batchmean", dtype="float32")])
    [(a, b, _)] = versions.version_changes(result)
    assert versions._step_title(a, b) == "double.kl -> double.kl@new: 1.0 -> 2.0"
