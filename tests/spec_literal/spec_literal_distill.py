"""SPEC.md §12 (distillation losses) implemented a second time, from the clause text alone.

No code shared with ``reference/distill.py``: one Python loop per token and per vocabulary
entry, each entry decided by the clauses as they read, in numpy ``longdouble`` scalars.
``evaluate(student, teacher, ...)`` returns ``(value, grads)`` as longdouble arrays; the
caller rounds.  Slow on purpose: for small cases only.
"""
from __future__ import annotations

import math

import numpy as np

L = np.longdouble
NAN = L("nan")
INF = L("inf")


class Undefined(ValueError):
    pass


def _row(z, tau):
    """KL-DISTILL-TEMP + KL-INPUT-LOGITS for one row: (probabilities, logs), or None for a
    NaN row (NaN or +inf anywhere, or every entry -inf)."""
    x = [L(v) / L(tau) for v in z]
    if any(math.isnan(float(v)) or v == INF for v in x) or all(v == -INF for v in x):
        return None
    m = max(v for v in x if v != -INF)
    total = L(0)
    for v in x:
        if v != -INF:
            total += np.exp(v - m)
    lse = np.log(total)
    logs = [(v - m) - lse if v != -INF else -INF for v in x]
    probs = [np.exp(lv) if lv != -INF else L(0) for lv in logs]
    return probs, logs


def _kl_entry(a, la, lb):
    """a·(log a − log b) with §2's conventions (KL-ZERO-1, KL-ZERO-2)."""
    if a == 0:
        return L(0)
    if lb == -INF:
        return INF
    return a * (la - lb)


def _forward_entry(P, LP, LQ, j, ce):
    """One forward-KL part entry: a·(log a − log b), or −p·log q under cross_entropy
    (KL-DISTILL-CE)."""
    if not ce:
        return _kl_entry(P[j], LP[j], LQ[j])
    if P[j] == 0:
        return L(0)
    if LQ[j] == -INF:
        return INF
    return -P[j] * LQ[j]


def _token(div, prm, ce, P, LP, Q, LQ):
    """Elementwise terms, the log-mixture (jsd) and d for one token (KL-DISTILL-FWD..CE)."""
    n = len(P)
    lm = None
    if div == "forward":
        t = [_forward_entry(P, LP, LQ, j, ce) for j in range(n)]
    elif div == "reverse":
        t = [_kl_entry(Q[j], LQ[j], LP[j]) for j in range(n)]
    elif div == "symmetric":
        r = L(prm)
        t = []
        for j in range(n):
            s = L(0)
            if prm != 0:
                s += r * _forward_entry(P, LP, LQ, j, ce)
            if prm != 1:
                s += (1 - r) * _kl_entry(Q[j], LQ[j], LP[j])
            t.append(s)
    else:   # jsd
        b = L(prm)
        if prm in (0.0, 1.0):
            t = [L(0)] * n
        else:
            lm, t = [], []
            for j in range(n):
                # log(β p + (1 − β) q), from the larger of the two logs
                u, w = np.log(b) + LP[j], np.log1p(-b) + LQ[j]
                hi, lo = (u, w) if u >= w else (w, u)
                mj = hi if lo == -INF else hi + np.log1p(np.exp(lo - hi))
                lm.append(mj)
                side_p = L(0) if P[j] == 0 else b * P[j] * (LP[j] - mj)
                side_q = L(0) if Q[j] == 0 else (1 - b) * Q[j] * (LQ[j] - mj)
                t.append(side_p + side_q)
    d = L(0)
    for v in t:
        d = d + v
    return t, lm, d


def _zero_or(v, f):
    return L(0) if v == 0 else v * f


def _token_grads(div, prm, ce, P, LP, Q, LQ, lm, d):
    """(G^S, G^T) of KL-DISTILL-GRAD for one token, entry by entry."""
    n = len(P)

    def part_sum(f):
        s = L(0)
        for j in range(n):
            s += f(j)
        return s

    def forward_part():
        own = part_sum(lambda j: _forward_entry(P, LP, LQ, j, ce))
        if ce:
            return [Q[j] - P[j] for j in range(n)], [_zero_or(P[j], -(LQ[j] + own)) for j in range(n)]
        return [Q[j] - P[j] for j in range(n)], [_zero_or(P[j], LP[j] - LQ[j] - own) for j in range(n)]

    def reverse_part():
        own = part_sum(lambda j: _kl_entry(Q[j], LQ[j], LP[j]))
        return [_zero_or(Q[j], LQ[j] - LP[j] - own) for j in range(n)], [P[j] - Q[j] for j in range(n)]

    if div == "forward":
        return forward_part()
    if div == "reverse":
        return reverse_part()
    if div == "symmetric":
        r = L(prm)
        gs, gt = [L(0)] * n, [L(0)] * n
        if prm != 0:
            a, b = forward_part()
            gs = [gs[j] + r * a[j] for j in range(n)]
            gt = [gt[j] + r * b[j] for j in range(n)]
        if prm != 1:
            a, b = reverse_part()
            gs = [gs[j] + (1 - r) * a[j] for j in range(n)]
            gt = [gt[j] + (1 - r) * b[j] for j in range(n)]
        return gs, gt

    def kl_sum(A, LA, LB):
        return part_sum(lambda j: _kl_entry(A[j], LA[j], LB[j]))

    if lm is None:
        return [L(0)] * n, [L(0)] * n
    b = L(prm)
    kq = kl_sum(Q, LQ, lm)
    kp = kl_sum(P, LP, lm)
    return ([(1 - b) * _zero_or(Q[j], LQ[j] - lm[j] - kq) for j in range(n)],
            [b * _zero_or(P[j], LP[j] - lm[j] - kp) for j in range(n)])


