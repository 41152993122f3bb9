"""Accurate float64 KL divergence: within 2 ulp of the exact value of the given inputs.

Public: :func:`kl_divergence` and :func:`kl_terms` (SPEC.md KL-DEF-1, KL-DEF-2).

Method (all vectorised with numpy; ``_dd`` holds the error-free transformations):

* Each ordinary term ``T = p*log(p/q)`` (0 < p, q < inf) is computed in double-double.
  *Near* terms, ``|p - q| <= 2**-7 q``, are split exactly as ``T = d + t`` with
  ``d = p - q`` (exact by Sterbenz) and ``t = q*phi(r) >= 0``, ``r = d/q`` (double-double),
  ``phi(r) = (1+r)log(1+r) - r = (r**2/2) g(r)``; ``t = (d*r/2)(1 + h(r))`` with a Horner
  polynomial ``h = g - 1``; relative error of ``t`` below 2**-61.
  *Far* terms use ``L = log(p/q)`` in double-double: ``p/q = 2**E * m`` from the exponents
  of ``p`` and ``q`` (no overflow), ``m`` in [1, 2) reduced by a 4097-entry table of
  ``log(1 + j/4096)`` (double-double, precomputed with mpmath) and a short ``log1p`` series; absolute
  error of ``L`` below 2**-78, i.e. relative below 2**-70 since ``|L| >= 2**-7.1`` there.
  ``T = p*L`` by TwoProd.
* Rows are scaled by powers of two (exact) so that the largest ``p`` and the largest
  weight are near 1; entries more than 2**800 below a row's largest ``p`` are summed in a
  separate band with its own scale, so no intermediate underflows.
* The pieces are summed per row: the exact differences ``d``, the far terms and the
  ``t`` high parts by Rump-Ogita-Oishi extraction (exact partial sums, as many rounds as
  the row needs), low parts in plain float64.  The result is rounded once.
* A running error bound ``E`` (per row) covers every step.  When ``E`` does not prove the
  result within 1 ulp (massive cancellation in unnormalised or weighted rows, exact or
  near-exact zeros of rows with p != q), the row is recomputed with mpmath at increasing
  precision (``_exact_rows``).  Normalised rows essentially never need this.

Two implementations of this fast path: the vectorised numpy code below, and the same
steps compiled per row with numba in ``_kernel`` (about 7x faster), used where numba
imports; KLCONFORM_REFERENCE_BACKEND=numpy|numba|auto chooses (:func:`backend`).

Error budget: a row is accepted when ``E <= 2**-54 |v|`` (under half an ulp of ``v``) or,
for results in the subnormal range, ``E`` below a quarter of the smallest subnormal; with
the final rounding (and one possible extra rounding into the subnormal range) the result
is within 1.5 ulp of the exact value.
"""
from __future__ import annotations

import math
import os

import numpy as np

from ._quiet import quiet
from . import _constants
from ._dd import extract, fast_two_sum, split, two_prod, two_sum

__all__ = ["kl_divergence", "kl_terms", "backend"]

# --------------------------------------------------------------------------- constants
_NEAR = 2.0 ** -7          # |p - q| <= _NEAR * q: near regime (d + t decomposition)
_TABLE_BITS = _constants.LOG_TABLE_BITS   # log table c_j = 1 + j/4096
_BAND = 2.0 ** -800        # entries below this (row-scaled) go to a lower band
_TINY_W = 2.0 ** -100      # row-scaled weights below this may underflow in products
_NO_SCALE = 64            # rows whose largest p is within 2**+-64 of 1 are not rescaled
_CHUNK = 8192           # elements per block: 64 KB temporaries stay below malloc's mmap threshold
_MAX_ROUNDS = 8            # extraction rounds before giving a row to mpmath

# h(r) = g(r) - 1 = sum_{k>=1} 2(-1)^k r^k / ((k+1)(k+2)), |r| <= 2**-7: the k=10 term is
# below 2**-76 relative, so k <= 9 suffices.
_H_COEF = tuple(2.0 * (-1) ** k / ((k + 1) * (k + 2)) for k in range(1, 10))


