"""An arbitrary-precision oracle of SPEC.md §12 (distillation), for tests.

Written from the clause text, not from reference/distill.py: each token's distributions
are softmax(z/τ) at 60 digits (mpmath, on the exact float64 inputs), the divergences their
textbook sums, the reductions KL-DISTILL-RED's formulas.  Finite logits only (special values
are tested against the clauses directly).  Gradients are not derived here: tests take them
by numerical differentiation of :func:`output_sum` (``mpmath.diff``), so they check the
formulas of KL-DISTILL-GRAD instead of repeating them.
"""
from __future__ import annotations

import mpmath as mp
import numpy as np

DPS = 60


def _row_probs(z, tau):
    x = [(v if isinstance(v, mp.mpf) else mp.mpf(float(v))) / mp.mpf(tau) for v in z]
    m = max(x)
    e = [mp.exp(v - m) for v in x]
    s = mp.fsum(e)
    return [v / s for v in e]


def token_divergence(p, q, divergence, param, cross_entropy=False):
    """d_i of KL-DISTILL-FWD/-REV/-SYM/-JSD for one token's probability rows; under
    ``cross_entropy`` (KL-DISTILL-CE) the forward parts are H(p, q)."""
    def kl(a, b):
        return mp.fsum(x * mp.log(x / y) for x, y in zip(a, b) if x != 0)

    def fwd():
        if cross_entropy:
            return -mp.fsum(x * mp.log(y) for x, y in zip(p, q) if x != 0)
        return kl(p, q)
    if divergence == "forward":
        return fwd()
    if divergence == "reverse":
        return kl(q, p)
    r = mp.mpf(param)
    if divergence == "symmetric":
        return r * fwd() + (1 - r) * kl(q, p)
    if r == 0 or r == 1:
        return mp.mpf(0)
    mix = [r * x + (1 - r) * y for x, y in zip(p, q)]
    return r * kl(p, mix) + (1 - r) * kl(q, mix)


def outputs(student, teacher, *, divergence="forward", param=0.5, cross_entropy=False, tau=1.0, tau2=False,
            mask=None, reduction="distribution_mean", empty_mean="nan", chunks=None, chunk_mean=False):
    """The outputs (an mpf, or an object array for per-token reductions) of one case."""
    with mp.workdps(DPS):
        s = np.asarray(student, dtype=object)
        t = np.asarray(teacher, dtype=object)
        tok_shape = s.shape[:-1]
        V = s.shape[-1]
        kept = np.ones(tok_shape, bool) if mask is None else np.asarray(mask, bool)
        scale = mp.mpf(tau) ** 2 if tau2 else mp.mpf(1)
        d = np.empty(tok_shape, dtype=object)
        for idx in np.ndindex(*tok_shape):
            if not kept[idx]:
                d[idx] = mp.mpf(0)
                continue
            p = _row_probs(t[idx], tau)
            q = _row_probs(s[idx], tau)
            d[idx] = token_divergence(p, q, divergence, param, cross_entropy)
        total = mp.fsum(d[idx] for idx in np.ndindex(*tok_shape))
        n = int(kept.sum())
        if reduction == "distribution":
            return scale * d
        if reduction == "sum":
            return scale * total
        if chunk_mean:
            T = s.shape[1]
            size = -(-T // chunks)
            acc = mp.mpf(0)
            for a in range(0, T, size):
                kc = int(kept[:, a:a + size].sum())
                if kc:
                    acc += mp.fsum(d[i, j] for i in range(s.shape[0]) for j in range(a, min(a + size, T))) / kc
            return scale * acc / chunks
        if reduction == "batchmean":
            return scale * total / s.shape[0]
        divisor = n * (V if reduction == "mean" else 1)
        if divisor == 0:
            return mp.mpf(0) if empty_mean == "zero" else mp.nan
        return scale * total / divisor


def output_sum(student, teacher, **kw):
    """Σ(output): the function whose gradient KL-DISTILL-GRAD states."""
    out = outputs(student, teacher, **kw)
    if isinstance(out, np.ndarray):
        return mp.fsum(out.ravel().tolist())
    return out


def gradient(student, teacher, side, **kw):
    """∂Σ(output)/∂(logits of ``side``), by mpmath's numerical differentiation at 60 digits
    (a 10⁻²⁰ step of the exact inputs): an object array of mpf in the logits' shape."""
    s = np.asarray(student, dtype=np.float64)
    t = np.asarray(teacher, dtype=np.float64)
    base = s if side == "pred" else t
    out = np.empty(base.shape, dtype=object)
    with mp.workdps(DPS):
        for idx in np.ndindex(*base.shape):
            def f(x, idx=idx):
                arr = np.array(base, dtype=object)
                arr = np.vectorize(mp.mpf, otypes=[object])(arr)
                arr[idx] = x
                other = np.vectorize(mp.mpf, otypes=[object])(np.array(t if side == "pred" else s, dtype=object))
                return output_sum(arr, other, **kw) if side == "pred" else output_sum(other, arr, **kw)
            out[idx] = mp.diff(f, mp.mpf(float(base[idx])), h=mp.mpf("1e-20"))
    return out
