"""Compiled row kernel (numba) for :mod:`reference._accurate`: the same algorithm, fused per row.

``_accurate`` holds the method and its error analysis; this module runs the identical steps
for one row at a time in one compiled loop instead of ~100-150 numpy passes per element:
special-value terms (KL-INVALID-1, KL-ZERO-1, KL-ZERO-2, KL-INF-1, KL-SPECIAL-SUM-1), bands
of entries more than 2**800 below the band's largest ``p`` with their own power-of-two
scale, near terms ``d + t`` and far terms ``p*log(p/q)`` in double-double, Rump-Ogita-Oishi
extraction of the exact pieces, the double-double combination, and the per-row running
error bound ``E``.  A row whose bound does not prove the result within 1.5 ulp is reported
as not certified; the caller recomputes it exactly (``_accurate._exact_rows``).

Compiled without ``fastmath``: the error-free transformations (TwoSum, Dekker's TwoProd on
Veltkamp splits, extraction ``(sigma + x) - sigma``) rely on every operation being rounded
as written; numba does not contract ``a*b + c`` into FMAs without it
(tests/reference/test_accuracy.py checks TwoProd exactness on hard inputs).

Public (to ``_accurate``): :func:`kl_rows`, :func:`two_prod`, :func:`two_sum`; to ``bounds``:
:func:`bound_budgets` (value_bound's per-entry budgets, one pass).
"""
from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from ._accurate import (_BAND, _H_COEF, _LN2_A, _LN2_B, _LN2_C, _LOGC_HI, _LOGC_LO,
                        _MAX_ROUNDS, _NEAR, _NO_SCALE, _TABLE_BITS, _TINY_W)

__all__ = ["bound_budgets", "kl_rows", "two_prod", "two_sum"]


def _jit(fn):
    """njit with an on-disk cache where one can be written (else compile per process)."""
    try:
        return njit(cache=True, nogil=True, fastmath=False, error_model="numpy")(fn)
    except Exception:  # no writable cache locator: numba raises at decoration time
        return njit(nogil=True, fastmath=False, error_model="numpy")(fn)


_SPLITTER = 134217729.0          # 2**27 + 1 (Veltkamp)
_BAND_BITS = int(round(-math.log2(_BAND)))
_TABLE_N = float(1 << _TABLE_BITS)
_TABLE_STEP = 1.0 / _TABLE_N
_H1, _H2, _H3, _H4, _H5, _H6, _H7, _H8, _H9 = _H_COEF
# 1/c_j rounded to nearest, c_j = 1 + j/4096 (exact in float64)
_INV_C = 1.0 / (1.0 + np.arange((1 << _TABLE_BITS) + 1) * _TABLE_STEP)
_MAX_BANDS = 8                    # 2**2098 dynamic range / 2**800 per band: 4 suffice


# --------------------------------------------------------------------------- bits
# math.frexp / math.ldexp are out-of-line helper calls in numba; on the hot path they are
# replaced by exponent-field arithmetic on the IEEE bit pattern (exact by construction).
@intrinsic
def _bits(typingctx, x):
    if x != types.float64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.int64(types.float64), codegen


@intrinsic
def _from_bits(typingctx, i):
    if i != types.int64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


_EXP_MASK = 0x7FF << 52
_KEEP_MASK = ~_EXP_MASK           # sign and fraction bits
_FRAC_MASK = (1 << 52) - 1
_SIGN_MASK = -(1 << 63)


@_jit
def _frexp(x):
    """math.frexp for finite x (m in [1/2, 1), x = m * 2**e; (0, 0) for zero)."""
    b = _bits(x)
    e = (b >> 52) & 0x7FF
    if e == 0:
        if x == 0.0:
            return x, 0
        # Subnormal: x = +-f * 2**-1074 with the integer f < 2**52, converted exactly.
        # (Integer work: floating-point operations on subnormals take microcode assists
        # costing ~100 cycles each on x86.)
        b = _bits(float(b & _FRAC_MASK)) | (b & _SIGN_MASK)
        e = ((b >> 52) & 0x7FF) - 1074
    return _from_bits((b & _KEEP_MASK) | (1022 << 52)), int(e - 1022)