# log(1 + j/4096) as double-double and ln 2 in three parts: precomputed with mpmath
# (reference.oracle.constants_source), so that importing the reference needs numpy only.
_LOGC_HI, _LOGC_LO = np.frombuffer(_constants.LOG_TABLE, dtype="<f8").reshape(2, -1).copy()
_LN2_A, _LN2_B, _LN2_C = _constants.LN2_A, _constants.LN2_B, _constants.LN2_C


# --------------------------------------------------------------------------- element terms
def _near_terms(p, q):
    """(d, t_hi, t_lo) with p*log(p/q) = d + t_hi + t_lo for |p - q| <= 2**-7 q.

    ``d = p - q`` is exact; ``t = q*phi(d/q) >= 0`` has relative error below 2**-61.
    """
    d = p - q
    r = d / q
    r_split = split(r)
    ph, pl = two_prod(r, q, r_split)
    r_lo = ((d - ph) - pl) / q           # r_hi + r_lo = d/q to ~2**-106
    ah, al = two_prod(d, r, None, r_split)
    al = al + d * r_lo                   # A = d*r (double-double); t = (A/2)(1 + h)
    h = _H_COEF[-1]
    for c in _H_COEF[-2::-1]:
        h = c + r * h
    h = r * h
    ah = 0.5 * ah
    al = 0.5 * al
    t_hi, e = fast_two_sum(ah, ah * h)
    t_lo = e + (al + al * h)
    return d, t_hi, t_lo


def _log_ratio(p, q):
    """log(p/q) as double-double (hi, lo) for finite p, q > 0; absolute error < 2**-78."""
    mp_, ep = np.frexp(p)
    mq, eq = np.frexp(q)
    u = mp_ / mq                          # in (1/2, 2)
    ph, pl = two_prod(u, mq)
    corr = (((mp_ - ph) - pl) / mq) / u   # log(u + u_lo) = log(u) + u_lo/u + O(2**-106)
    m, eu = np.frexp(u)
    m = 2.0 * m                           # u = m * 2**(eu-1), m in [1, 2)
    big_e = (ep - eq + eu - 1).astype(np.float64)
    j = np.rint((m - 1.0) * float(1 << _TABLE_BITS))
    c = 1.0 + j * (1.0 / (1 << _TABLE_BITS))
    delta = m - c                         # exact (Sterbenz), |delta| <= 2**-13
    w = delta / c
    wh, wl = two_prod(w, c)
    w_lo = ((delta - wh) - wl) / c        # w + w_lo = delta/c to ~2**-106
    # log1p(w + w_lo) = w + [w_lo - w^2/2 + w^3/3 - w^4/4 + w^5/5], |w| <= 2**-13
    tail = w_lo + (w * w) * (-0.5 + w * (1.0 / 3.0 + w * (-0.25 + w * 0.2)))
    ji = j.astype(np.intp)
    s, e1 = two_sum(big_e * _LN2_A, _LOGC_HI[ji])
    s, e2 = two_sum(s, w)
    s, e3 = two_sum(s, big_e * _LN2_B)
    lo = (e1 + e2 + e3) + ((_LOGC_LO[ji] + tail) + (corr + big_e * _LN2_C))
    return fast_two_sum(s, lo)


def _far_terms(ps, p, q):
    """p*log(p/q) as (hi, lo), computed as ps*log(p/q) (ps: p scaled by the row's power of two)."""
    lh, ll = _log_ratio(p, q)
    th, tl = two_prod(ps, lh)
    return th, tl + ps * ll


# --------------------------------------------------------------------------- row sums
def _mantissa_bits(width):
    """M with 2**M >= 2*(width + 2): extraction headroom for ``width`` summands."""
    return int(math.ceil(math.log2(2 * (width + 2))))


