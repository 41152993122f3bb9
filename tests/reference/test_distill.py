"""reference/distill.py (SPEC.md §12) against the clause text and the mpmath oracle.

Expected values come from the SPEC's own figures (hand-computed), from closed forms, or
from ``_mpdistill`` (60-digit mpmath written from the clauses; its gradients by numerical
differentiation), never from reference/distill.py itself.
"""
import math

import mpmath as mp
import numpy as np
import pytest

from klconform.reference import distill as D
from klconform.reference import UndefinedCase
from klconform.reference.oracle import round_to_float64
from klconform.reference.spec import clause_text

import _mpdistill as mpd

TEACHER = np.log([[0.25, 0.75]])
STUDENT = np.log([[0.5, 0.5]])
KL_FWD = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)        # 0.130812...


def one(point_kw=None, **case_kw):
    case_kw.setdefault("student", STUDENT)
    case_kw.setdefault("teacher", TEACHER)
    case_kw.setdefault("dtype", "float64")
    case = D.DistillCase(**case_kw)
    point = None if point_kw is None else D.DistillPoint(**{"reduction": case.reduction, **point_kw})
    return D.evaluate(case, point)


def rand_case(seed, shape=(2, 3, 5), spread=3.0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    s = (rng.standard_normal(shape) * spread).astype(dtype).astype(np.float64)
    t = (rng.standard_normal(shape) * spread).astype(dtype).astype(np.float64)
    return s, t


def assert_oracle(got, want, bound64):
    """|got − want| within max(4 ulp, B_float64/16) (the reference's accuracy claim)."""
    got = np.atleast_1d(np.asarray(got, dtype=np.float64))
    want = np.atleast_1d(np.asarray(want, dtype=object))
    b = np.broadcast_to(np.atleast_1d(bound64), got.shape)
    for g, w, bb in zip(got.ravel(), want.ravel(), b.ravel()):
        w64 = round_to_float64(w)
        if math.isnan(w64):
            assert math.isnan(g)
            continue
        tol = max(4 * math.ulp(w64), bb / 16)
        assert abs(g - w64) <= tol, (g, w64, tol)


# ----------------------------------------------------------------------------- the SPEC's figures
def test_spec_figures_forward_ce_and_jsd_ends():
    """KL-DISTILL-FWD KL-DISTILL-CE KL-DISTILL-JSD KL-DISTILL-JSD-ENDS: teacher [0.25, 0.75],
    student [0.5, 0.5]: KL 0.130812, cross-entropy log 2, JSD(1e-3) 0.000131 while the
    endpoint member gives the KL at β = 0."""
    assert float(one().value) == pytest.approx(KL_FWD, rel=1e-15)
    assert f"{KL_FWD:.6f}" == "0.130812" and "0.130812" in clause_text("KL-DISTILL-JSD-ENDS")
    ce = one({"divergence": "forward", "cross_entropy": True})
    assert float(ce.value) == pytest.approx(math.log(2), rel=1e-15) and "0.693147" in clause_text("KL-DISTILL-CE")
    small = one({"divergence": "jsd", "beta": 1e-3})
    assert f"{float(small.value):.6f}" == "0.000131"
    assert float(one({"divergence": "jsd", "beta": 0.0}).value) == 0.0
    ends = one({"divergence": "jsd", "beta": 0.0, "jsd_endpoints": "kl"})
    assert float(ends.value) == pytest.approx(KL_FWD, rel=1e-15) and "KL-DISTILL-JSD-ENDS" in ends.clauses
    rev_end = one({"divergence": "jsd", "beta": 1.0, "jsd_endpoints": "kl"})
    assert float(rev_end.value) == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(2 / 3), rel=1e-14)


