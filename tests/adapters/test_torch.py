"""The PyTorch adapters (``torch.nn.functional.kl_div``, ``torch.nn.KLDivLoss``) against the
reference: the seed notebook's examples (seeds/002, seeds/003) and hand-picked cases for
every option (reductions, ``log_target``, dtypes, gradients, broadcasting, zeros, -inf,
empty and 0-D inputs).

Every case is sent once per adapter, in one batch: through the worker pool
(``klconform.workers.run_in_worker``) when it exists, else in this process.  Expected values
come from ``reference.evaluate`` (the canonical point, or the family point named in the
test); closeness is judged within ``Expected.bound`` / ``grad_bounds`` (SPEC.md
KL-BOUND-2..4).  Tests named ``*_discrepancy`` pin observed departures from the canonical
definition; each is recorded in klconform/known/torch_*.toml and docs/frameworks/torch.md.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

from adapter_checks import assert_within
from klconform.adapters.torch_kl_div import TorchKLDiv, TorchKLDivLoss, documented_point
from klconform import records as known_records
from klconform.case import Case
from klconform.reference.dtypes import DTYPES, round_to
from klconform.reference import evaluate
from klconform.reference.family import Point
from klconform.reference.spec import clause_ids

pytestmark = [
    pytest.mark.framework,
    pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed"),
]

REFS = {"torch.kl_div": "klconform.adapters.torch_kl_div:TorchKLDiv",
        "torch.KLDivLoss": "klconform.adapters.torch_kl_div:TorchKLDivLoss"}
INF, NAN = np.inf, np.nan
MEAN_WARNING = "'mean' divides the total loss by both the batch size and the support size"
# A benign batch: two distributions of two classes (P rows sum to 1, Q likewise).
P_BENIGN = np.array([[0.25, 0.75], [0.5, 0.5]])
Q_BENIGN = np.array([[0.5, 0.5], [0.125, 0.875]])


# ----------------------------------------------------------------------------- the cases
def _seed_notebook_tensors(shape):
    """seeds/002: ``torch.manual_seed(1)``; a1, a2 ~ Uniform(0, 10) of ``shape``; the
    notebook passes ``a1.log_softmax(0)`` as input and ``a2.softmax(0)`` as target."""
    import torch
    torch.manual_seed(1)
    dist = torch.distributions.uniform.Uniform(0, 10)
    a1, a2 = dist.sample(shape), dist.sample(shape)
    return a2.softmax(0).double().numpy(), a1.log_softmax(0).double().numpy()


def _benign(dtype: str, log_target: bool):
    p = round_to(P_BENIGN, dtype)
    target = round_to(np.log(p), dtype) if log_target else p
    return target, round_to(np.log(Q_BENIGN), dtype)


def build_cases() -> dict[str, Case]:
    """Every case the tests look at, by label (labels are unique)."""
    cs: list[Case] = []
    add = lambda label, target, pred, **kw: cs.append(Case(target, pred, label=label, **kw))  # noqa: E731

    # seeds/002 (2-D and 3-D float32 tensors) and seeds/003 (rows are distributions)
    for name, shape in (("seed002_2d", (5, 2)), ("seed002_3d", (10, 6, 4))):
        target, pred = _seed_notebook_tensors(shape)
        for red in ("none", "sum", "mean", "batchmean"):
            add(f"{name}/{red}", target, pred, dtype="float32", reduction=red)
    rng = np.random.default_rng(3)
    for name, shape in (("seed003_rows", (6, 5)), ("seed003_3d", (4, 3, 5))):
        p = rng.random(shape); p /= p.sum(-1, keepdims=True)
        q = rng.random(shape); q /= q.sum(-1, keepdims=True)
        add(f"{name}/batchmean", round_to(p, "float32"), round_to(np.log(q), "float32"),
            dtype="float32", reduction="batchmean")

    # every dtype x reduction x log_target on the benign batch, gradients on
    for dt in DTYPES:
        for red in ("none", "sum", "mean", "batchmean"):
            for lt in (False, True):
                target, pred = _benign(dt, lt)
                add(f"benign/{dt}/{red}/{'logt' if lt else 'prob'}", target, pred, dtype=dt,
                    reduction=red, target_kind="logprob" if lt else "prob")

    # broadcasting (KL-SHAPE-1) and batchmean's divisor (input.size(0))
    p3 = np.array([[0.25, 0.5, 0.25], [0.5, 0.25, 0.25]])
    lq3 = np.log(np.array([0.5, 0.25, 0.25]))
    for red in ("none", "sum", "mean", "batchmean"):
        add(f"bcast_pred_row/{red}", P_BENIGN, np.log(Q_BENIGN[:1]), reduction=red)
        add(f"bcast_target_row/{red}", P_BENIGN[:1], np.log(Q_BENIGN), reduction=red)
    add("bcast_pred_1d_C3/batchmean", p3, lq3, reduction="batchmean")
    add("bcast_pred_0d/batchmean", [0.25, 0.5, 0.125, 0.125], -1.0, reduction="batchmean")

    # 0-D and 1-D batchmean (KL-RED-BATCHMEAN: divisor 1, divisor = number of classes)
    add("scalar_0d/batchmean", 0.25, -1.0, reduction="batchmean")
    add("vector_1d/batchmean", [0.25, 0.75], [-1.0, -0.5], reduction="batchmean")

    # empty inputs (KL-EMPTY-1, KL-EMPTY-2)
    for red in ("none", "sum", "mean", "batchmean"):
        add(f"empty_batch/{red}", np.zeros((0, 3)), np.zeros((0, 3)), reduction=red)
    add("empty_classes/batchmean", np.zeros((2, 0)), np.zeros((2, 0)), reduction="batchmean")

    # zeros and infinities (KL-ZERO-*, KL-INF-1, KL-GRAD-ZERO, KL-GRAD-INF)
    for dt in ("float16", "float32", "float64"):
        add(f"zero_target/{dt}", [[0.0, 1.0]], [[-1.0, -0.5]], dtype=dt, reduction="sum")
    add("zero_target_neg_inf_input", [[0.0, 1.0]], [[-INF, -0.5]], reduction="sum")
    add("zero_target_neg_inf_input/none", [[0.0, 1.0]], [[-INF, -0.5]], reduction="none")
    add("pos_target_neg_inf_input", [[0.5, 0.5]], [[-INF, -0.5]], reduction="sum")
    add("log_target_neg_inf", [[-INF, 0.0]], [[-1.0, -0.5]], target_kind="logprob", reduction="sum")
    add("inf_target", [[INF, 0.5]], [[-1.0, -0.5]], reduction="sum")
    add("nan_pred", [[0.5, 0.5]], [[NAN, -0.5]], reduction="sum")
    add("nan_target", [[NAN, 0.5]], [[-1.0, -0.5]], reduction="sum")

    add("inf_target_zero_input", [[INF, 0.5]], [[0.0, -0.5]], reduction="sum")
    add("negative_target", [[-0.25, 0.5]], [[-1.0, -0.5]], reduction="sum")
    add("subnormal_target_f32/mean", [[2.0**-149, 0.5]], [[-1.0, -0.5]], dtype="float32", reduction="mean")
    add("subnormal_target_f32/sum", [[2.0**-149, 0.5]], [[-1.0, -0.5]], dtype="float32", reduction="sum")

    # float16: a result above 65504 overflows (KL-DTYPE-3); an intermediate must not
    add("f16_result_overflow", [[60000.0, 0.5]], [[-1.0, -0.5]], dtype="float16", reduction="sum")
    add("f16_intermediate_overflow", [[60000.0, 0.5]], [[11.0, -0.5]], dtype="float16", reduction="none")
    add("f16_finite_large", [[1024.0, 0.5]], [[-20.0, -0.5]], dtype="float16", reduction="sum")

    # not expressible in torch: the adapter says so instead of guessing
    add("unsupported_prob_input", P_BENIGN, Q_BENIGN, pred_kind="prob", reduction="sum")
    labels = [c.label for c in cs]
    assert len(labels) == len(set(labels)), "duplicate case labels"
    return {c.label: c for c in cs}


# ----------------------------------------------------------------------------- running
def run_cases(ref: str, cases: list[Case]):
    """Outcomes of ``cases`` from adapter ``ref``, through the worker pool."""
    from klconform.workers import AdapterUnavailable, run_in_worker
    try:
        env, outcomes = run_in_worker(ref, cases)
    except AdapterUnavailable as exc:
        if exc.status == "missing":
            pytest.skip(f"{ref}: {exc.reason}")
        raise
    assert env.get("framework") == "torch", env
    return list(outcomes)


CASES = build_cases()


@pytest.fixture(scope="module", params=sorted(REFS), ids=sorted(REFS))
def observed(request):
    """label -> Outcome for one adapter (all cases in one batch)."""
    labels = list(CASES)
    outcomes = run_cases(REFS[request.param], [CASES[k] for k in labels])
    return dict(zip(labels, outcomes))


@pytest.fixture(scope="module")
def both():
    """label -> (kl_div outcome, KLDivLoss outcome)."""
    labels = list(CASES)
    a = run_cases(REFS["torch.kl_div"], [CASES[k] for k in labels])
    b = run_cases(REFS["torch.KLDivLoss"], [CASES[k] for k in labels])
    return {k: (x, y) for k, x, y in zip(labels, a, b)}


# ----------------------------------------------------------------------------- assertions
def assert_matches(outcome, case: Case, point: Point | None = None, grads=True):
    """Value (in the case's dtype), dtype, shape and gradients agree with ``point``."""
    exp = evaluate(case, point)
    assert outcome.status == "ok", f"{case!r}: {outcome.status} {outcome.error_type}: {outcome.error_message}"
    assert outcome.dtype == case.dtype, f"{case!r}: returned {outcome.dtype}"     # KL-DTYPE-1
    assert tuple(outcome.shape) == exp.value.shape                                   # KL-SHAPE-2
    assert_within(outcome.value, exp.value_in_dtype, exp.bound, f"{case!r} value")
    if grads and case.grad:
        for k in ("pred", "target"):
            assert outcome.grad_dtypes[k] == case.dtype
            assert_within(outcome.grads[k], exp.grads[k], exp.grad_bounds[k], f"{case!r} grad {k}")
    return exp


def has_mean_warning(outcome) -> bool:
    return any(MEAN_WARNING in w for w in outcome.warnings)


# ----------------------------------------------------------------------------- module hygiene
def test_module_does_not_import_torch():
    code = "import sys, adapters.torch_kl_div as m; m.TorchKLDiv().capabilities(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_capabilities_declare_the_options():
    caps = TorchKLDiv().capabilities()
    assert caps.reductions == {"none", "sum", "mean", "batchmean"}
    assert caps.dtypes == set(DTYPES)
    assert caps.pred_kinds == {"logprob"} and caps.target_kinds == {"prob", "logprob"}
    assert caps.gradients == {"pred", "target"} and caps.broadcasting
    assert TorchKLDiv.name == "torch.kl_div" and TorchKLDivLoss.name == "torch.KLDivLoss"


def test_documented_point():
    c = CASES["benign/float32/mean/prob"]
    assert documented_point(c) == Point(reduction="mean")
    assert documented_point(CASES["benign/float32/batchmean/prob"]).reduction == "batchmean"
    # "loss_pointwise.sum() / input.size(0)": input (1, C) against target (N, C) is a sum
    assert documented_point(CASES["bcast_pred_row/batchmean"]).reduction == "sum"
    assert documented_point(CASES["bcast_target_row/batchmean"]).reduction == "batchmean"
    assert documented_point(CASES["bcast_pred_0d/batchmean"]).reduction == "sum"
    assert documented_point(CASES["scalar_0d/batchmean"]).reduction == "batchmean"


# ----------------------------------------------------------------------------- seeds/002
@pytest.mark.parametrize("name,claims", [
    ("seed002_2d", {"sum": 4.3808, "mean": 0.4381, "batchmean": 0.8762}),
    ("seed002_3d", {"sum": 90.7882, "mean": 0.3783, "batchmean": 9.0788}),
])
def test_seed_notebook_values(observed, name, claims):
    """The notebook's printed values (4 decimals) and the reference agree with torch."""
    for red, printed in claims.items():
        case, out = CASES[f"{name}/{red}"], observed[f"{name}/{red}"]
        assert_matches(out, case)
        assert round(float(out.value), 4) == printed
    # its claims: none.sum() == sum, none.mean() == mean, batchmean == manual.mean(0).sum()
    none = observed[f"{name}/none"].value
    n = CASES[f"{name}/none"].shape[0]
    s = evaluate(CASES[f"{name}/sum"])
    assert_within(none.sum(dtype=np.float64), s.value, s.bound, "none.sum() vs sum")
    m = evaluate(CASES[f"{name}/mean"])
    assert_within(none.mean(dtype=np.float64), m.value, m.bound, "none.mean() vs mean")
    b = evaluate(CASES[f"{name}/batchmean"])
    assert_within(none.mean(axis=0, dtype=np.float64).sum(), b.value, b.bound * 2, "mean(0).sum()")
    assert b.value == pytest.approx(s.value / n, rel=1e-15)


def test_seed_notebook_batchmean_is_not_per_distribution_kl(observed):
    """The notebook normalises over dim 0 (softmax(0)), so its distributions are the
    columns; batchmean still divides by dim 0 (the class axis there): 0.8762, while the
    mean KL per distribution (KL-RED-SOBS with class axis 0) is 4.3808 / 2."""
    case = CASES["seed002_2d/batchmean"]
    per_dist = evaluate(case.replace(class_axis=0, reduction="distribution_mean"))
    assert float(per_dist.value) == pytest.approx(4.3808 / 2, abs=1e-4)
    assert abs(float(observed["seed002_2d/batchmean"].value) - float(per_dist.value)) > 1.0


def test_seed_notebook_mean_warning(observed):
    """seeds/002 shows the UserWarning for reduction='mean'; torch 2.13 still emits it,
    and only for 'mean'."""
    assert has_mean_warning(observed["seed002_2d/mean"])
    for red in ("none", "sum", "batchmean"):
        assert not has_mean_warning(observed[f"seed002_2d/{red}"])


# ----------------------------------------------------------------------------- seeds/003
def test_seed_medium_batchmean_equals_mean_of_row_kls(observed):
    """seeds/003: kl_div(q.log(), p, 'batchmean') == sum(p*log(p/q), dim=1).mean() for 2-D."""
    case = CASES["seed003_rows/batchmean"]
    assert_matches(observed["seed003_rows/batchmean"], case)
    rows = evaluate(case.replace(reduction="distribution_mean"))
    assert_within(observed["seed003_rows/batchmean"].value, rows.value_in_dtype, rows.bound, "row KL mean")


def test_seed_medium_claim_fails_beyond_2d(observed):
    """For (N, T, C) batchmean divides by N only: T times the mean per-distribution KL."""
    case = CASES["seed003_3d/batchmean"]
    assert_matches(observed["seed003_3d/batchmean"], case)
    rows = evaluate(case.replace(reduction="distribution_mean"))
    assert float(observed["seed003_3d/batchmean"].value) == pytest.approx(3 * float(rows.value), rel=1e-5)


# ----------------------------------------------------------------------------- every option
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["none", "sum", "mean", "batchmean"])
@pytest.mark.parametrize("target_kind", ["prob", "logt"])
def test_benign_every_option(observed, dtype, reduction, target_kind):
    """Values, dtype, shape and both gradients within the reference's bounds."""
    label = f"benign/{dtype}/{reduction}/{target_kind}"
    out = observed[label]
    assert_matches(out, CASES[label])
    assert has_mean_warning(out) == (reduction == "mean")


