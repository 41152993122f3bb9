"""Analytic gradients of Σ(output) w.r.t. the target and the prediction, in their
encodings (SPEC.md §8), for every family point, with their bounds (KL-BOUND-3).

Term partials (:func:`reference.variants.partials`):
  ∂T/∂p = log(p/q) + 1          ∂T/∂t = e^t (t − log q + 1)        (target, prob / logprob)
  ∂T/∂q = −p/q                  ∂T/∂(log q) = −p                   (prediction)
  logits: G_z = g − softmax(z)·Σ_class g, with g the gradient w.r.t. log q.
Each term's partial is scaled by c_i = w·W_i / D (KL-GRAD-RED) and summed over broadcast
dimensions back to the input's own shape (KL-GRAD-1).
"""
from __future__ import annotations

import numpy as np

from ._quiet import quiet
from . import bounds as _bounds
from . import variants as _variants
from .family import Point
from .variants import Prepared, partials, prepare, sum_to_shape

__all__ = ["gradients", "gradients_and_bounds"]


def _coef(prep: Prepared) -> np.ndarray:
    """c_i = d Σ(output) / d T_i on S (KL-GRAD-RED)."""
    with quiet:
        return prep.coef / prep.work(prep.divisor)


def _one(prep: Prepared, name: str, parts: dict, coef: np.ndarray):
    dec = prep.target if name == "target" else prep.pred
    is_a = (name == "target") != prep.point.swap
    side = "a" if is_a else "b"
    log_space = dec.kind != "prob"
    partial = parts[f"{side}_{'log' if log_space else 'val'}"]
    with quiet:
        grad_s = coef * partial
    own = tuple(np.shape(dec.raw))
    if prep.point.normalise:
        # KL-GRAD-NORM: back through the normalisation on S, then to the input's shape
        gb_s = _bounds.grad_bound(prep, side, log_space, partial, coef, grad_s, prep.shape)
        g_s, gb_s = _bounds.normalise_backward(prep, side, log_space, grad_s, gb_s)
        g = sum_to_shape(g_s, own)
        k_b = prep.work(max(1, int(np.prod(prep.shape, dtype=np.int64)))
                 / max(1, int(np.prod(own, dtype=np.int64))))
        u = prep.work(_bounds.unit_roundoff(prep.case.dtype))
        with quiet:
            gb = sum_to_shape(gb_s, own) + 2 * u * (k_b - 1) * sum_to_shape(
                np.where(np.isfinite(g_s), np.abs(g_s), prep.work(0)), own)
    else:
        g = sum_to_shape(grad_s, own)
        gb = _bounds.grad_bound(prep, side, log_space, partial, coef, grad_s, own)
    if dec.kind == "logits":
        with quiet:
            result = g - dec.v * np.sum(g, axis=dec.axis, keepdims=True)
        gb = _bounds.softmax_backward_bound(prep, g, gb, result)
        g = result
    with quiet:     # a working-precision partial beyond float64 is ±inf
        g64 = np.asarray(g, dtype=np.float64)
        gb64 = np.where(np.isfinite(g64), np.asarray(gb, dtype=np.float64), 0.0)
    return g64, gb64


def gradients_and_bounds(prep: Prepared) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """({"target": G_t, "pred": G_q}, their bounds), float64, each in its input's shape."""
    parts = partials(prep.point, prep.a, prep.la, prep.b, prep.lb)
    coef = _coef(prep)
    grads, gbounds = {}, {}
    for name in ("pred", "target"):
        grads[name], gbounds[name] = _one(prep, name, parts, coef)
    return grads, gbounds


def gradients(case, point: Point | None = None) -> dict[str, np.ndarray]:
    """Gradients of Σ(output) of ``case`` under ``point`` w.r.t. "pred" and "target"."""
    if case.dtype == "float64" and not _variants.extended_precision():
        raise _variants.ExtendedPrecisionUnavailable("the gradient")   # KL-BOUND-5
    return gradients_and_bounds(prepare(case, point))[0]
