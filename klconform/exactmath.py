"""Correctly rounded log, exp and softmax for the values the harness derives from a case.

A case is known by the digest of its bytes (baselines, records and reports are keyed by
it), so every value computed from a case — translation between encodings
(:mod:`klconform.translate`), the rows :mod:`klconform.large` generates — must be the same
bits on every machine and numpy version.  numpy's ``exp``/``log`` are not: numpy 2's SIMD
versions differ from numpy 1.26's in last bits.  Each function here returns the exact
mathematical result rounded once, to nearest-even, into the dtype asked for:

* a fast path keeps numpy's float64 result where a bound far above any implementation's
  error (:data:`FAST_REL`, 2**-40 relative: thousands of float64 ulps) still rounds to a
  single value of the dtype — for float16, bfloat16 and float32 results, nearly always;
* everything else (float64 results, the rare value near a rounding boundary) is computed
  with Python's ``decimal``, whose ``ln``/``exp`` are correctly rounded to the context's
  precision, at increasing precision until the interval it guarantees rounds to a single
  value (Ziv's strategy); float64's hardest cases need about 2**-120, the second step.

Rounding goes straight from the exact value to the dtype (never through float64 then the
dtype, which could round twice).  What is not a rounding question is fixed by rule, the
same on every platform: ``log 1 = +0``, ``exp ±0 = 1``, ``log ±0 = -inf``, ``log`` of a
negative number is the quiet NaN ``0x7ff8…``, a NaN argument comes back quieted with its
sign and payload, and softmax's ``inf - inf`` is the NaN ``0xfff8…`` (x86's default NaN,
what numpy 1.26 gave there).
"""
from __future__ import annotations

import decimal
import functools
import math

import numpy as np

from .reference.dtypes import FINFO, round_to

#: relative error bound assumed of numpy's float64 exp/log on the fast path (real ones are
#: within a few ulps, 2**-50); a value is kept only if every number within it rounds alike
FAST_REL = 2.0 ** -40
_PRECS = (24, 40, 80, 160, 320, 640)          # decimal digits, one Ziv step after another
_QUIET = np.uint64(0x0008000000000000)
_NEG_DEFAULT_NAN = np.uint64(0xFFF8000000000000).view(np.float64)   # inf - inf on x86
_POS_NAN = np.uint64(0x7FF8000000000000).view(np.float64)           # log of a negative
_BF16_MAX = FINFO["bfloat16"][0]
#: the smallest magnitude that rounds to infinity: the largest value plus half its ulp
_OVERFLOW = {"float16": 65504.0 + 2.0 ** 4, "bfloat16": _BF16_MAX + 2.0 ** 119,
             "float32": FINFO["float32"][0] + 2.0 ** 103}
_HUGE = 1e6     # |x| beyond which exp(x) is 0 or inf in every dtype (e**-1e6 < 2**-1075)


# ----------------------------------------------------------------------------- rounding
def round_nearest(values, dtype: str) -> np.ndarray:
    """Finite float64 ``values`` rounded once, to nearest-even, into ``dtype`` (as float64).

    float16 and float32: numpy's conversion from float64 (IEEE, one rounding).  bfloat16:
    from the float64 bits directly (the same values as ``reference.dtypes.round_to``, which
    the reference may not import from here), overflow to ±inf, subnormals on bfloat16's grid
    of 2**-133."""
    with np.errstate(over="ignore", invalid="ignore"):
        return _rn(np.asarray(values, dtype=np.float64), dtype)


def _rn(a: np.ndarray, dtype: str) -> np.ndarray:
    """:func:`round_nearest` without its errstate (callers hold one)."""
    if dtype == "float64":
        return a.copy()
    if dtype != "bfloat16":
        return a.astype(dtype).astype(np.float64)
    bits = a.view(np.uint64)
    rne = ((bits + np.uint64(0x0FFF_FFFF_FFFF) + ((bits >> np.uint64(45)) & np.uint64(1)))
           >> np.uint64(45)) << np.uint64(45)
    out = rne.view(np.float64)
    small = np.abs(a) < 2.0 ** -126
    if small.any():
        out = np.where(small, np.round(a * 2.0 ** 133) * 2.0 ** -133, out)
    return np.where(np.abs(out) > _BF16_MAX, np.copysign(np.inf, a), out)


def _same(a: float, b: float) -> bool:
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


@functools.lru_cache(maxsize=None)
def _ctx(prec: int, rounding: str = decimal.ROUND_HALF_EVEN) -> decimal.Context:
    return decimal.Context(prec=prec, rounding=rounding, Emin=decimal.MIN_EMIN, Emax=decimal.MAX_EMAX, traps=[])