@pytest.mark.parametrize("reduction", ["none", "sum", "mean", "batchmean"])
def test_broadcast_target_row(observed, reduction):
    """target (1, C) against input (N, C): canonical, gradient summed to the target's shape."""
    out = observed[f"bcast_target_row/{reduction}"]
    assert_matches(out, CASES[f"bcast_target_row/{reduction}"])
    assert out.grads["target"].shape == (1, 2)
    assert not any("size" in w and "broadcast" in w.lower() for w in out.warnings)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_broadcast_pred_row(observed, reduction):
    out = observed[f"bcast_pred_row/{reduction}"]
    assert_matches(out, CASES[f"bcast_pred_row/{reduction}"])
    assert out.grads["pred"].shape == (1, 2)
    assert out.warnings == [] or has_mean_warning(out)   # no warning about differing sizes


def test_batchmean_0d_is_sum_and_1d_is_mean(observed):
    """KL-RED-BATCHMEAN: divisor 1 for 0-D, the number of classes for 1-D."""
    for label, same_as in (("scalar_0d/batchmean", "sum"), ("vector_1d/batchmean", "mean")):
        case = CASES[label]
        assert_matches(observed[label], case)
        other = evaluate(case.replace(reduction=same_as))
        assert_within(observed[label].value, other.value_in_dtype, other.bound, label)


