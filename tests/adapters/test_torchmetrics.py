"""The torchmetrics adapters (``torchmetrics.regression.KLDivergence``'s forward,
``torchmetrics.functional.kl_divergence``) against the reference, in the side environment
``distill`` (``.venvs/distill``, ``python3 bootstrap.py env distill``; skipped with the reason
when absent).  Expected values: ``reference.evaluate`` at the documented point (the
normalised KL for probabilities, KL-NORM-1; the KL as given for log-probabilities) within
its bound; tests named ``*_discrepancy`` pin records of klconform/known/torchmetrics.toml
(docs/frameworks/torchmetrics.md).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest

from adapter_checks import assert_within
from klconform import records as known_records
from klconform.adapters.torchmetrics_kl import TorchmetricsKLDivergence, TorchmetricsKLDivergenceFn
from klconform.case import Case
from klconform.reference import evaluate
from klconform.reference.dtypes import round_to
from klconform.reference.family import Point
from klconform.reference.spec import clause_ids

ROOT = Path(__file__).resolve().parents[2]
SIDE_PYTHON = os.environ.get("KLCONFORM_PYTHON_DISTILL", str(ROOT / ".venvs/distill/bin/python"))
MODULE = "klconform.adapters.torchmetrics_kl"
ADAPTERS = {"metric": TorchmetricsKLDivergence, "function": TorchmetricsKLDivergenceFn}
P = np.array([[0.25, 0.75], [0.5, 0.5]])
Q = np.array([[0.5, 0.5], [0.125, 0.875]])

pytestmark = pytest.mark.framework


def _case(p, q, kind="prob", reduction="distribution_mean", dtype="float64", label=""):
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    with np.errstate(divide="ignore"):
        t, r = (np.log(p), np.log(q)) if kind == "logprob" else (p, q)
    return Case(round_to(t, dtype), round_to(r, dtype), dtype=dtype, target_kind=kind, pred_kind=kind,
                reduction=reduction, label=label)


CASES = {
    "benign/mean": _case(P, Q),
    "benign/sum": _case(P, Q, reduction="sum"),
    "benign/none": _case(P, Q, reduction="distribution"),
    "benign/float32": _case(P, Q, dtype="float32"),
    "benign/logprob": _case(P, Q, kind="logprob"),
    "tracker/one_row": _case([[0.25, 0.75]], [[0.5, 0.5]], reduction="sum"),
    "unnormalised": _case([[1.0, 3.0]], [[2.0, 2.0]], reduction="sum"),
    "zero_p": _case([[0.0, 1.0], [0.5, 0.5]], [[0.5, 0.5], [0.25, 0.75]], reduction="sum"),
    "logprob_zero_p": _case([[0.0, 1.0]], [[0.5, 0.5]], kind="logprob", reduction="sum"),
    "half/mean": _case(P, Q, dtype="float16"),
}


@pytest.fixture(scope="module", params=list(ADAPTERS))
def run(request):
    if not os.path.exists(SIDE_PYTHON):
        pytest.skip(f"distill side interpreter {SIDE_PYTHON} is absent (python3 bootstrap.py env distill)")
    from klconform.workers import run_in_worker
    cls = ADAPTERS[request.param]
    labels = list(CASES)
    env, outs = run_in_worker(f"{MODULE}:{cls.__name__}", [CASES[k] for k in labels], python=SIDE_PYTHON)
    assert env["framework"] == "torchmetrics" and env["version"] == "1.9.0"
    return cls(), dict(zip(labels, outs))


def test_declarations():
    for cls in ADAPTERS.values():
        caps = cls().capabilities()
        assert caps.min_ndim == caps.max_ndim == 2 and not caps.broadcasting
        assert caps.reductions == {"distribution_mean", "sum", "distribution"}
        assert cls().documented(CASES["benign/mean"]) == Point("distribution_mean", normalise=True)
        assert cls().documented(CASES["benign/logprob"]) == Point("distribution_mean")
        assert "both probabilities or both" in cls().unsupported_reason(
            Case(P, np.log(Q), target_kind="prob", pred_kind="logprob", reduction="sum"))


@pytest.mark.parametrize("cls", list(ADAPTERS.values()), ids=list(ADAPTERS))
def test_records_are_valid_and_cite_upstream(cls):
    records = known_records.load_for(cls)
    assert records and all(set(r.clauses) <= set(clause_ids()) for r in records)
    assert all(r.citation.startswith("https://") for r in records)


@pytest.mark.parametrize("label", ["benign/mean", "benign/sum", "benign/none", "benign/float32", "benign/logprob",
                                   "tracker/one_row", "unnormalised"])
def test_values_and_gradients_match_the_documented_point(run, label):
    """KL-NORM-1 KL-ARG-1: p is the first argument, P; probabilities are normalised."""
    adapter, obs = run
    case, out = CASES[label], obs[label]
    exp = evaluate(case, adapter.documented(case))
    assert out.status == "ok", out.error_message
    assert out.dtype == case.dtype
    assert_within(out.value, exp.value_in_dtype, exp.bound, label)
    for side in ("pred", "target"):
        assert_within(out.grads[side], exp.grads[side], exp.grad_bounds[side], f"{label} {side}")


def test_tracker_figure_p_first(run):
    """KLDivergence(p, q) takes P first, the opposite of F.kl_div(input=log Q, target=P):
    teacher [0.25, 0.75], student [0.5, 0.5] gives KL(P‖Q) = 0.130812 (KL(Q‖P) = 0.143841)."""
    _, obs = run
    assert f"{float(obs['tracker/one_row'].value.ravel()[0]):.6f}" == "0.130812"


def test_unnormalised_rows_are_renormalised_discrepancy(run):
    """torchmetrics-normalises-probabilities: [1, 3] against [2, 2] is the KL of [0.25, 0.75]
    and [0.5, 0.5]; the canonical KL of the rows as given (KL-DEF-1) is another number."""
    _, obs = run
    got = float(obs["unnormalised"].value)
    assert got == pytest.approx(0.25 * math.log(0.5) + 0.75 * math.log(1.5), rel=1e-14)
    assert float(evaluate(CASES["unnormalised"]).value) == pytest.approx(math.log(1 / 2) + 3 * math.log(3 / 2), rel=1e-14)


def test_zero_probability_gradients_are_nan_discrepancy(run):
    """torchmetrics-zero-probability-gradient-nan: the value is right (0·log 0 = 0) but the
    row with the zero has NaN gradients (the masked product's backward); the other row's are
    finite."""
    _, obs = run
    out = obs["zero_p"]
    exp = evaluate(CASES["zero_p"], Point("sum", normalise=True))
    assert_within(out.value, exp.value_in_dtype, exp.bound, "zero_p")
    assert np.all(np.isnan(out.grads["pred"][0])) and np.all(np.isfinite(out.grads["pred"][1]))


def test_log_prob_zero_target_is_nan_discrepancy(run):
    """torchmetrics-log-prob-zero-target-nan: p = -inf gives exp(-inf)·(-inf - q) = NaN
    where KL-ZERO-1 gives 0 (KL-ZERO-3)."""
    _, obs = run
    assert np.isnan(float(obs["logprob_zero_p"].value))
    assert float(evaluate(CASES["logprob_zero_p"]).value) == pytest.approx(-math.log(0.5), rel=1e-15)


def test_half_precision_result_dtype(run):
    """torchmetrics-metric-half-state-float32: the metric's float32 state makes a float16
    'mean' float32; the function keeps float16."""
    adapter, obs = run
    want = "float32" if isinstance(adapter, TorchmetricsKLDivergence) else "float16"
    assert obs["half/mean"].dtype == want
