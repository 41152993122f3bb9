"""Adapters that fail on the controller side, or slowly on every case; the worker-side
misbehaviours (setup that raises, segfaults or hangs; cases that crash) are the doubles of
tests/harness/misbehaving.py, used here too."""
from __future__ import annotations

import time

from tests.harness.misbehaving import GoodKL


class NeedsArguments(GoodKL):
    name = "fault.needs_arguments"

    def __init__(self, path):
        self.path = path


class CapabilitiesRaise(GoodKL):
    name = "fault.capabilities_raise"

    def capabilities(self):
        raise RuntimeError("capabilities exploded")


class EveryCaseHangs(GoodKL):
    """Each case sleeps in Python far beyond any test's patience (interruption tests)."""
    name = "fault.every_case_hangs"

    def misbehave(self, case):
        time.sleep(3600)


class EveryCaseRaises(GoodKL):
    """Every case is an error outcome: the run is ok but no outcome has a value, so its
    fingerprint observes no point."""
    name = "fault.every_case_raises"

    def misbehave(self, case):
        raise ValueError("this framework rejects every input")


class NothingExpressible(GoodKL):
    """Takes no reduction any corpus case asks: ok, zero outcomes, no fingerprint data."""
    name = "fault.nothing_expressible"

    def capabilities(self):
        import dataclasses
        return dataclasses.replace(super().capabilities(), reductions=frozenset({"sample_mean"}))


class MemoryHog(GoodKL):
    name = "fault.memory_hog"

    def misbehave(self, case):
        self.keep = bytearray(4 * 2**30)     # 4 GiB: beyond the test's --worker-memory


class StderrFlood(GoodKL):
    name = "fault.stderr_flood"

    def misbehave(self, case):
        import os
        os.write(2, b"x" * 100 + b"\n" * 1 + b"y" * (1 << 20))


# What TensorFlow prints on fd 2 while it is imported (absl/oneDNN/CUDA start-up lines).
NOISY_SETUP_LINES = (
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    b"I0000 00:00:1795910848.512457   25318 port.cc:153] oneDNN custom operations are on.\n"
    b"2025-01-01 12:00:00.123456: I external/local_xla/cudart_stub.cc:31] Could not find cuda drivers.\n"
)


class NoisySetup(GoodKL):
    """Writes native start-up lines to fd 2 in setup(), as importing TensorFlow does."""
    name = "fault.noisy_setup"

    def setup(self):
        import os
        os.write(2, NOISY_SETUP_LINES)
        return super().setup()


class InvalidStatus(GoodKL):
    """Returns an outcome whose status is none the results schema knows: the results
    document of its run does not validate (the output set must then stay as it was)."""
    name = "fault.invalid_status"

    def evaluate(self, case):
        from klconform.adapters.base import Outcome
        return Outcome(status="bogus", native_call="numpy double")