@pytest.mark.parametrize("reduction,expected", [("none", None), ("sum", 0.0), ("mean", NAN), ("batchmean", NAN)])
def test_empty_batch(observed, reduction, expected):
    """KL-EMPTY-1 (sum of nothing is 0), KL-EMPTY-2 (0/0 is NaN)."""
    out = observed[f"empty_batch/{reduction}"]
    assert_matches(out, CASES[f"empty_batch/{reduction}"])
    if expected is None:
        assert out.shape == (0, 3)
    else:
        np.testing.assert_equal(float(out.value), expected)


def test_empty_classes_batchmean_is_zero(observed):
    out = observed["empty_classes/batchmean"]
    assert_matches(out, CASES["empty_classes/batchmean"])
    assert float(out.value) == 0.0


def test_positive_target_neg_inf_input_is_inf(observed):
    """KL-ZERO-2: p > 0, q = 0 gives +inf; d/d(log q) stays -p (KL-GRAD-INF)."""
    out = observed["pos_target_neg_inf_input"]
    assert_matches(out, CASES["pos_target_neg_inf_input"], grads=False)
    assert float(out.value) == INF
    np.testing.assert_array_equal(out.grads["pred"], [[-0.5, -0.5]])


def test_nan_target_is_nan(observed):
    assert_matches(observed["nan_target"], CASES["nan_target"], grads=False)    # KL-INVALID-1


