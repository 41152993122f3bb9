"""Arbitrary-precision oracle for KL(P||Q) (tests and benchmarks only; slow).

Written independently of ``reference._accurate``: every term is evaluated with mpmath on the
exact binary value of its float64 inputs (``mpmath.mpf(float)`` is exact), summed with
``mpmath.fsum``, and the precision is raised until two evaluations 64 bits apart round to
the same float64.  Conventions (SPEC.md): KL-INVALID-1, KL-ZERO-1, KL-ZERO-2, KL-INF-1,
KL-SPECIAL-SUM-1, KL-EMPTY-1; weights multiply terms with IEEE rules for non-finite
products.
"""
from __future__ import annotations

import math

import mpmath
import numpy as np

__all__ = ["kl_exact", "kl_exact_mpf", "ulp_error", "round_to_float64"]

_MAX_PREC = 8192


def round_to_float64(x) -> float:
    """Nearest float64 to the mpf (or float) ``x``, ties to even, subnormals and overflow exact."""
    if isinstance(x, float):
        return x
    if mpmath.isnan(x):
        return math.nan
    if mpmath.isinf(x):
        return math.inf if x > 0 else -math.inf
    if x == 0:
        return 0.0
    with mpmath.workprec(max(mpmath.mp.prec, 64) + 64):
        if abs(x) < mpmath.ldexp(1, -1022):
            # Subnormal range: the grid is 2**-1074; nint rounds ties to even.
            return math.ldexp(int(mpmath.nint(mpmath.ldexp(x, 1074))), -1074)
        # Largest float64 plus half an ulp: at or beyond it the nearest value is +-inf.
        if abs(x) >= mpmath.ldexp(2 ** 54 - 1, 1024 - 54):
            return math.inf if x > 0 else -math.inf
        return mpmath.libmp.to_float(x._mpf_, rnd=mpmath.libmp.round_nearest)


def _term(p: float, q: float):
    """p*log(p/q) for one pair: an mpf for ordinary pairs, a float for special values."""
    if math.isnan(p) or math.isnan(q) or p < 0 or q < 0:
        return math.nan                            # KL-INVALID-1
    if p == 0:
        return 0.0                                 # KL-ZERO-1 (q = 0 and q = inf included)
    if q == 0:
        return math.inf                            # KL-ZERO-2 (p > 0, p = inf included)
    if math.isinf(p):
        return math.nan if math.isinf(q) else math.inf   # KL-INF-1
    if math.isinf(q):
        return -math.inf                           # KL-INF-1
    P, Q = mpmath.mpf(p), mpmath.mpf(q)
    return P * mpmath.log(P / Q)


def _weighted(term, w: float | None):
    if w is None:
        return term
    if isinstance(term, float) or not math.isfinite(w):
        # IEEE product: for an ordinary term only its sign (or zero) matters against inf/nan.
        t = term if isinstance(term, float) else float(mpmath.sign(term))
        return w * t
    return term * mpmath.mpf(w)


def _row_mpf(p, q, w, prec):
    """The row's sum at ``prec`` bits: a float for a special result, else an mpf."""
    with mpmath.workprec(prec):
        finite, special = [], 0.0
        for i in range(len(p)):
            t = _weighted(_term(float(p[i]), float(q[i])), None if w is None else float(w[i]))
            if isinstance(t, float):
                special = special + t              # IEEE: nan, +inf + -inf -> nan
            else:
                finite.append(t)
        if special != 0.0 or math.isnan(special):
            return special                         # KL-SPECIAL-SUM-1
        return mpmath.fsum(finite) if finite else mpmath.mpf(0)   # KL-EMPTY-1


def _row_exact(p, q, w, dps):
    """(value as mpf or special float, correctly rounded float64) of one row."""
    prec = max(53, int(dps * 3.33))
    while True:
        a = _row_mpf(p, q, w, prec)
        if isinstance(a, float):
            return a, a
        b = _row_mpf(p, q, w, prec + 64)
        ra, rb = round_to_float64(a), round_to_float64(b)
        if ra == rb or prec >= _MAX_PREC:
            return b, rb
        prec *= 2


def _rows(p, q, axis, weights):
    """Broadcast, move the reduced axes last: (rows of p, q, w or None, output shape)."""
    P = np.asarray(p, dtype=np.float64)
    Q = np.asarray(q, dtype=np.float64)
    arrays = [P, Q] + ([np.asarray(weights, dtype=np.float64)] if weights is not None else [])
    shape = np.broadcast_shapes(*(a.shape for a in arrays))
    nd = len(shape)
    if axis is None:
        axes = tuple(range(nd))
    else:
        axes = tuple(a % nd for a in ((axis,) if np.ndim(axis) == 0 else axis))
    keep = tuple(a for a in range(nd) if a not in axes)
    out_shape = tuple(shape[a] for a in keep)
    m = int(np.prod(out_shape, dtype=np.int64))
    n = int(np.prod([shape[a] for a in axes], dtype=np.int64))
    rows = [np.broadcast_to(a, shape).transpose(keep + axes).reshape(m, n) for a in arrays]
    return rows[0], rows[1], (rows[2] if weights is not None else None), out_shape


