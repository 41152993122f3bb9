"""The canonical KL case: one mathematical question, asked identically of every adapter.

A :class:`Case` names P (the *target*, the distribution the divergence is measured from)
and Q (the *prediction*) by their values and encodings, plus the reduction and weighting.
Every adapter receives the same wire bytes (:meth:`Case.to_wire`) and builds its own native
call from them; the reference evaluates the same values.  Values are held as float64
arrays whose entries are exactly representable in ``dtype`` (checked at construction), so
the reference sees precisely what a framework sees.

Vocabulary (SPEC.md §Inputs, §Reductions):
- ``target_kind``: ``"prob"`` (P given as probabilities) or ``"logprob"`` (as log P).
- ``pred_kind``: ``"prob"``, ``"logprob"`` (log Q) or ``"logits"`` (Q = softmax over
  ``class_axis``).
- ``reduction``: a canonical reduction name from :data:`REDUCTIONS`.
- ``dtype``: the dtype the result is asked in (the reference's bounds are this dtype's).
  ``target_dtype`` / ``pred_dtype`` (None: ``dtype``): the dtype each input is *sent* in
  when it differs (SPEC.md KL-DTYPE-4).  Either ``dtype`` is the promotion of the two input
  dtypes (:attr:`Case.promoted`, ``dtype_form == "promoted"``: mixed inputs, the framework
  promotes) or it is not (``"cast"``: an explicit compute dtype, e.g. Keras'
  ``KLDivergence(dtype=...)``).  A per-side dtype equal to ``dtype`` is stored as None, so
  one question has one digest.
- ``target_sent_shape`` (None: ``target.shape``): the shape the target is *sent* in, a
  row-major reshape with the same element count (SPEC.md KL-SHAPE-3, MXNet's "same number
  of elements"); the question is on ``target`` as held, in the prediction's shape.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import numpy as np

from .reference.dtypes import CARRIER, check_dtype, from_bits, promote, representable, to_bits

from .reference.family import PRED_KINDS, TARGET_KINDS  # noqa: F401  (their home: the reference's family)
# Canonical reductions (SPEC.md KL-RED-*).
REDUCTIONS = (
    "none",               # elementwise loss, broadcast shape                  KL-RED-NONE
    "distribution",       # KL along class_axis, class axis removed            KL-RED-DIST
    "sum",                # sum of all elementwise terms                       KL-RED-SUM
    "mean",               # sum / number of elementwise terms                  KL-RED-MEAN
    "batchmean",          # sum / size of batch_axis                           KL-RED-BATCHMEAN
    "distribution_mean",  # mean of the per-distribution KLs (Keras default)   KL-RED-SOBS
    "sample_sum",         # per sample: sum over all non-batch axes            KL-RED-SAMPLE-SUM
    "sample_mean",        # per sample: mean over all non-batch axes (MXNet)   KL-RED-SAMPLE-MEAN
)
WIRE_VERSION = 1


class CaseError(ValueError):
    """A case that cannot be built: the message names the offending field."""


def _as_f64(name: str, values, dtype: str) -> np.ndarray:
    try:
        a = np.array(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CaseError(f"{name}: not a numeric array ({exc})") from None
    if not representable(a, dtype):
        raise CaseError(f"{name}: values are not exactly representable in {dtype}; round them first")
    a.setflags(write=False)
    return a


def _sent_shape(shape, target: np.ndarray, pred: np.ndarray) -> tuple[int, ...]:
    """``target_sent_shape`` validated: a tuple of sizes with ``target``'s element count,
    differing from its shape; the held target must have the prediction's shape (the
    framework reshapes the sent target like the prediction, KL-SHAPE-3)."""
    try:
        sent = tuple(int(n) for n in shape)
    except (TypeError, ValueError):
        raise CaseError(f"target_sent_shape: {shape!r} is not a tuple of sizes") from None
    if any(n < 0 for n in sent) or any(isinstance(n, bool) for n in shape):
        raise CaseError(f"target_sent_shape: {list(shape)} has a negative or boolean size")
    if int(np.prod(sent, dtype=np.int64)) != target.size:
        raise CaseError(f"target_sent_shape: {list(sent)} has {int(np.prod(sent, dtype=np.int64))} elements, "
                        f"the target {target.size}")
    if target.shape != pred.shape:
        raise CaseError(f"target_sent_shape: the target is held in the prediction's shape {list(pred.shape)}, "
                        f"not {list(target.shape)}")
    if sent == target.shape:
        raise CaseError(f"target_sent_shape: {list(sent)} is the target's own shape (leave it None)")
    return sent


@dataclasses.dataclass(frozen=True, eq=False)
class Case:
    target: np.ndarray
    pred: np.ndarray
    dtype: str = "float64"
    target_kind: str = "prob"
    pred_kind: str = "logprob"
    reduction: str = "batchmean"
    class_axis: int = -1
    batch_axis: int = 0
    weight: float | None = None
    sample_weight: np.ndarray | None = None
    grad: bool = True
    label: str = ""
    target_dtype: str | None = None          # dtype the target is sent in (None: dtype)
    pred_dtype: str | None = None            # dtype the prediction is sent in (None: dtype)
    target_sent_shape: tuple[int, ...] | None = None   # shape the target is sent in (None: as held)

    def __post_init__(self):
        check = object.__setattr__
        try:
            check_dtype(self.dtype)
        except ValueError as exc:
            raise CaseError(str(exc)) from None
        for side in ("target_dtype", "pred_dtype"):
            dt = getattr(self, side)
            if dt is None:
                continue
            try:
                check_dtype(dt)
            except ValueError as exc:
                raise CaseError(f"{side}: {exc}") from None
            if dt == self.dtype:          # the default spelled out: one question, one digest
                check(self, side, None)
        if self.target_kind not in TARGET_KINDS:
            raise CaseError(f"target_kind: {self.target_kind!r} is not one of {TARGET_KINDS}")
        if self.pred_kind not in PRED_KINDS:
            raise CaseError(f"pred_kind: {self.pred_kind!r} is not one of {PRED_KINDS}")
        if self.reduction not in REDUCTIONS:
            raise CaseError(f"reduction: {self.reduction!r} is not one of {REDUCTIONS}")
        check(self, "target", _as_f64("target", self.target, self.input_dtype("target")))
        check(self, "pred", _as_f64("pred", self.pred, self.input_dtype("pred")))
        if self.sample_weight is not None:
            check(self, "sample_weight", _as_f64("sample_weight", self.sample_weight, self.dtype))
        if self.weight is not None:
            check(self, "weight", float(self.weight))
        try:
            np.broadcast_shapes(self.target.shape, self.pred.shape)
        except ValueError:
            raise CaseError(
                f"shapes: target {self.target.shape} and pred {self.pred.shape} do not broadcast"
            ) from None
        if self.target_sent_shape is not None:
            check(self, "target_sent_shape", _sent_shape(self.target_sent_shape, self.target, self.pred))

    # ------------------------------------------------------------------ input dtypes and shapes
    def input_dtype(self, side: str) -> str:
        """The dtype input ``side`` ("target" or "pred") is sent in (KL-DTYPE-4)."""
        if side not in ("target", "pred"):
            raise ValueError(f"input_dtype: side {side!r} is not 'target' or 'pred'")
        return getattr(self, side + "_dtype") or self.dtype

    @property
    def promoted(self) -> bool:
        """True when ``dtype`` is the promotion of the two input dtypes (always, for a case
        whose inputs are in ``dtype``); False: ``dtype`` is an explicit compute dtype."""
        return self.dtype == promote(self.input_dtype("target"), self.input_dtype("pred"))

    @property
    def dtype_form(self) -> str:
        """``"same"`` (both inputs in ``dtype``), ``"promoted"`` (mixed input dtypes, the
        result in their promotion) or ``"cast"`` (an explicit compute dtype), KL-DTYPE-4."""
        if self.target_dtype is None and self.pred_dtype is None:
            return "same"
        return "promoted" if self.promoted else "cast"

    def sent_values(self, side: str) -> np.ndarray:
        """Input ``side`` ("target" or "pred") as sent: read-only, C-contiguous numpy values
        of the dtype it is sent in (bfloat16: float32 values, :data:`~klconform.reference.
        dtypes.CARRIER`), the target in its sent shape (:attr:`sent_target`).  Exactly the
        float64 field's values (Case invariant).  Where the case came over the wire they are
        a view of the received bytes, so an adapter that builds framework tensors from them
        skips two full passes (to float64 and back) over up to 10⁷ values (a
        :class:`ReceivedCase`); elsewhere they are converted on each call."""
        carried = self.__dict__.get("_carried")
        if carried is not None and side in carried:
            values = carried[side]
        else:
            values = np.ascontiguousarray(getattr(self, side), dtype=CARRIER[self.input_dtype(side)]).view()
            values.setflags(write=False)
        if side == "target" and self.target_sent_shape is not None:
            values = values.reshape(self.target_sent_shape)
        return values

    def private_view(self, side: str) -> np.ndarray | None:
        """Input ``side`` as :meth:`sent_values` but writable, where this process holds its
        own copy-on-write map of the received bytes (a worker's large payloads,
        :class:`ReceivedCase`); None elsewhere.  For frameworks that share only writable
        memory (TensorFlow's DLPack import: numpy < 2.1 exports no read-only array).  The
        adapter must not write it: a write stays in this process, but the case's repeat
        (determinism, docs/large.md) would read it."""
        return None

    @property
    def sent_target(self) -> np.ndarray:
        """The target as sent: ``target`` reshaped (row-major) to ``target_sent_shape``."""
        return self.target if self.target_sent_shape is None else self.target.reshape(self.target_sent_shape)

    # ------------------------------------------------------------------ derived facts
    def held_shape(self, side: str) -> tuple[int, ...]:
        """The shape of field ``side`` ("target" or "pred"), without widening a received
        input to float64 (:class:`ReceivedCase`)."""
        values = self.__dict__.get(side)
        return tuple((values if values is not None else self._carried[side]).shape)

    def sent_shape(self, side: str) -> tuple[int, ...]:
        """The shape input ``side`` is sent in (the target's may be ``target_sent_shape``)."""
        if side == "target" and self.target_sent_shape is not None:
            return tuple(self.target_sent_shape)
        return self.held_shape(side)

    @property
    def shape(self) -> tuple[int, ...]:
        """The broadcast shape of the elementwise loss."""
        return tuple(np.broadcast_shapes(self.held_shape("target"), self.held_shape("pred")))

    @property
    def digest(self) -> str:
        """Content hash of the wire form: equal digests mean byte-identical questions
        (computed once: a large case hashes 10⁸ bytes)."""
        d = self.__dict__.get("_digest")
        if d is None:
            h = hashlib.sha256(json.dumps(self._wire_header(), sort_keys=True).encode())
            for part in self._bits():
                if part is not None:
                    h.update(part)
            d = h.hexdigest()[:16]
            object.__setattr__(self, "_digest", d)
        return d

    # ------------------------------------------------------------------ wire format
    def _bits(self) -> tuple[bytes, bytes, bytes | None]:
        """The wire bytes of target, pred and sample_weight, encoded once per case (a large
        case is sent to every adapter, twice, and hashed: 10⁸ bytes each time otherwise)."""
        b = self.__dict__.get("_wire_bits")
        if b is None:
            b = (to_bits(self.target, self.input_dtype("target")), to_bits(self.pred, self.input_dtype("pred")),
                 None if self.sample_weight is None else to_bits(self.sample_weight, self.dtype))
            object.__setattr__(self, "_wire_bits", b)
        return b

    def _wire_header(self) -> dict[str, Any]:
        # The optional keys are present only when set: every case without them keeps the
        # header, hence the digest, it had before they existed (frozen corpus, baselines).
        h = {
            "v": WIRE_VERSION,
            "dtype": self.dtype,
            "target_kind": self.target_kind,
            "pred_kind": self.pred_kind,
            "reduction": self.reduction,
            "class_axis": self.class_axis,
            "batch_axis": self.batch_axis,
            "weight": self.weight,
            "grad": self.grad,
            "target_shape": list(self.held_shape("target")),
            "pred_shape": list(self.held_shape("pred")),
            "sample_weight_shape": None if self.sample_weight is None else list(self.sample_weight.shape),
        }
        if self.target_dtype is not None:
            h["target_dtype"] = self.target_dtype
        if self.pred_dtype is not None:
            h["pred_dtype"] = self.pred_dtype
        if self.target_sent_shape is not None:
            h["target_sent_shape"] = list(self.target_sent_shape)
        return h

    def to_wire(self) -> dict[str, Any]:
        """A dict of plain types (execnet- and JSON-serialisable once bytes are hex'd)."""
        w = self._wire_header()
        w["target"], w["pred"], w["sample_weight"] = self._bits()
        w["label"] = self.label
        w["digest"] = self.digest
        return w

    @classmethod
    def from_wire(cls, w: dict[str, Any]) -> "Case":
        if w.get("kind") == "distill":     # a distillation case (SPEC.md §12), its own wire
            from .distill_harness import from_wire as distill_from_wire
            return distill_from_wire(w)
        if w.get("v") != WIRE_VERSION:
            raise CaseError(f"wire version {w.get('v')!r} is not {WIRE_VERSION}")
        dt = w["dtype"]
        sw = None
        if w["sample_weight"] is not None:
            sw = from_bits(w["sample_weight"], dt, tuple(w["sample_weight_shape"]))
        tdt, pdt = w.get("target_dtype"), w.get("pred_dtype")
        sent = w.get("target_sent_shape")
        return cls(
            target=from_bits(w["target"], tdt or dt, tuple(w["target_shape"])),
            pred=from_bits(w["pred"], pdt or dt, tuple(w["pred_shape"])),
            dtype=dt,
            target_kind=w["target_kind"],
            pred_kind=w["pred_kind"],
            reduction=w["reduction"],
            class_axis=w["class_axis"],
            batch_axis=w["batch_axis"],
            weight=w["weight"],
            sample_weight=sw,
            grad=w["grad"],
            label=w.get("label", ""),
            target_dtype=tdt,
            pred_dtype=pdt,
            target_sent_shape=None if sent is None else tuple(sent),
        )

    def to_json(self) -> dict[str, Any]:
        """JSON form for results files: bytes as hex; a large case (generated from a
        ``recipe``, :mod:`klconform.large`) is its recipe instead of 10⁷ values."""
        recipe = getattr(self, "recipe", None)
        if recipe is not None:
            w = self._wire_header()
            from .facts import case_facts     # facts imports this module
            w.update(target=None, pred=None, sample_weight=None, label=self.label, digest=self.digest,
                     recipe=recipe.to_json(), case_facts=case_facts(self))
            return w
        w = self.to_wire()
        for k in ("target", "pred", "sample_weight"):
            if w[k] is not None:
                w[k] = w[k].hex()
        return w

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Case":
        if d.get("recipe") is not None:
            from . import large     # large imports this module
            return large.check((large.Recipe.from_json(d["recipe"]), d["digest"]))
        w = dict(d)
        for k in ("target", "pred", "sample_weight"):
            if w.get(k) is not None:
                w[k] = bytes.fromhex(w[k])
        return cls.from_wire(w)

    def replace(self, **changes) -> "Case":
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:  # short, for test ids and reports
        t_dt = f" {self.target_dtype}" if self.target_dtype else ""
        p_dt = f" {self.pred_dtype}" if self.pred_dtype else ""
        sent = f" sent as {list(self.target_sent_shape)}" if self.target_sent_shape is not None else ""
        return (f"Case({self.label or self.digest}, {self.dtype}, P:{self.target_kind}{list(self.held_shape('target'))}"
                f"{t_dt}{sent}, Q:{self.pred_kind}{list(self.held_shape('pred'))}{p_dt}, {self.reduction})")


class ReceivedCase(Case):
    """A case as a worker receives it (:func:`klconform._worker_remote.case_decoder` builds
    it): its inputs are the received values (``sent_values``), and the float64 fields are
    widened from them on first read, so an adapter that builds its tensors from
    ``sent_values`` never pays that pass over 10⁷ values."""

    def __getattr__(self, name: str):
        # only for attributes not set: target and pred until first read
        carried = self.__dict__.get("_carried")
        if carried is None or name not in ("target", "pred"):
            raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")
        wide = carried[name].astype(np.float64)
        wide.setflags(write=False)
        object.__setattr__(self, name, wide)
        return wide

    def private_view(self, side: str) -> np.ndarray | None:
        view = self.sent_values(side).view()
        try:
            view.setflags(write=True)     # allowed only where the memory itself is writable
        except ValueError:                # received bytes, not a private map: no view
            return None
        return view