@_jit
def _pow2(k):
    """2.0**k exactly (0.0 below the subnormal range, inf above the float range)."""
    if -1022 <= k <= 1023:
        return _from_bits((k + 1023) << 52)
    return math.ldexp(1.0, k)


# --------------------------------------------------------------------------- EFTs
@_jit
def two_sum(a, b):
    """(s, e): s = fl(a + b), s + e = a + b exactly (Knuth)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


@_jit
def _fast_two_sum(a, b):
    s = a + b
    return s, b - (s - a)


@_jit
def _split(a):
    c = _SPLITTER * a
    hi = c - (c - a)
    return hi, a - hi


@_jit
def _two_prod_split(a, ah, al, b, bh, bl):
    p = a * b
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


@_jit
def two_prod(a, b):
    """(p, e): p = fl(a*b), p + e = a*b exactly (Dekker; no FMA)."""
    ah, al = _split(a)
    bh, bl = _split(b)
    return _two_prod_split(a, ah, al, b, bh, bl)


# --------------------------------------------------------------------------- element terms
@_jit
def _near_term(p, q):
    """(d, t_hi, t_lo) with p*log(p/q) = d + t_hi + t_lo (|p - q| <= 2**-7 q); as _near_terms."""
    d = p - q
    r = d / q
    rh, rl = _split(r)
    qh, ql = _split(q)
    ph, pl = _two_prod_split(r, rh, rl, q, qh, ql)
    r_lo = ((d - ph) - pl) / q
    dh, dl = _split(d)
    ah, al = _two_prod_split(d, dh, dl, r, rh, rl)
    al = al + d * r_lo
    h = _H8 + r * _H9
    h = _H7 + r * h
    h = _H6 + r * h
    h = _H5 + r * h
    h = _H4 + r * h
    h = _H3 + r * h
    h = _H2 + r * h
    h = _H1 + r * h
    h = r * h
    ah = 0.5 * ah
    al = 0.5 * al
    t_hi, e = _fast_two_sum(ah, ah * h)
    return d, t_hi, e + (al + al * h)


@_jit
def _log_ratio(p, q, logc_hi, logc_lo, inv_c):
    """log(p/q) as double-double for finite p, q > 0, absolute error < 2**-78.

    As _accurate._log_ratio, with two of its five divisions replaced: the correction
    u_lo/u divides once (by mp_ = mq*u), and w_lo multiplies by a table of 1/c; both terms
    are ~2**-53 of their leading parts, so their extra relative error (2**-52) adds below
    2**-104 absolute.
    """
    mp_, ep = _frexp(p)
    mq, eq = _frexp(q)
    u = mp_ / mq
    ph, pl = two_prod(u, mq)
    corr = ((mp_ - ph) - pl) / mp_         # = u_lo/u (mq*u = mp_ to 2**-53): one division
    m, eu = _frexp(u)
    m = 2.0 * m
    big_e = float(ep - eq + eu - 1)
    j = np.rint((m - 1.0) * _TABLE_N)
    c = 1.0 + j * _TABLE_STEP
    delta = m - c
    w = delta / c
    ji = int(j)
    wh, wl = two_prod(w, c)
    w_lo = ((delta - wh) - wl) * inv_c[ji]  # exact numerator; 1/c rounded: error 2**-117
    tail = w_lo + (w * w) * (-0.5 + w * (1.0 / 3.0 + w * (-0.25 + w * 0.2)))
    s, e1 = two_sum(big_e * _LN2_A, logc_hi[ji])
    s, e2 = two_sum(s, w)
    s, e3 = two_sum(s, big_e * _LN2_B)
    lo = (e1 + e2 + e3) + ((logc_lo[ji] + tail) + (corr + big_e * _LN2_C))
    return _fast_two_sum(s, lo)


# --------------------------------------------------------------------------- one row
@_jit
def _is_active(p, q, w, has_w):
    """Ordinary entry (0 < p, q < inf) with, if weighted, a finite nonzero weight."""
    if not (p > 0.0 and p < np.inf and q > 0.0 and q < np.inf):
        return False
    return (not has_w) or (w != 0.0 and abs(w) < np.inf)


@_jit
def _scaled(x, k, f1, f2):
    """x * 2**-k as x * f1 * f2 (f1 * f2 = 2**-k, each a normal power of two).

    Exact for the entries of a band (x >= 2**(k - 801)): neither product is subnormal.
    Subnormal x (non-negative here) are scaled from their integer significand: exact
    while the result is normal, else rounded once (such q are only compared, never used).
    """
    if k == 0:
        return x
    b = _bits(x)
    if (b >> 52) & 0x7FF == 0:            # subnormal: exact integer significand, no assists
        return float(b & _FRAC_MASK) * _pow2(-1074 - k)
    return (x * f1) * f2


@_jit
def _scale_factors(k):
    h = -k // 2
    return _pow2(h), _pow2(-k - h)


@_jit
def _put(xbuf, nx, s1, s2, s3, near, has_w, ws):
    """Store a term's exactly summed pieces at xbuf[nx:]; return (nx, their max |.|, the
    float piece y, t_abs and far_abs contributions, whether the weight is tiny)."""
    if has_w:
        aw = abs(ws)
        a, b = two_prod(ws, s1)
        xbuf[nx] = a
        xbuf[nx + 1] = b
        m = max(abs(a), abs(b))
        yv = ws * s3
        ta = 0.0
        fa = 0.0
        if near:
            c, e = two_prod(ws, s2)
            xbuf[nx + 2] = c
            m = max(m, abs(c))
            yv = e + yv
            ta = aw * s2
            nx += 3
        else:
            fa = aw * abs(s1)
            nx += 2
        return nx, m, yv, ta, fa, 1 if aw < _TINY_W else 0
    xbuf[nx] = s1
    if near:
        xbuf[nx + 1] = s2
        return nx + 2, max(abs(s1), s2), s3, s2, 0.0, 0
    return nx + 1, abs(s1), s3, 0.0, abs(s1), 0


@_jit
def _band_maxima(p, q, w, has_w, lo, hi):
    """Largest p and largest |w| over the band's active entries (lo <= p < hi)."""
    maxp = 0.0
    maxw = 0.0
    for i in range(p.shape[0]):
        pi = p[i]
        if pi >= lo and pi < hi and _is_active(pi, q[i], w[i], has_w):
            maxp = max(maxp, pi)
            if has_w:
                maxw = max(maxw, abs(w[i]))
    return maxp, maxw