def _accsum(xs, ys, approx_other):
    """Sum the 2-D arrays ``xs`` (exactly, by extraction) and ``ys`` (float) along axis 1.

    Returns (components, bound): components is a list of per-row float arrays whose exact
    sum is the result up to ``bound`` (per row); ``approx_other`` (per row) is the rest of
    the row's value, used to decide how many extraction rounds a row needs.
    """
    m_rows = xs[0].shape[0]
    width = sum(x.shape[1] for x in xs)
    mbits = _mantissa_bits(width)
    y_sum = np.zeros(m_rows)
    y_abs = np.zeros(m_rows)
    for y in ys:
        y_sum += np.sum(y, axis=1)
        y_abs += np.sum(np.abs(y), axis=1)
    comps = []
    rows = np.arange(m_rows)
    res = xs
    res_sum = np.zeros(m_rows)
    res_abs = np.zeros(m_rows)
    done_sum = np.zeros(m_rows)
    for k in range(_MAX_ROUNDS):
        mx = np.max(np.abs(res[0]), axis=1) if len(res) == 1 else np.max(
            np.stack([np.max(np.abs(x), axis=1) for x in res]), axis=0)
        sigma = np.ldexp(1.0, np.frexp(mx)[1] + mbits)[:, None]
        tau = None
        new = []
        for x in res:
            t, r = extract(x, sigma)
            tau = t if tau is None else tau + t   # exact: multiples of 2**-53 sigma, |sum| < sigma
            new.append(r)
        res = new
        if k == 0:
            comps.append(tau)                 # two rounds always: cheap, enough for most rows
            continue
        full = np.zeros(m_rows)
        full[rows] = tau
        comps.append(full)
        done_sum[rows] += comps[-2][rows] + tau if k == 1 else tau
        rs = np.sum(res[0], axis=1)
        ra = np.sum(np.abs(res[0]), axis=1)
        for x in res[1:]:
            rs = rs + np.sum(x, axis=1)
            ra = ra + np.sum(np.abs(x), axis=1)
        res_sum[rows] = rs
        res_abs[rows] = ra
        total = done_sum[rows] + rs + y_sum[rows] + approx_other[rows]
        more = (width * 2.0 ** -53 * ra > 2.0 ** -62 * np.abs(total)) & (ra > 0)
        if not more.any():
            break
        rows = rows[more]
        res = [x[more] for x in res]
    comps.append(res_sum)
    comps.append(y_sum)
    bound = (width + 1) * 2.0 ** -53 * res_abs + (width + 2) * 2.0 ** -53 * y_abs
    return comps, bound


def _combine(comps):
    """Double-double sum (h, l) of per-row components and its rounding-error bound."""
    h = comps[0]
    l = np.zeros_like(h)
    mag = np.abs(h)
    for c in comps[1:]:
        h, e = two_sum(h, c)
        l = l + e
        mag = mag + np.abs(c)
    n = len(comps)
    return h, l, (n * n) * 2.0 ** -105 * mag