def test_float16_result_overflow_and_large_finite(observed):
    """KL-DTYPE-3: an exact result above 65504 is +inf; 1024*(log 1024 + 20) stays finite."""
    assert float(observed["f16_result_overflow"].value) == INF
    assert_matches(observed["f16_result_overflow"], CASES["f16_result_overflow"], grads=False)
    assert_matches(observed["f16_finite_large"], CASES["f16_finite_large"])


def test_unsupported_case_is_reported(observed):
    out = observed["unsupported_prob_input"]
    assert out.status == "unsupported" and "logprob" in out.error_message


def test_functional_and_module_agree_bitwise(both):
    """KLDivLoss.forward calls F.kl_div: identical values and gradients on every case."""
    for label, (a, b) in both.items():
        assert a.status == b.status, label
        if a.status != "ok":
            continue
        np.testing.assert_array_equal(a.value, b.value, err_msg=label)
        assert a.dtype == b.dtype and a.shape == b.shape, label
        for k in a.grads:
            np.testing.assert_array_equal(a.grads[k], b.grads[k], err_msg=f"{label} grad {k}")


# ----------------------------------------------------------------------------- discrepancies
def test_zero_target_value_matches_but_target_gradient_is_nan_discrepancy(observed):
    """KL-ZERO-1 holds for the value (xlogy(0, 0) = 0), but d/dp at p = 0 is NaN
    (xlogy backward: log p + p/p) where KL-GRAD-ZERO says -inf.  Record
    torch-grad-target-nan-at-zero-target; pytorch/pytorch#89558."""
    for dt in ("float16", "float32", "float64"):
        case, out = CASES[f"zero_target/{dt}"], observed[f"zero_target/{dt}"]
        assert_matches(out, case, grads=False)
        exp = evaluate(case)
        assert exp.grads["target"][0, 0] == -INF
        assert np.isnan(out.grads["target"][0, 0])
        assert_within(out.grads["target"][0, 1:], exp.grads["target"][0, 1:], exp.grad_bounds["target"][0, 1:])
        assert_within(out.grads["pred"], exp.grads["pred"], exp.grad_bounds["pred"])


