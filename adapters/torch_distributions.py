"""PyTorch adapter: ``torch.distributions.kl_divergence(Categorical(P), Categorical(Q))``.

``kl_divergence(p, q)`` is KL(p‖q) with **p first** (KL-ARG-1: the target P is the first
argument, unlike ``torch.nn.functional.kl_div(input=log Q, target=P)``).  Each side is a
``Categorical`` built as users do: ``probs=`` for probabilities, ``logits=`` for
log-probabilities or logits (the class axis is always the last axis).  ``Categorical``
normalises what it is given ("probs ... will be normalized to sum to 1 along the last
dimension"; logits have their logsumexp subtracted), so the documented point is
``Point("distribution", normalise=True)`` (KL-NORM-1), one KL per distribution: the output
is the batch shape (S without the class axis, KL-RED-DIST).  The registered
``_kl_categorical_categorical`` computes ``p.probs * (p.logits - q.logits)``, sets the
terms to +inf where ``q.probs == 0`` and to 0 where ``p.probs == 0``, and sums the last
axis.  Argument validation is on by default (``Distribution._validate_args``): ``probs``
off the simplex, or logits with NaN, raise ``ValueError``.

torch is imported only in :meth:`setup`.  Records: klconform/known/torch_distributions_kl_divergence.toml;
notes: docs/frameworks/torch.md.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from klconform.adapters.base import Adapter, Capabilities, Outcome, input_text
from klconform.adapters.torch_kl_div import _to_f64, input_tensor, torch_dtype_name
from klconform.reference.family import Point

DOC_URL = "https://pytorch.org/docs/stable/distributions.html#torch.distributions.kl.kl_divergence"
DOC_CATEGORICAL = "https://pytorch.org/docs/stable/distributions.html#categorical"
DTYPES = ("float16", "bfloat16", "float32", "float64")


class TorchCategoricalKL(Adapter):
    """``kl_divergence(Categorical(probs=P | logits=log P), Categorical(probs=Q | logits=...))``."""

    name = "torch.distributions_kl_divergence"
    api = "torch.distributions.kl.kl_divergence"
    framework = "torch"
    doc_url = DOC_URL
    doc_version = "2.13"

    def __init__(self) -> None:
        self._torch = None

    def capabilities(self) -> Capabilities:
        return Capabilities(
            dtypes=frozenset(DTYPES),
            reductions=frozenset({"distribution"}),
            pred_kinds=frozenset({"prob", "logprob", "logits"}),
            target_kinds=frozenset({"prob", "logprob"}),
            weights=frozenset(),
            gradients=frozenset({"pred", "target"}),
            devices=frozenset({"cpu"}),
            batch_axis=False,
            class_axis=False,        # Categorical's event axis is the last axis
            broadcasting=True,       # the batch shapes broadcast in p.probs * (p.logits - q.logits)
            min_ndim=1,
            max_ndim=8,
            options=("probs", "logits", "validate_args"),
        )

    def documented(self, case) -> Point:
        # Categorical normalises probs (and logits) along the last axis (KL-NORM-1); the KL
        # is then the textbook sum with 0 log 0 = 0 and +inf where q = 0 < p.
        return Point(reduction=case.reduction, normalise=True)

    def setup(self) -> dict[str, Any]:
        import torch
        self._torch = torch
        return {"framework": "torch", "version": str(torch.__version__), "device": "cpu",
                "numpy": str(np.__version__),
                "validate_args": bool(torch.distributions.Distribution._validate_args)}

    def unsupported_reason(self, case) -> str | None:
        if case.dtype not in DTYPES:
            return f"dtype {case.dtype!r} not supported"
        if case.reduction != "distribution":
            return "kl_divergence returns one KL per distribution (the batch shape) only"
        if not case.shape:
            return "Categorical needs an event axis: a 0-D case has none"
        if case.class_axis % len(case.shape) != len(case.shape) - 1:
            return f"class_axis {case.class_axis}: Categorical's event axis is the last axis"
        if case.weight is not None or case.sample_weight is not None:
            return "kl_divergence takes no weights"
        return None

    def evaluate(self, case) -> Outcome:
        if self._torch is None:
            self.setup()
        why = self.unsupported_reason(case)
        if why is not None:
            return Outcome(status="unsupported", error_message=why)
        torch = self._torch
        Categorical = torch.distributions.Categorical

        target, pred = (input_tensor(torch, case, side, grad=case.grad) for side in ("target", "pred"))
        t_arg = "probs" if case.target_kind == "prob" else "logits"
        q_arg = "probs" if case.pred_kind == "prob" else "logits"
        p_dist = Categorical(**{t_arg: target})
        q_dist = Categorical(**{q_arg: pred})
        out = torch.distributions.kl_divergence(p_dist, q_dist)
        native = (f"torch.distributions.kl_divergence(Categorical({t_arg}={input_text(case, 'target')}), "
                  f"Categorical({q_arg}={input_text(case, 'pred')}))")
        grads: dict[str, np.ndarray] = {}
        grad_dtypes: dict[str, str] = {}
        if case.grad and out.requires_grad:
            out.backward(torch.ones_like(out))    # d sum(output), KL-GRAD-1
            for name, t in (("pred", pred), ("target", target)):
                if t.grad is not None:
                    grads[name] = _to_f64(t.grad)
                    grad_dtypes[name] = torch_dtype_name(t.grad.dtype)
        return Outcome(status="ok", value=_to_f64(out.detach()), dtype=torch_dtype_name(out.dtype),
                       shape=tuple(out.shape), grads=grads, grad_dtypes=grad_dtypes, native_call=native)