def _row_parts(P, Q, W, act):
    """Per-row (h, l, E, K): the rows' weighted KL sums of the active entries equal
    (h + l) * 2**K within the absolute error E * 2**K."""
    m_rows, n = P.shape
    all_act = bool(act.all())
    pm = P if all_act else np.where(act, P, 0.0)
    kp = np.frexp(np.max(pm, axis=1))[1]
    if np.abs(kp).max() <= _NO_SCALE:
        kp[:] = 0                          # moderate rows: products cannot under/overflow
        Ps = P
    else:
        Ps = np.ldexp(P, -kp[:, None])
    K = kp.copy()
    if W is not None:
        wm = np.abs(W) if all_act else np.where(act, np.abs(W), 0.0)
        kw = np.frexp(np.max(wm, axis=1))[1]
        Ws = np.ldexp(W, -kw[:, None])
        K = K + kw
    # Entries far below the row's largest p: their own band, their own scale.
    risk = Ps < _BAND * np.ldexp(1.0, np.frexp(np.max(np.where(act, Ps, 0.0), axis=1))[1])[:, None]
    if not all_act:
        risk &= act
    sub = None
    if risk.any():
        rr = np.nonzero(risk.any(axis=1))[0]
        sub = (rr, _row_parts(P[rr], Q[rr], None if W is None else W[rr], risk[rr]))
        act = act & ~risk
        all_act = False

    Qs = Q if Ps is P else np.ldexp(Q, -kp[:, None])  # may overflow where q >> p: only near q is used
    if all_act:
        p, q, ps, qs = P.ravel(), Q.ravel(), Ps.ravel(), Qs.ravel()
    else:
        p, q, ps, qs = P[act], Q[act], Ps[act], Qs[act]
    near = np.abs(p - q) <= _NEAR * q
    n_near = int(np.count_nonzero(near))
    size = p.size
    slot1 = np.empty(size)    # d (near) or T_hi (far): summed exactly
    slot2 = np.zeros(size)    # t_hi (near)
    slot3 = np.empty(size)    # t_lo (near) or T_lo (far)
    if n_near == size:
        slot1, slot2, slot3 = _near_terms(ps, qs)
    elif n_near == 0:
        slot1, slot3 = _far_terms(ps, p, q)
    else:
        far = ~near
        d, th, tl = _near_terms(ps[near], qs[near])
        slot1[near] = d
        slot2[near] = th
        slot3[near] = tl
        fh, fl = _far_terms(ps[far], p[far], q[far])
        slot1[far] = fh
        slot3[far] = fl
    t_abs = slot2                          # >= 0
    far_abs = np.abs(slot1) if n_near == 0 else np.where(near, 0.0, np.abs(slot1))

    if W is not None:
        ws = Ws.ravel() if all_act else Ws[act]
        a, b = two_prod(ws, slot1)
        c, e = two_prod(ws, slot2)
        xs_flat = [a, b, c]
        ys_flat = [e + ws * slot3]
        t_abs = np.abs(ws) * t_abs
        far_abs = np.abs(ws) * far_abs
        tiny_w = np.abs(ws) < _TINY_W
    else:
        xs_flat = [slot1] if n_near == 0 else [slot1, slot2]
        ys_flat = [slot3]
        tiny_w = None

    def rows2d(v, fill=0.0):
        if all_act:
            return v.reshape(m_rows, n)
        out = np.full((m_rows, n), fill)
        out[act] = v
        return out

    xs = [rows2d(v) for v in xs_flat]
    ys = [rows2d(v) for v in ys_flat]
    e_terms = 2.0 ** -58 * np.sum(rows2d(t_abs), axis=1) + 2.0 ** -64 * np.sum(rows2d(far_abs), axis=1)
    if tiny_w is not None and tiny_w.any():
        e_terms += 2.0 ** -1068 * np.sum(rows2d(tiny_w.astype(np.float64)), axis=1)

    other = np.zeros(m_rows)
    extra = []
    e_sub = np.zeros(m_rows)
    if sub is not None:
        rr, (sh, sl, se, sk) = sub
        # Express the band's sum at this row's scale: ldexp may round into the subnormal
        # range (2**-1075 absolute each), accounted for below.
        shift = sk - K[rr]
        h_full = np.zeros(m_rows)
        l_full = np.zeros(m_rows)
        h_full[rr] = np.ldexp(sh, shift)
        l_full[rr] = np.ldexp(sl, shift)
        e_sub[rr] = np.ldexp(se, shift) + 2.0 ** -1073
        extra = [h_full, l_full]
        other = h_full + l_full
    comps, e_sum = _accsum(xs, ys, other)
    h, l, e_comb = _combine(comps + extra)
    return h, l, e_terms + e_sum + e_comb + e_sub, K