@_jit
def _band_terms(p, q, w, has_w, lo, hi, kp, kw, xbuf, scratch, logc_hi, logc_lo, inv_c):
    """The band's terms (_accurate._row_parts): exactly summed pieces into xbuf[:nx], float
    pieces summed into (y_sum, y_abs); bound ingredients t_abs, far_abs, n_tiny; mx the
    largest |piece| in xbuf.  Returns (nx, mx, y_sum, y_abs, t_abs, far_abs, n_tiny)."""
    fp1, fp2 = _scale_factors(kp)
    nx = 0
    y_sum = 0.0
    y_abs = 0.0
    t_abs = 0.0
    far_abs = 0.0
    n_tiny = 0
    mx = 0.0
    nn = 0                                # near entries, stashed for a vectorised pass
    for i in range(p.shape[0]):
        pi = p[i]
        qi = q[i]
        if not (pi >= lo and pi < hi and _is_active(pi, qi, w[i], has_w)):
            continue
        ps = _scaled(pi, kp, fp1, fp2)
        qs = _scaled(qi, kp, fp1, fp2)    # may over/underflow where q is far from p
        # The near test on the scaled pair: same as on (p, q) except that it avoids
        # subnormal arithmetic (slow) and its rounding there.
        ws = math.ldexp(w[i], -kw) if has_w else 1.0    # as numpy: one rounding
        if qs < np.inf and abs(ps - qs) <= _NEAR * qs:
            scratch[0, nn] = ps
            scratch[1, nn] = qs
            scratch[2, nn] = ws
            nn += 1
            continue
        # log(p/q) = log(ps/qs) when qs is exact (normal, finite): on scaled-up subnormal
        # rows this keeps frexp off its slow subnormal path.
        if qs >= 2.2250738585072014e-308 and qs < np.inf:
            lh, ll = _log_ratio(ps, qs, logc_hi, logc_lo, inv_c)
        else:
            lh, ll = _log_ratio(pi, qi, logc_hi, logc_lo, inv_c)
        s1, s3 = two_prod(ps, lh)
        s3 = s3 + ps * ll
        nx, m, yv, ta, fa, tiny = _put(xbuf, nx, s1, 0.0, s3, False, has_w, ws)
        mx = max(mx, m)
        y_sum += yv
        y_abs += abs(yv)
        far_abs += fa
        n_tiny += tiny
    for k in range(nn):                   # no branches, no reductions: SIMD
        d, th, tl = _near_term(scratch[0, k], scratch[1, k])
        scratch[3, k] = d
        scratch[4, k] = th
        scratch[5, k] = tl
    for k in range(nn):
        nx, m, yv, ta, fa, tiny = _put(xbuf, nx, scratch[3, k], scratch[4, k], scratch[5, k],
                                       True, has_w, scratch[2, k])
        mx = max(mx, m)
        y_sum += yv
        y_abs += abs(yv)
        t_abs += ta
        n_tiny += tiny
    return nx, mx, y_sum, y_abs, t_abs, far_abs, n_tiny


