"""From one canonical case to the case an adapter can take, with every conversion recorded.

All adapters are asked *the same mathematical question*.  When an adapter cannot take a
case's encoding or layout (Keras takes probabilities where the canonical case holds
log-probabilities; an API without broadcasting needs equal shapes; an API without a
``batch_axis`` option needs the batch axis first), :func:`translate` rewrites the case and
records each step as a :class:`Conversion`.  Rewritten values are rounded into the case's
dtype, so the adapter receives exact values — and the reference is evaluated on those same
converted values, never on the originals.  What cannot be rewritten without changing the
question (dtype, input dtypes, a reshaped target, reduction, weights, ndim range) makes the case
*inexpressible* for that adapter: :func:`translate` returns None and :func:`why_not` says why.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from . import exactmath
from .case import Case
from .reference.dtypes import round_to

# Preferred conversions between encodings, best first (exactness of the rewrite):
# prob <-> logprob are elementwise (exp/log, one rounding); logits -> prob/logprob go
# through a softmax; prob/logprob -> logits use log p as logits (softmax(log p) = p when
# the slice sums to 1, so an unnormalised Q becomes normalised: recorded as lossy).
_PRED_PREFERENCE = {
    "logprob": ("logprob", "prob", "logits"),
    "prob": ("prob", "logprob", "logits"),
    "logits": ("logits", "logprob", "prob"),
}
_TARGET_PREFERENCE = {"prob": ("prob", "logprob"), "logprob": ("logprob", "prob")}
_BATCH_REDUCTIONS = ("batchmean", "sample_sum", "sample_mean")


@dataclasses.dataclass(frozen=True)
class Conversion:
    """One rewrite applied to a case: ``what`` was changed, ``how``, and whether it can
    change the mathematical answer beyond rounding (``lossy``)."""

    what: str
    how: str
    lossy: bool = False

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Translated:
    """The case to send (``case``), the canonical case it came from, and the conversions."""

    case: Case
    canonical: Case
    conversions: tuple[Conversion, ...] = ()

    def to_json(self) -> dict:
        """``Case.to_json()`` of the sent case plus ``canonical`` (digest) and ``conversions``."""
        d = self.case.to_json()
        d["canonical"] = self.canonical.digest
        d["conversions"] = [c.to_json() for c in self.conversions]
        return d


def why_not(case: Case, caps) -> str | None:
    """The reason ``case`` is inexpressible for an adapter with capabilities ``caps``, or None."""
    if case.dtype not in caps.dtypes:
        return f"dtype {case.dtype} not supported"
    for side in ("target", "pred"):
        if case.input_dtype(side) not in caps.dtypes:
            return f"{side} dtype {case.input_dtype(side)} not supported"
    form = case.dtype_form
    if form != "same" and form not in getattr(caps, "input_dtypes", frozenset()):
        return (f"inputs in {case.input_dtype('target')}/{case.input_dtype('pred')} with the result in "
                f"{case.dtype} ({form}) not supported")
    if case.target_sent_shape is not None and not getattr(caps, "reshaped_target", False):
        return "a target sent in another shape (same element count) not supported"
    if case.reduction not in caps.reductions:
        return f"reduction {case.reduction} not supported"
    if case.weight is not None and "scalar" not in caps.weights:
        return "scalar weight not supported"
    if case.sample_weight is not None and "sample" not in caps.weights:
        return "sample weights not supported"
    ndim = len(case.shape)
    if not caps.min_ndim <= ndim <= caps.max_ndim:
        return f"{ndim}-D input outside {caps.min_ndim}..{caps.max_ndim}"
    if not (set(caps.pred_kinds) and set(caps.target_kinds)):
        return "no input or target kind"
    return None


def convert_encoding(values: np.ndarray, src: str, dst: str, dtype: str, class_axis: int) -> np.ndarray:
    """``values`` given in encoding ``src`` rewritten in ``dst``: the exact result rounded
    once into ``dtype`` (:mod:`klconform.exactmath`), so the bytes sent are the same
    whatever numpy computes ``exp``/``log`` with."""
    if src == dst:
        return values
    if src == "logits":
        return exactmath.softmax(values, class_axis, dtype, as_log=dst == "logprob")
    if src == "prob":   # -> logprob or logits: log p
        return exactmath.log(values, dtype)
    if src == "logprob":
        return exactmath.exp(values, dtype) if dst == "prob" else round_to(values, dtype)
    raise ValueError(f"convert_encoding: no rewrite {src} -> {dst}")


def _move_axes(case: Case, class_to_last: bool, batch_to_first: bool) -> tuple[Case, list[Conversion]]:
    """Move the class axis last and/or the batch axis first (equal-shape cases only); the
    other axes keep their relative order."""
    nd = case.target.ndim
    c_ax, b_ax = case.class_axis % nd, case.batch_axis % nd
    head = [b_ax] if batch_to_first else []
    tail = [c_ax] if class_to_last else []
    perm = head + [a for a in range(nd) if a not in head + tail] + tail
    new_c = perm.index(c_ax) - nd      # negative: counted from the end
    new_b = perm.index(b_ax)
    out = case.replace(target=np.transpose(case.target, perm), pred=np.transpose(case.pred, perm),
                       class_axis=new_c, batch_axis=new_b)
    return out, [Conversion("axes", f"transposed by {tuple(perm)}: class_axis {case.class_axis}->{new_c}, "
                                    f"batch_axis {case.batch_axis}->{new_b}")]


def translate(case: Case, caps) -> Translated | None:
    """The case an adapter with capabilities ``caps`` receives for canonical ``case``
    (unchanged when it can take it as is), or None when inexpressible (see :func:`why_not`).

    Rewrites, in order: broadcast both arrays to the common shape (no ``broadcasting``);
    move the class axis last / the batch axis first (no ``class_axis`` / ``batch_axis``
    option; the batch axis only matters for batchmean and sample_* reductions); re-encode
    the prediction and the target into the nearest supported kind; drop gradient requests
    when the adapter differentiates nothing."""
    if why_not(case, caps) is not None:
        return None
    convs: list[Conversion] = []
    out = case
    if not caps.broadcasting and out.target.shape != out.pred.shape:
        shape = out.shape
        out = out.replace(target=np.broadcast_to(out.target, shape).copy(),
                          pred=np.broadcast_to(out.pred, shape).copy())
        convs.append(Conversion("shape", f"target and pred broadcast to {shape}"))
    nd = out.target.ndim
    if nd >= 2 and out.target.shape == out.pred.shape:
        class_last = (not caps.class_axis) and out.class_axis % nd != nd - 1
        batch_first = ((not caps.batch_axis) and out.reduction in _BATCH_REDUCTIONS
                       and out.batch_axis % nd != 0)
        if class_last or batch_first:
            if out.sample_weight is not None or out.target_sent_shape is not None:
                return None
            out, c = _move_axes(out, class_last, batch_first)
            if out.reduction == "none":
                c = [dataclasses.replace(c[0], how=c[0].how + " (the elementwise result is transposed alike)")]
            convs += c
    if not caps.class_axis and nd >= 2 and out.class_axis % nd != nd - 1:
        return None   # broadcast partner kept a non-last class axis we cannot move
    if not caps.batch_axis and nd >= 2 and out.reduction in _BATCH_REDUCTIONS and out.batch_axis % nd != 0:
        return None
    if out.pred_kind not in caps.pred_kinds:
        dst = next(k for k in _PRED_PREFERENCE[out.pred_kind] if k in caps.pred_kinds)
        pdt = out.input_dtype("pred")
        pred = convert_encoding(out.pred, out.pred_kind, dst, pdt, out.class_axis)
        lossy = dst == "logits" or out.pred_kind == "logits"
        how = {("logprob", "prob"): "exp", ("prob", "logprob"): "log", ("prob", "logits"): "log (as logits)",
               ("logprob", "logits"): "identity (log-probs as logits)", ("logits", "prob"): "softmax",
               ("logits", "logprob"): "log_softmax"}[(out.pred_kind, dst)]
        convs.append(Conversion("pred", f"{out.pred_kind} -> {dst} via {how}, rounded to {pdt}",
                                lossy=lossy))
        out = out.replace(pred=pred, pred_kind=dst)
    if out.target_kind not in caps.target_kinds:
        dst = next(k for k in _TARGET_PREFERENCE[out.target_kind] if k in caps.target_kinds)
        tdt = out.input_dtype("target")
        target = convert_encoding(out.target, out.target_kind, dst, tdt, out.class_axis)
        how = "exp" if dst == "prob" else "log"
        convs.append(Conversion("target", f"{out.target_kind} -> {dst} via {how}, rounded to {tdt}"))
        out = out.replace(target=target, target_kind=dst)
    if out.grad and not caps.gradients:
        out = out.replace(grad=False)
        convs.append(Conversion("grad", "gradients not requested (adapter differentiates nothing)"))
    return Translated(case=out, canonical=case, conversions=tuple(convs))


def translate_all(cases, caps) -> list[Translated]:
    """What an adapter with ``caps`` is sent for ``cases``, in order: each case it can
    express, translated, once per sent digest (two canonical cases that become the same
    sent case are sent once)."""
    out, seen = [], set()
    for c in cases:
        tr = translate(c, caps)
        if tr is not None and tr.case.digest not in seen:
            seen.add(tr.case.digest)
            out.append(tr)
    return out
