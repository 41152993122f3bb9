"""The MXNet adapter (``mxnet.gluon.loss.KLDivLoss``) against the reference: the MXNet
tutorial's examples (seeds/000, seeds/001) and hand-picked cases for every option
(``from_logits`` both ways, ``axis``, ``batch_axis``, ``weight``, ``sample_weight``, each
dtype, gradients for pred and label), under MXNet 1.9.1 (this interpreter) and MXNet 1.8.0
(the side interpreter ``.venvs/mxnet180``, skipped when absent).

Every case is sent once per interpreter, in one batch, through the worker pool
(``klconform.workers.run_in_worker``; in this process when the pool is missing).  Expected
values come from ``reference.evaluate`` at a named family point; closeness is judged within
``Expected.bound`` / ``grad_bounds`` (SPEC.md KL-BOUND-2..4).  What MXNet computes is the
point ``<reduction>+target_log_eps(1e-12)`` with reduction ``sample_mean`` in 1.8.0 and
``sample_sum`` in 1.9.1 (apache/mxnet#18423).  The canonical question the adapter answers
is ``sample_sum`` (each sample's KL); tests named ``*_discrepancy`` pin the departures
recorded in klconform/known/mxnet_KLDivLoss.toml (docs/frameworks/mxnet.md).
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from adapter_checks import assert_within
from klconform.adapters.mxnet_kldivloss import MXNetKLDivLoss, documented_point
from klconform import records as known_records
from klconform.case import Case
from klconform.reference.dtypes import round_to
from klconform.reference import evaluate
from klconform.reference.family import Point
from klconform.reference.spec import clause_ids

REF = "klconform.adapters.mxnet_kldivloss:MXNetKLDivLoss"
ROOT = Path(__file__).resolve().parents[2]
SIDE_PYTHON = os.environ.get("KLCONFORM_PYTHON_MXNET180", str(ROOT / ".venvs/mxnet180/bin/python"))
INF, NAN = np.inf, np.nan
EPS = 1e-12
DTYPES = ("float16", "float32", "float64")

pytestmark = pytest.mark.framework
needs_main = pytest.mark.skipif(importlib.util.find_spec("mxnet") is None, reason="mxnet is not installed")

# seeds/000 and seeds/001 (the MXNet KL tutorial)
DIST_1 = [0.2, 0.5, 0.2, 0.1]
DIST_2 = [0.3, 0.4, 0.1, 0.2]
DIST_3 = [0.1, 0.1, 0.1, 0.7]
DIST_4 = [0.0, 0.9, 0.0, 0.1]
TUTORIAL_LOGITS = [0.39056206, 1.3068528, 0.39056206, -0.30258512]   # softmax ~ dist_1
# A benign batch: rows are distributions over 3 classes.
P3 = np.array([[0.25, 0.5, 0.25], [0.5, 0.25, 0.25]])
Q3 = np.array([[0.5, 0.25, 0.25], [0.125, 0.625, 0.25]])


def mxnet_point(version: str, **kw) -> Point:
    """The family point MXNet ``version`` computes (loss.py: 1e-12 inside log(label);
    mean over non-batch axes up to 1.8, sum from 1.9 on)."""
    reduction = "sample_sum" if version.startswith("1.9") else "sample_mean"
    return Point(reduction=reduction, epsilon="target_log_eps", eps=EPS, **kw)


# ----------------------------------------------------------------------------- the cases
def tutorial_case(pred_dist, target_dist, dtype="float32", label=""):
    """seeds/001 ``kl_divergence(dist_a, dist_b)``: pred = log(dist_a), label = dist_b,
    both with a batch dimension added (``expand_dims(0)``)."""
    with np.errstate(divide="ignore"):
        lp = np.log(round_to([pred_dist], dtype))
    return Case(round_to([target_dist], dtype), round_to(lp, dtype), dtype=dtype, reduction="sample_sum",
                label=label)


def build_cases() -> dict[str, Case]:
    cs: list[Case] = []
    add = lambda label, target, pred, **kw: cs.append(Case(target, pred, label=label, **{"reduction": "sample_sum", **kw}))  # noqa: E731

    # seeds/001: KL of dist_1 "compared with" dist_2, dist_3, itself, dist_4 (float32 as mx.nd.array)
    for name, a, b in (("d1_d2", DIST_1, DIST_2), ("d1_d3", DIST_1, DIST_3), ("d1_d1", DIST_1, DIST_1),
                       ("d4_d1", DIST_4, DIST_1), ("d1_d4", DIST_1, DIST_4)):
        cs.append(tutorial_case(a, b, label=f"seed/{name}"))
    add("seed/logits_d2", round_to([DIST_2], "float32"), round_to([TUTORIAL_LOGITS], "float32"),
        dtype="float32", pred_kind="logits")

    # every dtype x from_logits on the benign batch, gradients on
    for dt in DTYPES:
        p = round_to(P3, dt)
        add(f"benign/{dt}/logprob", p, round_to(np.log(Q3), dt), dtype=dt)
        add(f"benign/{dt}/logits", p, round_to(np.log(Q3) + 1.5, dt), dtype=dt, pred_kind="logits")

    # axis (log_softmax's class axis) and batch_axis
    PT, QT = P3.T.copy(), Q3.T.copy()        # (3 classes, 2 samples)
    add("axis0/logits", PT, np.log(QT) - 0.75, pred_kind="logits", class_axis=0, batch_axis=1)
    add("axis0/logprob", PT, np.log(QT), class_axis=0, batch_axis=1)
    p3d = np.stack([P3, P3[::-1]], axis=1)          # (2, 2, 3): batch 0, class -1
    q3d = np.stack([Q3, Q3[::-1]], axis=1)
    add("batch_axis1/3d", p3d, np.log(q3d), batch_axis=1)
    add("batch_axis-2/3d", p3d, np.log(q3d), batch_axis=-2)
    add("class_axis1/3d/logits", np.moveaxis(p3d, 2, 1), np.moveaxis(np.log(q3d), 2, 1) + 2.0,
        pred_kind="logits", class_axis=1, batch_axis=0)

    # weights (KL-WEIGHT-SCALAR, KL-WEIGHT-ELEMENT), each dtype
    for dt in DTYPES:
        p, lq = round_to(P3, dt), round_to(np.log(Q3), dt)
        add(f"weight/{dt}", p, lq, dtype=dt, weight=0.5)
        add(f"sample_weight_rows/{dt}", p, lq, dtype=dt, sample_weight=[[2.0], [0.0]])
        add(f"sample_weight_classes/{dt}", p, lq, dtype=dt, sample_weight=[1.0, 0.5, 3.0])
    add("weight_and_sample_weight", P3, np.log(Q3), weight=0.25, sample_weight=[[1.0, 2.0, 0.5], [4.0, 1.0, 1.0]])

    # broadcasting (KL-SHAPE-1) and 1-D input
    add("bcast_target_row", P3[:1], np.log(Q3))
    add("bcast_pred_row", P3, np.log(Q3[:1]))
    add("vector_1d", [0.25, 0.75], np.log([0.5, 0.5]))

    # zeros, epsilon, special values
    for dt in DTYPES:
        add(f"zero_target/{dt}", [[0.0, 0.5, 0.5]], round_to(np.log([[0.25, 0.25, 0.5]]), dt), dtype=dt)
    add("zero_target_neg_inf_pred", [[0.0, 0.5, 0.5]], [[-INF, np.log(0.5), np.log(0.5)]])
    add("pos_target_neg_inf_pred", [[0.5, 0.5]], [[-INF, 0.0]])
    add("tiny_target/float64", [[1e-13, 1.0 - 1e-13]], np.log([[0.5, 0.5]]))
    add("tiny_target/float32", round_to([[1e-10, 1.0]], "float32"), round_to(np.log([[0.5, 0.5]]), "float32"),
        dtype="float32")
    add("f16_target_grad_overflow", [[2.0**-17, 0.5]], round_to(np.log([[0.5, 0.5]]), "float16"), dtype="float16")
    add("empty_batch", np.zeros((0, 3)), np.zeros((0, 3)))
    add("nan_target", [[NAN, 0.5]], [[-1.0, -0.5]])
    add("f32_logits_two_equal", [[0.5, 0.5]], [[0.0, 0.0]], pred_kind="logits", dtype="float32")
    add("f64_logits_two_equal", [[0.5, 0.5]], [[0.0, 0.0]], pred_kind="logits", dtype="float64")
    for dt in ("float32", "float64"):
        # 1-D: the class axis is also the batch axis, so each term is its own output
        add(f"nan_logit_row/{dt}", [0.25, 0.75], [NAN, -3.5], pred_kind="logits", dtype=dt, grad=False)

    # not expressible in MXNet: the adapter says so
    add("unsupported_reduction", P3, np.log(Q3), reduction="sample_mean")
    add("unsupported_prob_input", P3, Q3, pred_kind="prob")
    add("unsupported_logprob_target", np.log(P3), np.log(Q3), target_kind="logprob")
    add("unsupported_bfloat16", [[0.5, 0.5]], [[-1.0, -0.5]], dtype="bfloat16")
    labels = [c.label for c in cs]
    assert len(labels) == len(set(labels)), "duplicate case labels"
    return {c.label: c for c in cs}


CASES = build_cases()


# ----------------------------------------------------------------------------- running
def run_cases(cases, python: str | None = None):
    """(env, outcomes) of ``cases``, through the worker pool."""
    from klconform.workers import run_in_worker
    return run_in_worker(REF, cases, python=python)


def _observe(python=None):
    labels = list(CASES)
    env, outcomes = run_cases([CASES[k] for k in labels], python=python)
    return env, dict(zip(labels, outcomes))


@pytest.fixture(scope="module", params=["main", "mxnet180"])
def run(request):
    """(version, label -> Outcome) for MXNet 1.9.1 here and MXNet 1.8.0 in its venv."""
    if request.param == "main":
        if importlib.util.find_spec("mxnet") is None:
            pytest.skip("mxnet is not installed")
        env, obs = _observe()
    else:
        if not os.path.exists(SIDE_PYTHON):
            pytest.skip(f"MXNet 1.8 side interpreter {SIDE_PYTHON} is absent")
        env, obs = _observe(SIDE_PYTHON)
    return env["version"], obs


@pytest.fixture(scope="module")
def main_run():
    if importlib.util.find_spec("mxnet") is None:
        pytest.skip("mxnet is not installed")
    return _observe()


@pytest.fixture(scope="module")
def side_run():
    if not os.path.exists(SIDE_PYTHON):
        pytest.skip(f"MXNet 1.8 side interpreter {SIDE_PYTHON} is absent")
    return _observe(SIDE_PYTHON)


# ----------------------------------------------------------------------------- assertions
def assert_matches(outcome, case: Case, point: Point, grads=("pred", "target")):
    """Value (in the case's dtype), dtype, shape and the named gradients agree with ``point``."""
    exp = evaluate(case, point)
    assert outcome.status == "ok", f"{case!r}: {outcome.status} {outcome.error_type}: {outcome.error_message}"
    assert outcome.dtype == case.dtype, f"{case!r}: returned {outcome.dtype}"      # KL-DTYPE-1
    assert tuple(outcome.shape) == exp.value.shape                                    # KL-SHAPE-2
    assert_within(outcome.value, exp.value_in_dtype, exp.bound, f"{case!r} value under {point.name}")
    for k in grads if case.grad else ():
        assert outcome.grad_dtypes[k] == case.dtype
        assert_within(outcome.grads[k], exp.grads[k], exp.grad_bounds[k], f"{case!r} grad {k} under {point.name}")
    return exp


# ----------------------------------------------------------------------------- declarations
def test_module_does_not_import_mxnet():
    code = ("import sys, adapters.mxnet_kldivloss as m; a = m.MXNetKLDivLoss(); a.capabilities(); "
            "print('mxnet' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def test_capabilities_and_documented_point():
    a = MXNetKLDivLoss()
    caps = a.capabilities()
    assert a.name == "mxnet.KLDivLoss" and a.api == "mxnet.gluon.loss.KLDivLoss"
    # the canonical question is each sample's KL (sample_sum); the docs claim an average
    assert caps.reductions == {"sample_sum"} and caps.dtypes == {"float16", "float32", "float64"}
    assert caps.pred_kinds == {"logprob", "logits"} and caps.target_kinds == {"prob"}
    assert caps.weights == {"scalar", "sample"} and caps.gradients == {"pred", "target"}
    assert caps.batch_axis and caps.class_axis and caps.broadcasting
    assert a.doc_version == "1.9.1" and "1.9.1" in a.doc_url and "KLDivLoss" in a.doc_url
    # "Dimensions other than batch_axis are averaged out"; the formula has no epsilon
    assert documented_point(CASES["seed/d1_d2"]) == Point(reduction="sample_mean")


def test_known_file_is_valid_and_cites_real_clauses():
    records = known_records.load("mxnet.KLDivLoss")
    ids = set(clause_ids())
    assert len(records) >= 8
    for r in records:
        assert set(r.clauses) <= ids, f"{r.id}: unknown clause ids {set(r.clauses) - ids}"
        assert r.citation.startswith("https://")


@needs_main
def test_unsupported_cases_say_why(main_run):
    _, obs = main_run
    for label, word in (("unsupported_reduction", "sample_sum"), ("unsupported_prob_input", "pred_kind"),
                        ("unsupported_logprob_target", "target_kind"), ("unsupported_bfloat16", "bfloat16")):
        assert obs[label].status == "unsupported", label
        assert word in obs[label].error_message, obs[label].error_message


# ----------------------------------------------------------------------------- seeds/001
def test_tutorial_values(run):
    """seeds/001 prints KL for (1,2), (1,3), (1,1) and from_logits=False: MXNet gives the
    reference value of ``mxnet_point`` for each, in float32."""
    version, obs = run
    for name in ("d1_d2", "d1_d3", "d1_d1", "logits_d2"):
        case = CASES[f"seed/{name}"]
        assert_matches(obs[f"seed/{name}"], case, mxnet_point(version), grads=("pred",))


def test_tutorial_argument_order_is_kl_of_label_from_pred(run):
    """``kl_divergence(dist_a, dist_b)`` computes KL(dist_b || dist_a): the label is P.
    The tutorial calls it "Distribution 1 compared with Distribution 2"."""
    version, obs = run
    case = CASES["seed/d1_d2"]
    got = float(obs["seed/d1_d2"].value[0])
    kl_p2_q1 = float(evaluate(case, mxnet_point(version)).value[0])
    kl_p1_q2 = float(evaluate(case, mxnet_point(version, swap=True)).value[0])
    assert got == pytest.approx(kl_p2_q1, rel=1e-6)
    assert abs(got - kl_p1_q2) > 1e-2 * got      # the swapped KL is 1.9% away
    # the true KL(dist_2 || dist_1) of the tutorial's last cell (mpmath-free: numpy float64)
    true_kl = float(np.sum(np.array(DIST_2) * np.log(np.array(DIST_2) / np.array(DIST_1))))
    factor = 1.0 if version.startswith("1.9") else 4.0
    assert got * factor == pytest.approx(true_kl, rel=1e-6)


def test_tutorial_closer_distributions_and_self(run):
    _, obs = run
    assert float(obs["seed/d1_d2"].value[0]) < float(obs["seed/d1_d3"].value[0])
    assert float(obs["seed/d1_d1"].value[0]) == 0.0


def test_tutorial_from_logits_false_applies_log_softmax(run):
    """from_logits=False: log_softmax over ``axis`` is applied to pred; the rounded logits
    give dist_2-vs-dist_1's value to ~1e-6 (float32)."""
    _, obs = run
    a, b = float(obs["seed/logits_d2"].value[0]), float(obs["seed/d1_d2"].value[0])
    assert a == pytest.approx(b, rel=2e-5)


def test_tutorial_zero_support_claim_is_inf_not_nan_discrepancy(run):
    """seeds/001 says kl_divergence(dist_4, dist_1) "is nan".  It is +inf: pred = log(dist_4)
    has -inf where the label dist_1 is positive (KL-ZERO-2), in 1.8.0 and 1.9.1 alike."""
    version, obs = run
    out = obs["seed/d4_d1"]
    assert_matches(out, CASES["seed/d4_d1"], mxnet_point(version), grads=())
    assert float(out.value[0]) == INF
    # the other order (zero *label* entries) is finite: 1e-12 keeps log(label) finite
    assert_matches(obs["seed/d1_d4"], CASES["seed/d1_d4"], mxnet_point(version), grads=("pred",))


def test_tutorial_average_factor_claim(run):
    """seeds/001: "smaller than the true definition by a factor of the number of categories".
    True for 1.8.0 (mean over 4 classes); 1.9.1 sums (apache/mxnet#18423): factor 1."""
    version, obs = run
    case = CASES["seed/d1_d2"]
    per_distribution = float(evaluate(case.replace(reduction="distribution")).value[0])
    ratio = per_distribution / float(obs["seed/d1_d2"].value[0])
    assert ratio == pytest.approx(1.0 if version.startswith("1.9") else 4.0, rel=1e-5)


# ----------------------------------------------------------------------------- every option
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["logprob", "logits"])
def test_benign_every_dtype_and_from_logits(run, dtype, kind):
    version, obs = run
    label = f"benign/{dtype}/{kind}"
    if kind == "logits" and dtype == "float32":
        pytest.skip("float32 log_softmax precision: test_onednn_log_softmax_float32_discrepancy")
    assert_matches(obs[label], CASES[label], mxnet_point(version))


@pytest.mark.parametrize("label", ["axis0/logits", "axis0/logprob", "batch_axis1/3d", "batch_axis-2/3d",
                                   "class_axis1/3d/logits", "bcast_target_row", "bcast_pred_row", "vector_1d"])
def test_axes_and_broadcasting(run, label):
    """``axis`` picks log_softmax's class axis, ``batch_axis`` the kept axis (any sign);
    gradients of broadcast inputs are summed to their own shape (KL-GRAD-1)."""
    version, obs = run
    case = CASES[label]
    grads = ("pred", "target") if case.pred_kind == "logprob" else ("pred",)
    assert_matches(obs[label], case, mxnet_point(version), grads=grads)
    assert obs[label].grads["pred"].shape == case.pred.shape
    assert obs[label].grads["target"].shape == case.target.shape


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("what", ["weight", "sample_weight_rows", "sample_weight_classes"])
def test_weights(run, dtype, what):
    """Scalar weight and element-level sample weights (per row, per class) multiply the
    elementwise loss before the reduction (KL-WEIGHT-SCALAR, KL-WEIGHT-ELEMENT)."""
    version, obs = run
    label = f"{what}/{dtype}"
    assert_matches(obs[label], CASES[label], mxnet_point(version))


def test_weight_and_sample_weight_together(run):
    version, obs = run
    assert_matches(obs["weight_and_sample_weight"], CASES["weight_and_sample_weight"], mxnet_point(version))


def test_zero_sample_weight_zeroes_that_sample(run):
    _, obs = run
    out = obs["sample_weight_rows/float64"]
    assert out.value[1] == 0.0 and out.value[0] > 0
    np.testing.assert_array_equal(out.grads["pred"][1], 0.0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_zero_target_is_zero_with_finite_label_gradient(run, dtype):
    """p = 0, finite log q: T = 0 (KL-ZERO-1 holds); d/dlabel = log(1e-12) - log q
    (target_log_eps's own derivative, KL-GRAD-EPS) instead of the canonical -inf."""
    version, obs = run
    case = CASES[f"zero_target/{dtype}"]
    out = obs[f"zero_target/{dtype}"]
    assert_matches(out, case, mxnet_point(version))
    assert evaluate(case).grads["target"][0, 0] == -INF
    assert np.isfinite(out.grads["target"][0, 0]) and out.grads["target"][0, 0] < -8   # (log 1e-12 + log 4)/C


def test_positive_target_zero_q_is_inf(run):
    version, obs = run
    out = obs["pos_target_neg_inf_pred"]
    assert_matches(out, CASES["pos_target_neg_inf_pred"], mxnet_point(version), grads=("pred",))
    assert float(out.value[0]) == INF


def test_nan_target_is_nan(run):
    version, obs = run
    assert_matches(obs["nan_target"], CASES["nan_target"], mxnet_point(version), grads=())


def test_float64_logits_are_accurate(run):
    version, obs = run
    assert_matches(obs["f64_logits_two_equal"], CASES["f64_logits_two_equal"], mxnet_point(version))


# ----------------------------------------------------------------------------- discrepancies
def test_reduction_by_version_discrepancy(run):
    """1.9.1 sums over the non-batch axes (KL-RED-SAMPLE-SUM: each sample's KL, the
    canonical question); 1.8.0 averages (KL-RED-SAMPLE-MEAN, as the docstring says):
    record mxnet-1.8-divides-by-non-batch-elements."""
    version, obs = run
    case = CASES["benign/float64/logprob"]
    mean = evaluate(case, mxnet_point("1.8"))
    total = evaluate(case, mxnet_point("1.9"))
    v = obs["benign/float64/logprob"].value
    if version.startswith("1.9"):
        assert_within(v, total.value, total.bound, "1.9 sums")
        assert not np.allclose(v, mean.value)
    else:
        assert_within(v, mean.value, mean.bound, "1.8 averages")


def test_epsilon_bias_float64_discrepancy(run):
    """Every term carries p*log(1 + 1e-12/p): beyond the float64 bound of the canonical
    value, within the bound of target_log_eps(1e-12) (record mxnet-target-log-eps-1e-12)."""
    version, obs = run
    case = CASES["tiny_target/float64"]
    out = obs["tiny_target/float64"]
    assert_matches(out, case, mxnet_point(version), grads=("pred",))
    canon = evaluate(case, Point(reduction=mxnet_point(version).reduction))
    assert abs(float(out.value[0]) - float(canon.value[0])) > 10 * float(canon.bound[0])


def test_epsilon_bias_tiny_float32_discrepancy(run):
    """p = 1e-10 in float32: log(p + 1e-12) = log(1.01e-10), a visible bias of p*log(1.01)."""
    version, obs = run
    assert_matches(obs["tiny_target/float32"], CASES["tiny_target/float32"], mxnet_point(version), grads=("pred",))


def test_float16_zero_target_is_nan_discrepancy(run):
    """In float16 1e-12 rounds to 0, so log(0 + eps) = -inf and 0 * -inf = NaN
    (record mxnet-float16-eps-underflow-zero-target-nan); float32/64 give 0 there."""
    version, obs = run
    out = obs["zero_target/float16"]
    assert out.status == "ok" and np.isnan(out.value[0])
    assert np.isfinite(evaluate(CASES["zero_target/float16"], mxnet_point(version)).value[0])
    assert np.isnan(out.grads["target"][0, 0])


def test_zero_target_neg_inf_pred_is_nan_discrepancy(run):
    """p = 0 with log q = -inf: 0 * (log 1e-12 + inf) = NaN, canonical 0 (KL-ZERO-1);
    the label gradient there is +inf (record mxnet-zero-target-neg-inf-pred-nan)."""
    version, obs = run
    case, out = CASES["zero_target_neg_inf_pred"], obs["zero_target_neg_inf_pred"]
    assert np.isfinite(evaluate(case).value[0])
    assert np.isnan(out.value[0])
    assert_matches(out, case, mxnet_point(version, zero_inf="nan"), grads=())
    assert out.grads["target"][0, 0] == INF


def test_float16_target_gradient_overflow_discrepancy(run):
    """p = 2**-17: the backward of log(label) forms 1/p = 131072 > 65504, so d/dlabel = +inf
    in float16 (record mxnet-float16-target-grad-overflow); the value itself is fine."""
    version, obs = run
    case, out = CASES["f16_target_grad_overflow"], obs["f16_target_grad_overflow"]
    assert_matches(out, case, mxnet_point(version), grads=("pred",))
    assert np.isfinite(evaluate(case, mxnet_point(version)).grads["target"][0, 0])
    assert out.grads["target"][0, 0] == INF


def test_empty_input_raises_discrepancy(run):
    """KL-EMPTY-1/2 define a value; MXNet 1.x raises (record mxnet-empty-input-error)."""
    _, obs = run
    out = obs["empty_batch"]
    assert out.status == "error" and out.error_type == "MXNetError"
    assert "inferring shapes failed" in out.error_message and "\n" not in out.error_message


def test_onednn_log_softmax_float32_discrepancy(run):
    """float32 log_softmax([0, 0]) is -0.69314575 (24 ulp from -log 2): beyond the
    float32 bound (record mxnet-onednn-log-softmax-float32-precision)."""
    version, obs = run
    case, out = CASES["f32_logits_two_equal"], obs["f32_logits_two_equal"]
    exp = evaluate(case, mxnet_point(version))
    err = np.abs(out.value - exp.value)
    assert np.all(err > exp.bound) and np.all(err < 1e-5)


def test_nan_logit_row_float32_discrepancy(run):
    """KL-INPUT-LOGITS: a NaN logit makes the whole row's log q NaN.  float64 does so;
    float32 (oneDNN) leaves the other entry finite, so the loss is a finite number
    (record mxnet-onednn-log-softmax-float32-nan-row)."""
    version, obs = run
    assert_matches(obs["nan_logit_row/float64"], CASES["nan_logit_row/float64"], mxnet_point(version), grads=())
    assert np.all(np.isnan(evaluate(CASES["nan_logit_row/float32"]).value))
    out = obs["nan_logit_row/float32"]
    assert out.status == "ok" and np.isnan(out.value[0])
    assert np.isfinite(out.value[1]) and out.value[1] > 50    # 0.75 * (log 0.75 + 88.72)


# ----------------------------------------------------------------------------- 1.8 vs 1.9.1
def test_versions_differ_exactly_by_class_count(main_run, side_run):
    """Same cases side by side: 1.9.1 = 1.8.0 x (elements per sample) wherever finite."""
    _, new = main_run
    _, old = side_run
    for label in ("benign/float64/logprob", "weight/float64", "sample_weight_classes/float64", "batch_axis1/3d"):
        case = CASES[label]
        per_sample = int(np.prod(case.shape)) // case.shape[case.batch_axis]
        np.testing.assert_allclose(new[label].value, old[label].value * per_sample, rtol=1e-13, err_msg=label)
        np.testing.assert_allclose(new[label].grads["pred"], old[label].grads["pred"] * per_sample, rtol=1e-13)


# ----------------------------------------------------------------------------- mixed dtypes, reshaped labels
@needs_main
def test_mixed_dtypes_are_refused_and_a_same_count_label_is_not_reshaped():
    """KL-DTYPE-4: pred and label in different dtypes raise MXNetError (record
    mxnet-mixed-dtypes-refused).  KL-SHAPE-3: the docstring's "arbitrary shape as long as they
    have the same number of elements" does not hold for KLDivLoss: a (6,) label for a (2, 3)
    pred is refused; a (6,) label for a (1, 6) pred broadcasts to the same question (within
    the bound of the reference on the held arrays)."""
    p = np.array([[0.25, 0.75, 0.5], [0.5, 0.25, 0.25]])
    lq = np.log(np.array([[0.5, 0.25, 0.25], [0.125, 0.5, 0.375]]))
    mixed = Case(target=round_to(p, "float32"), pred=lq, dtype="float64", target_dtype="float32",
                 reduction="sample_sum")
    refused = Case(target=p, pred=lq, reduction="sample_sum", target_sent_shape=(6,))
    same = Case(target=p.reshape(1, 6), pred=lq.reshape(1, 6), reduction="sample_sum", target_sent_shape=(6,))
    _, (o_mixed, o_refused, o_same) = run_cases([mixed, refused, same])
    assert o_mixed.status == "error" and "Incompatible attr" in o_mixed.error_message
    assert o_refused.status == "error" and "could not be broadcast" in o_refused.error_message
    assert o_same.status == "ok"
    point = Point(reduction="sample_sum", epsilon="target_log_eps", eps=1e-12)
    e = evaluate(same, point)
    assert_within(o_same.value, e.value, e.bound, "label (6,) for pred (1, 6)")
    assert o_same.grads["target"].shape == (1, 6)