def test_jsd_is_continuous_at_both_ends():
    """KL-DISTILL-JSD: d(β)/β → KL(p‖q) as β → 0 and d(β)/(1−β) → KL(q‖p) as β → 1; the
    canonical ends are 0 with zero gradients."""
    rev = 0.5 * math.log(2) + 0.5 * math.log(2 / 3)
    for b in (1e-4, 1e-6):
        assert float(one({"divergence": "jsd", "beta": b}).value) / b == pytest.approx(KL_FWD, rel=10 * b)
        assert float(one({"divergence": "jsd", "beta": 1 - b}).value) / b == pytest.approx(rev, rel=10 * b)
    for b in (0.0, 1.0):
        e = one({"divergence": "jsd", "beta": b})
        assert float(e.value) == 0.0 and not e.grads["pred"].any() and not e.grads["target"].any()
    half = one(divergence="jsd")
    assert 0 < float(half.value) <= math.log(2)


def test_cross_entropy_student_gradient_equals_the_kl_one():
    """KL-DISTILL-CE KL-DISTILL-GRAD: same student gradient, different values and teacher
    gradients (the teacher's entropy)."""
    s, t = rand_case(1)
    kl = D.evaluate(D.DistillCase(student=s, teacher=t))
    ce = D.evaluate(D.DistillCase(student=s, teacher=t), D.DistillPoint("forward", "distribution_mean", cross_entropy=True))
    np.testing.assert_allclose(ce.grads["pred"], kl.grads["pred"], rtol=1e-15, atol=1e-18)
    assert float(ce.value) > float(kl.value)
    assert not np.allclose(ce.grads["target"], kl.grads["target"])


# ----------------------------------------------------------------------------- the oracle
CASES = [
    dict(divergence="forward"),
    dict(divergence="reverse", reduction="sum"),
    dict(divergence="symmetric", param=0.3, reduction="batchmean"),
    dict(divergence="jsd", param=0.5),
    dict(divergence="jsd", param=0.1, temperature=2.0, temperature_scale="tau2"),
    dict(divergence="forward", temperature=0.5, reduction="mean"),
    dict(divergence="reverse", temperature=4.0, reduction="distribution"),
    dict(divergence="forward", reduction="none", temperature=3.0),
]
ORACLE_KW = {"param": "param", "temperature": "tau", "temperature_scale": "tau2"}


def _oracle_kw(case: D.DistillCase, point: D.DistillPoint):
    param = point.ratio if point.divergence == "symmetric" else point.beta
    kw = dict(divergence=point.divergence, param=param, cross_entropy=point.cross_entropy, tau=case.temperature,
              tau2=point.temperature_scale == "tau2", mask=case.mask, reduction=point.reduction,
              empty_mean=point.empty_mean, chunks=case.chunks, chunk_mean=point.chunk_mean)
    return kw


@pytest.mark.parametrize("kw", CASES, ids=lambda k: "-".join(f"{v}" for v in k.values()))
def test_values_agree_with_the_oracle(kw):
    """KL-DISTILL-TEMP KL-DISTILL-TAU2 KL-DISTILL-RED KL-DISTILL-SYM KL-DISTILL-REV: values
    at 60 digits, with and without a mask."""
    s, t = rand_case(len(str(kw)))
    for mask in (None, np.array([[True, False, True], [False, True, True]])):
        case = D.DistillCase(student=s, teacher=t, mask=mask, dtype="float64", **kw)
        e = D.evaluate(case)
        want = mpd.outputs(s, t, **_oracle_kw(case, D.canonical(case)))
        if kw.get("reduction") == "none":
            # elementwise terms: the oracle's per-token sums are enough (their sum is d_i)
            assert_oracle(e.value.sum(axis=-1), mpd.outputs(s, t, **{**_oracle_kw(case, D.canonical(case)),
                                                                     "reduction": "distribution"}),
                          e.bound.sum(axis=-1))
        else:
            assert_oracle(e.value, want, e.bound)


@pytest.mark.parametrize("kw", CASES[:6], ids=lambda k: "-".join(f"{v}" for v in k.values()))
def test_gradients_agree_with_numerical_differentiation(kw):
    """KL-DISTILL-GRAD: both sides' gradients against mpmath's numerical derivative of
    Σ(output) (the formulas are not repeated in the oracle)."""
    s, t = rand_case(7 + len(kw), shape=(1, 2, 3))
    mask = np.array([[True, False]])
    case = D.DistillCase(student=s, teacher=t, mask=mask, dtype="float64", **kw)
    e = D.evaluate(case)
    okw = _oracle_kw(case, D.canonical(case))
    for side in ("pred", "target"):
        want = mpd.gradient(s, t, side, **okw)
        assert_oracle(e.grads[side], want, e.grad_bounds[side])
        assert not e.grads[side][0, 1].any()        # the ignored token (KL-DISTILL-MASK)


