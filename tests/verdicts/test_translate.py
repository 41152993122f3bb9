"""translate: conversions are recorded, values exact in the dtype, inexpressible cases refused."""
import numpy as np

from klconform.adapters.base import Capabilities
from klconform.case import Case
from klconform.reference.dtypes import representable
from klconform.translate import translate, why_not

PROB_ONLY = Capabilities(dtypes=frozenset({"float32", "float64"}), reductions=frozenset({"sum", "batchmean"}),
                         pred_kinds=frozenset({"prob"}), target_kinds=frozenset({"prob"}))
LOGPROB = Capabilities(dtypes=frozenset({"float32"}), reductions=frozenset({"sum"}),
                       pred_kinds=frozenset({"logprob"}), target_kinds=frozenset({"prob", "logprob"}))


def _case(**kw):
    base = dict(target=np.array([[0.25, 0.75]]), pred=np.log(np.array([[0.5, 0.5]])), dtype="float64",
                pred_kind="logprob", reduction="sum")
    base.update(kw)
    return Case(**base)


def test_logprob_to_prob_is_exp_rounded_and_recorded():
    t = translate(_case(), PROB_ONLY)
    assert t.case.pred_kind == "prob"
    np.testing.assert_allclose(t.case.pred, [[0.5, 0.5]], rtol=1e-15)
    assert any(c.what == "pred" and "exp" in c.how for c in t.conversions)
    assert t.to_json()["canonical"] == t.canonical.digest


def test_prob_to_logprob_rounds_into_dtype():
    c = Case(target=np.array([[0.25, 0.75]]), pred=np.array([[0.1, 0.9]], dtype=np.float32).astype(float),
             dtype="float32", pred_kind="prob", reduction="sum")
    t = translate(c, LOGPROB)
    assert t.case.pred_kind == "logprob" and representable(t.case.pred, "float32")


def test_unchanged_when_expressible():
    c = _case(pred_kind="prob", pred=np.array([[0.5, 0.5]]), grad=False)
    t = translate(c, PROB_ONLY)
    assert t.case is c and t.conversions == ()


def test_inexpressible_cases_are_refused_with_a_reason():
    assert translate(_case(reduction="mean"), PROB_ONLY) is None
    assert "reduction" in why_not(_case(reduction="mean"), PROB_ONLY)
    assert "dtype" in why_not(_case(dtype="float64"), LOGPROB)


def test_broadcast_and_axes_rewritten_for_plain_apis():
    c = Case(target=np.array([[0.5, 0.5]]), pred=np.log(np.array([[0.5, 0.5], [0.25, 0.75]])),
             reduction="batchmean", dtype="float64")
    t = translate(c, PROB_ONLY)
    assert t.case.target.shape == t.case.pred.shape == (2, 2)
    c2 = Case(target=np.full((2, 3), 0.5), pred=np.full((2, 3), 0.25), pred_kind="prob",
              reduction="batchmean", class_axis=0, batch_axis=1)
    t2 = translate(c2, PROB_ONLY)
    assert t2.case.target.shape == (3, 2) and t2.case.class_axis == -1 and t2.case.batch_axis == 0


# ----------------------------------------------------------------------------- exact values
# Translated values are the exact result rounded once into the dtype (klconform.exactmath),
# checked against an independent oracle: mpmath at 600 bits, rounded to the dtype with
# integer arithmetic (Fraction) written here from the IEEE formats' parameters.
import math  # noqa: E402
import sys  # noqa: E402
from fractions import Fraction  # noqa: E402
from pathlib import Path  # noqa: E402

import mpmath  # noqa: E402
import pytest  # noqa: E402

from klconform import exactmath  # noqa: E402
from klconform.translate import convert_encoding  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sent_digests import NudgedNumpy  # noqa: E402

DTYPES = ("float16", "bfloat16", "float32", "float64")
_FORMAT = {"float16": (11, -14, 15), "bfloat16": (8, -126, 127), "float32": (24, -126, 127),
           "float64": (53, -1022, 1023)}   # significand bits, emin, emax


def _oracle_round(v, dtype: str) -> float:
    """The real ``v`` (an mpf) rounded to nearest-even in ``dtype``, by integers."""
    p, emin, emax = _FORMAT[dtype]
    v = mpmath.mpf(v)
    man, exp = v.man_exp                                      # |v| = man * 2**exp
    if man == 0:
        return 0.0
    a = Fraction(abs(int(man))) * Fraction(2) ** int(exp)
    e = a.numerator.bit_length() - a.denominator.bit_length()
    if Fraction(2) ** e > a:
        e -= 1
    ulp = Fraction(2) ** (max(e, emin) - p + 1)
    r = round(a / ulp) * ulp                                  # Fraction: ties to even
    top = (2 - Fraction(2) ** (1 - p)) * Fraction(2) ** emax
    return math.copysign(math.inf if r > top else float(r), -1.0 if v < 0 else 1.0)


