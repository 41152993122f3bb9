"""The Keras adapters (Keras 3 ``keras.losses.KLDivergence`` / ``kl_divergence``, Keras 2
``tf_keras.losses.KLDivergence``) against the reference, on hand-picked cases for every
option: each reduction, ``sample_weight``, the ``dtype`` argument, each input dtype,
gradients, zeros in y_true and y_pred, values outside [1e-7, 1], and the seed article's
example distributions (seeds/000, seeds/001: dist_1..dist_3; seeds/003: KL(P‖P) = 0,
asymmetry).

All cases of one adapter go in one batch through the worker pool
(``klconform.workers.run_in_worker``), in this process where that is missing.  Expected values
come from ``reference.evaluate`` under two points: the canonical one and Keras' own
``clip_both(1e-7)`` (KL-EPS-CLIP); closeness is judged within ``Expected.bound`` /
``grad_bounds`` (KL-BOUND-*).  On benign cases (every entry in [1e-7, 1]) both points agree
and Keras must match them; on edge cases Keras must match the clip point *and* differ from
the canonical one — those tests (``*_discrepancy``) pin what klconform/known/keras_*.toml
and tf_keras_*.toml record.  One independent check (numpy on benign float64 values)
guards the reference on the seed examples.
"""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from klconform.adapters.keras_kldivergence import EPSILON, KerasKLDivergence, clip_point, keras_sample_weight
from klconform import records
from klconform.case import Case
from klconform.reference.dtypes import DTYPES, UNIT_ROUNDOFF, round_to
from klconform.reference import evaluate
from klconform.reference.family import Point

pytestmark = [
    pytest.mark.framework,
    pytest.mark.skipif(importlib.util.find_spec("keras") is None or importlib.util.find_spec("tensorflow") is None,
                       reason="keras / tensorflow is not installed"),
]

K3 = "klconform.adapters.keras_kldivergence:KerasKLDivergence"
K3_DTYPE = "klconform.adapters.keras_kldivergence:KerasKLDivergenceDtypeArg"
K3_MWSW = "klconform.adapters.keras_kldivergence:KerasKLDivergenceMeanWithSampleWeight"
K3_FN = "klconform.adapters.keras_kldivergence:KerasKLDivergenceFn"
K2 = "klconform.adapters.tf_keras_kldivergence:TfKerasKLDivergence"
NAN, INF = np.nan, np.inf
# Two distributions over three classes, every entry in [1e-7, 1]: clipping is the identity.
P = np.array([[0.25, 0.5, 0.25], [0.5, 0.25, 0.25]])
Q = np.array([[0.5, 0.25, 0.25], [0.25, 0.25, 0.5]])
# seeds/000 and seeds/001 (MXNet KL article): three distributions over 4 categories.
DIST = {1: [0.2, 0.5, 0.2, 0.1], 2: [0.3, 0.4, 0.1, 0.2], 3: [0.1, 0.1, 0.1, 0.7]}
CLASS_REDUCTIONS = ("distribution", "sum", "distribution_mean")


class KerasKLDivergenceMeanAlias(KerasKLDivergence):
    """The class driven with ``reduction="mean"`` (Keras 3's alias of sum_over_batch_size)."""

    name = "keras.KLDivergence_mean_alias"
    native_reductions = {"distribution_mean": "mean"}


def case(label, target, pred, *, dtype="float64", reduction="distribution_mean", sample_weight=None):
    """A prob/prob case with values rounded into ``dtype`` (the Case needs exact values)."""
    sw = None if sample_weight is None else round_to(sample_weight, dtype)
    return Case(round_to(target, dtype), round_to(pred, dtype), dtype=dtype, target_kind="prob",
                pred_kind="prob", reduction=reduction, sample_weight=sw, label=label)


