"""MXNet adapter: ``mxnet.gluon.loss.KLDivLoss`` (MXNet 1.x Gluon, NDArray API).

Native call (SPEC.md KL-ARG-2)::

    mxnet.gluon.loss.KLDivLoss(from_logits, axis, weight, batch_axis)(pred, label, sample_weight)

``label`` is P as probabilities (``target_kind="prob"``); ``pred`` is log Q with
``from_logits=True`` (``pred_kind="logprob"``) or logits with ``from_logits=False``
(``pred_kind="logits"``: MXNet applies ``log_softmax(pred, axis)``, KL-INPUT-LOGITS).

What the implementation does (python/mxnet/gluon/loss.py, identical in 1.8.0 and 1.9.1
except the last line)::

    loss = label * (F.log(label + 1e-12) - pred)              # KL-EPS-TARGET-LOG, eps=1e-12
    loss = _apply_weighting(F, loss, weight, sample_weight)   # broadcast_mul, then * weight
    return F.mean(loss, axis=batch_axis, exclude=True)        # 1.8.0: KL-RED-SAMPLE-MEAN
    return F.sum(loss, axis=batch_axis, exclude=True)         # 1.9.1: KL-RED-SAMPLE-SUM

The 1.9.1 change came from apache/mxnet#18423 (issue #18506).  The adapter drives the
API as users do and does not compensate.  The canonical question it answers is
``sample_sum``: the KL divergence of each sample's distribution (KL-RED-SAMPLE-SUM), which
is what a per-sample KL loss means and what 1.9.1 computes.  MXNet 1.8.0 divides that by
the number of non-batch elements (``sample_mean``, what the docstring's output sentence
promises: "Dimensions other than batch_axis are averaged out"); that shows up as a recorded
semantic discrepancy of the 1.8 run (klconform/known/mxnet_KLDivLoss.toml,
docs/frameworks/mxnet.md), while :meth:`MXNetKLDivLoss.documented` keeps the docs' claim.

mxnet is imported only in :meth:`MXNetKLDivLoss.setup` (the worker); MXNet 1.x needs the
alias ``numpy.bool`` that numpy >= 1.24 removed, restored there before the import.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from klconform.adapters.base import Adapter, Capabilities, Outcome, input_text, shape_text
from klconform.reference.family import Point

DOC_URL = ("https://mxnet.apache.org/versions/1.9.1/api/python/docs/api/gluon/loss/"
           "index.html#mxnet.gluon.loss.KLDivLoss")
# bfloat16 is left out: MXNet 1.x exposes it only through oneDNN-specific paths, not nd.array.
DTYPES = ("float16", "float32", "float64")
# canonical input kind -> from_logits
FROM_LOGITS = {"logprob": True, "logits": False}


def documented_point(case) -> Point:
    """The reference-family point MXNet's API documentation claims for ``case``.

    The docstring (same text in 1.8.0 and 1.9.1) gives ``L = sum_i label_i * [log(label_i)
    - pred_i]`` (``log(prob_i)`` with ``prob = softmax(pred)`` when ``from_logits=False``)
    with no epsilon, and says of the output: "loss tensor with shape (batch_size,).
    Dimensions other than batch_axis are averaged out."  The output sentence is the only
    statement about the reduction, so the documented point is ``sample_mean`` without
    epsilon; the formula is read as mathematics (0·log 0 = 0, KL-ZERO-1), not as IEEE
    code.  The two statements disagree (a sum over i vs an average): docs/frameworks/mxnet.md.
    """
    return Point(reduction="sample_mean")


def _normalise(axis: int, ndim: int, what: str) -> int:
    """``axis`` as a non-negative index into ``ndim`` dimensions, or ValueError."""
    if not -ndim <= axis < ndim:
        raise ValueError(f"{what} {axis} is out of range for {ndim} dimension(s)")
    return axis % ndim


def pred_class_axis(case) -> int:
    """The class axis counted on ``case.pred``'s own shape (log_softmax runs on pred before
    broadcasting, KL-INPUT-LOGITS); ValueError when pred lacks that dimension."""
    ndim = len(case.shape)
    ca = _normalise(case.class_axis, ndim, "class_axis")
    pred_shape = case.held_shape("pred")
    axis = ca - (ndim - len(pred_shape))
    if axis < 0:
        raise ValueError(f"class_axis {case.class_axis}: pred of shape {list(pred_shape)} "
                         f"has no class dimension (it is broadcast along it)")
    return axis


class MXNetKLDivLoss(Adapter):
    """``mxnet.gluon.loss.KLDivLoss(from_logits, axis, weight, batch_axis)(pred, label, sample_weight)``."""

    name = "mxnet.KLDivLoss"
    api = "mxnet.gluon.loss.KLDivLoss"
    framework = "mxnet"
    doc_url = DOC_URL
    doc_version = "1.9.1"

    def __init__(self) -> None:
        self._mx = None

    # ------------------------------------------------------------------ declarations
    def capabilities(self) -> Capabilities:
        return Capabilities(
            dtypes=frozenset(DTYPES),
            reductions=frozenset({"sample_sum"}),   # the per-sample KL; see the module docstring
            pred_kinds=frozenset(FROM_LOGITS),
            target_kinds=frozenset({"prob"}),
            weights=frozenset({"scalar", "sample"}),
            gradients=frozenset({"pred", "target"}),
            devices=frozenset({"cpu"}),
            batch_axis=True,
            class_axis=True,        # `axis` of log_softmax (from_logits=False)
            broadcasting=True,      # NDArray arithmetic broadcasts pred against label
            min_ndim=1,             # sum/mean(..., exclude=True) fails on 0-D (KL-RED-0D)
            max_ndim=8,
            options=("from_logits", "axis", "batch_axis", "weight", "sample_weight"),
            # pred and label of different dtypes: asked, and what MXNet does is the outcome
            input_dtypes=frozenset({"promoted"}),
            # "label and pred can have arbitrary shape as long as they have the same number
            # of elements": hybrid_forward reshapes label like pred (_reshape_like), KL-SHAPE-3
            reshaped_target=True,
        )

    def documented(self, case) -> Point:
        return documented_point(case)

    # ------------------------------------------------------------------ worker side
    def setup(self) -> dict[str, Any]:
        if "bool" not in np.__dict__:
            np.bool = bool          # MXNet 1.x still uses the alias removed in numpy 1.24
        import mxnet

        self._mx = mxnet
        return {"framework": "mxnet", "version": mxnet.__version__, "device": "cpu",
                "numpy": np.__version__}

    def unsupported_reason(self, case) -> str | None:
        """Why ``case`` cannot be asked of KLDivLoss, or None when it can."""
        if case.reduction != "sample_sum":
            return (f"reduction {case.reduction!r}: KLDivLoss has no reduction option; it always "
                    f"reduces over the non-batch axes (canonical 'sample_sum', the per-sample KL)")
        if case.pred_kind not in FROM_LOGITS:
            return f"pred_kind {case.pred_kind!r}: pred is log Q (from_logits=True) or logits (from_logits=False)"
        if case.target_kind != "prob":
            return f"target_kind {case.target_kind!r}: label is P as probabilities only"
        for dt in (case.dtype, case.input_dtype("target"), case.input_dtype("pred")):
            if dt not in DTYPES:
                return f"dtype {dt!r} is not among {DTYPES}"
        if case.dtype_form == "cast":
            return "KLDivLoss takes no dtype argument: a compute dtype other than the inputs' is not expressible"
        if case.pred_kind == "logits":
            try:
                pred_class_axis(case)
            except ValueError as exc:
                return str(exc)
        return None

    def native_call(self, case, batch_axis: int, axis: int) -> str:
        sw = "None" if case.sample_weight is None else shape_text(case.sample_weight, case.dtype)
        return (f"mxnet.gluon.loss.KLDivLoss(from_logits={FROM_LOGITS[case.pred_kind]}, axis={axis}, "
                f"weight={case.weight!r}, batch_axis={batch_axis})(pred={input_text(case, 'pred')}, "
                f"label={input_text(case, 'target')}, sample_weight={sw})")

    def evaluate(self, case) -> Outcome:
        if self._mx is None:
            self.setup()
        why = self.unsupported_reason(case)
        if why is not None:
            return Outcome(status="unsupported", error_message=why)
        mx = self._mx
        ndim = len(case.shape)
        # batch_axis counts on the loss (the broadcast shape S); MXNet takes it as given
        batch_axis = _normalise(case.batch_axis, ndim, "batch_axis") if ndim else case.batch_axis
        axis = pred_class_axis(case) if case.pred_kind == "logits" else case.class_axis
        native = self.native_call(case, batch_axis, axis)
        loss_fn = mx.gluon.loss.KLDivLoss(from_logits=FROM_LOGITS[case.pred_kind], axis=axis,
                                          weight=case.weight, batch_axis=batch_axis)
        # each input as sent (Case.sent_values): in its own dtype (KL-DTYPE-4), the label in
        # its sent shape (KL-SHAPE-3); exact, the values fit the dtype (Case invariant)
        arrays = [(case.sent_values("pred"), case.input_dtype("pred")),
                  (case.sent_values("target"), case.input_dtype("target"))]
        if case.sample_weight is not None:
            arrays.append((case.sample_weight, case.dtype))
        try:
            # MXNet 2 Gluon blocks take only mx.np arrays ("Block's inputs must be of type
            # mxnet.numpy.ndarray"); 1.x takes the legacy NDArray
            array = mx.np.array if int(mx.__version__.split(".")[0]) >= 2 else mx.nd.array
            args = [array(a, dtype=dt) for a, dt in arrays]   # pred, label[, sample_weight]
            value, grads = self._run(loss_fn, args, case.grad)
        except mx.base.MXNetError as exc:
            return Outcome(status="error", error_type="MXNetError", error_message=mxnet_error_line(exc),
                           native_call=native)
        grad_dtypes = {k: np.dtype(g.dtype).name for k, g in grads.items()}
        grads = {k: g.astype(np.float64) for k, g in grads.items()}
        if "target" in grads and case.target_sent_shape is not None:
            # d/d(label) comes in the sent shape: the same entries, row-major, as the held target
            grads["target"] = grads["target"].reshape(case.held_shape("target"))
        return Outcome(status="ok", value=value.astype(np.float64), dtype=np.dtype(value.dtype).name,
                       shape=tuple(value.shape), grads=grads, grad_dtypes=grad_dtypes,
                       native_call=native)

    def _run(self, loss_fn, args, grad: bool) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Call ``loss_fn(*args)`` (pred, label[, sample_weight]); with ``grad``, record it
        and backpropagate a head gradient of ones (d sum(output), KL-GRAD-1)."""
        mx = self._mx
        pred, label = args[0], args[1]
        if not grad:
            return loss_fn(*args).asnumpy(), {}
        pred.attach_grad()
        label.attach_grad()
        with mx.autograd.record():
            out = loss_fn(*args)
        out.backward()
        # asnumpy() synchronises with MXNet's async engine: its errors surface here
        return out.asnumpy(), {"pred": pred.grad.asnumpy(), "target": label.grad.asnumpy()}


def mxnet_error_line(exc: BaseException) -> str:
    """The informative line of an MXNetError (its text starts with a C++ 'Traceback')."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith("MXNetError:"):
            return ln.removeprefix("MXNetError:").strip()
    return lines[-1] if lines else type(exc).__name__
