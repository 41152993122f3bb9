"""PyTorch adapters: ``torch.nn.functional.kl_div`` and ``torch.nn.KLDivLoss``.

Both drive the same kernel (``KLDivLoss.forward`` calls ``F.kl_div``), so they share one
implementation and differ only in the native call.  torch's ``input`` is log Q
(``pred_kind="logprob"``, KL-INPUT-LOGPROB) and its ``target`` is P, as probabilities
(``log_target=False``) or log-probabilities (``log_target=True``) — SPEC.md KL-ARG-2.
The four canonical reductions none/sum/mean/batchmean map 1:1 onto torch's ``reduction=``.

torch is imported only in :meth:`setup` (the worker); the controller imports this module
without torch.  Observed departures from the canonical definition are recorded in
``klconform/known/torch.toml`` and explained in
``docs/frameworks/torch.md``.
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np

from klconform.adapters.base import Adapter, Capabilities, Outcome, asked_device, input_text
from klconform.reference.family import Point

DOC_FUNCTIONAL = "https://pytorch.org/docs/stable/generated/torch.nn.functional.kl_div.html"
DOC_MODULE = "https://pytorch.org/docs/stable/generated/torch.nn.KLDivLoss.html"
# Canonical reduction -> torch's reduction= string (identical names, KL-RED-*).
REDUCTIONS = {"none": "none", "sum": "sum", "mean": "mean", "batchmean": "batchmean"}
DTYPES = ("float16", "bfloat16", "float32", "float64")


def documented_point(case) -> Point:
    """The reference-family point torch's documentation claims for ``case``.

    The KLDivLoss page defines the pointwise loss mathematically,
    ``y_true * log(y_true / y_pred)``, with no epsilon; read with the usual convention
    0·log 0 = 0 (KL-ZERO-1) that is the canonical term.  (Its "roughly equivalent" code,
    ``target * (target.log() - input)``, would be NaN at every zero target; the kernel's
    NaN at 0·(-inf) is recorded as a discrepancy, KL-ZERO-3.)  Reductions: ``mean`` =
    ``loss_pointwise.mean()`` (all elements, KL-RED-MEAN), ``sum``, ``none``, and
    ``batchmean`` = ``loss_pointwise.sum() / input.size(0)``: the divisor is dim 0 *of
    input*, not of the broadcast shape.  Where that differs from the broadcast batch size
    the documented value is the family's ``sum`` (divisor 1) or ``mean`` (divisor = all
    elements) when it coincides with one of them; otherwise the family cannot express it
    and ``batchmean`` is kept (klconform/known/torch.toml records those cases).
    """
    reduction = case.reduction
    if reduction == "batchmean":
        reduction = _documented_batchmean(case)
    return Point(reduction=reduction)


def _documented_batchmean(case) -> str:
    """The family reduction equal to ``sum / input.size(0)`` for ``case`` (see above)."""
    shape = case.shape
    if not shape:
        return "batchmean"           # 0-D: torch skips the division; KL-RED-BATCHMEAN says /1
    divisor = case.pred.shape[0] if case.pred.ndim else 1   # torch: no division for 0-D input
    if divisor == shape[0]:
        return "batchmean"
    if divisor == 1:
        return "sum"
    if divisor == int(np.prod(shape)):
        return "mean"
    return "batchmean"


def input_tensor(torch, case, side: str, device: str = "cpu", grad: bool = False):
    """Input ``side`` of ``case`` as a torch tensor of the dtype it is sent in (exact: Case
    invariant), sharing the received values (``Case.sent_values``) where dtype and device
    allow."""
    with warnings.catch_warnings():
        # the values are read-only (a view of the received bytes); torch warns that it
        # has no read-only tensors - the losses and autograd never write their inputs
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        t = torch.from_numpy(case.sent_values(side))
    t = t.to(device=device, dtype=getattr(torch, case.input_dtype(side)))
    return t.requires_grad_(True) if grad else t


def torch_dtype_name(dtype) -> str:
    """``torch.float32`` -> ``"float32"``."""
    return str(dtype).removeprefix("torch.")


class _TorchKL(Adapter):
    """Shared implementation; subclasses define :meth:`_call` and :meth:`_call_text`."""

    framework = "torch"
    doc_version = "2.13"
    # both APIs run the same kernel: one reviewed file for the two
    known_records = ("klconform:known/torch.toml",)
    devices = ("cpu", "cuda")

    def __init__(self) -> None:
        self._torch = None
        self._device = "cpu"
        self._devices = frozenset({"cpu"})

    # ------------------------------------------------------------------ declarations
    def capabilities(self) -> Capabilities:
        return Capabilities(
            dtypes=frozenset(DTYPES),
            reductions=frozenset(REDUCTIONS),
            pred_kinds=frozenset({"logprob"}),
            target_kinds=frozenset({"prob", "logprob"}),
            weights=frozenset(),
            gradients=frozenset({"pred", "target"}),
            devices=self._devices,
            batch_axis=False,
            class_axis=False,      # elementwise: no reduction needs the class axis
            broadcasting=True,     # torch broadcasts input and target silently (no warning)
            min_ndim=0,
            max_ndim=8,
            options=("reduction", "log_target"),
            # mixed input dtypes: torch promotes (float32 with float64 -> float64, float16 with
            # bfloat16 -> float32); its kl_div became a composite of promoting ops after
            # pytorch/pytorch#80158 (backward failed on a float32 input with a float64 target)
            input_dtypes=frozenset({"promoted"}),
        )

    def documented(self, case) -> Point:
        return documented_point(case)

    # ------------------------------------------------------------------ worker side
    def setup(self) -> dict[str, Any]:
        import torch

        self._torch = torch
        cuda = bool(torch.cuda.is_available())
        self._devices = frozenset({"cpu", "cuda"}) if cuda else frozenset({"cpu"})
        self._device = asked_device(self._devices)
        return {"framework": "torch", "version": str(torch.__version__), "device": self._device,
                "devices": sorted(self._devices), "numpy": str(np.__version__),
                "threads": torch.get_num_threads()}

    def unsupported_reason(self, case) -> str | None:
        """Why ``case`` cannot be asked of torch's kl_div, or None when it can."""
        if case.reduction not in REDUCTIONS:
            return f"reduction {case.reduction!r} has no torch equivalent (torch has {sorted(REDUCTIONS)})"
        if case.pred_kind != "logprob":
            return f"pred_kind {case.pred_kind!r}: torch's input is log Q (logprob) only"
        if case.weight is not None or case.sample_weight is not None:
            return "kl_div takes no weights"
        if case.reduction == "batchmean" and case.batch_axis not in (0, -len(case.shape)) and case.shape:
            return f"batch_axis {case.batch_axis}: torch's batchmean always divides by input.size(0)"
        for dt in (case.dtype, case.input_dtype("target"), case.input_dtype("pred")):
            if dt not in DTYPES:
                return f"dtype {dt!r} not supported"
        if case.dtype_form == "cast":
            return "kl_div takes no dtype argument: the result is in the promotion of the input dtypes"
        if case.target_sent_shape is not None:
            return "torch broadcasts input and target: a reshaped target is not its question"
        return None

    def evaluate(self, case) -> Outcome:
        if self._torch is None:
            self.setup()
        why = self.unsupported_reason(case)
        if why is not None:
            return Outcome(status="unsupported", error_message=why)
        torch = self._torch
        log_target = case.target_kind == "logprob"
        reduction = REDUCTIONS[case.reduction]
        native = self._call_text(input_text(case, "pred"), input_text(case, "target"),
                                 reduction, log_target)
        pred = input_tensor(self._torch, case, "pred", self._device, case.grad)
        target = input_tensor(self._torch, case, "target", self._device, case.grad)
        out = self._call(pred, target, reduction, log_target)
        grads: dict[str, np.ndarray] = {}
        grad_dtypes: dict[str, str] = {}
        if case.grad:
            # head gradient of ones == d sum(output) (DESIGN.md, KL-GRAD-1)
            out.backward(torch.ones_like(out))
            for name, t in (("pred", pred), ("target", target)):
                if t.grad is not None:
                    grads[name] = _to_f64(t.grad)
                    grad_dtypes[name] = torch_dtype_name(t.grad.dtype)
        return Outcome(status="ok", value=_to_f64(out.detach()), dtype=torch_dtype_name(out.dtype),
                       shape=tuple(out.shape), grads=grads, grad_dtypes=grad_dtypes, native_call=native)

    # subclasses
    def _call(self, pred, target, reduction: str, log_target: bool):
        raise NotImplementedError

    def _call_text(self, pred: str, target: str, reduction: str, log_target: bool) -> str:
        raise NotImplementedError


