"""The adapter interface: how klconform drives one framework's KL-loss API.

An adapter knows its framework and nothing else.  The class is imported in two places:

* in the controller (pytest, the CLI), *without* the framework installed: only the class
  attributes and :meth:`Adapter.capabilities` / :meth:`Adapter.documented` run there, so
  module top level must not import the framework;
* in a worker process (possibly another interpreter), where :meth:`Adapter.setup` imports
  the framework and :meth:`Adapter.evaluate` runs cases.

``evaluate`` receives a decoded :class:`klconform.case.Case` (float64 arrays holding values
exact in ``case.dtype``) and returns an :class:`Outcome`.  Exceptions raised by the
framework are caught by the worker and become ``Outcome(status="error")``: an adapter may
simply let them propagate.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

from reference.family import Point

# Outcome statuses. "ok"/"error" come from the adapter; the rest from the worker pool.
STATUSES = ("ok", "error", "unsupported", "crash", "timeout", "import_error", "missing")


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """What an adapter can be asked. The harness only sends cases inside these sets."""

    dtypes: frozenset[str] = frozenset({"float32", "float64"})
    reductions: frozenset[str] = frozenset({"batchmean"})   # canonical names (klconform.case.REDUCTIONS)
    input_kinds: frozenset[str] = frozenset({"logprob"})
    target_kinds: frozenset[str] = frozenset({"prob"})
    weights: frozenset[str] = frozenset()       # subset of {"scalar", "sample"}
    gradients: frozenset[str] = frozenset()     # subset of {"pred", "target"}
    devices: frozenset[str] = frozenset({"cpu"})
    batch_axis: bool = False     # can the batch axis be chosen?
    class_axis: bool = False     # can the class axis be chosen?
    broadcasting: bool = False   # does the API accept different (broadcastable) shapes?
    min_ndim: int = 0
    max_ndim: int = 8
    options: tuple[str, ...] = ()   # native option names users touch, for the report

    def to_json(self) -> dict[str, Any]:
        return {k: sorted(v) if isinstance(v, frozenset) else v
                for k, v in dataclasses.asdict(self).items()}


@dataclasses.dataclass
class Outcome:
    """What one framework call produced, as plain data."""

    status: str
    value: np.ndarray | None = None          # float64 view of the returned tensor
    dtype: str | None = None                 # dtype the framework returned ("float32", ...)
    shape: tuple[int, ...] | None = None     # shape the framework returned
    grads: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)   # "pred"/"target"
    grad_dtypes: dict[str, str] = dataclasses.field(default_factory=dict)
    warnings: list[str] = dataclasses.field(default_factory=list)
    error_type: str | None = None
    error_message: str | None = None
    native_call: str = ""                    # e.g. "kl_div(input, target, reduction='batchmean')"
    elapsed_s: float | None = None           # timing only: excluded from determinism checks

    def to_wire(self) -> dict[str, Any]:
        def enc(a):
            a = np.asarray(a, dtype="<f8")   # not ascontiguousarray: it turns 0-d into shape (1,)
            return {"shape": list(a.shape), "data": a.tobytes()}
        return {
            "status": self.status,
            "value": None if self.value is None else enc(self.value),
            "dtype": self.dtype,
            "shape": None if self.shape is None else list(self.shape),
            "grads": {k: enc(v) for k, v in self.grads.items()},
            "grad_dtypes": dict(self.grad_dtypes),
            "warnings": list(self.warnings),
            "error_type": self.error_type,
            "error_message": self.error_message,
            "native_call": self.native_call,
            "elapsed_s": self.elapsed_s,
        }

    def to_json(self) -> dict[str, Any]:
        """JSON form: arrays as nested lists, non-finite floats as "nan"/"inf"/"-inf"."""
        w = self.to_wire()
        for slot in [w["value"], *w["grads"].values()]:
            if slot is not None:
                slot["data"] = [_json_float(x) for x in np.frombuffer(slot["data"], dtype="<f8").tolist()]
        return w

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Outcome":
        w = dict(d)
        def raw(slot):
            return None if slot is None else {
                "shape": slot["shape"], "data": np.array([float(x) for x in slot["data"]], dtype="<f8").tobytes()}
        w["value"] = raw(d["value"])
        w["grads"] = {k: raw(v) for k, v in d["grads"].items()}
        return cls.from_wire(w)

    @classmethod
    def from_wire(cls, w: dict[str, Any]) -> "Outcome":
        def dec(d):
            return np.frombuffer(d["data"], dtype="<f8").reshape(d["shape"]).astype(np.float64)
        return cls(
            status=w["status"],
            value=None if w["value"] is None else dec(w["value"]),
            dtype=w["dtype"],
            shape=None if w["shape"] is None else tuple(w["shape"]),
            grads={k: dec(v) for k, v in w["grads"].items()},
            grad_dtypes=dict(w.get("grad_dtypes", {})),
            warnings=list(w["warnings"]),
            error_type=w["error_type"],
            error_message=w["error_message"],
            native_call=w.get("native_call", ""),
            elapsed_s=w.get("elapsed_s"),
        )


def _json_float(x: float):
    return x if np.isfinite(x) else ("nan" if np.isnan(x) else ("inf" if x > 0 else "-inf"))


class Adapter:
    """Base class. Subclasses set the class attributes and implement the four methods."""

    #: stable id used on the command line and in records, e.g. "torch.kl_div"
    name: ClassVar[str] = ""
    #: the public API driven, e.g. "torch.nn.functional.kl_div"
    api: ClassVar[str] = ""
    #: distribution whose version identifies the framework, e.g. "torch"
    framework: ClassVar[str] = ""
    #: documentation the documented semantics are taken from
    doc_url: ClassVar[str] = ""
    #: framework version the documentation describes (None: current docs)
    doc_version: ClassVar[str | None] = None

    def capabilities(self) -> Capabilities:
        raise NotImplementedError

    def documented(self, case) -> Point:
        """The reference-family point the framework's documentation claims for ``case``."""
        raise NotImplementedError

    def setup(self) -> dict[str, Any]:
        """Import the framework (in the worker). Return environment facts: at least
        ``{"framework": ..., "version": ...}``. Raise to signal an unusable framework."""
        raise NotImplementedError

    def evaluate(self, case) -> Outcome:
        """Run ``case`` through the framework's native call and report what came back."""
        raise NotImplementedError

    # -------------------------------------------------------------- shared helpers
    @staticmethod
    def native_array(values: np.ndarray, dtype: str) -> np.ndarray:
        """``values`` as a numpy array of ``dtype`` (float32 for bfloat16: frameworks cast)."""
        return np.asarray(values, dtype=np.float32 if dtype == "bfloat16" else dtype)