# ----------------------------------------------------------------------------- cases
def build_cases() -> dict[str, Case]:
    cs: list[Case] = []
    add = cs.append
    for dt in DTYPES:
        for red in CLASS_REDUCTIONS:
            add(case(f"benign/{dt}/{red}", P, Q, dtype=dt, reduction=red))
    # seeds/000-001 dist_1..3 (float64 and the article's float32), and KL(P||P) = 0
    for i, j in ((1, 2), (2, 1), (1, 3), (3, 1), (1, 1)):
        for dt in ("float32", "float64"):
            add(case(f"seed000/d{i}_d{j}/{dt}", [DIST[i]], [DIST[j]], dtype=dt, reduction="distribution"))
    # sample weights: per distribution, (N, 1) canonical shape; a zero weight keeps its count
    for red in CLASS_REDUCTIONS:
        add(case(f"sample_weight/{red}", P, Q, reduction=red, sample_weight=[[2.0], [0.0]]))
    add(case("sample_weight/uneven", P, Q, sample_weight=[[3.0], [0.5]]))
    add(case("sample_weight/3d", np.full((2, 2, 2), 0.5), np.full((2, 2, 2), 0.25), reduction="distribution",
             sample_weight=[[[1.0]], [[2.0]]]))
    # zeros in y_true / y_pred, values above 1, negatives, NaN (KL-EPS-CLIP vs KL-ZERO-*)
    for dt in ("float32", "float64"):
        add(case(f"zero_target/{dt}", [[0.0, 1.0]], [[0.5, 0.5]], dtype=dt, reduction="distribution"))
        add(case(f"zero_pred/{dt}", [[0.5, 0.5]], [[0.0, 1.0]], dtype=dt, reduction="distribution"))
        add(case(f"tiny_pred/{dt}", [[0.5, 0.5]], [[2.0**-30, 1.0 - 2.0**-30]], dtype=dt, reduction="distribution"))
        add(case(f"unnormalised/{dt}", [[2.0, 0.5]], [[0.5, 0.5]], dtype=dt, reduction="distribution"))
    add(case("zero_both", [[0.0, 1.0]], [[0.0, 1.0]], reduction="distribution"))
    add(case("negative_target", [[-0.5, 1.5]], [[0.5, 0.5]], reduction="distribution"))
    add(case("nan_target", [[NAN, 0.5]], [[0.5, 0.5]], reduction="distribution"))
    add(case("at_eps", [[EPSILON, 1.0 - EPSILON]], [[EPSILON, 1.0 - EPSILON]], reduction="distribution"))
    # float16: q near the clip bound makes y_true / y_pred overflow 65504 (KL-DTYPE-3)
    add(case("f16_ratio_overflow", [[0.5, 0.5]], [[2.0**-20, 1.0]], dtype="float16", reduction="distribution"))
    # shapes: one distribution (1-D), 3-D, empty batch (KL-EMPTY-*)
    for red in CLASS_REDUCTIONS:
        add(case(f"vector_1d/{red}", P[0], Q[0], reduction=red))
        add(case(f"empty_batch/{red}", np.zeros((0, 3)), np.zeros((0, 3)), reduction=red))
    add(case("rank3/distribution_mean", np.full((2, 3, 2), 0.5), np.full((2, 3, 2), 0.25)))
    labels = [c.label for c in cs]
    assert len(labels) == len(set(labels)), "duplicate case labels"
    return {c.label: c for c in cs}


CASES = build_cases()


# ----------------------------------------------------------------------------- running
def _in_process(adapter, cases):
    from klconform.adapters.base import Outcome
    try:
        adapter.setup()
    except ImportError as exc:
        pytest.skip(f"{adapter.name}: {exc}")
    out = []
    for c in cases:
        try:
            out.append(adapter.evaluate(Case.from_wire(c.to_wire())))
        except Exception as exc:   # the worker turns exceptions into outcomes too
            out.append(Outcome(status="error", error_type=type(exc).__name__, error_message=str(exc)))
    return out


def run_cases(ref, cases):
    """Outcomes of ``cases`` from adapter ``ref`` ("module:Class"): one worker, one batch;
    in this process when ``ref`` is a class defined here."""
    if isinstance(ref, type):
        return _in_process(ref(), cases)
    from klconform.workers import AdapterUnavailable, run_in_worker
    try:
        _, outcomes = run_in_worker(ref, cases)
    except AdapterUnavailable as exc:
        pytest.skip(f"{ref} unavailable: {exc}")
    return list(outcomes)


_RUNS: dict[str, dict[str, object]] = {}