def _to_f64(t) -> np.ndarray:
    """A torch tensor as a float64 numpy array (bfloat16 widens exactly via float32)."""
    import torch
    return t.detach().to("cpu", torch.float64).numpy().astype(np.float64)


class TorchKLDiv(_TorchKL):
    """``torch.nn.functional.kl_div(input=log Q, target=P, reduction=..., log_target=...)``."""

    name = "torch.kl_div"
    api = "torch.nn.functional.kl_div"
    doc_url = DOC_FUNCTIONAL

    def _call(self, pred, target, reduction, log_target):
        return self._torch.nn.functional.kl_div(input=pred, target=target, reduction=reduction,
                                                log_target=log_target)

    def _call_text(self, pred, target, reduction, log_target):
        return (f"torch.nn.functional.kl_div(input={pred}, target={target}, "
                f"reduction={reduction!r}, log_target={log_target})")


class TorchKLDivLoss(_TorchKL):
    """``torch.nn.KLDivLoss(reduction=..., log_target=...)(input=log Q, target=P)``."""

    name = "torch.KLDivLoss"
    api = "torch.nn.KLDivLoss"
    doc_url = DOC_MODULE

    def _call(self, pred, target, reduction, log_target):
        loss = self._torch.nn.KLDivLoss(reduction=reduction, log_target=log_target)
        return loss(pred, target)

    def _call_text(self, pred, target, reduction, log_target):
        return f"torch.nn.KLDivLoss(reduction={reduction!r}, log_target={log_target})({pred}, {target})"


