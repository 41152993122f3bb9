"""Test-double adapters for the harness's own tests: no framework, exact answers from the
reference, and one deliberate deviation each.

``ReferenceAdapter`` answers every case with ``reference.evaluate(case, documented)``
rounded into the case's dtype: a perfectly conforming "framework" whose documented point
is the canonical one.  Each subclass changes exactly one dimension (reduction, epsilon,
zero handling, dtype, gradient, shape, raising, crash, timeout, precision) so the
meta-tests can check that the verdicts name that dimension.
"""
from __future__ import annotations

import numpy as np

from klconform.adapters.base import Adapter, Capabilities, Outcome
from klconform.reference.dtypes import round_to
from klconform.reference.family import Point

ALL = frozenset({"none", "distribution", "sum", "mean", "batchmean", "distribution_mean",
                 "sample_sum", "sample_mean"})


def _evaluate(case, point):
    from klconform.reference.evaluate import evaluate
    return evaluate(case, point)


class ReferenceAdapter(Adapter):
    """Conforming double: the canonical point, every canonical option, all dtypes."""

    name = "double.reference"
    api = "klconform.tests.double"
    framework = "numpy"
    doc_url = "reference/SPEC.md"

    def capabilities(self) -> Capabilities:
        return Capabilities(dtypes=frozenset({"float16", "bfloat16", "float32", "float64"}),
                            reductions=ALL, pred_kinds=frozenset({"prob", "logprob", "logits"}),
                            target_kinds=frozenset({"prob", "logprob"}),
                            weights=frozenset({"scalar", "sample"}), gradients=frozenset({"pred", "target"}),
                            batch_axis=True, class_axis=True, broadcasting=True)

    def documented(self, case) -> Point:
        return Point(reduction=case.reduction)

    def setup(self):
        return {"framework": "numpy", "version": np.__version__}

    def point(self, case) -> Point:
        """The point this double really computes (the deviation doubles override it)."""
        return Point(reduction=case.reduction)

    def evaluate(self, case) -> Outcome:
        exp = _evaluate(case, self.point(case))
        value = np.asarray(exp.value_in_dtype, dtype=np.float64)
        grads = {k: round_to(g, case.dtype) for k, g in exp.grads.items()} if case.grad else {}
        return Outcome(status="ok", value=value, dtype=case.dtype, shape=value.shape, grads=grads,
                       grad_dtypes={k: case.dtype for k in grads}, native_call="reference.evaluate")


class WrongReduction(ReferenceAdapter):
    """Sums where it should average (batchmean/mean/... computed as sum)."""
    name = "double.wrong_reduction"

    def point(self, case):
        red = "sum" if case.reduction in ("mean", "batchmean", "distribution_mean") else case.reduction
        return Point(reduction=red)


class TargetEpsilon(ReferenceAdapter):
    """Adds eps = 1e-12 inside log(target), MXNet-style (KL-EPS-TARGET-LOG)."""
    name = "double.target_eps"

    def point(self, case):
        return Point(reduction=case.reduction, epsilon="target_log_eps", eps=1e-12)


class ZeroTimesInfNaN(ReferenceAdapter):
    """0 * log(0) evaluated literally: NaN where p = 0 meets an infinite log (KL-ZERO-3)."""
    name = "double.zero_inf_nan"

    def point(self, case):
        return Point(reduction=case.reduction, zero_inf="nan")


class ZeroPredFinite(ReferenceAdapter):
    """Returns 0 instead of +inf where p > 0 and q = 0 (no family point does this)."""
    name = "double.zero_pred_finite"

    def evaluate(self, case):
        out = super().evaluate(case)
        if out.value is not None:
            out.value = np.where(np.isposinf(out.value), 0.0, out.value)
        return out


class DownCast(ReferenceAdapter):
    """Returns float64 cases as float32 (a silent down-cast), values rounded to float32."""
    name = "double.downcast"

    def evaluate(self, case):
        out = super().evaluate(case)
        if case.dtype == "float64":
            out.value = round_to(out.value, "float32")
            out.dtype = "float32"
        return out


class GradientOff(ReferenceAdapter):
    """Value right, gradient w.r.t. pred off by 1 % (and finite entries only)."""
    name = "double.gradient_off"

    def evaluate(self, case):
        out = super().evaluate(case)
        if "pred" in out.grads:
            g = out.grads["pred"]
            out.grads["pred"] = np.where(np.isfinite(g) & (g != 0), g * 1.01, g)
        return out


class KeepDims(ReferenceAdapter):
    """Scalar results come back with shape (1,)."""
    name = "double.keepdims"

    def evaluate(self, case):
        out = super().evaluate(case)
        if out.value is not None and out.value.ndim == 0:
            out.value = out.value.reshape(1)
            out.shape = (1,)
        return out


