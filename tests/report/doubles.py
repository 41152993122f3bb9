"""Test-double adapters with known semantics for the report tests (no framework).

Each answers a case with ``reference.evaluate(case, self.point(case))`` rounded into the
case's dtype, so its true family point is known exactly; the fingerprint tests check that
the report infers that point from the outcomes alone.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from klconform.adapters.base import Adapter, Capabilities, Outcome
from klconform.reference.dtypes import round_to
from klconform.reference.family import Point

REDUCTIONS = frozenset({"none", "distribution", "sum", "mean", "batchmean", "distribution_mean",
                        "sample_sum", "sample_mean"})


class PointAdapter(Adapter):
    """Answers every case at ``point(case)``; documents ``documented(case)``."""

    name = "double.canonical"
    api = "tests.report.double"
    framework = "numpy"
    doc_url = "reference/SPEC.md"
    reductions = REDUCTIONS
    # template fields applied on top of the case's reduction (see point())
    fields: dict = {}
    reduction_map: dict = {}
    documented_fields: dict = {}

    def capabilities(self) -> Capabilities:
        return Capabilities(dtypes=frozenset({"float16", "bfloat16", "float32", "float64"}),
                            reductions=frozenset(self.reductions),
                            pred_kinds=frozenset({"prob", "logprob", "logits"}),
                            target_kinds=frozenset({"prob", "logprob"}),
                            weights=frozenset({"scalar", "sample"}), gradients=frozenset({"pred", "target"}),
                            batch_axis=True, class_axis=True, broadcasting=True)

    def point(self, case) -> Point:
        return Point(reduction=self.reduction_map.get(case.reduction, case.reduction), **self.fields)

    def documented(self, case) -> Point:
        return Point(reduction=case.reduction, **self.documented_fields)

    def setup(self):
        return {"framework": "numpy", "version": np.__version__, "python": "3.11", "numpy": np.__version__,
                "platform": "test", "device": "cpu"}

    def evaluate(self, case) -> Outcome:
        from klconform.reference.evaluate import evaluate
        exp = evaluate(case, self.point(case))
        value = np.asarray(exp.value_in_dtype, dtype=np.float64)
        grads = {k: round_to(g, case.dtype) for k, g in exp.grads.items()} if case.grad else {}
        return Outcome(status="ok", value=value, dtype=case.dtype, shape=value.shape, grads=grads,
                       grad_dtypes={k: case.dtype for k in grads}, native_call=f"double({case.reduction})")


class TargetEps(PointAdapter):
    """MXNet-like: eps 1e-12 inside log(target), documented without it."""
    name = "double.target_eps"
    fields = {"epsilon": "target_log_eps", "eps": 1e-12}


class ClipBoth(PointAdapter):
    """Keras-like: both inputs clipped into [1e-7, 1], and documented so."""
    name = "double.clip_both"
    fields = {"epsilon": "clip_both", "eps": 1e-7}
    documented_fields = {"epsilon": "clip_both", "eps": 1e-7}


class SwappedSum(PointAdapter):
    """Two deviations at once: arguments swapped and batchmean computed as sum."""
    name = "double.swapped_sum"
    fields = {"swap": True}
    reduction_map = {"batchmean": "sum"}


class ZeroInfNaN(PointAdapter):
    """torch-like log_target: 0 * (-inf) = NaN (KL-ZERO-3)."""
    name = "double.zero_inf_nan"
    fields = {"zero_inf": "nan"}


class Garbage(PointAdapter):
    """No family point: returns the canonical value times 1.37 plus 0.5."""
    name = "double.garbage"

    def evaluate(self, case):
        out = super().evaluate(case)
        if out.value is not None:
            out.value = round_to(out.value * 1.37 + 0.5, case.dtype)
        return out


class Raises(PointAdapter):
    """Raises on every case (an outcome with status 'error')."""
    name = "double.raises"

    def evaluate(self, case):
        raise RuntimeError("this double always raises")


class Mangled(PointAdapter):
    """Answers canonically, then mangles what it returns (``mangle``: value -> value, dtype
    string): the outcomes a faulty adapter can return, which no report stage may crash on."""
    name = "double.mangled"

    @staticmethod
    def mangle(value, dtype):
        return value, dtype

    def evaluate(self, case):
        out = super().evaluate(case)
        value, dtype = self.mangle(np.asarray(out.value), out.dtype)
        value = np.asarray(value)
        out.value, out.dtype, out.shape = value, dtype, value.shape
        return out


def _mangler(name, fn):
    return type(f"Mangled_{name}", (Mangled,), {"name": f"double.mangled_{name}", "mangle": staticmethod(fn)})


# One double per kind of wrong outcome (test_report_robust.py).
MANGLED = {
    "flattened": _mangler("flattened", lambda v, d: (v.reshape(-1), d)),
    "transposed": _mangler("transposed", lambda v, d: (v.T, d)),
    "scalar": _mangler("scalar", lambda v, d: (np.float64(np.sum(v)), d)),
    "empty": _mangler("empty", lambda v, d: (np.zeros((0,)), d)),
    "nan": _mangler("nan", lambda v, d: (np.full(v.shape, np.nan), d)),
    "dtype": _mangler("dtype", lambda v, d: (v, "complex64")),
    "nodtype": _mangler("nodtype", lambda v, d: (v, "")),
    "extra_axis": _mangler("extra_axis", lambda v, d: (v[None, ...], d)),
}