def _fast_rows(P, Q, W, act):
    """(value, ok) per row: the accurate value and whether its error bound proves <= 1.5 ulp."""
    h, l, E, K = _row_parts(P, Q, W, act)
    v = h + l
    ok = (E <= 2.0 ** -54 * np.abs(v)) | (E <= np.ldexp(1.0, -1076 - K))
    return np.ldexp(v, K), ok


# --------------------------------------------------------------------------- exact fallback
def _exact_row(p, q, w):
    """Exact weighted sum of p*log(p/q) over ordinary entries, rounded to float64 (mpmath).

    Precision doubles until the error bound (8 * 2**-prec * sum|terms|) is below 2**-60 of the
    value or below a quarter of the smallest subnormal.
    """
    import mpmath   # the rare exact fallback: mpmath only where a row needs it
    prec = 128
    while True:
        with mpmath.workprec(prec):
            terms = []
            for i in range(p.size):
                t = mpmath.mpf(p[i]) * mpmath.log(mpmath.mpf(p[i]) / mpmath.mpf(q[i]))
                if w is not None:
                    t = t * mpmath.mpf(w[i])
                terms.append(t)
            s = mpmath.fsum(terms)
            err = 8 * mpmath.ldexp(1, -prec) * mpmath.fsum(abs(t) for t in terms)
            if err <= mpmath.ldexp(abs(s), -60) or err < mpmath.ldexp(1, -1080) or prec > 5000:
                return _mpf_to_float(s)
        prec *= 2


def _mpf_to_float(x):
    """Round an mpf to the nearest float64 (ties to even), subnormals and overflow included."""
    import mpmath
    if x == 0:
        return 0.0
    if abs(x) < mpmath.ldexp(1, -1022):
        n = int(mpmath.nint(mpmath.ldexp(x, 1074)))
        return math.ldexp(n, -1074)
    try:
        return mpmath.libmp.to_float(x._mpf_, strict=True, rnd=mpmath.libmp.round_nearest)
    except OverflowError:
        return math.copysign(math.inf, float(mpmath.sign(x)))


def _exact_rows(P, Q, W, act):
    out = np.empty(P.shape[0])
    for i in range(P.shape[0]):
        a = act[i]
        out[i] = _exact_row(P[i][a], Q[i][a], None if W is None else W[i][a])
    return out


# --------------------------------------------------------------------------- specials
def _special_rows(P, Q, W):
    """(row_special, active): the IEEE sum of the special terms of each row and the mask of
    ordinary entries (0 < p, q < inf, finite nonzero weight) that the accurate path sums.

    KL-INVALID-1 NaN for negative or NaN p or q; KL-ZERO-1 p = 0 gives 0 for any q >= 0;
    KL-ZERO-2 p > 0, q = 0 gives +inf; KL-INF-1 p = +inf gives +inf (NaN if q = +inf),
    finite p > 0 with q = +inf gives -inf; weights multiply terms with IEEE rules
    (0 * inf = NaN, inf * 0 = NaN).  KL-SPECIAL-SUM-1: summed with IEEE arithmetic.
    """
    ordinary = (P > 0) & (P < np.inf) & (Q > 0) & (Q < np.inf)
    w_ok = None if W is None else (np.isfinite(W) & (W != 0))
    if ordinary.all() and (W is None or bool(np.isfinite(W).all())):
        act = ordinary if W is None else w_ok
        return np.zeros(P.shape[0]), act
    with quiet:
        S = np.zeros(P.shape)
        S[(P > 0) & (Q == 0)] = np.inf                      # KL-ZERO-2 (p finite or inf)
        S[(P == np.inf) & (Q > 0)] = np.inf                  # KL-INF-1
        S[(P == np.inf) & (Q == np.inf)] = np.nan            # KL-INF-1
        S[(P > 0) & (P < np.inf) & (Q == np.inf)] = -np.inf  # KL-INF-1
        S[~((P >= 0) & (Q >= 0))] = np.nan                   # KL-INVALID-1 (NaN or negative)
        if W is not None:
            inf_w = ordinary & ~np.isfinite(W)
            S = np.where(ordinary, 0.0, W * S)
            S[inf_w] = W[inf_w] * np.sign(P[inf_w] - Q[inf_w])  # sign of p*log(p/q)
        row = np.sum(S, axis=1)
    act = ordinary if W is None else ordinary & w_ok
    return row, act