def _round_decimal(d: decimal.Decimal, dtype: str) -> float:
    """``d`` rounded once, to nearest-even, into ``dtype``.  Through float64 first: every
    midpoint of a narrower dtype (and its overflow threshold) is a float64 value, so
    rounding to float64 cannot cross one and changes the result only when it lands on
    one; then the side ``d`` lies on decides."""
    f = float(d)
    if dtype == "float64":
        return f
    with np.errstate(over="ignore"):
        here = float(_rn(np.array([f]), dtype)[0])
    if not math.isfinite(f):
        return here
    side = d.compare(decimal.Decimal(f))        # -1, 0, 1: d below, at, above f
    if not math.isfinite(here):                  # f at or past the overflow threshold
        top = FINFO[dtype][0]
        return math.copysign(top, f) if abs(f) == _OVERFLOW[dtype] and side == -math.copysign(1, f) else here
    other = 2 * f - here                         # exact: the reflection of here through f
    with np.errstate(over="ignore"):
        is_value = other != here and float(_rn(np.array([other]), dtype)[0]) == other
    if not is_value or side == 0:                # f is no midpoint (or d is exactly it)
        return here
    return max(here, other) if side > 0 else min(here, other)


def _certify(r: decimal.Decimal, rel: decimal.Decimal, dtype: str) -> float | None:
    """The ``dtype`` value every real within ``rel * |r|`` of ``r`` rounds to, or None."""
    if rel:
        prec = _ctx(decimal.MAX_PREC)
        err = _ctx(8, decimal.ROUND_UP).multiply(abs(r), rel)
        lo, hi = prec.subtract(r, err), prec.add(r, err)
    else:
        lo = hi = r
    a, b = _round_decimal(lo, dtype), _round_decimal(hi, dtype)
    return a if _same(a, b) else None


def _unit(prec: int) -> decimal.Decimal:
    """A relative bound of one correctly rounded step at ``prec`` digits (half an ulp is
    at most 10**(1-prec)/2; twice that, for margin)."""
    return decimal.Decimal(10) ** (1 - prec)


# ----------------------------------------------------------------------------- elementwise
@functools.lru_cache(maxsize=1 << 16)
def _log1(x: float, dtype: str) -> float:
    """ln x for a finite x > 0, x != 1, rounded into ``dtype``."""
    d = decimal.Decimal(x)
    for p in _PRECS:
        r = _ctx(p).ln(d)
        v = _certify(r, _unit(p), dtype)
        if v is not None:
            return v
    return _round_decimal(r, dtype)     # not reached: ln of a float is never this close to a tie


@functools.lru_cache(maxsize=1 << 16)
def _exp1(x: float, dtype: str) -> float:
    """e**x for a finite x != 0, rounded into ``dtype``."""
    if x > _HUGE:
        return math.inf
    if x < -_HUGE:
        return 0.0
    d = decimal.Decimal(x)
    for p in _PRECS:
        r = _ctx(p).exp(d)
        v = _certify(r, _unit(p), dtype)
        if v is not None:
            return v
    return _round_decimal(r, dtype)     # not reached


def _quieted(x: np.ndarray) -> np.ndarray:
    return (x.view(np.uint64) | _QUIET).view(np.float64)