# torch.nn.KLDivLoss's deprecated arguments: (size_average, reduce) -> the reduction= string
# they stand for, per torch/nn/_reduction.py legacy_get_string (None counts as True):
# reduce=False -> 'none' (size_average ignored); size_average=False -> 'sum'; else 'mean'.
LEGACY_ARGS = {"none": {"size_average": None, "reduce": False},
               "sum": {"size_average": False, "reduce": None},
               "mean": {"size_average": True, "reduce": None}}
DOC_LEGACY = DOC_MODULE + "#torch.nn.KLDivLoss"


def legacy_reduction(size_average: bool | None, reduce: bool | None) -> str:
    """The reduction string torch's ``_Reduction.legacy_get_string`` derives (without its
    warning): ``reduce=False`` -> ``'none'``; ``size_average=False`` -> ``'sum'``; else
    ``'mean'`` (None counts as True)."""
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    if size_average and reduce:
        return "mean"
    return "sum" if reduce else "none"


class TorchKLDivLossLegacy(_TorchKL):
    """``torch.nn.KLDivLoss(size_average=..., reduce=..., log_target=...)(input=log Q, target=P)``:
    the deprecated arguments, still accepted by torch 2.x with a UserWarning ("size_average and
    reduce args will be deprecated, please use reduction='...' instead."), which the worker
    records as the outcome's warnings.

    The docs of the arguments (KLDivLoss page): ``size_average``: "By default, the losses are
    averaged over each loss element in the batch. ... When reduce is False, ignored";
    ``reduce``: "When reduce is False, returns a loss per batch element instead and ignores
    size_average".  So the legacy 'mean' averages over *all* elements (KL-RED-MEAN, not
    batchmean), 'sum' sums them and reduce=False gives the elementwise loss; there is no
    legacy spelling of batchmean.  One case per canonical reduction among none/sum/mean,
    asked with the arguments of :data:`LEGACY_ARGS`."""

    name = "torch.KLDivLoss_legacy"
    api = "torch.nn.KLDivLoss(size_average, reduce)"
    doc_url = DOC_LEGACY

    def capabilities(self) -> Capabilities:
        return dataclasses.replace(super().capabilities(), reductions=frozenset(LEGACY_ARGS),
                                   options=("size_average", "reduce", "log_target"))

    def unsupported_reason(self, case) -> str | None:
        if case.reduction not in LEGACY_ARGS:
            return (f"reduction {case.reduction!r}: size_average/reduce spell only {sorted(LEGACY_ARGS)} "
                    f"(there is no legacy batchmean)")
        return super().unsupported_reason(case)

    def _call(self, pred, target, reduction, log_target):
        loss = self._torch.nn.KLDivLoss(**LEGACY_ARGS[reduction], log_target=log_target)
        return loss(pred, target)

    def _call_text(self, pred, target, reduction, log_target):
        args = ", ".join(f"{k}={v!r}" for k, v in LEGACY_ARGS[reduction].items())
        return f"torch.nn.KLDivLoss({args}, log_target={log_target})({pred}, {target})"