# --------------------------------------------------------------------------- driver
# Which implementation of the fast path runs: "numba" (reference/_kernel.py, the same
# algorithm compiled per row), "numpy" (vectorised, below) or "auto" (numba where it
# imports).  Read once from KLCONFORM_REFERENCE_BACKEND; tests switch it per test.
BACKENDS = ("auto", "numba", "numpy")
_BACKEND = os.environ.get("KLCONFORM_REFERENCE_BACKEND", "auto")
_KERNEL = []                  # [module or None] once resolved


def _kernel_module():
    """reference._kernel, or None where numba is not installed (or fails to load)."""
    if not _KERNEL:
        try:
            from . import _kernel
        except ImportError:
            _kernel = None
        _KERNEL.append(_kernel)
    return _KERNEL[0]


def backend():
    """Name of the fast path in use: "numba" or "numpy" (see KLCONFORM_REFERENCE_BACKEND)."""
    if _BACKEND not in BACKENDS:
        raise ValueError(f"KLCONFORM_REFERENCE_BACKEND must be auto, numba or numpy, "
                         f"not {_BACKEND!r}")
    if _BACKEND == "numpy":
        return "numpy"
    if _kernel_module() is None:
        if _BACKEND == "numba":
            raise ImportError("KLCONFORM_REFERENCE_BACKEND=numba but numba is not importable")
        return "numpy"
    return "numba"


def _kl_rows_kernel(P, Q, W):
    """KL along axis 1 via the compiled kernel; uncertified rows recomputed exactly."""
    v, ok = _kernel_module().kl_rows(P, Q, W)
    if not ok.all():
        bad = np.nonzero(~ok)[0]
        Wb = None if W is None else W[bad]
        with quiet:
            _, act = _special_rows(P[bad], Q[bad], Wb)
        v[bad] = _exact_rows(P[bad], Q[bad], Wb, act)
    return v


