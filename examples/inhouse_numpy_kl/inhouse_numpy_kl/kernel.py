"""The in-house KL loss: what the team's training code calls.  Pure numpy, computed in the
dtype of the inputs, like a framework kernel would be.

``kl_loss(log_q, p, reduction)`` = reduce(p * (log p - log q)) with 0 * log 0 = 0;
``kl_loss_grad`` is its gradient with respect to ``log_q`` (a head gradient of ones).
"""
from __future__ import annotations

import numpy as np

REDUCTIONS = ("none", "sum", "mean", "batchmean", "distribution")


def _terms(log_q: np.ndarray, p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        t = p * (np.log(p) - log_q)
    return np.where((p == 0) & ~np.isnan(log_q), np.zeros_like(t), t)     # 0 * log(0 / q) = 0; NaN q stays NaN


def kl_loss(log_q: np.ndarray, p: np.ndarray, reduction: str = "batchmean") -> np.ndarray:
    """KL(P || Q) with Q given as log-probabilities; ``reduction`` as in REDUCTIONS
    (``distribution`` sums the last axis, ``batchmean`` divides the sum by the size of axis 0)."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction {reduction!r} is not one of {REDUCTIONS}")
    t = _terms(log_q, p)
    if reduction == "none":
        return t
    if reduction == "distribution":
        return t.sum(axis=-1)
    total = t.sum()
    if reduction == "sum":
        return total
    if reduction == "mean":
        with np.errstate(invalid="ignore"):
            return total / t.dtype.type(t.size)       # 0/0 = NaN for an empty loss (KL-EMPTY-2)
    return total / t.dtype.type(t.shape[0] if t.ndim else 1)


def kl_loss_grad(log_q: np.ndarray, p: np.ndarray, reduction: str = "batchmean") -> np.ndarray:
    """d sum(kl_loss(log_q, p, reduction)) / d log_q, shaped like ``log_q``."""
    shape = np.broadcast_shapes(log_q.shape, p.shape)
    g = -np.broadcast_to(p, shape).astype(log_q.dtype)
    # the partials of a NaN term are NaN (SPEC KL-GRAD-INF): a NaN or negative p, a NaN log q
    with np.errstate(invalid="ignore"):
        invalid = ~(np.broadcast_to(p, shape) >= 0) | np.isnan(np.broadcast_to(log_q, shape))
    g = np.where(invalid, g.dtype.type(np.nan), g)
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            g = g / g.dtype.type(g.size)
    elif reduction == "batchmean":
        g = g / g.dtype.type(shape[0] if shape else 1)
    # sum the broadcast axes back onto log_q's shape
    extra = len(shape) - log_q.ndim
    g = g.sum(axis=tuple(range(extra))) if extra else g
    axes = tuple(i for i, n in enumerate(log_q.shape) if n == 1 and g.shape[i] != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g