def _bits(a) -> list[int]:
    return np.asarray(a, dtype=np.float64).view(np.uint64).ravel().tolist()


def _values(dtype: str, kind: str) -> np.ndarray:
    """Values of ``dtype`` to take the log (kind "prob") or exp ("logprob") of: random,
    subnormal, next to 1 / 0, and near where the results overflow or go subnormal."""
    rng = np.random.default_rng(list(DTYPES).index(dtype) + (10 if kind == "prob" else 20))
    p, emin, _ = _FORMAT[dtype]
    if kind == "prob":
        raw = np.concatenate([rng.random(120), rng.random(30) * 2.0 ** (emin - p + 8),
                              1 - np.arange(1, 9) * 2.0 ** -p, 1 + np.arange(1, 5) * 2.0 ** (1 - p),
                              rng.random(20) * 100, [2.0 ** (emin - p + 1), 0.5, 2.0, 4.0]])
    else:
        big = math.log(float(_oracle_round(mpmath.mpf(2) ** 128, dtype)) if dtype == "bfloat16" else
                       (65504.0 if dtype == "float16" else float(np.finfo(dtype).max)))
        raw = np.concatenate([-rng.random(100) * 30, -rng.random(20) * 2.0 ** -20, rng.random(20) * 5,
                              -big * (1.0 + rng.random(20) * 0.05), big * (1 + (rng.random(10) - 0.5) * 0.01),
                              -np.arange(1, 6) * 2.0 ** -p, [-1.0, 1.0, 1e-30]])
    x = np.unique(exactmath.round_nearest(raw, dtype))
    return x[np.isfinite(x)]


@pytest.mark.parametrize("dtype", DTYPES)
def test_log_and_exp_are_the_exact_values_rounded_once(dtype):
    mpmath.mp.prec = 600
    try:
        for kind, fn, ref in (("prob", exactmath.log, mpmath.log), ("logprob", exactmath.exp, mpmath.exp)):
            x = _values(dtype, kind)
            want = [_oracle_round(ref(mpmath.mpf(float(v))), dtype) for v in x]
            got = fn(x, dtype)
            bad = [(float(v), g, w) for v, g, w in zip(x, got.tolist(), want) if _bits(g) != _bits(w)]
            assert not bad, f"{fn.__name__} {dtype}: {len(bad)} of {len(x)} differ, e.g. {bad[:3]}"
    finally:
        mpmath.mp.prec = 53


def _oracle_softmax(row, dtype: str, as_log: bool) -> list[float]:
    xs = [mpmath.mpf(float(v)) for v in row]
    m = max(xs)
    k = xs.index(m)
    l1 = mpmath.log1p(mpmath.fsum(mpmath.exp(x - m) for j, x in enumerate(xs) if j != k))
    lsm = [(x - m) - l1 for x in xs]                 # (x - m) exact: 600 bits hold any two floats' difference
    return [_oracle_round(v if as_log else mpmath.exp(v), dtype) for v in lsm]


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_and_log_softmax_are_the_exact_values_rounded_once(dtype):
    rng = np.random.default_rng(5 + list(DTYPES).index(dtype))
    rows = [rng.normal(size=n) * scale for n in (1, 2, 3, 5) for scale in (0.1, 1.0, 10.0, 100.0)]
    rows += [np.array([0.0, -100.0, 1.0]), np.array([5.0, 5.0]), np.array([3.0, -60000.0]),
             np.array([0.0, -1e4, -1e4 + 1]), np.array([2.0 ** -20, 0.0, -(2.0 ** -20)])]
    mpmath.mp.prec = 600
    try:
        for row in rows:
            row = exactmath.round_nearest(row, dtype)
            for as_log in (False, True):
                want = _oracle_softmax(row, dtype, as_log)
                got = exactmath.softmax(row.reshape(1, -1), -1, dtype, as_log=as_log)
                assert _bits(got) == _bits(want), (dtype, as_log, row.tolist(), got.tolist(), want)
    finally:
        mpmath.mp.prec = 53


def test_a_tiny_negative_log_softmax_rounds_to_minus_zero():
    # log_softmax of the largest logit of [0, -100] is -ln(1 + e**-100) = -3.7e-44: float64
    # holds it, float16 rounds it to -0.0 (the sign of the exact value), not +0.0
    out = {dt: exactmath.softmax(np.array([0.0, -100.0]), -1, dt, as_log=True)[0] for dt in DTYPES}
    assert out["float64"] == -math.exp(-100) * (1 - math.exp(-100) / 2)
    assert out["float16"] == 0 and math.copysign(1, out["float16"]) == -1


