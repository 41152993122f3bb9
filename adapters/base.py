"""The adapter interface: how klconform drives one framework's KL-loss API.

An adapter knows its framework and nothing else.  The class is imported in two places:

* in the controller (pytest, the CLI), *without* the framework installed: only the class
  attributes and :meth:`Adapter.capabilities` / :meth:`Adapter.documented` run there, so
  module top level must not import the framework;
* in a worker process (possibly another interpreter), where :meth:`Adapter.setup` imports
  the framework and :meth:`Adapter.evaluate` runs cases.

``evaluate`` receives a decoded :class:`klconform.case.Case`: each input's values, exact in
its input dtype (``case.input_dtype("target")`` / ``case.input_dtype("pred")``, which is
``case.dtype`` unless the adapter declares ``Capabilities.input_dtypes``), as sent -
``case.sent_values(side)``, read-only numpy arrays of that dtype (bfloat16: float32) and the
target in its sent shape (reshaped only for ``Capabilities.reshaped_target``) - from which
an adapter builds its tensors; ``case.target``/``case.pred`` are the same values as float64,
widened on first read in a worker (a full pass on a large case); ``case.private_view(side)``
the same values writable, where the worker holds a private map of them, for a framework
that shares only writable memory.  It returns an
:class:`Outcome`.  Exceptions raised by the
framework are caught by the worker and become ``Outcome(status="error")``: an adapter may
simply let them propagate.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, ClassVar, Iterable

import numpy as np

from klconform.reference.family import Point

#: The worker's environment variable naming the device a run asked for ("cpu", "cuda").
DEVICE_ENV = "KLCONFORM_DEVICE"


class DeviceUnavailable(RuntimeError):
    """The device a run asked for is not present in this worker (raised by setup())."""


def asked_device(available: Iterable[str] = ("cpu",)) -> str:
    """The device this worker was asked for (default cpu); :class:`DeviceUnavailable` when
    it is not among ``available`` (what the framework found here)."""
    device = os.environ.get(DEVICE_ENV) or "cpu"
    available = sorted(set(available))
    if device not in available:
        raise DeviceUnavailable(f"device {device!r} asked for; this worker has {', '.join(available)}")
    return device


def shape_text(a, dtype: str) -> str:
    """How an array is shown in a native call: ``<float32[64, 131072]>`` (never its values)."""
    return f"<{dtype}{list(a.shape)}>"


def input_text(case, side: str) -> str:
    """:func:`shape_text` of input ``side`` ("target", "pred") of ``case``: the dtype and
    shape it is sent in (without reading the values)."""
    return f"<{case.input_dtype(side)}{list(case.sent_shape(side))}>"


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """What an adapter can be asked. The harness only sends cases inside these sets."""

    dtypes: frozenset[str] = frozenset({"float32", "float64"})
    reductions: frozenset[str] = frozenset({"batchmean"})   # canonical names (klconform.case.REDUCTIONS)
    pred_kinds: frozenset[str] = frozenset({"logprob"})
    target_kinds: frozenset[str] = frozenset({"prob"})
    weights: frozenset[str] = frozenset()       # subset of {"scalar", "sample"}
    gradients: frozenset[str] = frozenset()     # subset of {"pred", "target"}
    devices: frozenset[str] = frozenset({"cpu"})
    batch_axis: bool = False     # can the batch axis be chosen?
    class_axis: bool = False     # can the class axis be chosen?
    broadcasting: bool = False   # does the API accept different (broadcastable) shapes?
    # Inputs in dtypes other than the case's (SPEC.md KL-DTYPE-4), a subset of
    # {"promoted": mixed input dtypes, the result asked in their promotion;
    #  "cast": the API takes a compute dtype argument that may differ from the inputs'}.
    # Empty (the default): only cases whose inputs are both in the case's dtype are sent.
    input_dtypes: frozenset[str] = frozenset()
    # Does the API take a target of another shape with the same element count, reshaped
    # like the prediction (case.target_sent_shape, SPEC.md KL-SHAPE-3)?
    reshaped_target: bool = False
    min_ndim: int = 0
    max_ndim: int = 8
    options: tuple[str, ...] = ()   # native option names users touch, for the report

    def to_json(self) -> dict[str, Any]:
        return {k: sorted(v) if isinstance(v, frozenset) else v
                for k, v in dataclasses.asdict(self).items()}


@dataclasses.dataclass
class Outcome:
    """What one framework call produced, as plain data.

    An adapter sets ``status`` to ``"ok"`` (a result came back), ``"error"`` (the framework
    refused the case) or ``"unsupported"``; the harness adds its own statuses and owns the
    serialisation (:mod:`klconform.wire`)."""

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
    #: reviewed known-discrepancy files (format: klconform/records.py): paths (relative ones
    #: against this adapter's module) or package resources "package:path/in/package.toml".
    #: Empty: klconform's own klconform/known/<name, "." -> "_">.toml, if any.
    known_records: ClassVar[tuple[str, ...]] = ()
    #: devices the API can be asked to compute on (``klconform run --devices``); setup()
    #: reads the asked one with :func:`asked_device` and raises when it is absent
    devices: ClassVar[tuple[str, ...]] = ("cpu",)

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