def test_zero_target_neg_inf_input_is_nan_discrepancy(observed):
    """p = 0, log q = -inf: canonical 0 (KL-ZERO-1), torch NaN = 0 * inf (KL-ZERO-3).
    Record torch-zero-times-inf-is-nan."""
    for label in ("zero_target_neg_inf_input", "zero_target_neg_inf_input/none"):
        case, out = CASES[label], observed[label]
        canon = evaluate(case)
        assert not np.any(np.isnan(canon.value))
        assert np.isnan(np.asarray(out.value).reshape(-1)[0])
        nan_point = evaluate(case, Point(reduction=case.reduction, zero_inf="nan"))
        assert_within(out.value, nan_point.value_in_dtype, nan_point.bound, label)


def test_log_target_neg_inf_is_nan_discrepancy(observed):
    """log_target=True, t = -inf: exp(t) * (t - input) = 0 * -inf = NaN (KL-ZERO-3), and
    its gradient wrt t is NaN where KL-GRAD-ZERO gives 0."""
    case, out = CASES["log_target_neg_inf"], observed["log_target_neg_inf"]
    assert float(evaluate(case).value) == pytest.approx(0.5)
    assert np.isnan(float(out.value))
    assert evaluate(case).grads["target"][0, 0] == 0.0
    assert np.isnan(out.grads["target"][0, 0])