def kl_exact_mpf(p, q, axis=-1, weights=None, dps=60) -> np.ndarray:
    """Exact KL per output as an object array of mpf (or float for NaN/inf results)."""
    P, Q, W, shape = _rows(p, q, axis, weights)
    out = np.empty(P.shape[0], dtype=object)
    for i in range(P.shape[0]):
        out[i] = _row_exact(P[i], Q[i], None if W is None else W[i], dps)[0]
    return out.reshape(shape)


def kl_exact(p, q, axis=-1, weights=None, dps=60) -> np.ndarray:
    """KL(P||Q) = sum over ``axis`` of w*p*log(p/q), correctly rounded to float64.

    ``dps`` is the starting precision in decimal digits; it is raised automatically until the
    rounding is stable (cancelling rows need more).
    """
    P, Q, W, shape = _rows(p, q, axis, weights)
    out = np.empty(P.shape[0])
    for i in range(P.shape[0]):
        out[i] = _row_exact(P[i], Q[i], None if W is None else W[i], dps)[1]
    return out.reshape(shape)


def _ulp(x) -> mpmath.mpf:
    """ulp of the float64 nearest to the exact value ``x`` (2**-1074 in the subnormal range)."""
    if x == 0:
        return mpmath.ldexp(1, -1074)
    e = mpmath.frexp(x)[1] - 1                 # floor(log2 |x|)
    return mpmath.ldexp(1, max(e - 52, -1074))


def ulp_error(computed, exact) -> float:
    """|computed - exact| in ulps of the exact value (mpf or float).

    Identical special values (NaN and NaN, inf and inf of one sign) give 0; a special value
    against anything else gives inf.  An exact value beyond the float64 range counts as the
    infinity it rounds to.
    """
    c = float(computed)
    if not isinstance(exact, float) and not (mpmath.isnan(exact) or mpmath.isinf(exact)):
        if math.isinf(round_to_float64(exact)):
            exact = round_to_float64(exact)
    if isinstance(exact, float) or mpmath.isnan(exact) or mpmath.isinf(exact):
        e = float(exact)
        if math.isnan(c) and math.isnan(e):
            return 0.0
        if math.isinf(e) or math.isnan(e) or math.isinf(c) or math.isnan(c):
            return 0.0 if c == e else math.inf
        exact = mpmath.mpf(e)
    if not math.isfinite(c):
        return math.inf
    with mpmath.workprec(max(mpmath.mp.prec, 256)):
        return float(abs(mpmath.mpf(c) - exact) / _ulp(exact))


# --------------------------------------------------------------------------- accurate-core constants
def log_table(bits: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """log(1 + j/2**bits), j = 0..2**bits, as double-double (hi, lo) at 130 bits.

    The source of ``reference._constants.LOG_TABLE``: tests check the stored bytes against
    this, and :func:`constants_source` regenerates them.
    """
    n = 1 << bits
    hi = np.empty(n + 1)
    lo = np.empty(n + 1)
    with mpmath.workprec(130):
        for j in range(n + 1):
            v = mpmath.log(1 + mpmath.mpf(j) / n)
            hi[j] = float(v)
            lo[j] = float(v - mpmath.mpf(hi[j]))
    return hi, lo


def ln2_parts() -> tuple[float, float, float]:
    """ln 2 = A + B + C with A, B of 40 significant bits (E*A, E*B exact for |E| < 2**13)."""
    with mpmath.workprec(200):
        ln2 = mpmath.log(2)
        a = math.ldexp(math.floor(float(mpmath.ldexp(ln2, 40))), -40)
        rest = ln2 - a
        b = math.ldexp(math.floor(float(mpmath.ldexp(rest, 80))), -80)
        c = float(rest - b)
    return a, b, c


def constants_source() -> str:
    """The text of reference/_constants.py (run ``python -m klconform.reference.oracle > ...``)."""
    import base64
    import textwrap
    hi, lo = log_table()
    blob = base64.b64encode(np.concatenate([hi, lo]).astype("<f8").tobytes()).decode("ascii")
    lines = "\n".join(f'    b"{chunk}"' for chunk in textwrap.wrap(blob, 88))
    a, b, c = ln2_parts()
    return (
        '"""Constants of the accurate core, precomputed so that importing the reference needs\n'
        'numpy only (building them with mpmath cost ~50 ms per process).\n\n'
        'Generated by ``reference.oracle.constants_source()``; tests/reference/test_accuracy.py\n'
        'checks them against mpmath.  Do not edit by hand.\n"""\n'
        "import base64\n\n"
        "# ln 2 = LN2_A + LN2_B + LN2_C; LN2_A and LN2_B have 40 significant bits.\n"
        f"LN2_A = float.fromhex({a.hex()!r})\n"
        f"LN2_B = float.fromhex({b.hex()!r})\n"
        f"LN2_C = float.fromhex({c.hex()!r})\n\n"
        "# log(1 + j/4096), j = 0..4096, as double-double: 4097 little-endian float64 high\n"
        "# parts, then the 4097 low parts (base64).\n"
        "LOG_TABLE_BITS = 12\n"
        f"LOG_TABLE = base64.b64decode(\n{lines}\n)\n"
    )


if __name__ == "__main__":
    print(constants_source(), end="")