def outcomes(ref) -> dict[str, object]:
    """label -> Outcome for every case ``ref`` can express (computed once per session)."""
    if ref not in _RUNS:
        from klconform.registry import load_adapter
        caps = (ref() if isinstance(ref, type) else load_adapter(ref)).capabilities()
        labels = [k for k, c in CASES.items() if c.reduction in caps.reductions
                  and (c.sample_weight is None or "sample" in caps.weights)]
        _RUNS[ref] = dict(zip(labels, run_cases(ref, [CASES[k] for k in labels])))
    return _RUNS[ref]


# ----------------------------------------------------------------------------- assertions
def within(observed, expected, bound) -> bool:
    """Same shape and NaN/±inf pattern, finite entries within ``bound`` (KL-BOUND-4)."""
    obs, exp = np.asarray(observed, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    if obs.shape != exp.shape or not np.array_equal(np.isnan(obs), np.isnan(exp)):
        return False
    inf = np.isinf(exp)
    if not (np.array_equal(np.isinf(obs), inf) and np.array_equal(obs[inf], exp[inf])):
        return False
    fin = np.isfinite(exp)
    b = np.broadcast_to(np.asarray(bound, dtype=np.float64), exp.shape)[fin]
    return bool(np.all(np.abs(obs[fin] - exp[fin]) <= b))


def value_matches(outcome, c: Case, point: Point | None = None, *, bound_dtype: str | None = None) -> bool:
    """The outcome's value agrees with ``point`` within the case's bound; ``bound_dtype``
    scales the bound to another dtype's unit roundoff (for a framework that computes in
    float32 whatever the inputs' dtype)."""
    exp = evaluate(c, point)
    if bound_dtype is None:
        return within(outcome.value, exp.value_in_dtype, exp.bound)
    scale = UNIT_ROUNDOFF[bound_dtype] / UNIT_ROUNDOFF[c.dtype]
    return within(outcome.value, exp.value, exp.bound * scale)


def grads_match(outcome, c: Case, point: Point | None = None) -> dict[str, bool]:
    exp = evaluate(c, point)
    return {k: within(outcome.grads.get(k, np.full(np.shape(g), NAN)), g, exp.grad_bounds[k])
            for k, g in exp.grads.items()}


def ok(outcome, c: Case):
    assert outcome.status == "ok", f"{c!r}: {outcome.status} {outcome.error_type}: {outcome.error_message}"


ALL = [K3, K3_DTYPE, K3_FN, K2]
CLASSES = [K3, K3_DTYPE, K2]


# ----------------------------------------------------------------------------- benign values
@pytest.mark.parametrize("ref", ALL)
@pytest.mark.parametrize("dt", DTYPES)
def test_benign_values_and_gradients_match_both_points(ref, dt):
    """Every entry in [1e-7, 1]: canonical == clip_both(1e-7) and Keras matches both, value
    and gradients (KL-RED-DIST/-SUM/-SOBS, KL-GRAD-PRED-PROB, KL-GRAD-TARGET-PROB) — except
    the float64 down-cast of the default-dtype Keras 3 class (its own test)."""
    if ref == K3 and dt == "float64":
        pytest.skip("float64 is down-cast: test_keras3_class_downcasts_float64_discrepancy")
    out = outcomes(ref)
    labels = [k for k in out if k.startswith(f"benign/{dt}/")]
    assert labels
    for k in labels:
        c, o = CASES[k], out[k]
        ok(o, c)
        pt = clip_point(c.reduction)
        assert value_matches(o, c) and value_matches(o, c, pt), f"{k}: {o.value}"
        assert all(grads_match(o, c).values()) and all(grads_match(o, c, pt).values()), f"{k}: {o.grads}"


def test_seed_article_distributions_independent_oracle():
    """seeds/000-001: KL(dist_i‖dist_j) by plain numpy (benign, float64) — an oracle
    independent of the reference — and seeds/003's claims KL(P‖P) = 0, KL(P‖Q) ≠ KL(Q‖P)."""
    for ref in (K3_FN, K3_DTYPE, K2):
        out = outcomes(ref)
        vals = {}
        for i, j in ((1, 2), (2, 1), (1, 3), (3, 1), (1, 1)):
            o = out[f"seed000/d{i}_d{j}/float64"]
            p, q = np.array(DIST[i]), np.array(DIST[j])
            assert o.value == pytest.approx([np.sum(p * np.log(p / q))], rel=1e-13, abs=1e-15), (ref, i, j)
            vals[i, j] = float(o.value[0])
            c32 = CASES[f"seed000/d{i}_d{j}/float32"]
            assert value_matches(out[c32.label], c32), (ref, c32.label)
        assert vals[1, 1] == 0.0
        assert vals[1, 2] != pytest.approx(vals[2, 1], rel=1e-3) and vals[1, 3] != pytest.approx(vals[3, 1], rel=1e-3)


# ----------------------------------------------------------------------------- reductions and weights
@pytest.mark.parametrize("ref", CLASSES)
def test_reductions_map_to_canonical_names(ref):
    """none -> distribution (shape (N,)), sum -> sum (0-D), sum_over_batch_size -> distribution_mean."""
    out = outcomes(ref)
    for red, shape in (("distribution", (2,)), ("sum", ()), ("distribution_mean", ())):
        c = CASES[f"benign/float32/{red}"]
        assert tuple(out[c.label].shape) == shape
        assert value_matches(out[c.label], c)


def test_mean_alias_equals_sum_over_batch_size():
    """Keras 3.15 accepts reduction="mean": the same distribution_mean (KL-RED-SOBS)."""
    a, b = outcomes(KerasKLDivergenceMeanAlias), outcomes(K3)
    for k in ("benign/float32/distribution_mean", "sample_weight/distribution_mean", "sample_weight/uneven"):
        assert np.array_equal(a[k].value, b[k].value), k
        assert value_matches(a[k], CASES[k], clip_point("distribution_mean"), bound_dtype="float32")


@pytest.mark.parametrize("ref", [K3_DTYPE, K2])
def test_sample_weight_divides_by_count_not_weight_sum(ref):
    """sum_over_batch_size: Σ w·KL / N, not / Σ w (KL-WEIGHT-DIVISOR, KL-WEIGHT-DIST)."""
    out = outcomes(ref)
    for red in CLASS_REDUCTIONS:
        c = CASES[f"sample_weight/{red}"]
        ok(out[c.label], c)
        assert value_matches(out[c.label], c), red
        assert all(grads_match(out[c.label], c).values()), red
    c = CASES["sample_weight/uneven"]
    assert value_matches(out[c.label], c)
    assert not value_matches(out[c.label], c, Point("distribution_mean", weight_level="distribution",
                                                     weight_divisor="weight_sum"))
    c3 = CASES["sample_weight/3d"]
    assert value_matches(out[c3.label], c3), out[c3.label].value   # (2,1,1) weights per sample


def test_mean_with_sample_weight_divides_by_weight_sum():
    """reduction="mean_with_sample_weight": Σ w·KL / Σ w (KL-WEIGHT-SUMDIV)."""
    out = outcomes(K3_MWSW)
    c = CASES["sample_weight/uneven"]
    sumdiv = Point("distribution_mean", weight_level="distribution", weight_divisor="weight_sum")
    assert value_matches(out[c.label], c, sumdiv, bound_dtype="float32")
    assert not value_matches(out[c.label], c, bound_dtype="float32")


def test_keras_sample_weight_drops_the_class_axis():
    c = CASES["sample_weight/3d"]
    assert keras_sample_weight(c).shape == (2, 1)
    assert keras_sample_weight(CASES["sample_weight/uneven"]).shape == (2,)


# ----------------------------------------------------------------------------- dtypes
def test_keras3_class_computes_in_floatx_discrepancy():
    """Without ``dtype=`` the Keras 3 class casts inputs to floatx (float32): float16,
    bfloat16 and float64 inputs come back float32 (KL-DTYPE-1), float64 with float32
    precision.  The ``dtype`` argument, Keras 3's function and tf_keras keep the dtype."""
    out = outcomes(K3)
    for dt in ("float16", "bfloat16", "float64"):
        o = out[f"benign/{dt}/sum"]
        assert o.dtype == "float32", dt
        assert o.grad_dtypes["pred"] == dt             # gradients come back in the input dtype
    c = CASES["benign/float64/sum"]
    o = out[c.label]
    assert not value_matches(o, c)                      # beyond the float64 bound ...
    assert value_matches(o, c, bound_dtype="float32")   # ... but a float32-accurate value
    for ref in (K3_DTYPE, K3_FN, K2):
        for dt in DTYPES:
            k = f"benign/{dt}/distribution"
            assert outcomes(ref)[k].dtype == dt, (ref, dt)


def test_keras3_class_downcasts_float64_discrepancy():
    """float64 error over the float64 bound, per reduction (numbers in docs/frameworks/keras.md)."""
    out = outcomes(K3)
    for red in CLASS_REDUCTIONS:
        c = CASES[f"benign/float64/{red}"]
        exp = evaluate(c)
        ratio = np.max(np.abs(out[c.label].value - exp.value) / exp.bound)
        assert ratio > 1e3, (red, ratio)


# ----------------------------------------------------------------------------- clipping
@pytest.mark.parametrize("ref", ALL)
def test_zero_and_out_of_range_entries_follow_clip_both_discrepancy(ref):
    """Zeros become 1e-7, entries > 1 become 1, negatives 1e-7 (KL-EPS-CLIP): Keras matches
    clip_both(1e-7) and differs from the canonical definition (KL-ZERO-1, KL-ZERO-2)."""
    out = outcomes(ref)
    bd = "float32" if ref == K3 else None   # the default class computes in float32
    for k in ("zero_target/float64", "zero_pred/float64", "tiny_pred/float64", "unnormalised/float64",
              "zero_both", "negative_target"):
        c, o = CASES[k], out[k]
        ok(o, c)
        assert np.all(np.isfinite(o.value)), k
        assert value_matches(o, c, clip_point(c.reduction), bound_dtype=bd), (k, o.value)
        if k != "zero_both":   # eps·log(eps/eps) = 0: both points agree here
            assert not value_matches(o, c, bound_dtype=bd), (k, o.value)   # canonical differs
    # zero_pred: canonical +inf, Keras finite -log(1e-7)/2 + log(1/2)/2
    assert out["zero_pred/float64"].value[0] == pytest.approx(0.5 * np.log(0.5 / 1e-7) + 0.5 * np.log(0.5), rel=1e-6)
    assert evaluate(CASES["zero_pred/float64"]).value[0] == INF


@pytest.mark.parametrize("ref", ALL)
def test_gradients_at_clipped_entries_discrepancy(ref):
    """KL-GRAD-EPS: at a clipped entry the clip's derivative is 0 (p = 0: ∂/∂p = 0 where the
    canonical ∂/∂p is -inf... finite p: log(p/q)+1; q = 0: ∂/∂q = 0 where canonical is -inf),
    and ∂/∂q at p = 0 is -1e-7/q instead of 0."""
    out = outcomes(ref)
    for k in ("zero_target/float64", "zero_pred/float64", "unnormalised/float64"):
        c, o = CASES[k], out[k]
        if ref == K3:   # float32 compute: judge only the clip point, loosely
            exp = evaluate(c, clip_point(c.reduction))
            for g in ("pred", "target"):
                assert np.allclose(o.grads[g], exp.grads[g], rtol=1e-6, atol=1e-12), (k, g)
            continue
        assert all(grads_match(o, c, clip_point(c.reduction)).values()), (k, o.grads)
        assert not all(grads_match(o, c).values()), (k, o.grads)
    g = out["zero_target/float64"].grads["pred"]
    assert g[0, 0] == pytest.approx(-EPSILON / 0.5, rel=1e-6)    # canonical: -0/0.5 = 0
    assert out["zero_pred/float64"].grads["pred"][0, 0] == 0.0   # canonical: -0.5/0 = -inf


@pytest.mark.parametrize("ref", [K3_FN, K2])
def test_nan_stays_nan_but_its_gradient_is_zero_discrepancy(ref):
    """NaN input: the value is NaN (KL-INVALID-1 agrees), but ∂/∂y_true at the NaN entry is
    0, not NaN: tf.clip_by_value's gradient is 0 where the comparison fails."""
    o = outcomes(ref)["nan_target"]
    assert np.isnan(o.value[0])
    exp = evaluate(CASES["nan_target"])
    assert np.isnan(exp.grads["target"][0, 0]) and o.grads["target"][0, 0] == 0.0


@pytest.mark.parametrize("ref", [K3_FN, K2])
def test_at_epsilon_is_inside_the_clip_interval(ref):
    """Entries exactly 1e-7 are kept (closed interval): both points agree, gradients too."""
    c, o = CASES["at_eps"], outcomes(ref)["at_eps"]
    assert value_matches(o, c) and all(grads_match(o, c, clip_point(c.reduction)).values())


def test_float16_ratio_overflow_discrepancy():
    """float16: y_true / y_pred = 0.5 / 2**-20 overflows to inf inside the function and
    the tf_keras class (they compute in float16; KL-DTYPE-3); the exact result ~6.6 is finite.
    Keras 3's default class computes in float32 and stays finite."""
    c = CASES["f16_ratio_overflow"]
    assert np.isfinite(evaluate(c).value_in_dtype).all()
    for ref in (K3_FN, K2, K3_DTYPE):
        assert np.isinf(outcomes(ref)[c.label].value).any(), ref
    assert np.isfinite(outcomes(K3)[c.label].value).all()


# ----------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("ref", CLASSES + [K3_FN])
def test_one_distribution_and_rank3(ref):
    out = outcomes(ref)
    bd = "float32" if ref == K3 else None
    for k in [x for x in out if x.startswith("vector_1d/") or x.startswith("rank3/")]:
        c, o = CASES[k], out[k]
        ok(o, c)
        assert value_matches(o, c, bound_dtype=bd), (k, o.value, o.shape)


def test_keras3_empty_batch_keeps_shape_discrepancy():
    """Keras 3 returns the (0,) per-distribution losses unreduced for an empty batch
    (reduce_values skips shape (0,)); canonical sum is 0-D 0 (KL-EMPTY-1).  tf_keras
    reduces to a 0-D 0."""
    k3, k2 = outcomes(K3), outcomes(K2)
    for red in ("sum", "distribution_mean"):
        c = CASES[f"empty_batch/{red}"]
        assert evaluate(c).value.shape == ()
        assert tuple(k3[c.label].shape) == (0,), red
        assert tuple(k2[c.label].shape) == (), red
    assert value_matches(k2["empty_batch/sum"], CASES["empty_batch/sum"])


# ----------------------------------------------------------------------------- declarations
def test_declarations_and_known_files_load():
    from klconform.adapters.keras_kldivergence import KerasKLDivergenceFn
    from klconform.adapters.tf_keras_kldivergence import TfKerasKLDivergence
    c = CASES["zero_target/float64"]
    assert KerasKLDivergenceFn().documented(c) == clip_point("distribution")
    assert KerasKLDivergence().documented(c) == Point("distribution", weight_level="distribution")
    assert TfKerasKLDivergence().capabilities().reductions == frozenset(CLASS_REDUCTIONS)
    for name in ("keras.KLDivergence", "keras.kl_divergence", "tf_keras.KLDivergence"):
        assert records.load(name), name


def test_unsupported_cases_say_why():
    from klconform.adapters.keras_kldivergence import KerasKLDivergenceFn
    a = KerasKLDivergenceFn()
    lp = Case(np.log(P), np.log(Q), target_kind="logprob", pred_kind="logprob", reduction="distribution")
    o = a.evaluate(lp)
    assert o.status == "unsupported" and "probabilities" in o.error_message


def test_sample_weight_varying_along_classes_is_unsupported():
    """Element-level weights (varying along the class axis) have no Keras spelling."""
    c = case("sw_elementwise", P, Q, sample_weight=[[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
    o = KerasKLDivergence().evaluate(c)
    assert o.status == "unsupported" and "class axis" in o.error_message
    c2 = case("sw_constant_rows", P, Q, sample_weight=[[2.0, 2.0, 2.0], [0.5, 0.5, 0.5]])
    assert keras_sample_weight(c2).tolist() == [2.0, 0.5]


# ----------------------------------------------------------------------------- inputs in other dtypes (KL-DTYPE-4)
def test_mixed_input_dtypes_and_the_dtype_argument():
    """KL-DTYPE-4: keras.losses.kl_divergence computes in y_pred's dtype (float32 y_pred with
    float64 y_true -> float32; record keras-fn-mixed-dtypes-in-pred-dtype); the class with
    ``dtype=`` computes in that dtype whatever the inputs' ("cast"): float32 inputs asked in
    float64 are exact within the float64 bound, asked in float16 within the float16 bound."""
    from adapter_checks import assert_within
    from klconform.reference.dtypes import promote
    p, q = np.array([[0.25, 0.75], [0.5, 0.5]]), np.array([[0.5, 0.5], [0.125, 0.875]])

    def case(tdt, pdt, dtype=None, red="distribution"):
        return Case(target=round_to(p, tdt), pred=round_to(q, pdt), dtype=dtype or promote(tdt, pdt),
                    target_dtype=tdt, pred_dtype=pdt, target_kind="prob", pred_kind="prob", reduction=red)

    mixed = case("float64", "float32")
    (o,) = run_cases("klconform.adapters.keras_kldivergence:KerasKLDivergenceFn", [mixed])
    assert o.status == "ok" and o.dtype == "float32"
    e = evaluate(mixed)
    assert_within(o.value, e.value, evaluate(case("float32", "float32")).bound * 4, "kl_divergence mixed")
    finer, coarser = case("float32", "float32", "float64", "sum"), case("float32", "float32", "float16", "sum")
    assert finer.dtype_form == coarser.dtype_form == "cast"
    outcomes = run_cases("klconform.adapters.keras_kldivergence:KerasKLDivergenceDtypeArg", [finer, coarser])
    for c, o in zip((finer, coarser), outcomes):
        assert o.status == "ok" and o.dtype == c.dtype, o
        e = evaluate(c)
        assert_within(o.value, e.value, e.bound, f"dtype={c.dtype}")
        assert o.grad_dtypes == {"pred": "float32", "target": "float32"}


SHARING_PROBE = r"""
import json
import numpy as np
from klconform._worker_remote import SharedPayloads as Mapped, case_decoder
from klconform.case import Case, ReceivedCase
from klconform.reference.dtypes import from_bits_carried
from klconform.workers import SHARED_PAYLOAD_BYTES, SharedPayloads
from klconform.adapters.keras_kldivergence import import_tensorflow, tf_input

tf = import_tensorflow()
n = SHARED_PAYLOAD_BYTES // 4 + 1024           # float32 payloads that go through a memory file
rng = np.random.default_rng(0)
p, q = (rng.dirichlet(np.ones(n))[None, :].astype(np.float32).astype(float) for _ in range(2))
case = Case(target=p, pred=q, dtype="float32", pred_kind="prob", reduction="sum", grad=False)
wire, batch = case.to_wire(), SharedPayloads()
for side in ("target", "pred"):
    wire[side] = batch.put((case.digest, side), wire[side])
report = {}
with Mapped() as mapped:
    received = case_decoder(ReceivedCase, from_bits_carried)(mapped.attach([wire])[0])
    for side in ("target", "pred"):
        t = tf_input(tf, received, side)
        equal = bool(np.array_equal(t.numpy(), received.sent_values(side)))
        received.private_view(side)[0, 0] = -1.0     # Tensor.numpy() copies: sharing is seen by writing
        report[side] = {"shares": float(t[0, 0]) == -1.0, "equal": equal, "dtype": t.dtype.name,
                        "private_view_in_process": case.private_view(side) is not None}
        del t
batch.close()
print(json.dumps(report))
"""


def test_large_received_inputs_are_shared_with_tensorflow_not_copied():
    """In a worker, a large payload's inputs become TF tensors over the received memory
    (``tf_input``: DLPack on ``Case.private_view``; ``tf.constant`` would copy 13 ms per
    32 MiB), with the same values; a case built in-process has no private view (a copy)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path
    from klconform.workers import SharedPayloads
    if not SharedPayloads.available():
        pytest.skip("no memfd here: large payloads take the pipe")
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", SHARING_PROBE], cwd=root, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, PYTHONPATH=str(root), TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    for side in ("target", "pred"):
        assert report[side] == {"shares": True, "equal": True, "dtype": "float32",
                                "private_view_in_process": False}, side
