"""Test-double adapters that misbehave on purpose inside a worker process.

Every double computes the canonical KL (prob target, logprob pred, batchmean) in numpy
for ordinary cases, so a test can check each outcome against ``reference.evaluate`` and
see that outcomes were neither lost nor shuffled.  A case whose ``label`` is a marker
triggers the misbehaviour: ``"segfault"`` (a real invalid memory read), ``"hang"``,
``"exit"`` (``os._exit(3)``), ``"raise"``, ``"warn"``.  Referenced from workers as
``tests.harness.misbehaving:ClassName`` (the project root is on the worker's sys.path).
"""
from __future__ import annotations

import os
import time
import warnings

from klconform.adapters.base import Adapter, Capabilities, Outcome
from klconform.reference.family import Point

# Set by tests: a file whose existence makes CrashThenBrokenSetup's setup fail.
BROKEN_FLAG_ENV = "KLCONFORM_TEST_BROKEN_FLAG"


class GoodKL(Adapter):
    """Well-behaved: canonical batchmean KL of a prob target and a logprob pred."""

    name = "double.good"
    api = "numpy (test double)"
    framework = "numpy"

    def capabilities(self) -> Capabilities:
        return Capabilities(dtypes=frozenset({"float64"}), reductions=frozenset({"batchmean"}),
                            gradients=frozenset({"pred"}))

    def documented(self, case) -> Point:
        return Point(reduction=case.reduction)

    def setup(self) -> dict:
        import numpy
        self.np = numpy
        return {"framework": "numpy", "version": numpy.__version__}

    def misbehave(self, case) -> None:
        """Hook for subclasses: called before the computation."""

    def evaluate(self, case) -> Outcome:
        self.misbehave(case)
        np = self.np
        p, log_q = case.target, case.pred
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(p == 0, 0.0, p * (np.log(p) - log_q))
        shape = np.broadcast_shapes(p.shape, log_q.shape)
        value = np.asarray(terms.sum() / (shape[0] if shape else 1))
        grads = {"pred": np.broadcast_to(-p / (shape[0] if shape else 1), shape).copy()} if case.grad else {}
        return Outcome(status="ok", value=value, dtype="float64", shape=(), grads=grads,
                       grad_dtypes={k: "float64" for k in grads}, native_call="numpy double")


class SegfaultingKL(GoodKL):
    name = "double.segfault"

    def misbehave(self, case):
        if case.label == "segfault":
            import ctypes
            ctypes.string_at(0)            # reads address 0: SIGSEGV


class HangingKL(GoodKL):
    name = "double.hang"

    def misbehave(self, case):
        if case.label == "hang":
            time.sleep(3600)


class ExitingKL(GoodKL):
    name = "double.exit"

    def misbehave(self, case):
        if case.label == "exit":
            os._exit(3)


class RaisingKL(GoodKL):
    name = "double.raise"

    def misbehave(self, case):
        if case.label == "warn":
            warnings.warn("inputs look unnormalised", UserWarning)
        if case.label == "raise":
            raise ValueError("shape mismatch in double")
        if case.label == "native-stderr":
            # what a C++ framework does: write to file descriptor 2, past Python's sys.stderr
            os.write(2, b"[12:44:14] src/operator/softmax.h:473: accumulate in float32\n")


class MissingFrameworkKL(GoodKL):
    """Its framework is not installed."""

    name = "double.missing"

    def setup(self):
        import klconform_no_such_framework  # noqa: F401
        return {}


class BrokenImportKL(GoodKL):
    """Its framework is installed but broken (a failing native library, say)."""

    name = "double.broken_import"

    def setup(self):
        raise ImportError("libinhouse.so: cannot open shared object file")


class CrashOnImportKL(GoodKL):
    name = "double.crash_on_import"

    def setup(self):
        import ctypes
        ctypes.string_at(0)


class HangOnImportKL(GoodKL):
    name = "double.hang_on_import"

    def setup(self):
        time.sleep(3600)


class CrashThenBrokenSetupKL(GoodKL):
    """Crashes on a "segfault" case after creating the flag file; with the flag present,
    setup fails -- so the fresh worker after the crash cannot start."""

    name = "double.crash_then_broken"

    def setup(self):
        flag = os.environ.get(BROKEN_FLAG_ENV)
        if flag and os.path.exists(flag):
            raise RuntimeError("framework state corrupted by the previous crash")
        return super().setup()

    def misbehave(self, case):
        if case.label == "segfault":
            open(os.environ[BROKEN_FLAG_ENV], "w").close()
            import ctypes
            ctypes.string_at(0)


class NotAnAdapter:
    """Has the right shape of name but is not an Adapter subclass (registry tests)."""


REF = "tests.harness.misbehaving:"


class NullKL(GoodKL):
    """Returns a constant without computing: measures the harness's own per-case cost."""

    name = "double.null"

    def evaluate(self, case) -> Outcome:
        return Outcome(status="ok", value=self.np.zeros(()), dtype="float64", shape=())


class SlowKL(GoodKL):
    """Takes 0.4 s on a "slow" case: slow, not hung."""

    name = "double.slow"

    def misbehave(self, case):
        if case.label == "slow":
            time.sleep(0.4)


class PretendGPU(GoodKL):
    """Declares cpu and cuda and pretends both are present: reports the device asked for."""

    name = "double.pretend_gpu"
    devices = ("cpu", "cuda")

    def setup(self):
        from klconform.adapters.base import asked_device
        return {"framework": "numpy", "version": "0", "device": asked_device(["cpu", "cuda"])}


class ScribblingKL(GoodKL):
    """Says in its warnings what ``Case.private_view`` of the prediction is, then, on a
    "scribble" case, writes zeros into it (as a framework that wrote its inputs would),
    after computing from the values as received."""

    name = "double.scribble"

    def evaluate(self, case) -> Outcome:
        np = self.np
        view, sent = case.private_view("pred"), case.sent_values("pred")
        facts = "none" if view is None else (f"writable={view.flags.writeable} shares={np.shares_memory(view, sent)} "
                                             f"sent_writable={sent.flags.writeable}")
        out = super().evaluate(case)
        if case.label == "scribble" and view is not None:
            view[...] = 0.0
        out.warnings = [f"private_view: {facts}"]
        return out