def _fast(y: np.ndarray, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """(rounded values, which are certain) for float64 approximations ``y`` with a relative
    error below :data:`FAST_REL`: certain where both ends of the error interval round to
    the same ``dtype`` value (never for float64).  Callers hold an errstate."""
    if dtype == "float64":
        return y.copy(), np.zeros(y.shape, dtype=bool)
    d = np.abs(y) * FAST_REL
    lo = _rn(np.nextafter(y - d, -np.inf), dtype)
    hi = _rn(np.nextafter(y + d, np.inf), dtype)
    return lo, (lo.view(np.uint64) == hi.view(np.uint64)) & (np.abs(y) >= 2.0 ** -1000) & np.isfinite(y)


def _apply(values, dtype: str, fn, one, regular, special) -> np.ndarray:
    """``fn`` (np.log or np.exp) of float64 ``values`` rounded into ``dtype``: the fast path
    where it is certain, ``one`` (the decimal scalar) for the other ``regular`` entries,
    ``special`` (flat values -> float64 results by rule) for the rest."""
    x = np.asarray(values, dtype=np.float64)
    flat = x.reshape(-1)
    with np.errstate(all="ignore"):
        out, ok = _fast(fn(flat), dtype)
        reg = regular(flat)
        ok &= reg
        if not ok.all():
            for i in np.flatnonzero(~ok & reg):
                out[i] = one(float(flat[i]), dtype)
            sp = ~reg
            if sp.any():
                out[sp] = round_to(special(flat[sp]), dtype)
    return out.reshape(x.shape)


def _log_special(x: np.ndarray) -> np.ndarray:
    out = np.where(x == 1, 0.0, np.where(x == 0, -np.inf, np.where(x < 0, _POS_NAN, np.inf)))
    nan = np.isnan(x)
    out[nan] = _quieted(x[nan])
    return out


def _exp_special(x: np.ndarray) -> np.ndarray:
    out = np.where(x == 0, 1.0, np.where(x > 0, np.inf, 0.0))
    nan = np.isnan(x)
    out[nan] = _quieted(x[nan])
    return out


def log(values, dtype: str) -> np.ndarray:
    """ln of float64 ``values`` (the values of a dtype), correctly rounded into ``dtype``;
    the special values by the rules of the module doc."""
    return _apply(values, dtype, np.log, _log1, lambda x: (x > 0) & (x < np.inf) & (x != 1), _log_special)


def exp(values, dtype: str) -> np.ndarray:
    """e**x of float64 ``values``, correctly rounded into ``dtype`` (rules: module doc)."""
    return _apply(values, dtype, np.exp, _exp1, lambda x: np.isfinite(x) & (x != 0), _exp_special)


# ----------------------------------------------------------------------------- softmax
def softmax(values, axis: int, dtype: str, as_log: bool = False) -> np.ndarray:
    """softmax (``as_log=False``) or log_softmax of float64 ``values`` along ``axis``, each
    entry the exact value rounded into ``dtype``.

    Per slice: a NaN makes every entry NaN (a NaN entry keeps its own, the others take the
    slice's first); else a +inf makes the +inf entries NaN (``inf - inf``) and the others
    -inf / 0; a slice of -inf only is NaN; else -inf entries are -inf / 0 and the finite
    ones exact.  A 0-d array is one slice of one entry."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return x.copy()
    if x.ndim == 0:
        return softmax(x.reshape(1), 0, dtype, as_log).reshape(())
    moved = np.moveaxis(x, axis, -1)
    rows = np.ascontiguousarray(moved).reshape(-1, moved.shape[-1])
    out = np.array([_softmax_row(tuple(r.view(np.uint64).tolist()), dtype, as_log) for r in rows])
    return np.moveaxis(out.reshape(moved.shape), -1, axis)


@functools.lru_cache(maxsize=1 << 14)
def _softmax_row(bits: tuple[int, ...], dtype: str, as_log: bool) -> np.ndarray:
    row = np.array(bits, dtype=np.uint64).view(np.float64)
    nan = np.isnan(row)
    if nan.any():
        out = np.where(nan, _quieted(row), _quieted(row[nan][:1])[0])
    elif (row == np.inf).any():
        out = np.where(row == np.inf, _NEG_DEFAULT_NAN, -np.inf if as_log else 0.0)
    elif (row == -np.inf).all():
        out = np.full(row.shape, _NEG_DEFAULT_NAN)
    else:
        out = np.full(row.shape, -np.inf if as_log else 0.0)
        fin = np.flatnonzero(np.isfinite(row))
        out[fin] = _finite_softmax([float(v) for v in row[fin]], dtype, as_log)
        return out
    return round_to(out, dtype)


def _finite_softmax(xs: list[float], dtype: str, as_log: bool) -> list[float]:
    """(log_)softmax of finite ``xs``, each entry certified (module doc) at the first
    precision that certifies them all.  With ``m`` the maximum (first at ``k``),
    ``a_j = x_j - m`` (exact) and ``T = sum_{j != k} e**a_j``:
    ``log_softmax_j = a_j - ln(1 + T)``, ``softmax_j = e**(log_softmax_j)``.

    Error bounds at ``p`` digits, ``u`` = :func:`_unit`: each ``e**a_j`` and each addition
    is within ``u/2``, so ``T`` within ``n*u`` relative; ``ln(1 + T)`` within ``T``'s
    relative error plus ``u`` (``1 + T`` is formed exactly); ``a_j - ln(1 + T)`` adds two
    numbers of one sign, so log_softmax is within ``(n + 2)*u``; softmax's exponent error
    ``|lsm| * (n + 2)*u`` becomes its relative error (times 1.01 while below 0.01), plus
    ``u`` for its own rounding."""
    D = decimal.Decimal
    exact = _ctx(decimal.MAX_PREC)
    m = max(xs)
    k = xs.index(m)
    a = [exact.subtract(D(v), D(m)) for v in xs]
    n = len(xs)
    tiny = D(f"1E{decimal.MIN_EMIN}")        # stands for an e**a_j that decimal underflows
    for p in _PRECS:
        c, u, last = _ctx(p), _unit(p), p == _PRECS[-1]
        t, terms = D(0), 0
        for j, aj in enumerate(a):
            if j != k:
                e = c.exp(aj)
                t = c.add(t, e if e and not e.is_subnormal(c) else tiny)
                terms += 1
        if not terms:
            l1 = D(0)
        elif t.adjusted() < -p - 2:                    # ln(1 + T) = T - T**2/2 + O(T**3)
            l1 = c.subtract(t, c.multiply(t, t) / 2)
        else:
            cx = _ctx(p + max(0, -t.adjusted()) + 3)   # 1 + T exact, ln to >= p digits
            l1 = cx.ln(cx.add(D(1), t))
        eps_lsm = (n + 2) * u
        out = []
        for aj in a:
            lsm = c.subtract(aj, l1)
            if as_log:
                center, rel = lsm, (eps_lsm if lsm else D(0))
            elif lsm < -D(_HUGE):
                out.append(0.0)
                continue
            else:
                spread = abs(lsm) * eps_lsm
                if spread > D("0.01") and not last:
                    break
                center, rel = c.exp(lsm), c.add(c.multiply(spread, D("1.01")), u)
            v = _certify(center, rel, dtype)
            if v is None:
                if not last:
                    break
                v = _round_decimal(center, dtype)   # not reached: 640 digits is far past any tie
            out.append(v)
        else:
            return out
    raise AssertionError("unreachable")


# ----------------------------------------------------------------------------- grids (klconform.large)
def _to_grid(x: decimal.Decimal, step: float) -> decimal.Decimal:
    return (x / decimal.Decimal(step)).to_integral_value(decimal.ROUND_HALF_EVEN)


def _grid_fast(y: np.ndarray, abs_err: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """(``y`` rounded to multiples of ``step``, where that is certain): certain where every
    number within ``abs_err`` of ``y`` rounds to the same multiple (``step`` a power of 2,
    so the scaling is exact; the slack covers the float64 rounding of ``y +- abs_err``)."""
    t = y / step
    slack = abs_err / step + np.abs(t) * 2.0 ** -50
    lo, hi = np.round(t - slack), np.round(t + slack)
    return lo * step, np.isfinite(t) & (lo == hi)


def log_on_grid(p: np.ndarray, step: float) -> np.ndarray:
    """ln ``p`` (finite, > 0) rounded to the nearest multiple of ``step`` (a power of 2),
    ties to the even multiple: exact, whatever numpy's ``log``."""
    p = np.asarray(p, dtype=np.float64)
    y = np.log(p)
    out, ok = _grid_fast(y, np.abs(y) * FAST_REL, step)
    for i in zip(*np.nonzero(~ok)):
        d = decimal.Decimal(float(p[i]))
        for prec in _PRECS:
            r = _ctx(prec).ln(d)
            err = abs(r) * _unit(prec)
            lo, hi = _to_grid(r - err, step), _to_grid(r + err, step)
            if lo == hi or prec == _PRECS[-1]:
                out[i] = float(lo) * step
                break
    return out


def logsumexp_on_grid(z: np.ndarray, step: float) -> np.ndarray:
    """Each row's (last axis) ln(sum(e**z)) of finite 2-D ``z``, rounded to the nearest
    multiple of ``step`` (a power of 2), ties to even, as a column: exact, whatever
    numpy's ``exp``, ``log`` and summation order.  The fast path's bound: each e**(z - m)
    within FAST_REL, their sum (any order) within n*2**-53 more, the log within FAST_REL,
    the final addition within 2**-53."""
    z = np.asarray(z, dtype=np.float64)
    n = z.shape[-1]
    m = z.max(axis=-1, keepdims=True)
    s = np.exp(z - m).sum(axis=-1, keepdims=True)
    ls = np.log(s)
    lse = m + ls
    err = 2 * (FAST_REL + n * 2.0 ** -52) + FAST_REL * np.abs(ls) + 2.0 ** -52 * np.abs(lse)
    out, ok = _grid_fast(lse, err, step)
    for i in np.flatnonzero(~ok.reshape(-1)):
        D = decimal.Decimal
        mi = float(m[i, 0])
        a = [_ctx(decimal.MAX_PREC).subtract(D(float(v)), D(mi)) for v in z[i]]
        for prec in _PRECS:
            c, u = _ctx(prec), _unit(prec)
            total = D(0)
            for aj in a:
                total = c.add(total, c.exp(aj))
            r = c.add(c.ln(total), D(mi))
            bound = (n + 2) * u * (1 + abs(r))
            lo, hi = _to_grid(r - bound, step), _to_grid(r + bound, step)
            if lo == hi or prec == _PRECS[-1]:
                out[i, 0] = float(lo) * step
                break
    return out