def _kl_rows(P, Q, W):
    """KL along axis 1 of 2-D float64 arrays (W None or same shape)."""
    m_rows, n = P.shape
    out = np.zeros(m_rows)
    if m_rows == 0 or n == 0:
        return out                                          # KL-EMPTY-1
    if backend() == "numba":
        return _kl_rows_kernel(P, Q, W)
    with quiet:
        special, act = _special_rows(P, Q, W)
        finite = np.isfinite(special)
        out[~finite] = special[~finite]
        rows = np.nonzero(finite & act.any(axis=1))[0]
        step = max(1, _CHUNK // n)
        contiguous = rows.size == m_rows
        for start in range(0, rows.size, step):
            sel = slice(start, start + step) if contiguous else rows[start:start + step]
            idx = np.arange(m_rows)[sel] if contiguous else sel
            v, ok = _fast_rows(P[sel], Q[sel], None if W is None else W[sel], act[sel])
            if not ok.all():
                bad = np.nonzero(~ok)[0]
                bi = idx[bad]
                v[bad] = _exact_rows(P[bi], Q[bi], None if W is None else W[bi], act[bi])
            out[idx] = v
    return out


# --------------------------------------------------------------------------- public API
def _as_float64(x, name):
    try:
        a = np.asarray(x)
    except Exception as exc:  # ragged nested sequences, etc.
        raise TypeError(f"{name} is not array-like: {exc}") from None
    if a.dtype.kind == "c":
        raise TypeError(f"{name} is complex; KL inputs must be real")
    if a.dtype.kind not in "biuf":
        try:
            a = a.astype(np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{name} has dtype {a.dtype}, not a real number type") from None
    return a.astype(np.float64, copy=False)


def _normalize_axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for ax in axes:
        if not isinstance(ax, (int, np.integer)) or isinstance(ax, bool):
            raise TypeError(f"axis must be an int, a tuple of ints or None, got {axis!r}")
        if not -ndim <= ax < ndim:
            raise ValueError(f"axis {ax} is out of bounds for inputs of dimension {ndim}")
        out.append(int(ax) % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"axis {axis!r} repeats an axis")
    return tuple(out)


def kl_divergence(p, q, *, axis=-1, weights=None):
    """KL(P||Q) = sum over ``axis`` of ``w * p * log(p / q)`` as a float64 array.

    Computed on the values as given (no normalisation, KL-DEF-1), within 2 ulp of the exact
    value of the float64 inputs (KL-DEF-2); exactly 0 where ``p == q``.

    p, q: array-likes of real numbers, broadcast together (converted to float64 exactly).
    axis: int, tuple of ints, or None (all axes).  An empty reduced axis gives 0
        (KL-EMPTY-1).
    weights: optional array-like broadcastable to the shape of p and q; each term is
        multiplied by its weight with IEEE rules for non-finite products.

    Conventions per term ``T = p*log(p/q)`` (the limits of the formula, IEEE-consistent):
    NaN or negative p or q -> NaN (KL-INVALID-1); p = 0 with q >= 0 (q = 0 and q = +inf
    included) -> 0 (KL-ZERO-1); p > 0 with q = 0 -> +inf (KL-ZERO-2); p = +inf -> +inf for
    finite q > 0 (KL-ZERO-2 for q = 0), NaN for q = +inf; finite p > 0 with q = +inf ->
    -inf (KL-INF-1).  Sums follow IEEE: a NaN term, or +inf and -inf terms together, give
    NaN; otherwise an infinite term gives that infinity (KL-SPECIAL-SUM-1).  A finite
    result beyond the float64 range rounds to +-inf.
    """
    P = _as_float64(p, "p")
    Q = _as_float64(q, "q")
    arrays = [P, Q]
    if weights is not None:
        arrays.append(_as_float64(weights, "weights"))
    try:
        shape = np.broadcast_shapes(*(a.shape for a in arrays))
    except ValueError:
        names = ["p", "q", "weights"][:len(arrays)]
        raise ValueError("cannot broadcast shapes " + ", ".join(
            f"{nm}{a.shape}" for nm, a in zip(names, arrays))) from None
    axes = _normalize_axes(axis, len(shape))
    keep = tuple(ax for ax in range(len(shape)) if ax not in axes)
    out_shape = tuple(shape[ax] for ax in keep)
    order = keep + axes
    m_rows = int(np.prod(out_shape, dtype=np.int64))
    n = int(np.prod([shape[ax] for ax in axes], dtype=np.int64))

    def rows(a):
        return np.ascontiguousarray(np.broadcast_to(a, shape).transpose(order)).reshape(m_rows, n)

    W = rows(arrays[2]) if weights is not None else None
    return _kl_rows(rows(P), rows(Q), W).reshape(out_shape)


def kl_terms(p, q):
    """Elementwise ``p * log(p / q)`` (float64, broadcast), each within 1 ulp of exact.

    Same conventions as :func:`kl_divergence` (KL-ZERO-1, KL-ZERO-2, KL-INVALID-1,
    KL-INF-1); each element is a one-term row of :func:`kl_divergence`.
    """
    P = _as_float64(p, "p")
    Q = _as_float64(q, "q")
    try:
        shape = np.broadcast_shapes(P.shape, Q.shape)
    except ValueError:
        raise ValueError(f"cannot broadcast shapes p{P.shape}, q{Q.shape}") from None
    size = int(np.prod(shape, dtype=np.int64))
    Pr = np.ascontiguousarray(np.broadcast_to(P, shape)).reshape(size, 1)
    Qr = np.ascontiguousarray(np.broadcast_to(Q, shape)).reshape(size, 1)
    return _kl_rows(Pr, Qr, None).reshape(shape)