def test_batchmean_divides_by_input_size0_discrepancy(observed):
    """batchmean divides by input.size(0), not by the broadcast batch size
    (torch/nn/functional.py; documented as ``loss_pointwise.sum() / input.size(0)``).
    Record torch-batchmean-divides-by-input-dim0."""
    # input (1, C), target (N, C): the sum (the documented point), not sum / N
    case, out = CASES["bcast_pred_row/batchmean"], observed["bcast_pred_row/batchmean"]
    s = evaluate(case.replace(reduction="sum"))
    assert_within(out.value, s.value_in_dtype, s.bound, "bcast_pred_row batchmean")
    assert float(evaluate(case).value) == pytest.approx(float(s.value) / 2)
    # input (C,), target (N, C) with C = 3 != N = 2: sum / 3 — no family point is that
    case, out = CASES["bcast_pred_1d_C3/batchmean"], observed["bcast_pred_1d_C3/batchmean"]
    s = evaluate(case.replace(reduction="sum"))
    assert float(out.value) == pytest.approx(float(s.value) / 3, rel=1e-14)
    assert float(evaluate(case).value) == pytest.approx(float(s.value) / 2, rel=1e-14)
    # 0-D input against a 1-D target: no division at all
    case, out = CASES["bcast_pred_0d/batchmean"], observed["bcast_pred_0d/batchmean"]
    s = evaluate(case.replace(reduction="sum"))
    assert_within(out.value, s.value_in_dtype, s.bound, "bcast_pred_0d batchmean")