def test_cross_entropy_and_jsd_gradients_against_numerical_differentiation():
    """KL-DISTILL-GRAD at the cross_entropy point and a JSD near an end."""
    s, t = rand_case(11, shape=(2, 4))
    case = D.DistillCase(student=s, teacher=t, dtype="float64")
    for point, okw in [(D.DistillPoint("forward", "distribution_mean", cross_entropy=True),
                        dict(divergence="forward", cross_entropy=True)),
                       (D.DistillPoint("symmetric", "sum", ratio=0.3, cross_entropy=True),
                        dict(divergence="symmetric", param=0.3, cross_entropy=True, reduction="sum")),
                       (D.DistillPoint("jsd", "distribution_mean", beta=0.02), dict(divergence="jsd", param=0.02))]:
        e = D.evaluate(case, point)
        for side in ("pred", "target"):
            assert_oracle(e.grads[side], mpd.gradient(s, t, side, **okw), e.grad_bounds[side])


# ----------------------------------------------------------------------------- mask, empty, chunks
def test_mask_removes_tokens_whatever_their_logits():
    """KL-DISTILL-MASK: NaN/inf logits of an ignored token never enter; the divisor counts
    kept tokens; labels with ignore_index -100 make the mask."""
    s, t = rand_case(3, shape=(2, 4, 6))
    labels = np.array([[5, -100, 2, -100], [1, 1, -100, 0]])
    s2 = s.copy()
    s2[0, 1, 2] = np.nan
    t2 = t.copy()
    t2[1, 2, :] = np.inf
    a = D.evaluate(D.DistillCase.from_labels(s2, t2, labels, dtype="float64"))
    keep = labels != -100
    b = D.evaluate(D.DistillCase(student=s[keep][None], teacher=t[keep][None], dtype="float64"))
    assert float(a.value) == pytest.approx(float(b.value), rel=1e-15)
    assert np.all(np.isfinite(a.grads["pred"])) and not a.grads["pred"][~keep].any()
    assert "KL-DISTILL-MASK" in a.clauses
    assert mp.almosteq(mpd.outputs(s, t, mask=keep), float(a.value), 1e-14)


def test_empty_means_are_nan_or_zero():
    """KL-DISTILL-EMPTY: K = 0 gives NaN (0/0) for distribution_mean and mean, 0 for sum and
    batchmean; the empty_mean="zero" member gives 0 with zero gradients."""
    s, t = rand_case(4)
    none = np.zeros((2, 3), bool)
    for red, want in [("distribution_mean", "nan"), ("mean", "nan"), ("sum", 0.0), ("batchmean", 0.0)]:
        e = D.evaluate(D.DistillCase(student=s, teacher=t, mask=none, reduction=red))
        assert (np.isnan(e.value) if want == "nan" else float(e.value) == want)
    z = D.evaluate(D.DistillCase(student=s, teacher=t, mask=none),
                   D.DistillPoint("forward", "distribution_mean", empty_mean="zero"))
    assert float(z.value) == 0.0 and not z.grads["pred"].any() and "KL-DISTILL-EMPTY" in z.clauses


