"""How an :class:`~klconform.adapters.base.Outcome` travels: the harness's serialisation.

An adapter returns a plain ``Outcome`` (the interface); the harness alone decides how it
crosses the worker boundary (``to_wire``: plain types, raw little-endian float64 bytes)
and how it is stored in results.json (``to_json``: nested lists, non-finite floats as the
strings ``"nan"``, ``"inf"``, ``"-inf"``).  This module needs numpy only: the worker side
of a side interpreter imports it.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .adapters.base import Outcome

# Outcome statuses: "ok"/"error"/"unsupported" come from the adapter (or the worker's
# catch of an adapter exception); the rest from the worker pool ("skipped": not sent, the
# adapter's circuit breaker is open; klconform.workers.AdapterWorker.breaker_open).
ADAPTER_STATUSES = ("ok", "error", "unsupported")
POOL_STATUSES = ("crash", "timeout", "import_error", "missing", "skipped")
STATUSES = ADAPTER_STATUSES + POOL_STATUSES

NONFINITE = ("nan", "inf", "-inf")


def json_float(x: float) -> float | str:
    """``x`` itself when finite, else ``"nan"``, ``"inf"`` or ``"-inf"`` (strict JSON)."""
    x = float(x)
    if math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def _encode_array(a) -> dict[str, Any]:
    a = np.asarray(a, dtype="<f8")   # not ascontiguousarray: it turns 0-d into shape (1,)
    return {"shape": list(a.shape), "data": a.tobytes()}


def _decode_array(d: dict[str, Any]) -> np.ndarray:
    return np.frombuffer(d["data"], dtype="<f8").reshape(d["shape"]).astype(np.float64)


def to_wire(o: Outcome) -> dict[str, Any]:
    """``o`` as plain types (bytes for arrays): what a worker sends back."""
    return {
        "status": o.status,
        "value": None if o.value is None else _encode_array(o.value),
        "dtype": o.dtype,
        "shape": None if o.shape is None else list(o.shape),
        "grads": {k: _encode_array(v) for k, v in o.grads.items()},
        "grad_dtypes": dict(o.grad_dtypes),
        "warnings": list(o.warnings),
        "error_type": o.error_type,
        "error_message": o.error_message,
        "native_call": o.native_call,
        "elapsed_s": o.elapsed_s,
    }


def from_wire(w: dict[str, Any]) -> Outcome:
    """Inverse of :func:`to_wire`."""
    return Outcome(
        status=w["status"],
        value=None if w["value"] is None else _decode_array(w["value"]),
        dtype=w["dtype"],
        shape=None if w["shape"] is None else tuple(w["shape"]),
        grads={k: _decode_array(v) for k, v in w["grads"].items()},
        grad_dtypes=dict(w.get("grad_dtypes", {})),
        warnings=list(w["warnings"]),
        error_type=w["error_type"],
        error_message=w["error_message"],
        native_call=w.get("native_call", ""),
        elapsed_s=w.get("elapsed_s"),
    )


def to_json(o: Outcome) -> dict[str, Any]:
    """``o`` as results.json stores it: arrays as flat lists beside their shape."""
    w = to_wire(o)
    for slot in [w["value"], *w["grads"].values()]:
        if slot is not None:
            slot["data"] = [json_float(x) for x in np.frombuffer(slot["data"], dtype="<f8").tolist()]
    return w


def from_json(d: dict[str, Any]) -> Outcome:
    """Inverse of :func:`to_json`."""
    def raw(slot):
        return None if slot is None else {
            "shape": slot["shape"], "data": np.array([float(x) for x in slot["data"]], dtype="<f8").tobytes()}
    w = dict(d)
    w["value"] = raw(d["value"])
    w["grads"] = {k: raw(v) for k, v in d["grads"].items()}
    return from_wire(w)