class Raises(ReferenceAdapter):
    """Raises on every case with a zero target entry (the spec defines a value there)."""
    name = "double.raises"

    def evaluate(self, case):
        t = case.target
        zero = np.any(t == 0) if case.target_kind == "prob" else np.any(t == -np.inf)
        if zero:
            raise ValueError("zero in target")
        return super().evaluate(case)


class Imprecise(ReferenceAdapter):
    """Relative error of 1e-3 on every finite non-zero value (beyond any f32/f64 bound)."""
    name = "double.imprecise"

    def evaluate(self, case):
        out = super().evaluate(case)
        if out.value is not None:
            out.value = np.where(np.isfinite(out.value), out.value * (1 + 1e-3), out.value)
        return out


class StatusDouble(ReferenceAdapter):
    """Reports the worker-level status ``status`` for every case (as a worker would after a
    crash or a hang); the real signals and hangs are tested with the worker pool."""
    name = "double.status"
    status = "crash"

    def evaluate(self, case):
        return Outcome(status=self.status, error_message=f"worker {self.status} (double)")


class Crashes(StatusDouble):
    name = "double.crash"
    status = "crash"


class Hangs(StatusDouble):
    name = "double.timeout"
    status = "timeout"


class SlowHangs(Hangs):
    """A hang that costs real time (``delay`` s per case, as a worker's case timeout does),
    counting the cases it was sent: the shrinker's budget and its one-retry rule."""
    name = "double.slow_timeout"
    delay = 0.05
    calls = 0

    def evaluate(self, case):
        import time
        type(self).calls += 1
        time.sleep(self.delay)
        return super().evaluate(case)


class SlowWrongReduction(WrongReduction):
    """WrongReduction at ``delay`` s per case: shrinking it stops at the budget."""
    name = "double.slow_wrong_reduction"
    delay = 0.05

    def evaluate(self, case):
        import time
        time.sleep(self.delay)
        return super().evaluate(case)


# ----------------------------------------------------------------------------- cause attribution
# Deviations that no family point describes, or that one does only beyond a nearer one: the
# verdicts must name the right cause or none ("unexplained" beats a wrong name).

def _ftz32(a):
    """``a`` rounded to float32 with subnormals flushed to zero (an FTZ/DAZ kernel)."""
    a = np.asarray(a, dtype=np.float64)
    r = round_to(a, "float32")
    tiny = float(np.finfo(np.float32).tiny)
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(r) & (np.abs(r) < tiny), 0.0 * np.sign(r), r)


class Float32Compute(ReferenceAdapter):
    """float64 cases computed in float32 with flush-to-zero: inputs rounded to float32
    (subnormals -> 0), the canonical value of those inputs rounded to float32, returned
    labelled float64 (a precision / special-value fault, not another epsilon)."""
    name = "double.float32_compute"

    def evaluate(self, case):
        if case.dtype != "float64":
            return super().evaluate(case)
        flushed = case.replace(target=_ftz32(case.target), pred=_ftz32(case.pred))
        exp = _evaluate(flushed, self.point(case))
        value = _ftz32(exp.value)
        grads = {k: _ftz32(g) for k, g in exp.grads.items()} if case.grad else {}
        return Outcome(status="ok", value=value, dtype="float64", shape=value.shape, grads=grads,
                       grad_dtypes={k: "float64" for k in grads}, native_call="reference.evaluate")


class Swapped(ReferenceAdapter):
    """KL(Q||P): the arguments exchanged (KL-ARG-ORDER)."""
    name = "double.swapped"

    def point(self, case):
        return Point(reduction=case.reduction, swap=True)


class GradientTimesTwo(ReferenceAdapter):
    """Value right, every gradient twice what it should be (a backward bug, no reduction)."""
    name = "double.gradient_x2"

    def evaluate(self, case):
        out = super().evaluate(case)
        out.grads = {k: g * 2.0 for k, g in out.grads.items()}
        return out


class FlattenNone(ReferenceAdapter):
    """reduction='none' returned flattened to 1-D (right values, wrong shape)."""
    name = "double.flatten_none"

    def evaluate(self, case):
        out = super().evaluate(case)
        if case.reduction == "none" and out.value is not None:
            out.value = out.value.reshape(-1)
            out.shape = out.value.shape
        return out


class WrongBatchmeanDivisor(ReferenceAdapter):
    """batchmean divided by the number of elements (torch's 'mean'), value and gradients:
    invisible on an empty batch (0 / 0 = NaN is what 'mean' gives, no divisor shows)."""
    name = "double.wrong_batchmean_divisor"

    def point(self, case):
        return Point(reduction="mean" if case.reduction == "batchmean" else case.reduction)
