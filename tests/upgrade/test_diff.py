"""Baselines and their diff on recorded results: each kind of change is detected and worded,
an identical run is no change, a move within the bound is no change, and bad or stale
baseline files stop the CLI with one line and exit status 2."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from klconform import baseline, wire
from klconform.adapters.base import Outcome
from klconform.case import Case
from klconform.cli import main
from klconform.diff import compare_baselines
from klconform.reference import evaluate
from klconform.results import AdapterRun, RunResult

P = np.array([[0.25, 0.75], [0.5, 0.5]])
LOGQ = np.array([[-0.5, -1.0], [-2.0, -0.25]])
CASES = {
    "plain": Case(target=P, pred=LOGQ, dtype="float64", reduction="sum"),
    "zero": Case(target=np.array([[0.0, 1.0], [0.5, 0.5]]), pred=LOGQ, dtype="float64", reduction="sum"),
    "empty": Case(target=np.zeros((0, 2)), pred=np.zeros((0, 2)), dtype="float64", reduction="sum"),
    "mean": Case(target=P, pred=LOGQ, dtype="float64", reduction="mean"),
}


def exact(case: Case) -> Outcome:
    """What a conforming framework answers: the reference's value and gradients."""
    e = evaluate(case)
    return Outcome(status="ok", value=np.asarray(e.value), dtype=case.dtype, shape=tuple(e.value.shape),
                   grads={k: np.asarray(v) for k, v in e.grads.items()},
                   grad_dtypes={k: case.dtype for k in e.grads})


def result(outcomes: dict[str, Outcome], points=None, version="1.0") -> RunResult:
    run = AdapterRun(adapter="fake.kl", api="fake.kl", env={"framework": "fake", "version": version},
                     outcomes={CASES[k].digest: wire.to_json(o) for k, o in outcomes.items()},
                     fingerprint={"observed": {"name": "x", "points": points or {}}})
    return RunResult(schema_version=1, seed=0, hypothesis={}, corpus_digest="c0ffee",
                     cases={c.digest: c.to_json() for c in CASES.values()}, runs=[run])


def baseline_of(outcomes, **kw):
    r = result(outcomes, **kw)
    return baseline.from_run(r, r.runs[0])


BASE = {k: exact(c) for k, c in CASES.items()}


def changes(new_outcomes, **kw):
    return compare_baselines(baseline_of(BASE), baseline_of(new_outcomes, **kw))


def only_change(new_outcomes, **kw):
    real = [c for c in changes(new_outcomes, **kw) if c.is_change]
    assert len(real) == 1, [c.sentence for c in real]
    return real[0]


def test_identical_run_is_no_change():
    assert changes(BASE) == []


def test_move_within_the_bound_is_no_change():
    new = copy.deepcopy(BASE)
    e = evaluate(CASES["plain"])
    new["plain"].value = new["plain"].value + 0.4 * float(np.max(e.bound))
    found = changes(new)
    assert [c.is_change for c in found] == [False]
    assert found[0].sentence.startswith("values moved within the bound") and "(no change)" in found[0].sentence


def test_move_beyond_the_bound_is_a_change():
    new = copy.deepcopy(BASE)
    new["plain"].value = new["plain"].value * 1.01
    c = only_change(new)
    assert c.kind == "value" and c.sentence.startswith("values moved beyond the bound")
    assert c.cases == [CASES["plain"].digest]


def test_zero_target_gradient_became_nan():
    new = copy.deepcopy(BASE)
    g = new["zero"].grads["pred"].copy()   # -p = 0 at p = 0
    g[0, 0] = np.nan
    new["zero"].grads["pred"] = g
    c = only_change(new)
    assert c.sentence.startswith("zero-target gradient w.r.t. pred became NaN on float64 cases with zero targets (p = 0)")
    assert c.cases == [CASES["zero"].digest]


def test_float64_now_computed_in_float32():
    new = copy.deepcopy(BASE)
    for k in ("plain", "mean"):
        new[k].dtype = "float32"
    c = only_change(new)
    assert c.sentence.startswith("float64 inputs now computed in float32")
    assert sorted(c.cases) == sorted([CASES["plain"].digest, CASES["mean"].digest])


def test_float32_gradients_of_float64_cases_are_judged_in_float32():
    """A float64 case a framework computes in float32 (Keras' class): its gradient w.r.t.
    the target, log p - log q + 1, carries float32 rounding of |log p| + |log q| (~28
    here) - another CPU's kernel moves it by that, which is no change: the verdicts judge
    it in float32 too.  A move beyond float32's bound still is."""
    case = Case(target=np.array([[1e-6, 1 - 1e-6]]), pred=np.log(np.array([[2e-6, 1 - 2e-6]])),
                dtype="float64", reduction="sum")
    e = evaluate(case)

    def run(shift_target_grad: float) -> baseline.Baseline:
        g = {k: np.asarray(v, dtype=np.float32).astype(np.float64) for k, v in e.grads.items()}
        g["target"] = g["target"] + shift_target_grad
        o = Outcome(status="ok", value=np.asarray(np.float32(e.value), dtype=np.float64), dtype="float32", shape=(),
                    grads=g, grad_dtypes={k: "float32" for k in g})
        r = RunResult(schema_version=1, seed=0, hypothesis={}, corpus_digest="c0ffee",
                      cases={case.digest: case.to_json()},
                      runs=[AdapterRun(adapter="fake.kl", api="fake.kl", env={"framework": "fake", "version": "1.0"},
                                       outcomes={case.digest: wire.to_json(o)},
                                       fingerprint={"observed": {"name": "x", "points": {}}})])
        return baseline.from_run(r, r.runs[0])

    rounding = 16 * 2.0 ** -24          # 16 float32 ulps of 1: well inside 28 ulps of |log p| + |log q|
    assert not any(c.is_change for c in compare_baselines(run(0.0), run(rounding)))
    real = [c for c in compare_baselines(run(0.0), run(1e-3)) if c.is_change]
    assert [c.sentence.split(" on ")[0] for c in real] == ["gradient w.r.t. target moved beyond its bound"]