def evaluate(student, teacher, **kw):
    """(value, {"pred": ∂/∂student, "target": ∂/∂teacher}) of one case at one point; IEEE
    arithmetic gives the special values the clauses name, silently."""
    with np.errstate(all="ignore"):
        return _evaluate(student, teacher, **kw)


def _evaluate(student, teacher, *, divergence="forward", param=0.5, cross_entropy=False, jsd_endpoints="limit", tau=1.0,
             tau2=False, mask=None, reduction="distribution_mean", empty_mean="nan", chunks=None,
             chunk_mean=False):
    zs = np.asarray(student, dtype=np.float64)
    zt = np.asarray(teacher, dtype=np.float64)
    if not (math.isfinite(tau) and tau > 0):
        raise Undefined("KL-DISTILL-TEMP")
    if divergence in ("jsd", "symmetric") and not 0 <= param <= 1:
        raise Undefined("KL-DISTILL-JSD" if divergence == "jsd" else "KL-DISTILL-SYM")
    div, prm = divergence, param
    if divergence == "jsd" and jsd_endpoints == "kl" and param in (0.0, 1.0):
        div = "forward" if param == 0.0 else "reverse"      # KL-DISTILL-JSD-ENDS
    tokens = list(np.ndindex(*zs.shape[:-1]))
    V = zs.shape[-1]
    kept = {i: True if mask is None else bool(np.asarray(mask)[i]) for i in tokens}
    scale = L(tau) * L(tau) if tau2 else L(1)
    terms, dvals, parts = {}, {}, {}
    for i in tokens:
        if not kept[i]:
            terms[i], dvals[i], parts[i] = [L(0)] * V, L(0), None
            continue
        rt, rs = _row(zt[i], tau), _row(zs[i], tau)
        if rt is None or rs is None:
            terms[i], dvals[i], parts[i] = [NAN] * V, NAN, "nan"
            continue
        (P, LP), (Q, LQ) = rt, rs
        t, lm, d = _token(div, prm, cross_entropy, P, LP, Q, LQ)
        terms[i], dvals[i], parts[i] = t, d, (P, LP, Q, LQ, lm)
    K = sum(kept.values())
    # the coefficient of each token in Σ(output): KL-DISTILL-RED, -EMPTY, -CHUNK-MEAN
    coef = {}
    if chunk_mean:
        T = zs.shape[1]
        size = -(-T // chunks)
        for start in range(0, T, size):
            piece = [i for i in tokens if start <= i[1] < start + size]
            kc = sum(kept[i] for i in piece)
            for i in piece:
                coef[i] = scale / L(chunks * kc) if (kc and kept[i]) else L(0)
        value = L(0)
        for i in tokens:
            if kept[i]:
                value += coef[i] * dvals[i]
    else:
        divisor = {"none": 1, "distribution": 1, "sum": 1, "distribution_mean": K, "mean": K * V,
                   "batchmean": zs.shape[0]}[reduction]
        empty = divisor == 0
        for i in tokens:
            coef[i] = L(0) if (empty or not kept[i]) else scale / L(divisor)
        if reduction == "none":
            value = np.array([[scale * v for v in terms[i]] for i in tokens], dtype=L).reshape(zs.shape)
        elif reduction == "distribution":
            value = np.array([scale * dvals[i] for i in tokens], dtype=L).reshape(zs.shape[:-1])
        elif empty:
            value = L(0) if empty_mean == "zero" else NAN
        else:
            total = L(0)
            for i in tokens:
                total += dvals[i]
            value = scale * total / L(divisor)
    gs = np.zeros(zs.shape, dtype=L)
    gt = np.zeros(zs.shape, dtype=L)
    for i in tokens:
        if not kept[i]:
            continue
        if parts[i] == "nan":
            gs[i], gt[i] = NAN, NAN
            continue
        P, LP, Q, LQ, lm = parts[i]
        a, b = _token_grads(div, prm, cross_entropy, P, LP, Q, LQ, lm, dvals[i])
        c = coef[i] / L(tau)
        for j in range(V):
            gs[i + (j,)] = L(0) if c == 0 else c * a[j]
            gt[i + (j,)] = L(0) if c == 0 else c * b[j]
    return np.asarray(value, dtype=L), {"pred": gs, "target": gt}
