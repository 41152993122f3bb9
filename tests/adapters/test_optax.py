"""The optax adapters (``optax.losses.kl_divergence``, ``kl_divergence_with_log_targets``,
``generalized_kl_divergence``, ``convex_kl_divergence``) against the reference, in the side
environment ``jax`` (``.venvs/jax``, built by ``python3 bootstrap.py env jax``; skipped with
the reason when absent).  Expected values: ``reference.evaluate`` at the documented point
(the canonical sum over ``axis``; the generalised one for ``generalized_``/``convex_``,
KL-GEN-1), within ``Expected.bound`` (KL-BOUND-2..4); tests named ``*_discrepancy`` pin
the departures recorded in klconform/known/optax.toml (docs/frameworks/optax.md).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from adapter_checks import assert_within
from klconform import records as known_records
from klconform.adapters.optax_losses import (OptaxConvexKLDivergence, OptaxGeneralizedKLDivergence,
                                             OptaxKLDivergence, OptaxKLDivergenceLogTargets)
from klconform.case import Case
from klconform.reference import evaluate
from klconform.reference.dtypes import round_to
from klconform.reference.family import Point
from klconform.reference.spec import clause_ids

ROOT = Path(__file__).resolve().parents[2]
SIDE_PYTHON = os.environ.get("KLCONFORM_PYTHON_JAX", str(ROOT / ".venvs/jax/bin/python"))
INF, NAN = np.inf, np.nan
P3 = np.array([[0.25, 0.5, 0.25], [0.5, 0.25, 0.25]])
Q3 = np.array([[0.5, 0.25, 0.25], [0.125, 0.625, 0.25]])
MODULE = "klconform.adapters.optax_losses"
ADAPTERS = {"kl_divergence": OptaxKLDivergence, "kl_divergence_with_log_targets": OptaxKLDivergenceLogTargets,
            "generalized_kl_divergence": OptaxGeneralizedKLDivergence,
            "convex_kl_divergence": OptaxConvexKLDivergence}

pytestmark = pytest.mark.framework


def _case(p, q, target_kind, dtype="float64", reduction="distribution", label=""):
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    with np.errstate(divide="ignore"):
        t = np.log(p) if target_kind == "logprob" else p
        return Case(round_to(t, dtype), round_to(np.log(q), dtype), dtype=dtype, target_kind=target_kind,
                    pred_kind="logprob", reduction=reduction, label=label)


def build_cases(target_kind: str) -> dict[str, Case]:
    cs = {}
    for dt in ("float32", "float64"):
        cs[f"benign/{dt}"] = _case(P3, Q3, target_kind, dt)
    cs["benign/sum"] = _case(P3, Q3, target_kind, reduction="sum")
    cs["bcast"] = _case(P3, Q3[:1], target_kind)
    cs["zero_p"] = _case([0.0, 1.0], [0.5, 0.5], target_kind)
    cs["zero_p_zero_q"] = _case([0.0, 1.0], [0.0, 1.0], target_kind)
    cs["unnormalised"] = _case([0.3, 0.3], [0.9, 0.6], target_kind, reduction="sum")
    return cs


@pytest.fixture(scope="module", params=list(ADAPTERS))
def run(request):
    """(adapter instance, label -> (Case, Outcome)) from the side environment."""
    if not os.path.exists(SIDE_PYTHON):
        pytest.skip(f"JAX side interpreter {SIDE_PYTHON} is absent (python3 bootstrap.py env jax)")
    from klconform.workers import run_in_worker
    cls = ADAPTERS[request.param]
    cases = build_cases(cls.target_kind)
    env, outs = run_in_worker(f"{MODULE}:{cls.__name__}", list(cases.values()), python=SIDE_PYTHON)
    assert env["framework"] == "optax" and env["jax_enable_x64"] is True
    return cls(), {k: (c, o) for (k, c), o in zip(cases.items(), outs)}


# ----------------------------------------------------------------------------- declarations
def test_capabilities_and_documented_points():
    case = _case(P3, Q3, "prob")
    for cls in ADAPTERS.values():
        caps = cls().capabilities()
        assert caps.reductions == {"distribution", "sum"} and caps.pred_kinds == {"logprob"}
        assert caps.target_kinds == {cls.target_kind} and caps.class_axis and caps.broadcasting
    assert OptaxKLDivergence().documented(case) == Point(reduction="distribution")
    assert OptaxGeneralizedKLDivergence().documented(case) == Point(reduction="distribution", generalised=True)


@pytest.mark.parametrize("cls", list(ADAPTERS.values()), ids=list(ADAPTERS))
def test_records_are_valid_and_cite_upstream(cls):
    records = known_records.load_for(cls)
    assert records and all(set(r.clauses) <= set(clause_ids()) for r in records)
    assert all(r.citation.startswith("https://") for r in records)


# ----------------------------------------------------------------------------- values
@pytest.mark.parametrize("label", ["benign/float32", "benign/float64", "benign/sum", "bcast", "unnormalised"])
def test_values_match_the_documented_point(run, label):
    adapter, obs = run
    case, out = obs[label]
    exp = evaluate(case, adapter.documented(case))
    assert out.status == "ok" and out.dtype == case.dtype and tuple(out.shape) == exp.value.shape
    assert_within(out.value, exp.value_in_dtype, exp.bound, label)


def test_benign_gradients_match(run):
    adapter, obs = run
    case, out = obs["benign/float64"]
    exp = evaluate(case, adapter.documented(case))
    for k in ("pred", "target"):
        assert out.grad_dtypes[k] == "float64"
        assert_within(out.grads[k], exp.grads[k], exp.grad_bounds[k], k)


def test_generalised_is_not_the_canonical_kl_discrepancy(run):
    """optax-generalized-kl-is-generalised: P = [0.3, 0.3], Q = [0.9, 0.6] (sum): the
    generalised KL 0.3625 = -0.5375 + (1.5 - 0.6), the canonical KL -0.5375 (KL-GEN-1)."""
    adapter, obs = run
    case, out = obs["unnormalised"]
    canonical = evaluate(case, Point(reduction="sum")).value
    if adapter.name in ("optax.generalized_kl_divergence", "optax.convex_kl_divergence"):
        exp = evaluate(case, Point(reduction="sum", generalised=True))
        assert_within(out.value, exp.value, exp.bound, "generalised")
        assert exp.value == pytest.approx(0.36247, abs=1e-5) and canonical == pytest.approx(-0.53753, abs=1e-5)
    else:
        assert out.value == pytest.approx(canonical, rel=1e-12)


def test_convex_kl_divergence_warns_deprecation(run):
    adapter, obs = run
    _, out = obs["benign/float64"]
    deprecated = any("DeprecationWarning" in w and "generalized_kl_divergence" in w for w in out.warnings)
    assert deprecated == (adapter.name == "optax.convex_kl_divergence")


def test_zero_target_where_log_q_is_minus_inf_discrepancy(run):
    """optax-zero-times-inf-is-nan: p = 0 with log q = -inf is 0 * inf = NaN, canonical 0
    (KL-ZERO-1, KL-ZERO-3)."""
    adapter, obs = run
    case, out = obs["zero_p_zero_q"]
    assert np.isnan(out.value).all()
    assert evaluate(case, Point(reduction="distribution")).value == 0.0


def test_log_targets_zero_target_discrepancy(run):
    """optax-log-targets-zero-target-nan: log_targets = -inf gives exp(-inf) * (-inf - log q)
    = 0 * -inf = NaN wherever q > 0 (KL-ZERO-3); the probability-target functions give the
    canonical log 2 with the same rows."""
    adapter, obs = run
    case, out = obs["zero_p"]
    if adapter.name == "optax.kl_divergence_with_log_targets":
        assert np.isnan(out.value).all()
    else:
        exp = evaluate(case, adapter.documented(case))
        assert_within(out.value, exp.value_in_dtype, exp.bound, "zero_p")


def test_zero_target_gradient_is_nan_discrepancy(run):
    """optax-zero-target-gradient-nan: d/dtargets at p = 0 is NaN (where masks log's value,
    not its gradient 1/0) where SPEC's right derivative is -inf (KL-GRAD-ZERO)."""
    adapter, obs = run
    if adapter.target_kind != "prob":
        pytest.skip("probability targets only")
    case, out = obs["zero_p"]
    assert np.isnan(out.grads["target"][0])
    assert evaluate(case, adapter.documented(case)).grads["target"][0] == -INF