@_jit
def _extract_round(xbuf, nx, sigma):
    """One extraction round over xbuf[:nx] (_dd.extract): replaces each x by x - hi and
    returns (tau, rs, ra, mx): the exact sum of the high parts, the float sum and the sum
    of |.| of the rests, and their largest |.|.

    Four independent accumulators: tau is exact in any order (multiples of 2**-53 sigma,
    every partial sum below sigma); rs and ra carry the bound of any order of float
    summation."""
    t0 = t1 = t2 = t3 = 0.0
    s0 = s1 = s2 = s3 = 0.0
    a0 = a1 = a2 = a3 = 0.0
    m0 = m1 = m2 = m3 = 0.0
    n4 = nx - nx % 4
    for i in range(0, n4, 4):
        x0 = xbuf[i]
        x1 = xbuf[i + 1]
        x2 = xbuf[i + 2]
        x3 = xbuf[i + 3]
        h0 = (sigma + x0) - sigma
        h1 = (sigma + x1) - sigma
        h2 = (sigma + x2) - sigma
        h3 = (sigma + x3) - sigma
        t0 += h0
        t1 += h1
        t2 += h2
        t3 += h3
        r0 = x0 - h0
        r1 = x1 - h1
        r2 = x2 - h2
        r3 = x3 - h3
        xbuf[i] = r0
        xbuf[i + 1] = r1
        xbuf[i + 2] = r2
        xbuf[i + 3] = r3
        s0 += r0
        s1 += r1
        s2 += r2
        s3 += r3
        r0 = abs(r0)
        r1 = abs(r1)
        r2 = abs(r2)
        r3 = abs(r3)
        a0 += r0
        a1 += r1
        a2 += r2
        a3 += r3
        m0 = max(m0, r0)
        m1 = max(m1, r1)
        m2 = max(m2, r2)
        m3 = max(m3, r3)
    for i in range(n4, nx):
        x0 = xbuf[i]
        h0 = (sigma + x0) - sigma
        t0 += h0
        r0 = x0 - h0
        xbuf[i] = r0
        s0 += r0
        a0 += abs(r0)
        m0 = max(m0, abs(r0))
    return ((t0 + t1) + (t2 + t3), (s0 + s1) + (s2 + s3), (a0 + a1) + (a2 + a3),
            max(max(m0, m1), max(m2, m3)))


@_jit
def _accsum(xbuf, nx, mx, y_sum, y_abs, other, comps):
    """Extraction summation of xbuf[:nx] plus the float sum y_sum (_accurate._accsum): as
    many rounds as the row needs.  Fills comps[:nc] and returns (nc, bound)."""
    width = max(nx, 1)
    mbits = 0
    while (1 << mbits) < 2 * (width + 2):
        mbits += 1
    nc = 0
    done_sum = 0.0
    res_sum = 0.0
    res_abs = 0.0
    for k in range(_MAX_ROUNDS):
        sigma = _pow2(_frexp(mx)[1] + mbits)
        tau, rs, ra, mx = _extract_round(xbuf, nx, sigma)
        comps[nc] = tau
        nc += 1
        if k == 0:
            continue                      # two rounds always: cheap, enough for most rows
        done_sum += (comps[nc - 2] + tau) if k == 1 else tau
        res_sum = rs
        res_abs = ra
        total = done_sum + rs + y_sum + other
        if not (width * 2.0 ** -53 * ra > 2.0 ** -62 * abs(total) and ra > 0.0):
            break
    comps[nc] = res_sum
    comps[nc + 1] = y_sum
    return nc + 2, (width + 1) * 2.0 ** -53 * res_abs + (width + 2) * 2.0 ** -53 * y_abs