def test_chunks_change_nothing_and_chunk_mean_averages_pieces():
    """KL-DISTILL-CHUNK KL-DISTILL-CHUNK-MEAN: passing the logits in k pieces gives the
    unchunked value; the chunk_mean member averages each piece's token mean over k, an empty
    piece counting 0, and equals the token mean when the pieces hold equal kept counts."""
    s, t = rand_case(5, shape=(2, 5, 4))
    mask = np.array([[1, 1, 0, 0, 1], [1, 0, 0, 0, 1]], bool)
    whole = D.evaluate(D.DistillCase(student=s, teacher=t, mask=mask, dtype="float64"))
    chunked = D.DistillCase(student=s, teacher=t, mask=mask, chunks=3, dtype="float64")
    assert float(D.evaluate(chunked).value) == float(whole.value)
    cm = D.DistillPoint("forward", "distribution_mean", chunk_mean=True)
    got = D.evaluate(chunked, cm)
    # torch.chunk(5 positions, 3) = pieces [0:2], [2:4], [4:5]; piece 2 has no kept token
    d = D.evaluate(D.DistillCase(student=s, teacher=t, mask=mask, reduction="distribution", dtype="float64")).value
    want = (d[:, 0:2].sum() / 3 + 0.0 + d[:, 4:5].sum() / 2) / 3
    assert float(got.value) == pytest.approx(want, rel=1e-14)
    assert_oracle(got.value, mpd.outputs(s, t, mask=mask, chunks=3, chunk_mean=True), got.bound)
    for side in ("pred", "target"):
        assert_oracle(got.grads[side], mpd.gradient(s, t, side, mask=mask, chunks=3, chunk_mean=True),
                      got.grad_bounds[side])
    even = D.DistillCase(student=s[:, :4], teacher=t[:, :4], chunks=2, dtype="float64")
    assert float(D.evaluate(even, cm).value) == pytest.approx(float(D.evaluate(even).value), rel=1e-14)
    assert [(sl.start, sl.stop) for sl in D._pieces(5, 3)] == [(0, 2), (2, 4), (4, 5)]
    assert len(D._pieces(5, 4)) == 3          # torch.chunk gives fewer pieces than asked


# ----------------------------------------------------------------------------- special values
def test_special_logits():
    """KL-DISTILL-TEMP KL-DISTILL-FWD KL-DISTILL-REV: a −inf student logit where the teacher
    has mass gives +inf forward KL (finite student gradient); a NaN row is NaN; a −inf teacher
    logit is p = 0 (reverse KL +inf, forward finite)."""
    t = np.log([[0.25, 0.75]])
    s = np.array([[0.0, -np.inf]])
    e = D.evaluate(D.DistillCase(student=s, teacher=t, reduction="distribution", dtype="float64"))
    assert e.value.tolist() == [np.inf] and e.grads["pred"].tolist() == [[0.75, -0.75]]
    r = D.evaluate(D.DistillCase(student=t, teacher=s, divergence="reverse", reduction="distribution",
                                 dtype="float64"))
    assert r.value.tolist() == [np.inf]
    f = D.evaluate(D.DistillCase(student=t, teacher=s, reduction="distribution", dtype="float64"))
    assert f.value[0] == pytest.approx(-math.log(0.25), rel=1e-15)
    n = D.evaluate(D.DistillCase(student=np.array([[np.nan, 0.0], [0.0, 1.0]]), teacher=np.zeros((2, 2)),
                                 reduction="distribution"))
    assert np.isnan(n.value[0]) and np.isfinite(n.value[1]) and np.all(np.isnan(n.grads["pred"][0]))
    with pytest.raises(UndefinedCase, match="KL-DISTILL-TEMP"):
        D.evaluate(D.DistillCase(student=STUDENT, teacher=TEACHER, temperature=0.0, dtype="float64"))
    with pytest.raises(UndefinedCase, match="KL-DISTILL-JSD"):
        D.evaluate(D.DistillCase(student=STUDENT, teacher=TEACHER, divergence="jsd", param=1.5, dtype="float64"))
    with pytest.raises(ValueError, match="representable in bfloat16"):
        D.DistillCase(student=STUDENT, teacher=TEACHER, logits_dtype="bfloat16")


def test_temperature_scale_multiplies_values_and_gradients():
    """KL-DISTILL-TAU2: τ² on every output and gradient."""
    s, t = rand_case(6)
    a = D.evaluate(D.DistillCase(student=s, teacher=t, temperature=2.5))
    b = D.evaluate(D.DistillCase(student=s, teacher=t, temperature=2.5, temperature_scale="tau2"))
    assert float(b.value) == pytest.approx(6.25 * float(a.value), rel=1e-15)
    np.testing.assert_allclose(b.grads["pred"], 6.25 * a.grads["pred"], rtol=1e-15)


