"""Liger-Kernel's distillation losses (liger-kernel 0.8.5): ``LigerJSD`` and
``LigerKLDIVLoss``, Triton kernels: **CUDA devices only** (also ROCm/XPU builds; never the
CPU).  On a worker without a CUDA device :meth:`setup` raises
:class:`~klconform.adapters.base.DeviceUnavailable` before importing Liger, so the run is
skipped with that reason; the side environment ``distill`` (CPU torch) does not install it
(``liger-kernel`` needs ``triton``).

* ``LigerJSD(beta=0.5, ignore_index=-100)(log_q, log_p, shift_labels=None)``
  (liger_kernel/transformers/jsd.py, kernel liger_kernel/ops/jsd.py): inputs are
  *log-probabilities* of shape ``(BT, V)``, student first; the adapter passes
  ``log_softmax(z / τ)`` of each side, as its docstring's example does.  The kernel branches
  on ``beta == 0.0`` (forward KL ``P·(log P − log Q)``) and ``beta == 1.0`` (reverse KL):
  the ``jsd_endpoints="kl"`` member (KL-DISTILL-JSD-ENDS), as TRL; otherwise
  ``β·P·(log P − log M) + (1 − β)·Q·(log Q − log M)`` with ``log M`` from the row maximum.
  The loss is divided by the kept tokens (``n_non_ignore``); no gradient for the teacher.
* ``LigerKLDIVLoss(eps=1e-10, *args, **kwargs)`` (liger_kernel/transformers/kl_div.py)
  subclasses ``torch.nn.KLDivLoss`` (default ``reduction='mean'``, ``log_target=False``):
  ``y_true·(log(max(y_true, eps)) − y_pred)`` — a clamp of the target inside its log, not
  ``target_log_eps``'s ``log(p + eps)`` — and no gradient for the target.  Its first
  positional argument is ``eps``: ``LigerKLDIVLoss("batchmean")`` sets eps, not the
  reduction.  It takes log-probabilities and probabilities, a question
  :class:`klconform.case.Case` already asks; it is listed here with the other Liger loss
  because it shares the device restriction.
"""
from __future__ import annotations

from typing import Any

from klconform.adapters.base import (Adapter, Capabilities, DeviceUnavailable, Outcome, asked_device,
                                     input_text)
from klconform.adapters.distill_base import DistillAdapter, DistillCapabilities, shape_of
from klconform.adapters.torch_kl_div import _to_f64, input_tensor, torch_dtype_name
from klconform.reference.family import Point

DOC_URL = "https://github.com/linkedin/Liger-Kernel/blob/v0.8.5/src/liger_kernel/transformers/jsd.py"
DTYPES = frozenset({"float16", "bfloat16", "float32"})
CUDA_ONLY = "Liger-Kernel's losses are Triton kernels: CUDA devices only, and this worker has none"


class LigerJSD(DistillAdapter):
    name = "liger.LigerJSD"
    api = "liger_kernel.transformers.LigerJSD"
    framework = "liger-kernel"
    doc_url = DOC_URL
    doc_version = "0.8.5"
    devices = ("cuda",)

    def distill_capabilities(self) -> DistillCapabilities:
        return DistillCapabilities(
            divergences=frozenset({"jsd", "forward", "reverse"}), reductions=frozenset({"distribution_mean"}),
            dtypes=DTYPES, result_dtype=None, temperature=True, mask=True, chunks=False,
            ndims=frozenset({2}), gradients=frozenset({"pred"}), options=("beta", "ignore_index"),
        )

    def documented_distill(self, case) -> dict[str, Any]:
        """The docstring: "beta ... It implements forward/reverse KL when beta equals 0 and 1
        respectively"; the loss is averaged over the non-ignored tokens."""
        if case.divergence == "jsd":
            return {"divergence": "jsd", "beta": case.asked_param(), "jsd_endpoints": "kl",
                    "reduction": case.reduction}
        return {"divergence": case.divergence, "reduction": case.reduction}

    def setup(self) -> dict[str, Any]:
        import torch

        if not torch.cuda.is_available():
            raise DeviceUnavailable(CUDA_ONLY)
        env = super().setup()
        import liger_kernel
        from liger_kernel.transformers import LigerJSD as _LigerJSD

        self._cls = _LigerJSD
        return {"framework": "liger-kernel", "version": str(getattr(liger_kernel, "__version__", "")), **env}

    def _call(self, student, teacher, labels, case):
        torch = self._torch
        beta = {"forward": 0.0, "reverse": 1.0}.get(case.divergence, case.asked_param())
        tau = case.temperature
        log_q = torch.log_softmax(student / tau, dim=-1)
        log_p = torch.log_softmax(teacher / tau, dim=-1)
        out = self._cls(beta=beta)(log_q, log_p, labels)
        lab = "None" if labels is None else f"<int64{list(case.shape[:-1])}>"
        native = (f"LigerJSD(beta={beta!r})(log_softmax(student{shape_of(case)} / {tau!r}), "
                  f"log_softmax(teacher / {tau!r}), {lab})")
        return out, native


