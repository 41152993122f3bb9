"""The adapter interface of LLM distillation losses (SPEC.md §12).

A distillation loss takes the student's and the teacher's *logits* (``(B, T, V)`` or
``(N, V)``), labels with an ``ignore_index``, often a temperature, sometimes logits passed in
chunks: a question :class:`klconform.case.Case` cannot ask yet (its target is a probability
or a log-probability).  Until it can, a :class:`DistillAdapter` answers
:class:`klconform.reference.distill.DistillCase` questions through :meth:`evaluate_distill`,
with the same :class:`~klconform.adapters.base.Outcome` (``grads["pred"]`` the student's,
``grads["target"]`` the teacher's) and the same rules as every adapter: the framework is
imported only in :meth:`setup`, in the worker's interpreter (the side environment
``distill``), and exceptions propagate.  :meth:`documented_distill` gives the fields of the
:class:`~klconform.reference.distill.DistillPoint` the documentation claims (a dict: the
adapter layer imports only the reference's family and dtypes, docs/DESIGN.md).

Registered (pyproject.toml), they are run by the engine on the distillation corpus
(``klconform/distill_harness.py`` sends them a ``DistillCase`` through a worker, which
``evaluate`` hands to ``evaluate_distill``); their canonical :meth:`capabilities` are empty;
``tests/adapters/test_distill_adapters.py`` drives them in the side environment and judges
their outcomes against ``reference.distill``.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from klconform.adapters.base import Adapter, Capabilities, Outcome, asked_device

IGNORE_INDEX = -100


@dataclasses.dataclass(frozen=True)
class DistillCapabilities:
    """What a distillation API can be asked (SPEC.md §12)."""

    divergences: frozenset[str]               # the divergences a case may ask (KL-DISTILL-FWD, ...)
    reductions: frozenset[str]                # KL-DISTILL-RED names
    dtypes: frozenset[str]                    # dtypes the logits may be sent in
    result_dtype: str | None = None           # "float32": the API upcasts (KL-DISTILL-DTYPE); None: the logits'
    temperature: bool = False                 # takes a temperature (KL-DISTILL-TEMP)
    mask: bool = True                         # takes labels with ignore_index (KL-DISTILL-MASK)
    chunks: bool = False                      # takes the logits as chunks (KL-DISTILL-CHUNK)
    ndims: frozenset[int] = frozenset({2, 3})
    gradients: frozenset[str] = frozenset({"pred", "target"})
    options: tuple[str, ...] = ()


class DistillAdapter(Adapter):
    """Base of the distillation adapters: torch tensors from a DistillCase, labels from its
    mask, Outcome from the result."""

    devices = ("cpu", "cuda")

    def __init__(self) -> None:
        self._torch = None
        self._device = "cpu"

    # ------------------------------------------------------------------ declarations
    def capabilities(self) -> Capabilities:
        """No canonical case: the engine sends a distillation adapter the distillation
        corpus (klconform/distill_harness.py), judged by what :meth:`distill_capabilities`
        declares; these canonical sets are empty, so the frozen corpus sends it nothing."""
        caps = self.distill_capabilities()
        return Capabilities(dtypes=frozenset(), reductions=frozenset(), pred_kinds=frozenset({"logits"}),
                            target_kinds=frozenset(), gradients=caps.gradients, devices=frozenset(self.devices),
                            options=caps.options)

    def distill_capabilities(self) -> DistillCapabilities:
        raise NotImplementedError

    def documented_distill(self, case) -> dict[str, Any]:
        raise NotImplementedError

    def unsupported_distill(self, case) -> str | None:
        """Why the API cannot be asked ``case`` (its capabilities), or None."""
        caps = self.distill_capabilities()
        if case.divergence not in caps.divergences:
            return f"divergence {case.divergence!r}: the API computes {sorted(caps.divergences)}"
        if case.reduction not in caps.reductions:
            return f"reduction {case.reduction!r}: the API has {sorted(caps.reductions)}"
        if case.sent_dtype not in caps.dtypes:
            return f"logits dtype {case.sent_dtype!r} not supported"
        if case.student.ndim not in caps.ndims:
            return f"{case.student.ndim}-D logits: the API takes {sorted(caps.ndims)}-D"
        if not caps.temperature and (case.temperature != 1.0 or case.temperature_scale != "none"):
            return "the API takes no temperature"
        if case.temperature_scale != "none":
            return "the API does not scale by the temperature's square"
        if not caps.mask and case.mask is not None:
            return "the API takes no labels"
        if caps.chunks != (case.chunks is not None):
            return "the API takes chunked logits" if caps.chunks else "the API takes the logits whole"
        return None

    # ------------------------------------------------------------------ worker side
    def setup(self) -> dict[str, Any]:
        import torch

        self._torch = torch
        self._device = asked_device(["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
        return {"torch": str(torch.__version__), "device": self._device, "numpy": np.__version__}

    def evaluate(self, case) -> Outcome:
        if getattr(case, "teacher", None) is not None:     # a DistillCase from the worker (its own wire kind)
            return self.evaluate_distill(case)
        return Outcome(status="unsupported", error_message="a distillation loss: ask it a DistillCase "
                                                            "(evaluate_distill), SPEC.md §12")

    def evaluate_distill(self, case) -> Outcome:
        if self._torch is None:
            self.setup()
        why = self.unsupported_distill(case)
        if why is not None:
            return Outcome(status="unsupported", error_message=why)
        torch = self._torch
        grad = case.grad
        student = self.logits(case.student, case, grad)
        teacher = self.logits(case.teacher, case, grad)
        out, native = self._call(student, teacher, self.labels(case), case)
        grads: dict[str, np.ndarray] = {}
        grad_dtypes: dict[str, str] = {}
        if grad and out.requires_grad:
            out.backward(torch.ones_like(out))          # d Σ(output) (KL-DISTILL-GRAD)
            for name, t in (("pred", student), ("target", teacher)):
                if t.grad is not None:
                    grads[name] = to_f64(t.grad)
                    grad_dtypes[name] = str(t.grad.dtype).removeprefix("torch.")
        return Outcome(status="ok", value=to_f64(out.detach()), dtype=str(out.dtype).removeprefix("torch."),
                       shape=tuple(out.shape), grads=grads, grad_dtypes=grad_dtypes, native_call=native)

    def logits(self, values: np.ndarray, case, grad: bool):
        """Logits as a leaf tensor of the dtype they are sent in (exact: DistillCase checks it)."""
        torch = self._torch
        t = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float64)).to(
            device=self._device, dtype=getattr(torch, case.sent_dtype))
        return t.requires_grad_(True) if grad else t

    def labels(self, case):
        """Labels of the token shape: 0 where kept, IGNORE_INDEX where ignored (None: no mask)."""
        if case.mask is None:
            return None
        return self._torch.from_numpy(np.where(case.mask, 0, IGNORE_INDEX).astype(np.int64)).to(self._device)

    def _call(self, student, teacher, labels, case):
        """(output tensor, the native call as text)."""
        raise NotImplementedError


def to_f64(t) -> np.ndarray:
    """A torch tensor as a float64 numpy array (bfloat16 widens exactly via float32)."""
    import torch
    return t.detach().to("cpu", torch.float64).numpy().astype(np.float64)


def shape_of(case) -> str:
    return f"<{case.sent_dtype}{list(case.shape)}>"