def test_nan_input_gradient_is_finite_discrepancy(observed):
    """A NaN log Q gives a NaN value (KL-INVALID-1) but d/d(log q) = -p stays finite
    (the kernel's derivative is -target, independent of input); KL-GRAD-INF says NaN."""
    case, out = CASES["nan_pred"], observed["nan_pred"]
    assert_matches(out, case, grads=False)
    assert np.isnan(evaluate(case).grads["pred"][0, 0])
    np.testing.assert_array_equal(out.grads["pred"], [[-0.5, -0.5]])


def test_inf_target_gradient_is_nan_discrepancy(observed):
    """p = +inf: value +inf as KL-INF-1 says, d/dp = log p + p/p - log q = inf + inf/inf = NaN
    where the reference gives +inf (KL-GRAD-INF)."""
    case, out = CASES["inf_target"], observed["inf_target"]
    assert_matches(out, case, grads=False)
    assert evaluate(case).grads["target"][0, 0] == INF
    assert np.isnan(out.grads["target"][0, 0])


def test_float16_intermediate_overflow_discrepancy(observed):
    """p = 60000, log q = 11 in float16: T = 60000*(log 60000 - 11) ≈ 126 is representable,
    but xlogy(p, p) = 660126 and p*input = 660000 both overflow: inf - inf = NaN
    (KL-DTYPE-3: intermediate overflow with a finite exact result)."""
    case, out = CASES["f16_intermediate_overflow"], observed["f16_intermediate_overflow"]
    exp = evaluate(case)
    assert np.isfinite(exp.value_in_dtype[0, 0]) and exp.value[0, 0] == pytest.approx(126.0, abs=1.0)
    assert np.isnan(out.value[0, 0])
    assert_within(out.value[0, 1:], exp.value_in_dtype[0, 1:], exp.bound[0, 1:])


def test_inf_target_zero_input_is_nan_discrepancy(observed):
    """p = +inf, log q = 0: KL-INF-1 gives +inf; torch's target * input = inf * 0 = NaN
    makes the term inf - NaN = NaN (special value; rare in the corpus, not recorded)."""
    case, out = CASES["inf_target_zero_input"], observed["inf_target_zero_input"]
    assert float(evaluate(case).value) == INF
    assert np.isnan(float(out.value))


def test_negative_target_input_gradient_is_finite_discrepancy(observed):
    """p < 0: value NaN (KL-INVALID-1, xlogy of a negative) but d/d(log q) = -p = 0.25."""
    case, out = CASES["negative_target"], observed["negative_target"]
    assert_matches(out, case, grads=False)
    assert np.isnan(evaluate(case).grads["pred"][0, 0])
    np.testing.assert_array_equal(out.grads["pred"], [[0.25, -0.5]])


def test_subnormal_target_gradient_underflow_discrepancy(observed):
    """xlogy backward computes (grad * p) / p: with p = 2**-149 and the mean's head
    gradient 1/2, grad * p underflows to 0 and the +1 of d/dp = log(p/q) + 1 is lost
    (observed -51.139 vs -50.640); with sum (grad 1) it is exact.  Record
    torch-grad-target-subnormal-underflow."""
    for red, lost in (("mean", 0.5), ("sum", 0.0)):
        case, out = CASES[f"subnormal_target_f32/{red}"], observed[f"subnormal_target_f32/{red}"]
        assert_matches(out, case, grads=False)
        exp = evaluate(case)
        assert out.grads["target"][0, 0] == pytest.approx(exp.grads["target"][0, 0] - lost, abs=1e-4)
        assert_within(out.grads["target"][0, 1:], exp.grads["target"][0, 1:], exp.grad_bounds["target"][0, 1:])


# ----------------------------------------------------------------------------- records
@pytest.mark.parametrize("adapter_name", sorted(REFS))
def test_known_records_are_valid(adapter_name):
    records = known_records.load_for({"torch.kl_div": TorchKLDiv, "torch.KLDivLoss": TorchKLDivLoss}[adapter_name])
    assert records, f"no known-discrepancy records for {adapter_name}"
    ids = set(clause_ids())
    for r in records:
        assert set(r.clauses) <= ids, f"{r.id}: unknown clauses {set(r.clauses) - ids}"
        assert r.citation.startswith("https://"), r.id