def test_bfloat16_rounding_is_one_rounding_from_float64():
    # 1 + 2**-8 + 2**-30 is just above bfloat16's midpoint between 1 and 1 + 2**-7: nearest is
    # 1 + 2**-7; through float32 (1 + 2**-8 exactly, a tie) it would round to even, 1
    assert exactmath.round_nearest([1 + 2.0 ** -8 + 2.0 ** -30], "bfloat16")[0] == 1 + 2.0 ** -7
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(size=300) * 10.0 ** rng.integers(-40, 39, size=300),
                        rng.random(50) * 2.0 ** -126, [3.3961e38, 3.40e38, -3.4e38]])
    assert _bits(exactmath.round_nearest(x, "bfloat16")) == _bits([_oracle_round(mpmath.mpf(v), "bfloat16")
                                                                   for v in x.tolist()])


def test_special_values_follow_fixed_rules_not_the_platform():
    payload = np.uint64(0xFFF4000000000123).view(np.float64)        # a signalling NaN with a payload
    x = np.array([1.0, 0.0, -0.0, -2.0, -np.inf, np.inf, payload])
    assert _bits(exactmath.log(x, "float64")) == _bits([0.0, -np.inf, -np.inf, np.nan, np.nan, np.inf, 0.0]
                                                       )[:6] + [0xFFFC000000000123]
    assert _bits(exactmath.exp(np.array([0.0, -0.0, -np.inf, np.inf, payload]), "float64")) == \
        _bits([1.0, 1.0, 0.0, np.inf]) + [0xFFFC000000000123]
    inf_minus_inf = 0xFFF8000000000000
    assert _bits(exactmath.softmax(np.array([np.inf, 1.0, -np.inf]), 0, "float64", as_log=True)) == \
        [inf_minus_inf] + _bits([-np.inf, -np.inf])
    assert _bits(exactmath.softmax(np.array([-np.inf, -np.inf]), 0, "float64")) == [inf_minus_inf] * 2
    assert _bits(exactmath.softmax(np.array([1.0, payload, np.nan]), 0, "float64")) == \
        [0xFFFC000000000123, 0xFFFC000000000123, 0x7FF8000000000000]


@pytest.mark.parametrize("dtype", DTYPES)
def test_translated_values_do_not_depend_on_numpys_last_bits(dtype, monkeypatch):
    """What another numpy build's exp/log (a few ulps off, other NaN bits) would make of the
    same conversions: the same bytes."""
    cases = [(_values(dtype, "prob"), "prob", "logprob"), (_values(dtype, "logprob"), "logprob", "prob"),
             (np.random.default_rng(1).normal(size=(40, 5)) * 8, "logits", "prob"),
             (np.random.default_rng(2).normal(size=(40, 5)) * 8, "logits", "logprob")]
    cases = [(exactmath.round_nearest(v, dtype), s, d) for v, s, d in cases]
    plain = [_bits(convert_encoding(v, s, d, dtype, -1)) for v, s, d in cases]
    for clear in (exactmath._log1, exactmath._exp1, exactmath._softmax_row):
        clear.cache_clear()
    nudged = NudgedNumpy(seed=list(DTYPES).index(dtype))
    monkeypatch.setattr(exactmath, "np", nudged)
    assert [_bits(convert_encoding(v, s, d, dtype, -1)) for v, s, d in cases] == plain
    assert nudged.calls > 0


def _oracle_on_grid(v, step: float) -> float:
    man, exp = v.man_exp
    q = Fraction(abs(int(man))) * Fraction(2) ** int(exp) * (-1 if v < 0 else 1)
    return float(round(q / Fraction(step)) * Fraction(step))


@pytest.mark.parametrize("fast_rel", [exactmath.FAST_REL, 2.0 ** -6])
def test_large_cases_grid_values_are_exact(fast_rel, monkeypatch):
    """klconform.large's two transcendental steps: a row's log-sum-exp and a sparse row's
    log-probabilities, rounded to the logits' grid.  With a loose fast-path bound
    (2**-6) nearly every value is decided by the decimal fallback instead: the same."""
    monkeypatch.setattr(exactmath, "FAST_REL", fast_rel)
    step = 2.0 ** -13
    rng = np.random.default_rng(11)
    z = np.round(rng.normal(size=(6, 40)) * 4 / step) * step
    p = rng.random(60) ** 3
    mpmath.mp.prec = 400
    try:
        want_lse = [_oracle_on_grid(mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(float(v))) for v in row)), step)
                    for row in z]
        want_log = [_oracle_on_grid(mpmath.log(mpmath.mpf(float(v))), step) for v in p]
    finally:
        mpmath.mp.prec = 53
    assert exactmath.logsumexp_on_grid(z, step).ravel().tolist() == want_lse
    assert exactmath.log_on_grid(p, step).tolist() == want_log