@_jit
def _combine(comps, nc, has_sub, h_sub, l_sub):
    """Double-double sum (h, l) of comps[:nc] and the sub-band's (h_sub, l_sub), with its
    rounding-error bound (_accurate._combine)."""
    h = comps[0]
    l = 0.0
    mag = abs(h)
    for i in range(1, nc):
        h, e = two_sum(h, comps[i])
        l += e
        mag += abs(comps[i])
    n_comb = nc
    if has_sub:
        h, e = two_sum(h, h_sub)
        l += e
        h, e = two_sum(h, l_sub)
        l += e
        mag += abs(h_sub) + abs(l_sub)
        n_comb += 2
    return h, l, (n_comb * n_comb) * 2.0 ** -105 * mag


@_jit
def _band(p, q, w, has_w, lo, hi, xbuf, scratch, logc_hi, logc_lo, inv_c, has_sub, sh, sl, se, sk,
          known_max, known_maxp, known_maxw):
    """(h, l, E, K): the weighted KL sum of the active entries with lo <= p < hi is
    (h + l) * 2**K within E * 2**K; the sub-band (sh, sl, se, sk), if any, is included.
    Mirrors _accurate._row_parts for one row: scale, terms, sub-band, sum, combine."""
    if known_max:                         # the whole row is one band: maxima known
        maxp, maxw = known_maxp, known_maxw
    else:
        maxp, maxw = _band_maxima(p, q, w, has_w, lo, hi)
    kp = _frexp(maxp)[1]
    if abs(kp) <= _NO_SCALE:
        kp = 0
    kw = _frexp(maxw)[1] if has_w else 0
    big_k = kp + kw

    nx, mx, y_sum, y_abs, t_abs, far_abs, n_tiny = _band_terms(
        p, q, w, has_w, lo, hi, kp, kw, xbuf, scratch, logc_hi, logc_lo, inv_c)
    e_terms = 2.0 ** -58 * t_abs + 2.0 ** -64 * far_abs + 2.0 ** -1068 * n_tiny

    # The sub-band at this band's scale (ldexp may round into the subnormal range).
    other = 0.0
    h_sub = 0.0
    l_sub = 0.0
    e_sub = 0.0
    if has_sub:
        shift = sk - big_k
        h_sub = math.ldexp(sh, shift)
        l_sub = math.ldexp(sl, shift)
        e_sub = math.ldexp(se, shift) + 2.0 ** -1073
        other = h_sub + l_sub

    comps = np.empty(_MAX_ROUNDS + 2)
    nc, e_sum = _accsum(xbuf, nx, mx, y_sum, y_abs, other, comps)
    h, l, e_comb = _combine(comps, nc, has_sub, h_sub, l_sub)
    return h, l, e_terms + e_sum + e_comb + e_sub, big_k