def test_family_names_and_json():
    """KL-DISTILL-FAM: points round-trip and name themselves."""
    pt = D.DistillPoint("jsd", "distribution_mean", beta=0.0, jsd_endpoints="kl", empty_mean="zero")
    assert D.DistillPoint.from_json(pt.to_json()) == pt
    assert pt.name == "jsd(0)+distribution_mean+endpoints=kl+empty_mean=zero"
    assert D.DistillPoint("forward", "sum", cross_entropy=True).name == "cross_entropy+sum"
    assert D.DistillPoint("symmetric", "sum", cross_entropy=True).name == "symmetric(0.5)+sum+cross_entropy"
    c = D.DistillCase(student=STUDENT, teacher=TEACHER, divergence="symmetric", param=0.25, temperature_scale="tau2",
                      dtype="float64")
    assert D.canonical(c) == D.DistillPoint("symmetric", "distribution_mean", ratio=0.25, temperature_scale="tau2")


# ----------------------------------------------------------------------------- dtypes and bounds
def _float32_loss(s, t, tau, divergence):
    """A straightforward float32 implementation (what a framework does after upcasting)."""
    x = (s / tau).astype(np.float32)
    y = (t / tau).astype(np.float32)
    lq = x - x.max(-1, keepdims=True)
    lq = lq - np.log(np.exp(lq).sum(-1, keepdims=True))
    lp = y - y.max(-1, keepdims=True)
    lp = lp - np.log(np.exp(lp).sum(-1, keepdims=True))
    p, q = np.exp(lp), np.exp(lq)
    if divergence == "forward":
        d = (p * (lp - lq)).sum(-1)
    else:
        d = (q * (lq - lp)).sum(-1)
    return np.float32(d.sum() / np.float32(d.size))


@pytest.mark.parametrize("V,divergence,tau", [(32000, "forward", 1.0), (50257, "reverse", 2.0), (128, "forward", 0.5)])
def test_bound_holds_a_float32_implementation_and_is_not_vacuous(V, divergence, tau):
    """KL-DISTILL-BOUND KL-DISTILL-DTYPE: bfloat16 logits, the result in float32 (the cast
    form): a float32 log-softmax implementation lies inside the bound, and the bound is
    below 1 % of the value; large cases are computed in float64."""
    rng = np.random.default_rng(V)
    s = D.np.asarray(rng.standard_normal((4, V)) * 2, dtype=np.float32)
    t = (s + rng.standard_normal((4, V)).astype(np.float32) * 0.5).astype(np.float32)
    case = D.DistillCase(student=s.astype(np.float64), teacher=t.astype(np.float64), divergence=divergence,
                         temperature=tau, dtype="float32", grad=False)
    e = D.evaluate(case)
    impl = float(_float32_loss(s, t, tau, divergence))
    assert abs(impl - float(e.value)) <= float(e.bound), (impl, float(e.value), float(e.bound))
    assert float(e.bound) < 0.01 * float(e.value)
    assert D.working_dtype(case) is (np.float64 if s.size > D.BIG else D.LD)


def test_token_reductions_have_the_documented_divisors():
    """KL-DISTILL-RED KL-DISTILL-CASE: sum / K, / (K·V), / S[0] on one masked case."""
    s, t = rand_case(8, shape=(2, 3, 4))
    mask = np.array([[1, 0, 1], [1, 1, 0]], bool)
    base = D.DistillCase(student=s, teacher=t, mask=mask, reduction="sum", dtype="float64")
    total = float(D.evaluate(base).value)
    for red, div in [("distribution_mean", 4), ("mean", 16), ("batchmean", 2)]:
        v = float(D.evaluate(D.DistillCase(student=s, teacher=t, mask=mask, reduction=red, dtype="float64")).value)
        assert v == pytest.approx(total / div, rel=1e-15)
    per = D.evaluate(D.DistillCase(student=s, teacher=t, mask=mask, reduction="distribution", dtype="float64"))
    assert per.value.shape == (2, 3) and per.value[0, 1] == 0.0
    none = D.evaluate(D.DistillCase(student=s, teacher=t, mask=mask, reduction="none", dtype="float64"))
    assert none.value.shape == (2, 3, 4)
    np.testing.assert_allclose(none.value.sum(-1), per.value, rtol=1e-14)
