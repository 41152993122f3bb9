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


# ----------------------------------------------------------------------------- processes
# Environment variables the process doubles read in their worker (set by the tests).
CHILD_LOG_ENV = "KLCONFORM_TEST_CHILD_LOG"     # each forked child appends its pid here
FORK_MODE_ENV = "KLCONFORM_TEST_FORK_MODE"     # group | session | daemon | session-noenv
CASE_FAULT_ENV = "KLCONFORM_TEST_CASE_FAULT"   # "" | hang | segfault: what every case then does


def _log_pid(path) -> None:
    import os
    with open(path, "a") as fh:
        fh.write(f"{os.getpid()}\n")


class ForksInSetup(GoodKL):
    """setup() leaves a child process behind, as a framework that starts a server, a
    compiler daemon or a data-loader pool does: ``group`` (a plain fork, same process
    group), ``session`` (fork, ``setsid()``, exec ``sleep``), ``daemon`` (double fork:
    the grandchild in a new session, its parent gone, so it is nobody's child here),
    ``session-noenv`` (like ``session`` with an empty environment: catchable by nothing
    klconform can see).  Each child writes its pid to the log and sleeps an hour.  Its
    cases behave per ``CASE_FAULT_ENV``."""
    name = "fault.forks_in_setup"

    def setup(self):
        import os
        import time as _time
        mode, log = os.environ[FORK_MODE_ENV], os.environ[CHILD_LOG_ENV]
        pid = os.fork()
        if pid == 0:                     # the child: never returns into the worker
            try:
                if mode == "group":
                    _log_pid(log)
                    _time.sleep(3600)
                elif mode in ("session", "session-noenv"):
                    os.setsid()
                    _log_pid(log)
                    env = {} if mode == "session-noenv" else dict(os.environ)
                    os.execve("/bin/sleep", ["sleep", "3600"], env)
                elif mode == "daemon":
                    os.setsid()
                    if os.fork() == 0:
                        _log_pid(log)
                        _time.sleep(3600)
            finally:
                os._exit(0)
        if mode == "daemon":
            os.waitpid(pid, 0)           # the intermediate exits at once
        deadline = _time.monotonic() + 10
        while _time.monotonic() < deadline:   # the child is up (its pid logged) before any case
            with open(log) as fh:
                if fh.read().strip():
                    break
            _time.sleep(0.01)
        return super().setup()

    def misbehave(self, case):
        import os
        fault = os.environ.get(CASE_FAULT_ENV, "")
        if fault == "hang":
            time.sleep(3600)
        elif fault == "segfault":
            import ctypes
            ctypes.string_at(0)


class Oversized(GoodKL):
    """Answers every case with 10⁸ values (800 MB of float64): a broadcasting bug's size,
    far beyond any result of the case (KL-SHAPE-2).  It must not reach the controller."""
    name = "fault.oversized"

    def evaluate(self, case):
        import numpy as np

        from klconform.adapters.base import Outcome
        value = np.zeros(10**8)
        return Outcome(status="ok", value=value, dtype="float64", shape=value.shape, native_call="numpy double")


class LongMessages(GoodKL):
    """Raises with a 50 MB message and warns 100,000 times: an outcome's text is bounded."""
    name = "fault.long_messages"

    def misbehave(self, case):
        import warnings
        for i in range(100_000):
            warnings.warn(f"warning {i}", UserWarning)
        raise ValueError("x" * (50 * 2**20))


class DocumentedRaises(GoodKL):
    """documented() raises: a bug of this adapter, which must cost it alone."""
    name = "fault.documented_raises"

    def documented(self, case):
        raise RuntimeError("documented exploded")


COUNT_LOG_ENV = "KLCONFORM_TEST_COUNT_LOG"


class CountsCases(GoodKL):
    """Appends one line per case evaluated to the file COUNT_LOG_ENV names."""
    name = "fault.counts_cases"

    def misbehave(self, case):
        import os
        with open(os.environ[COUNT_LOG_ENV], "a") as fh:
            fh.write(case.label.replace("\n", " ") + "\n")