# ----------------------------------------------------------------------------- mixed dtypes, legacy arguments
def _mixed(tdt, pdt, reduction="sum"):
    p, q = round_to(P_BENIGN, tdt), round_to(np.log(round_to(Q_BENIGN, pdt)), pdt)
    from klconform.reference.dtypes import promote
    return Case(target=p, pred=q, dtype=promote(tdt, pdt), target_dtype=tdt, pred_dtype=pdt, reduction=reduction)


def test_mixed_input_dtypes_are_promoted_and_a_narrower_input_is_exact():
    """KL-DTYPE-4: float32 input with a float64 target and the reverse: the result in
    float64, gradients in each input's dtype; a narrower *input* (log Q) is exact (within the
    float64 bound), a narrower target is not: torch takes log P in the target's dtype
    (record torch-mixed-dtypes-log-target-in-target-dtype)."""
    wide_target = _mixed("float64", "float32")
    narrow_target = _mixed("float32", "float64")
    halves = _mixed("float16", "bfloat16", "none")
    for ref in REFS.values():
        o_wide, o_narrow, o_half = run_cases(ref, [wide_target, narrow_target, halves])
        for o, c in ((o_wide, wide_target), (o_narrow, narrow_target), (o_half, halves)):
            assert o.status == "ok" and o.dtype == c.dtype, (ref, o)
            assert o.grad_dtypes == {"pred": c.input_dtype("pred"), "target": c.input_dtype("target")}
        e = evaluate(wide_target)
        assert_within(o_wide.value, e.value, e.bound, f"{ref} float64 target, float32 input")
        for k in ("pred", "target"):
            assert_within(o_wide.grads[k], e.grads[k], e.grad_bounds[k], f"{ref} grad {k}")
        e = evaluate(narrow_target)
        err = abs(float(o_narrow.value) - float(e.value))
        assert e.bound < err <= 4 * 2.0**-24 * float(np.sum(np.abs(evaluate(narrow_target.replace(
            reduction="none")).value))) + 1e-7, (ref, err, e.bound)


def test_legacy_size_average_reduce_map_to_reductions_with_a_warning():
    """torch.KLDivLoss_legacy: size_average/reduce as legacy_get_string maps them
    (reduce=False -> none, size_average=False -> sum, default -> mean over all elements,
    KL-RED-MEAN, KL-RED-SUM, KL-RED-NONE), each call warning that they are deprecated."""
    from klconform.adapters.torch_kl_div import LEGACY_ARGS, TorchKLDivLossLegacy, legacy_reduction
    assert all(legacy_reduction(**args) == r for r, args in LEGACY_ARGS.items())
    assert legacy_reduction(False, False) == "none" and legacy_reduction(None, None) == "mean"
    caps = TorchKLDivLossLegacy().capabilities()
    assert set(caps.reductions) == {"none", "sum", "mean"} and caps.input_dtypes == {"promoted"}
    cases = []
    for r in ("none", "sum", "mean"):
        dt = "float32" if r == "mean" else "float64"
        cases.append(Case(target=round_to(P_BENIGN, dt), pred=round_to(np.log(Q_BENIGN), dt), dtype=dt, reduction=r))
    outcomes = run_cases("klconform.adapters.torch_kl_div:TorchKLDivLossLegacy", cases)
    for c, o in zip(cases, outcomes):
        assert o.status == "ok", o
        e = evaluate(c)
        assert_within(o.value, e.value, e.bound, c.reduction)
        for k in ("pred", "target"):
            assert_within(o.grads[k], e.grads[k], e.grad_bounds[k], f"{c.reduction} grad {k}")
        assert any(f"please use reduction='{c.reduction}' instead" in w for w in o.warnings), o.warnings
    # the legacy mean divides by all 4 elements, not by the batch of 2
    batchmean = evaluate(cases[2].replace(reduction="batchmean")).value
    assert abs(float(outcomes[2].value) * 2 - float(batchmean)) < 1e-6
