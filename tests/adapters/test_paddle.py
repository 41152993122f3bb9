"""The Paddle adapters (``paddle.nn.functional.kl_div``, ``paddle.nn.KLDivLoss``) against
the reference, in the side environment ``paddle`` (``.venvs/paddle``, built by
``python3 bootstrap.py env paddle``; skipped with the reason when absent).  Expected values:
``reference.evaluate`` at the documented point (the canonical term with the case's
reduction), within ``Expected.bound`` (KL-BOUND-2..4); tests named ``*_discrepancy`` pin
the departures recorded in klconform/known/paddle.toml (docs/frameworks/paddle.md).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from adapter_checks import assert_within
from klconform import records as known_records
from klconform.adapters.paddle_kl_div import PaddleKLDiv, PaddleKLDivLoss
from klconform.case import Case
from klconform.reference import evaluate
from klconform.reference.dtypes import round_to
from klconform.reference.family import Point
from klconform.reference.spec import clause_ids

ROOT = Path(__file__).resolve().parents[2]
SIDE_PYTHON = os.environ.get("KLCONFORM_PYTHON_PADDLE", str(ROOT / ".venvs/paddle/bin/python"))
INF, NAN = np.inf, np.nan
P3 = np.array([[0.25, 0.5, 0.25], [0.5, 0.25, 0.25]])
Q3 = np.array([[0.5, 0.25, 0.25], [0.125, 0.625, 0.25]])
MODULE = "klconform.adapters.paddle_kl_div"
ADAPTERS = {"kl_div": PaddleKLDiv, "KLDivLoss": PaddleKLDivLoss}

pytestmark = pytest.mark.framework


def _case(p, q, *, target_kind="prob", dtype="float64", reduction="batchmean", label=""):
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.log(p) if target_kind == "logprob" else p
        return Case(round_to(t, dtype), round_to(np.log(q), dtype), dtype=dtype, target_kind=target_kind,
                    pred_kind="logprob", reduction=reduction, label=label)


def build_cases() -> dict[str, Case]:
    cs = {}
    for red in ("none", "sum", "mean", "batchmean"):
        cs[f"benign/{red}"] = _case(P3, Q3, reduction=red)
    cs["benign/float32"] = _case(P3, Q3, dtype="float32")
    cs["benign/logtarget"] = _case(P3, Q3, target_kind="logprob")
    cs["scalar"] = _case(0.25, 0.5)
    cs["zero_p_zero_q"] = _case([0.0, 1.0], [0.0, 1.0], reduction="none")
    cs["negative_p"] = Case(np.array([-0.5, 1.5]), np.log([0.5, 0.5]), reduction="none")
    cs["logtarget_zero_p"] = _case([0.0, 1.0], [0.5, 0.5], target_kind="logprob", reduction="none")
    return cs


CASES = build_cases()


@pytest.fixture(scope="module", params=list(ADAPTERS))
def run(request):
    """(adapter instance, label -> Outcome) from the side environment."""
    if not os.path.exists(SIDE_PYTHON):
        pytest.skip(f"Paddle side interpreter {SIDE_PYTHON} is absent (python3 bootstrap.py env paddle)")
    from klconform.workers import run_in_worker
    cls = ADAPTERS[request.param]
    labels = list(CASES)
    env, outs = run_in_worker(f"{MODULE}:{cls.__name__}", [CASES[k] for k in labels], python=SIDE_PYTHON)
    assert env["framework"] == "paddlepaddle"
    return cls(), dict(zip(labels, outs))


# ----------------------------------------------------------------------------- declarations
def test_capabilities_and_documented_points():
    for cls in ADAPTERS.values():
        caps = cls().capabilities()
        assert caps.reductions == {"none", "sum", "mean", "batchmean"} and caps.pred_kinds == {"logprob"}
        assert caps.dtypes == {"float32", "float64"} and caps.gradients == {"pred"} and not caps.broadcasting
        assert cls().documented(CASES["benign/mean"]) == Point(reduction="mean")


@pytest.mark.parametrize("cls", list(ADAPTERS.values()), ids=list(ADAPTERS))
def test_records_are_valid_and_cite_upstream(cls):
    records = known_records.load_for(cls)
    assert records and all(set(r.clauses) <= set(clause_ids()) for r in records)
    assert all(r.citation.startswith("https://") for r in records)


def test_float16_is_unsupported_not_an_error():
    case = Case(round_to(P3, "float16"), round_to(np.log(Q3), "float16"), dtype="float16")
    assert "float32, float64 only" in PaddleKLDiv().unsupported_reason(case)


# ----------------------------------------------------------------------------- values
@pytest.mark.parametrize("label", ["benign/none", "benign/sum", "benign/mean", "benign/batchmean",
                                   "benign/float32", "benign/logtarget", "scalar", "zero_p_zero_q"])
def test_values_match_the_documented_point(run, label):
    """Including p = 0 with log q = -inf: the ``label <= 0`` branch gives the canonical 0
    (KL-ZERO-1), unlike torch's NaN."""
    adapter, obs = run
    case, out = CASES[label], obs[label]
    exp = evaluate(case, adapter.documented(case))
    assert out.status == "ok" and out.dtype == case.dtype and tuple(out.shape) == exp.value.shape
    assert_within(out.value, exp.value_in_dtype, exp.bound, label)


def test_benign_gradients_match(run):
    adapter, obs = run
    for label in ("benign/batchmean", "benign/logtarget"):
        case, out = CASES[label], obs[label]
        exp = evaluate(case, adapter.documented(case))
        assert set(out.grads) == {"pred"} and out.grad_dtypes["pred"] == "float64"
        assert_within(out.grads["pred"], exp.grads["pred"], exp.grad_bounds["pred"], label)


def test_negative_target_is_zero_discrepancy(run):
    """paddle-negative-target-zero: the ``label <= 0`` branch gives 0 for p = -0.5 where
    KL-INVALID-1 gives NaN (Paddle's own test reference maps negative targets to 0), and its
    d/dinput is 0."""
    _, obs = run
    out = obs["negative_p"]
    assert out.value[0] == 0.0 and out.grads["pred"][0] == 0.0
    assert np.isnan(evaluate(CASES["negative_p"]).value[0])


def test_log_target_zero_target_is_nan_discrepancy(run):
    """paddle-log-target-zero-times-inf: label = -inf with log_target=True is
    exp(-inf) * (-inf - input) = 0 * -inf = NaN where KL-ZERO-1 gives 0 (KL-ZERO-3)."""
    _, obs = run
    out = obs["logtarget_zero_p"]
    assert np.isnan(out.value[0]) and out.value[1] == pytest.approx(np.log(2), rel=1e-15)
    assert evaluate(CASES["logtarget_zero_p"]).value[0] == 0.0
