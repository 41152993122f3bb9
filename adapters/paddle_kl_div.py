"""PaddlePaddle adapters: ``paddle.nn.functional.kl_div`` and ``paddle.nn.KLDivLoss``.

Native call (SPEC.md KL-ARG-2), torch's shape of API::

    paddle.nn.functional.kl_div(input=log Q, label=P, reduction='mean', log_target=False)
    paddle.nn.KLDivLoss(reduction='mean', log_target=False)(input, label)

``input`` is log Q (``pred_kind="logprob"``), ``label`` is P as probabilities or, with
``log_target=True``, log-probabilities.  The four canonical reductions none/sum/mean/batchmean
map 1:1 onto ``reduction=``.  What Paddle 3.3 computes (dynamic mode): the elementwise
``kldiv_loss`` kernel (paddle/phi/kernels/impl/kldiv_loss_kernel_impl.h)::

    log_target:  exp(label) * (label - input)
    otherwise:   label <= 0 ? 0 : label * (log(label) - input)

then ``paddle.mean`` / ``paddle.sum`` / ``paddle.sum(out) / input.shape[0]`` in Python
(python/paddle/nn/functional/loss.py; no division for 0-D input).  Departures
(klconform/known/paddle.toml, docs/frameworks/paddle.md):

* a **negative** target gives 0 where SPEC says NaN (KL-INVALID-1): the ``label <= 0``
  branch; Paddle's own reference in test/legacy_test/test_kldiv_loss_op.py maps negative
  targets to 0 the same way (``np.where(target >= 0, output, 0)``);
* ``log_target=True`` with a zero target (label = -inf): exp(-inf) * (-inf - input) =
  0 * -inf = NaN (KL-ZERO-3);
* the backward kernel has no label gradient (``gradients={"pred"}``): ∂/∂input = -label,
  and 0 wherever label <= 0.

Only float32 and float64 kernels are registered on CPU (float16/bfloat16 raise NotFound);
input and label must have the same rank (no broadcasting).  paddle is imported only in
:meth:`setup`, in the side environment ``paddle`` (``paddle.kl_div@paddle``): importing
it after TensorFlow in one process dies with SIGSEGV.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from klconform.adapters.base import Adapter, Capabilities, Outcome, asked_device, input_text
from klconform.reference.family import Point

DOC_FUNCTIONAL = "https://www.paddlepaddle.org.cn/documentation/docs/en/api/paddle/nn/functional/kl_div_en.html"
DOC_MODULE = "https://www.paddlepaddle.org.cn/documentation/docs/en/api/paddle/nn/KLDivLoss_en.html"
REDUCTIONS = {"none": "none", "sum": "sum", "mean": "mean", "batchmean": "batchmean"}
DTYPES = ("float32", "float64")   # the CPU kernels registered for kldiv_loss


class _PaddleKL(Adapter):
    devices = ("cpu", "cuda")
    framework = "paddlepaddle"
    doc_version = "3.3"
    known_records = ("klconform:known/paddle.toml",)

    def __init__(self) -> None:
        self._paddle = None

    def capabilities(self) -> Capabilities:
        return Capabilities(
            dtypes=frozenset(DTYPES),
            reductions=frozenset(REDUCTIONS),
            pred_kinds=frozenset({"logprob"}),
            target_kinds=frozenset({"prob", "logprob"}),
            weights=frozenset(),
            gradients=frozenset({"pred"}),   # the backward kernel computes d/dinput only
            devices=frozenset({"cpu"}),
            batch_axis=False,
            class_axis=False,                # elementwise
            broadcasting=False,              # InferMeta: same rank, the kernel flattens both
            min_ndim=0,
            max_ndim=8,
            options=("reduction", "log_target"),
        )

    def documented(self, case) -> Point:
        """The docs: ``l(x, y) = y * (log(y) - x)`` (``exp(y) * (y - x)`` with log_target),
        with no epsilon, read as mathematics (0·log 0 = 0, KL-ZERO-1); 'mean' the average of
        all losses, 'sum', 'none', and 'batchmean' "the sum loss divided by batch size"
        (input.shape[0], KL-RED-BATCHMEAN).  The docs also say batchmean's output has shape
        [N]; it is a scalar, as KL-SHAPE-2 wants."""
        return Point(reduction=case.reduction)

    def setup(self) -> dict[str, Any]:
        import paddle

        device = asked_device(["cpu"] + (["cuda"] if paddle.device.is_compiled_with_cuda()
                                         and paddle.device.cuda.device_count() else []))
        paddle.set_device("cpu" if device == "cpu" else "gpu:0")
        self._paddle = paddle
        return {"framework": "paddlepaddle", "version": str(paddle.__version__), "device": device,
                "numpy": np.__version__}

    def unsupported_reason(self, case) -> str | None:
        if case.reduction not in REDUCTIONS:
            return f"reduction {case.reduction!r} has no Paddle equivalent (have {sorted(REDUCTIONS)})"
        if case.pred_kind != "logprob":
            return f"pred_kind {case.pred_kind!r}: Paddle's input is log Q (logprob) only"
        if case.weight is not None or case.sample_weight is not None:
            return "kl_div takes no weights"
        if case.dtype not in DTYPES:
            return f"dtype {case.dtype!r}: no CPU kernel (float32, float64 only)"
        if case.held_shape("target") != case.held_shape("pred"):
            return "input and label must have the same shape (no broadcasting)"
        if case.reduction == "batchmean" and case.shape and case.batch_axis % len(case.shape) != 0:
            return f"batch_axis {case.batch_axis}: batchmean always divides by input.shape[0]"
        return None

    def evaluate(self, case) -> Outcome:
        if self._paddle is None:
            self.setup()
        why = self.unsupported_reason(case)
        if why is not None:
            return Outcome(status="unsupported", error_message=why)
        paddle = self._paddle
        log_target = case.target_kind == "logprob"
        reduction = REDUCTIONS[case.reduction]
        native = self._call_text(input_text(case, 'pred'), input_text(case, 'target'),
                                 reduction, log_target)
        # in case.dtype (no mixed inputs); to_tensor copies the read-only received values
        pred = paddle.to_tensor(case.sent_values("pred"), stop_gradient=not case.grad)
        target = paddle.to_tensor(case.sent_values("target"))
        out = self._call(pred, target, reduction, log_target)
        grads: dict[str, np.ndarray] = {}
        grad_dtypes: dict[str, str] = {}
        if case.grad:
            # head gradient of ones == d sum(output) (KL-GRAD-1)
            (g,) = paddle.grad([out], [pred], grad_outputs=[paddle.ones_like(out)])
            grads["pred"] = g.numpy().astype(np.float64)
            grad_dtypes["pred"] = dtype_name(g.dtype)
        value = out.numpy()
        return Outcome(status="ok", value=np.asarray(value, dtype=np.float64), dtype=dtype_name(out.dtype),
                       shape=tuple(out.shape), grads=grads, grad_dtypes=grad_dtypes, native_call=native)

    def _call(self, pred, target, reduction: str, log_target: bool):
        raise NotImplementedError

    def _call_text(self, pred: str, target: str, reduction: str, log_target: bool) -> str:
        raise NotImplementedError


def dtype_name(dtype) -> str:
    """``paddle.float32`` -> ``"float32"``."""
    return str(dtype).removeprefix("paddle.")


class PaddleKLDiv(_PaddleKL):
    """``paddle.nn.functional.kl_div(input=log Q, label=P, reduction=..., log_target=...)``."""

    name = "paddle.kl_div"
    api = "paddle.nn.functional.kl_div"
    doc_url = DOC_FUNCTIONAL

    def _call(self, pred, target, reduction, log_target):
        return self._paddle.nn.functional.kl_div(pred, target, reduction=reduction, log_target=log_target)

    def _call_text(self, pred, target, reduction, log_target):
        return (f"paddle.nn.functional.kl_div(input={pred}, label={target}, "
                f"reduction={reduction!r}, log_target={log_target})")


class PaddleKLDivLoss(_PaddleKL):
    """``paddle.nn.KLDivLoss(reduction=..., log_target=...)(input=log Q, label=P)``."""

    name = "paddle.KLDivLoss"
    api = "paddle.nn.KLDivLoss"
    doc_url = DOC_MODULE

    def _call(self, pred, target, reduction, log_target):
        return self._paddle.nn.KLDivLoss(reduction=reduction, log_target=log_target)(pred, target)

    def _call_text(self, pred, target, reduction, log_target):
        return f"paddle.nn.KLDivLoss(reduction={reduction!r}, log_target={log_target})({pred}, {target})"
