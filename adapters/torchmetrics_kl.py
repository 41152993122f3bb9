"""torchmetrics adapters: the metric ``torchmetrics.regression.KLDivergence`` and the
function ``torchmetrics.functional.kl_divergence``.

Native calls (torchmetrics 1.9.0, torchmetrics/functional/regression/kl_divergence.py)::

    KLDivergence(log_prob=False, reduction="mean")(p, q)      # the metric's forward
    kl_divergence(p, q, log_prob=False, reduction="mean")

``p`` is P (the target, first argument: the opposite of ``torch.nn.functional.kl_div``'s
(input, target)) and ``q`` is Q, both of shape ``(N, d)`` (2-D only, the class axis last).
With ``log_prob=False`` both are probabilities, and each row is divided by its sum first
(``p / p.sum(-1)``, the docs: "will normalize to make sure the distributes sum to 1"), then
``_safe_xlogy(p, p / q).sum(-1)`` (``x·log y``, 0 where ``x == 0``): the ``normalise`` point
(KL-NORM-1).  With ``log_prob=True`` both are log-probabilities and the measure is
``sum(p.exp() * (p - q), -1)``, not normalised.  ``reduction``: ``"mean"`` (default) is
the sum of the per-row measures divided by N (``distribution_mean``), ``"sum"`` their sum,
``"none"``/None the per-row measures (``distribution``).

torchmetrics 1.4 and 1.5 warned (a ``DeprecationWarning`` from the metric's constructor)
that ``p`` would become ``target`` and move to second place in 1.5; 1.6 dropped the warning
and the order never changed (docs/frameworks/torchmetrics.md).  torch and torchmetrics are
imported only in :meth:`setup`, in the side environment ``distill``
(``torchmetrics.KLDivergence@distill``).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from klconform.adapters.base import Adapter, Capabilities, Outcome, asked_device, input_text
from klconform.adapters.torch_kl_div import _to_f64, input_tensor, torch_dtype_name
from klconform.reference.family import Point

DOC_METRIC = "https://lightning.ai/docs/torchmetrics/stable/regression/kl_divergence.html"
REDUCTIONS = {"distribution_mean": "mean", "sum": "sum", "distribution": "none"}
DTYPES = ("float16", "bfloat16", "float32", "float64")


class _TorchmetricsKL(Adapter):
    framework = "torchmetrics"
    doc_url = DOC_METRIC
    doc_version = "1.9"
    devices = ("cpu", "cuda")
    known_records = ("klconform:known/torchmetrics.toml",)

    def __init__(self) -> None:
        self._torch = None
        self._tm = None
        self._device = "cpu"

    def capabilities(self) -> Capabilities:
        return Capabilities(
            dtypes=frozenset(DTYPES),
            reductions=frozenset(REDUCTIONS),
            pred_kinds=frozenset({"prob", "logprob"}),
            target_kinds=frozenset({"prob", "logprob"}),
            weights=frozenset(),
            gradients=frozenset(self.gradients),
            devices=frozenset({"cpu"}),
            batch_axis=False,
            class_axis=False,        # the last axis, always
            broadcasting=False,      # _check_same_shape
            min_ndim=2,
            max_ndim=2,              # "Expected both p and q distribution to be 2D"
            options=("log_prob", "reduction"),
        )

    def documented(self, case) -> Point:
        """The docs: D_KL(P‖Q) = Σ P log(P/Q) per sample of ``(N, d)`` inputs, "If given as
        probabilities, will normalize to make sure the distributes sum to 1" (KL-NORM-1);
        log-probabilities as given; 'mean' averages over the N samples."""
        return Point(reduction=case.reduction, normalise=case.target_kind == "prob")

    def setup(self) -> dict[str, Any]:
        import torch
        import torchmetrics

        self._torch, self._tm = torch, torchmetrics
        cuda = ["cuda"] if torch.cuda.is_available() else []
        self._device = asked_device(["cpu"] + cuda)
        return {"framework": "torchmetrics", "version": str(torchmetrics.__version__), "torch": str(torch.__version__),
                "device": self._device, "numpy": np.__version__}

    def unsupported_reason(self, case) -> str | None:
        if case.reduction not in REDUCTIONS:
            return f"reduction {case.reduction!r}: torchmetrics reduces over the N axis only ({sorted(REDUCTIONS)})"
        if case.target_kind != case.pred_kind:
            return "log_prob applies to both inputs: P and Q must be both probabilities or both log-probabilities"
        if case.weight is not None or case.sample_weight is not None:
            return "KLDivergence takes no weights"
        if len(case.shape) != 2 or case.held_shape("target") != case.held_shape("pred"):
            return "p and q must both be 2-D (N, d), of one shape"
        if case.class_axis % 2 != 1 or case.batch_axis % 2 != 0:
            return "the class axis is the last, the sample axis the first"
        if case.dtype_form != "same" or case.target_sent_shape is not None:
            return "inputs in the case's dtype and shape only"
        if case.dtype not in DTYPES:
            return f"dtype {case.dtype!r} not supported"
        return None

    def evaluate(self, case) -> Outcome:
        if self._torch is None:
            self.setup()
        why = self.unsupported_reason(case)
        if why is not None:
            return Outcome(status="unsupported", error_message=why)
        torch = self._torch
        log_prob = case.target_kind == "logprob"
        reduction = REDUCTIONS[case.reduction]
        grad = case.grad and bool(self.gradients)
        p = input_tensor(torch, case, "target", self._device, grad)
        q = input_tensor(torch, case, "pred", self._device, grad)
        out, native = self._call(p, q, log_prob, reduction,
                                 input_text(case, "target"), input_text(case, "pred"))
        grads: dict[str, np.ndarray] = {}
        grad_dtypes: dict[str, str] = {}
        if grad and out.requires_grad:
            out.backward(torch.ones_like(out))     # d Σ(output) (KL-GRAD-1)
            for name, t in (("pred", q), ("target", p)):
                if t.grad is not None:
                    grads[name] = _to_f64(t.grad)
                    grad_dtypes[name] = torch_dtype_name(t.grad.dtype)
        return Outcome(status="ok", value=_to_f64(out.detach()), dtype=torch_dtype_name(out.dtype),
                       shape=tuple(out.shape), grads=grads, grad_dtypes=grad_dtypes, native_call=native)

    gradients: tuple[str, ...] = ()

    def _call(self, p, q, log_prob: bool, reduction: str, p_text: str, q_text: str):
        raise NotImplementedError


class TorchmetricsKLDivergence(_TorchmetricsKL):
    """``KLDivergence(log_prob=..., reduction=...)(p, q)``: the metric's forward, which
    returns the batch's value with its graph (``is_differentiable``; ``update``/``compute``
    run without gradients) and accumulates it in the metric's state."""

    name = "torchmetrics.KLDivergence"
    api = "torchmetrics.regression.KLDivergence"
    gradients = ("pred", "target")

    def _call(self, p, q, log_prob, reduction, p_text, q_text):
        metric = self._tm.regression.KLDivergence(log_prob=log_prob, reduction=reduction).to(self._device)
        out = metric(p, q)
        return out, f"KLDivergence(log_prob={log_prob}, reduction={reduction!r})({p_text}, {q_text})"


class TorchmetricsKLDivergenceFn(_TorchmetricsKL):
    """``torchmetrics.functional.kl_divergence(p, q, log_prob=..., reduction=...)``."""

    name = "torchmetrics.kl_divergence"
    api = "torchmetrics.functional.kl_divergence"
    gradients = ("pred", "target")

    def _call(self, p, q, log_prob, reduction, p_text, q_text):
        out = self._tm.functional.kl_divergence(p, q, log_prob=log_prob, reduction=reduction)
        return out, f"kl_divergence({p_text}, {q_text}, log_prob={log_prob}, reduction={reduction!r})"