class LigerKLDIVLoss(Adapter):
    """``LigerKLDIVLoss(reduction=..., log_target=...)(y_pred=log Q, y_true=P)`` on the
    current case model (pred ``logprob``, target ``prob``/``logprob``)."""

    name = "liger.LigerKLDIVLoss"
    api = "liger_kernel.transformers.LigerKLDIVLoss"
    framework = "liger-kernel"
    doc_url = "https://github.com/linkedin/Liger-Kernel/blob/v0.8.5/src/liger_kernel/transformers/kl_div.py"
    doc_version = "0.8.5"
    devices = ("cuda",)

    def capabilities(self) -> Capabilities:
        return Capabilities(
            dtypes=frozenset(DTYPES), reductions=frozenset({"none", "sum", "mean", "batchmean"}),
            pred_kinds=frozenset({"logprob"}), target_kinds=frozenset({"prob", "logprob"}),
            gradients=frozenset({"pred"}), devices=frozenset({"cuda"}), min_ndim=2, max_ndim=2,
            options=("reduction", "log_target", "eps"),
        )

    def documented(self, case) -> Point:
        """A subclass of torch.nn.KLDivLoss: its docs (the canonical KL, torch's reductions);
        the eps clamp is not documented beyond "A small value to avoid division by zero"."""
        return Point(reduction=case.reduction)

    def setup(self) -> dict[str, Any]:
        import torch

        if not torch.cuda.is_available():
            raise DeviceUnavailable(CUDA_ONLY)
        self._device = asked_device(["cuda"])
        import liger_kernel
        from liger_kernel.transformers import LigerKLDIVLoss as _Loss

        self._torch, self._cls = torch, _Loss
        return {"framework": "liger-kernel", "version": str(getattr(liger_kernel, "__version__", "")),
                "torch": str(torch.__version__), "device": self._device}

    def evaluate(self, case) -> Outcome:
        if case.reduction not in self.capabilities().reductions or case.pred_kind != "logprob":
            return Outcome(status="unsupported", error_message="torch's reductions on log Q only")
        torch = self._torch
        log_target = case.target_kind == "logprob"
        pred = input_tensor(torch, case, "pred", self._device, case.grad)
        target = input_tensor(torch, case, "target", self._device, False)
        out = self._cls(reduction=case.reduction, log_target=log_target)(pred, target)
        grads, grad_dtypes = {}, {}
        if case.grad:
            out.backward(torch.ones_like(out))
            grads["pred"] = _to_f64(pred.grad)
            grad_dtypes["pred"] = torch_dtype_name(pred.grad.dtype)
        native = (f"LigerKLDIVLoss(reduction={case.reduction!r}, log_target={log_target})"
                  f"({input_text(case, 'pred')}, {input_text(case, 'target')})")
        return Outcome(status="ok", value=_to_f64(out.detach()), dtype=torch_dtype_name(out.dtype),
                       shape=tuple(out.shape), grads=grads, grad_dtypes=grad_dtypes, native_call=native)
