"""``kl_loss(log_q, p, reduction)`` = reduce(p * (log p - log q)), 0 * log 0 = 0, computed
in the inputs' dtype.  Acme's ``mean`` divides by the batch size (rows), not by the number
of elements: a long-standing choice its trainers rely on (recorded for klconform in
known-discrepancies.toml)."""
from __future__ import annotations

import numpy as np

REDUCTIONS = ("none", "sum", "mean", "distribution")


def _terms(log_q: np.ndarray, p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        t = p * (np.log(p) - log_q)
    return np.where(p == 0, np.zeros_like(t), t)     # 0 * log(0 / q) = 0


def _rows(shape: tuple[int, ...]) -> int:
    return shape[0] if shape else 1


def kl_loss(log_q: np.ndarray, p: np.ndarray, reduction: str = "mean") -> np.ndarray:
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
    return total / t.dtype.type(_rows(t.shape))


def kl_loss_grad(log_q: np.ndarray, p: np.ndarray, reduction: str = "mean") -> np.ndarray:
    """d sum(kl_loss(log_q, p, reduction)) / d log_q, shaped like ``log_q``."""
    shape = np.broadcast_shapes(log_q.shape, p.shape)
    g = -np.broadcast_to(p, shape).astype(log_q.dtype)
    if reduction == "mean":
        g = g / g.dtype.type(_rows(shape))
    extra = len(shape) - log_q.ndim
    g = g.sum(axis=tuple(range(extra))) if extra else g
    axes = tuple(i for i, n in enumerate(log_q.shape) if n == 1 and g.shape[i] != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g