def test_example_cases_are_listed_in_one_order_whatever_the_baselines_order():
    """A report re-rendered from results.json (cases in digest order) named other example
    cases than the run's own (cases in run order): the examples are in digest order."""
    new = copy.deepcopy(BASE)
    for k in ("plain", "mean"):
        new[k].dtype = "float32"
    old_b, new_b = baseline_of(BASE), baseline_of(new)
    flipped = copy.copy(old_b)
    flipped.cases = dict(reversed(list(old_b.cases.items())))
    listed = [[c.cases for c in compare_baselines(b, new_b) if c.is_change] for b in (old_b, flipped)]
    assert listed[0] == listed[1] == [sorted([CASES["plain"].digest, CASES["mean"].digest])]


def test_new_error_on_empty_batches():
    new = copy.deepcopy(BASE)
    new["empty"] = Outcome(status="error", error_type="ValueError", error_message="empty")
    c = only_change(new)
    assert c.sentence == "new error (ValueError) on float64 cases with empty inputs and reduction 'sum' (was a value)"


def test_reduction_change_from_the_fingerprint():
    pt = {"reduction": "mean", "epsilon": "none", "eps": 0.0}
    old = baseline_of(BASE, points={"mean": dict(pt, reduction="sample_mean")})
    new = baseline_of(BASE, points={"mean": dict(pt, reduction="sample_sum")})
    found = compare_baselines(old, new)
    assert [c.sentence for c in found] == ["reduction 'mean' changed from the per-sample mean to the per-sample sum"]


# ----------------------------------------------------------------------------- CLI
def write(tmp_path, outcomes, name="results.json", **kw):
    path = tmp_path / name
    path.write_text(json.dumps(result(outcomes, **kw).to_json(), default=str))
    return path


@pytest.fixture
def recorded(tmp_path, monkeypatch):
    monkeypatch.setattr("klconform.resultsio.read_results", lambda p: RunResult.from_json(json.loads(open(p).read())))
    bdir = tmp_path / "baselines"
    baseline.update(result(BASE), bdir)
    return bdir


def test_cli_check_exit_statuses(tmp_path, recorded, capsys):
    same = write(tmp_path, BASE)
    assert main(["baseline", "check", str(same), "--baselines", str(recorded)]) == 0
    new = copy.deepcopy(BASE)
    new["empty"] = Outcome(status="error", error_type="ValueError", error_message="empty")
    changed = write(tmp_path, new, "changed.json")
    assert main(["baseline", "check", str(changed), "--baselines", str(recorded)]) == 1
    assert "new error (ValueError)" in capsys.readouterr().out
    # upgrade: no baseline of 2.0 yet -> compared with 1.0, said as a note
    upgraded = write(tmp_path, BASE, "up.json", version="2.0")
    assert main(["baseline", "check", str(upgraded), "--baselines", str(recorded)]) == 0
    assert "no baseline for 2.0; compared with 1.0" in capsys.readouterr().out
    # accepting the change rewrites the baseline; then it checks clean
    assert main(["baseline", "update", str(changed), "--baselines", str(recorded)]) == 0
    assert main(["baseline", "check", str(changed), "--baselines", str(recorded)]) == 0


@pytest.mark.parametrize("mutate, words", [
    (lambda lines: ["not json"] + lines[1:], "not a readable baseline file"),
    (lambda lines: [json.dumps({"kind": "klconform-baseline", **dict(json.loads(lines[0]), schema=99)})] + lines[1:],
     "baseline schema version 99"),
    (lambda lines: [json.dumps(dict(json.loads(lines[0]), corpus_digest="0000"))] + lines[1:],
     "stale baseline fake.kl@1.0.jsonl: corpus digest 0000 differs"),
])
def test_cli_bad_or_stale_baseline_is_one_line_and_exit_2(tmp_path, recorded, capsys, mutate, words):
    f = recorded / "fake.kl@1.0.jsonl"
    f.write_text("\n".join(mutate(f.read_text().splitlines())) + "\n")
    assert main(["baseline", "check", str(write(tmp_path, BASE)), "--baselines", str(recorded)]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_cli_diff_of_two_baseline_files(tmp_path, recorded, capsys):
    new = copy.deepcopy(BASE)
    new["plain"].dtype = "float32"
    other = tmp_path / "other"
    baseline.update(result(new, version="1.1"), other)
    assert main(["diff", str(recorded / "fake.kl@1.0.jsonl"), str(other / "fake.kl@1.1.jsonl")]) == 1
    out = capsys.readouterr().out
    assert "fake.kl 1.0 -> 1.1:" in out and "float64 inputs now computed in float32" in out
    assert main(["diff", str(recorded / "fake.kl@1.0.jsonl"), str(tmp_path / "missing.jsonl")]) == 2