@_jit
def _row(p, q, w, has_w, xbuf, scratch, logc_hi, logc_lo, inv_c):
    """(value, certified) for one row: the special-value sum if it is not finite, else the
    accurate sum of the active entries (0.0 when there are none)."""
    n = p.shape[0]
    special = 0.0
    maxp = 0.0
    maxw = 0.0
    minp = np.inf
    n_act = 0
    for i in range(n):
        pi = p[i]
        qi = q[i]
        wi = w[i]
        if pi > 0.0 and pi < np.inf and qi > 0.0 and qi < np.inf:
            if has_w and not abs(wi) < np.inf:
                special += wi * np.sign(pi - qi)        # sign of p*log(p/q); inf*0 = NaN
            elif (not has_w) or wi != 0.0:
                n_act += 1
                maxp = max(maxp, pi)
                if has_w:
                    maxw = max(maxw, abs(wi))
                minp = min(minp, pi)
            continue
        if not (pi >= 0.0 and qi >= 0.0):
            s = np.nan                                   # KL-INVALID-1
        elif pi == 0.0:
            s = 0.0                                      # KL-ZERO-1
        elif qi == 0.0:
            s = np.inf                                   # KL-ZERO-2
        elif pi == np.inf:
            s = np.nan if qi == np.inf else np.inf       # KL-INF-1
        else:
            s = -np.inf                                  # KL-INF-1: finite p, q = inf
        special += wi * s if has_w else s                # KL-SPECIAL-SUM-1 (IEEE)
    if not abs(special) < np.inf:
        return special, True
    if n_act == 0:
        return 0.0, True

    # Bands top-down: entries below 2**(k - 800) of the band's largest p go further down.
    los = np.empty(_MAX_BANDS)
    his = np.empty(_MAX_BANDS)
    nb = 0
    hi = np.inf
    top = maxp
    while True:
        lo = _pow2(_frexp(top)[1] - _BAND_BITS)
        los[nb] = lo
        his[nb] = hi
        nb += 1
        if minp >= lo or nb == _MAX_BANDS:
            break
        hi = lo
        top = 0.0
        for i in range(n):
            if p[i] < lo and _is_active(p[i], q[i], w[i], has_w):
                top = max(top, p[i])
    if minp < los[nb - 1]:
        return 0.0, False                              # cannot happen for float64 ranges

    # Bands bottom-up, each folding in the one below it.
    sh, sl, se, sk = 0.0, 0.0, 0.0, 0
    for b in range(nb - 1, -1, -1):
        sh, sl, se, sk = _band(p, q, w, has_w, los[b], his[b], xbuf, scratch, logc_hi, logc_lo,
                               inv_c, b < nb - 1, sh, sl, se, sk, nb == 1, maxp, maxw)
    v = sh + sl
    ok = se <= 2.0 ** -54 * abs(v) or se <= math.ldexp(1.0, -1076 - sk)
    return math.ldexp(v, sk), ok


@_jit
def _rows(P, Q, W, has_w, logc_hi, logc_lo, inv_c, out, ok):
    m, n = P.shape
    xbuf = np.empty(3 * n + 1)
    scratch = np.empty((6, n))          # near entries: ps, qs, ws, d, t_hi, t_lo
    for i in range(m):
        v, good = _row(P[i], Q[i], W[i] if has_w else P[i], has_w, xbuf, scratch, logc_hi, logc_lo, inv_c)
        out[i] = v
        ok[i] = good


def kl_rows(P, Q, W):
    """(values, certified) of KL along axis 1 of C-contiguous 2-D float64 arrays.

    W is None or weights of the same shape.  ``certified[i]`` is False where the row's error
    bound does not prove the value within 1.5 ulp; the caller recomputes those rows.
    """
    m = P.shape[0]
    out = np.empty(m)
    ok = np.empty(m, dtype=np.bool_)
    if m == 0 or P.shape[1] == 0:
        out[:] = 0.0                                   # KL-EMPTY-1
        ok[:] = True
        return out, ok
    has_w = W is not None
    _rows(P, Q, W if has_w else P, has_w, _LOGC_HI, _LOGC_LO, _INV_C, out, ok)
    return out, ok


# --------------------------------------------------------------------------- value bound
@_jit
def bound_budgets(a, la, lb, t, per, absolute):
    """``bounds.value_bound``'s per-entry budgets in one pass, where it has no log_softmax,
    weight or KL-BOUND-6 part, over 1-D float64 arrays of one length: ``per`` = |a|·(|la|' +
    |lb|' + 1) + 3|t| (|a|·… is 0 where a = 0) and ``absolute`` = |t|, each 0 where not
    finite (x' = x where finite, else 0).  The numpy steps' operations in their order, so
    the results are bitwise theirs (tests/reference/test_backends_agree.py)."""
    for i in range(a.size):
        l1 = abs(la[i])
        if not math.isfinite(l1):
            l1 = 0.0
        l2 = abs(lb[i])
        if not math.isfinite(l2):
            l2 = 0.0
        x = a[i]
        ti = abs(t[i])
        p = 0.0 if x == 0.0 else abs(x) * ((l1 + l2) + 1.0)
        p = p + 3.0 * ti
        per[i] = p if math.isfinite(p) else 0.0
        absolute[i] = ti if math.isfinite(ti) else 0.0
