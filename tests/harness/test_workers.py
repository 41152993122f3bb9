"""Worker isolation with real processes: crashes, hangs, import failures and exceptions
inside a worker become recorded outcomes and the run goes on.

Expected values come from ``reference.evaluate`` (the independent oracle), never from the
adapter doubles.  Timeouts are kept small (``case_timeout=2``)."""
from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from klconform import reference, wire
from klconform.case import Case, ReceivedCase
from klconform.reference.dtypes import round_to
from klconform.workers import AdapterUnavailable, AdapterWorker, WorkerSpec, run_in_worker

from .misbehaving import BROKEN_FLAG_ENV, REF

ROOT = Path(__file__).resolve().parents[2]
SIDE_PYTHON = ROOT / ".venvs" / "mxnet180" / "bin" / "python"
EXAMPLE_DIR = ROOT / "examples" / "inhouse_numpy_kl"
FAST = dict(case_timeout=2.0, setup_timeout=60.0)


def make_case(i: int, label: str = "") -> Case:
    """A distinct, valid case per ``i`` (so swapped outcomes would be noticed)."""
    p = np.array([[0.5, 0.25, 0.25], [0.125, 0.375, 0.5]])
    q = np.roll(p, i % 3, axis=1) if i % 2 else p[::-1]
    return Case(target=p, pred=np.log(q) - 0.03125 * (i % 5), label=label or f"c{i}")


def assert_matches_reference(case: Case, outcome) -> None:
    assert outcome.status == "ok", (outcome.status, outcome.error_message)
    expected = reference.evaluate(case)
    assert outcome.value.shape == expected.value.shape      # 0-d stays 0-d across the wire
    np.testing.assert_allclose(outcome.value, expected.value, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(outcome.grads["pred"], expected.grads["pred"], rtol=1e-12, atol=1e-15)


def process_gone(pid: int) -> bool:
    """True when ``pid`` no longer exists *and* was reaped (a zombie keeps /proc/pid)."""
    return not os.path.exists(f"/proc/{pid}")


def wait_gone(pid: int, seconds: float = 5.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if process_gone(pid):
            return True
        time.sleep(0.05)
    return process_gone(pid)


# ----------------------------------------------------------------------------- wire codecs
def _codec_cases() -> list[Case]:
    p = np.array([[0.5, 0.5], [0.25, 0.75]])
    return [
        make_case(3),
        Case(target=p, pred=round_to(np.log(p), "bfloat16"), dtype="bfloat16", reduction="sum", grad=False, label="bf16"),
        Case(target=p, pred=p, dtype="float16", pred_kind="prob", reduction="sample_mean",
             weight=0.5, sample_weight=np.array([1.0, 2.0]), class_axis=0, batch_axis=1),
        Case(target=np.array(0.5), pred=np.array(-0.5), reduction="none"),
    ]


@pytest.mark.parametrize("case", _codec_cases(), ids=lambda c: c.label or c.dtype)
def test_worker_fast_case_decoder_equals_case_from_wire(case):
    from klconform._worker_remote import case_decoder
    from klconform.reference.dtypes import from_bits_carried
    wire = case.to_wire()
    fast, slow = case_decoder(ReceivedCase, from_bits_carried)(wire), Case.from_wire(wire)
    assert type(fast) is ReceivedCase and isinstance(fast, Case)
    for f in dataclasses.fields(Case):
        a, b = getattr(fast, f.name), getattr(slow, f.name)
        if isinstance(b, np.ndarray):
            assert a.shape == b.shape and a.dtype == b.dtype and not a.flags.writeable
            assert np.array_equal(a, b, equal_nan=True)
        else:
            assert a == b, f.name
    assert fast.digest == case.digest
    # the received values as sent: a view of the wire bytes where the dtype has a numpy
    # carrier of its width, equal to the float64 field and to what a constructed case gives
    for side in ("target", "pred"):
        got, want = fast.sent_values(side), slow.sent_values(side)
        carrier = {"bfloat16": "float32"}.get(case.input_dtype(side), case.input_dtype(side))
        assert got.dtype == want.dtype == np.dtype(carrier) and not got.flags.writeable
        held = case.sent_target if side == "target" else case.pred
        assert np.array_equal(got, held, equal_nan=True) and got.shape == held.shape
        if case.input_dtype(side) != "bfloat16":
            assert np.shares_memory(got, np.frombuffer(wire[side], dtype=np.uint8))


def test_worker_case_decoder_falls_back_for_an_unknown_case_class():
    from klconform._worker_remote import case_decoder

    @dataclasses.dataclass
    class OtherCase:
        target: object
        extra: int = 0

        @classmethod
        def from_wire(cls, w):
            return "from_wire"

    assert case_decoder(OtherCase, None)({"v": 1}) == "from_wire"


def test_outcome_wire_keeps_zero_d_values_zero_d():
    from klconform.adapters.base import Outcome
    back = wire.from_wire(wire.to_wire(Outcome(status="ok", value=np.array(2.5), grads={"pred": np.ones((2, 3)).T})))
    assert back.value.shape == () and float(back.value) == 2.5
    assert back.grads["pred"].shape == (3, 2)


# ----------------------------------------------------------------------------- normal runs
def test_batches_return_one_outcome_per_case_in_order():
    cases = [make_case(i) for i in range(7)]
    with AdapterWorker(WorkerSpec(REF + "GoodKL"), batch_size=2, **FAST) as w:
        env = w.env
        outcomes = w.run(cases)
        again = w.run(cases[:1])
        assert w.restarts == 0
    assert len(outcomes) == len(cases)
    for c, o in zip(cases, outcomes):
        assert_matches_reference(c, o)
        assert o.elapsed_s is not None and o.elapsed_s >= 0
    assert_matches_reference(cases[0], again[0])
    assert env["python"] == sys.executable
    assert env["framework"] == "numpy" and env["version"] == np.__version__
    assert env["numpy"] == np.__version__
    assert env["adapter"] == "double.good" and env["device"] == "cpu"
    assert env["pid"] != os.getpid()


def test_run_in_worker_convenience_returns_env_and_outcomes():
    cases = [make_case(1), make_case(2)]
    env, outcomes = run_in_worker(REF + "GoodKL", cases, **FAST)
    assert env["adapter_ref"] == REF + "GoodKL"
    for c, o in zip(cases, outcomes):
        assert_matches_reference(c, o)


def test_adapter_exception_is_an_error_outcome_and_warnings_are_captured():
    cases = [make_case(0), make_case(1, "raise"), make_case(2, "warn")]
    with AdapterWorker(WorkerSpec(REF + "RaisingKL"), **FAST) as w:
        pid = w.pid
        out = w.run(cases)
        assert w.restarts == 0 and w.pid == pid      # an exception is not a crash
    assert_matches_reference(cases[0], out[0])
    assert out[1].status == "error"
    assert out[1].error_type == "ValueError" and out[1].error_message == "shape mismatch in double"
    assert_matches_reference(cases[2], out[2])
    assert out[2].warnings == ["UserWarning: inputs look unnormalised"]
    assert out[0].warnings == []


def test_native_stderr_output_becomes_a_warning_of_its_case_without_timestamp():
    cases = [make_case(0), make_case(1, "native-stderr"), make_case(2)]
    with AdapterWorker(WorkerSpec(REF + "RaisingKL"), **FAST) as w:
        out = w.run(cases)
    assert out[1].warnings == ["stderr: src/operator/softmax.h:473: accumulate in float32"]
    assert out[0].warnings == [] and out[2].warnings == []
    assert_matches_reference(cases[1], out[1])


# ----------------------------------------------------------------------------- crashes, hangs
def test_segfault_mid_batch_is_attributed_to_its_case_and_the_batch_continues():
    cases = [make_case(0), make_case(1), make_case(2, "segfault"), make_case(3), make_case(4)]
    with AdapterWorker(WorkerSpec(REF + "SegfaultingKL"), **FAST) as w:
        first_pid = w.pid
        out = w.run(cases)
        assert w.restarts == 1 and w.pid != first_pid
        assert wait_gone(first_pid), "crashed worker was not reaped"
    assert out[2].status == "crash"
    assert "SIGSEGV" in out[2].error_message
    for i in (0, 1, 3, 4):
        assert_matches_reference(cases[i], out[i])


def test_hang_past_case_timeout_is_recorded_and_worker_replaced():
    cases = [make_case(0), make_case(1, "hang"), make_case(2)]
    start = time.monotonic()
    with AdapterWorker(WorkerSpec(REF + "HangingKL"), case_timeout=1.5, setup_timeout=60) as w:
        hung_pid = w.pid
        out = w.run(cases)
        assert w.restarts == 1
        assert wait_gone(hung_pid), "hung worker still exists (not killed or not reaped)"
    assert out[1].status == "timeout"
    assert "case_timeout=1.5s" in out[1].error_message
    assert out[1].elapsed_s >= 1.5
    assert_matches_reference(cases[0], out[0])
    assert_matches_reference(cases[2], out[2])
    assert time.monotonic() - start < 30


def test_case_timeout_is_per_case_not_per_batch():
    # six 0.4 s cases: the batch takes 2.4 s, more than case_timeout, and nothing times out
    cases = [make_case(i, "slow") for i in range(6)]
    with AdapterWorker(WorkerSpec(REF + "SlowKL"), case_timeout=1.0, setup_timeout=60) as w:
        out = w.run(cases)
        assert w.restarts == 0
    for c, o in zip(cases, out):
        assert_matches_reference(c, o)
        assert o.elapsed_s >= 0.4


def test_exit_reports_status_and_consecutive_crashes_each_get_a_fresh_worker():
    cases = [make_case(0, "exit"), make_case(1, "exit"), make_case(2)]
    with AdapterWorker(WorkerSpec(REF + "ExitingKL"), **FAST) as w:
        out = w.run(cases)
        assert w.restarts == 2
    assert [o.status for o in out] == ["crash", "crash", "ok"]
    assert "exited with status 3" in out[0].error_message
    assert_matches_reference(cases[2], out[2])


def test_crash_in_an_early_batch_lets_the_later_batches_run():
    cases = [make_case(i, "segfault" if i == 1 else "") for i in range(7)]
    with AdapterWorker(WorkerSpec(REF + "SegfaultingKL"), batch_size=2, **FAST) as w:
        out = w.run(cases)
    assert out[1].status == "crash"
    for i in (0, 2, 3, 4, 5, 6):
        assert_matches_reference(cases[i], out[i])


def test_fresh_worker_that_cannot_start_marks_the_remaining_cases(tmp_path, monkeypatch):
    monkeypatch.setenv(BROKEN_FLAG_ENV, str(tmp_path / "broken"))
    cases = [make_case(0, "segfault"), make_case(1), make_case(2)]
    with AdapterWorker(WorkerSpec(REF + "CrashThenBrokenSetupKL"), **FAST) as w:
        out = w.run(cases)
    assert out[0].status == "crash"
    for o in out[1:]:
        assert o.status == "import_error"
        assert "framework state corrupted" in o.error_message


# ----------------------------------------------------------------------------- start failures
@pytest.mark.parametrize("cls, status, words", [
    ("MissingFrameworkKL", "missing", "klconform_no_such_framework"),
    ("BrokenImportKL", "import_error", "libinhouse.so"),
    ("CrashOnImportKL", "import_error", "SIGSEGV"),
    ("NoSuchClass", "import_error", "NoSuchClass"),
])
def test_start_failures_raise_adapter_unavailable_with_status(cls, status, words):
    w = AdapterWorker(WorkerSpec(REF + cls), **FAST)
    with pytest.raises(AdapterUnavailable) as info:
        w.start()
    assert info.value.status == status
    assert words in info.value.reason and "\n" not in info.value.reason
    assert not w.alive
    w.close()


def test_hang_on_import_is_an_import_error_after_setup_timeout():
    w = AdapterWorker(WorkerSpec(REF + "HangOnImportKL"), case_timeout=2, setup_timeout=1.5)
    start = time.monotonic()
    with pytest.raises(AdapterUnavailable) as info:
        w.start()
    assert info.value.status == "import_error" and "setup_timeout=1.5s" in info.value.reason
    assert time.monotonic() - start < 15


def test_run_on_an_unavailable_adapter_returns_its_status_per_case():
    w = AdapterWorker(WorkerSpec(REF + "MissingFrameworkKL"), **FAST)
    out = w.run([make_case(0), make_case(1)])
    assert [o.status for o in out] == ["missing", "missing"]
    assert "klconform_no_such_framework" in out[0].error_message


def test_missing_interpreter_and_known_unavailability_are_missing():
    with pytest.raises(AdapterUnavailable) as info:
        AdapterWorker(WorkerSpec(REF + "GoodKL", python="/nonexistent/bin/python")).start()
    assert info.value.status == "missing" and "/nonexistent/bin/python" in info.value.reason
    with pytest.raises(AdapterUnavailable) as info:
        AdapterWorker(WorkerSpec(REF + "GoodKL", unavailable="interpreter for @x not configured")).start()
    assert info.value.status == "missing" and info.value.reason == "interpreter for @x not configured"


def test_batch_size_must_be_positive():
    with pytest.raises(ValueError, match="batch_size"):
        AdapterWorker(WorkerSpec(REF + "GoodKL"), batch_size=0)


# ----------------------------------------------------------------------------- cleanliness
def _progress_files() -> set[str]:
    import glob
    import tempfile
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "klconform-progress-*")))


def test_close_reaps_every_worker_and_leaves_no_threads():
    threads_before = threading.active_count()
    files_before = _progress_files()
    pids = []
    with AdapterWorker(WorkerSpec(REF + "SegfaultingKL"), **FAST) as w:
        pids.append(w.pid)
        w.run([make_case(0, "segfault"), make_case(1)])
        pids.append(w.pid)
    assert len(set(pids)) == 2
    assert all(wait_gone(pid) for pid in pids)
    deadline = time.monotonic() + 5
    while threading.active_count() > threads_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() == threads_before, threading.enumerate()
    assert _progress_files() <= files_before          # the progress records were removed


# ----------------------------------------------------------------------------- demonstration
def test_demonstration_crashing_and_hanging_workers_leave_other_adapters_intact():
    """Three adapters on the same cases at the same time: one segfaults on a case, one
    hangs on a case; both are recorded as such and the good adapter's results are
    complete and correct (and its worker never restarted)."""
    cases = [make_case(i) for i in range(6)]
    cases[3] = make_case(3, "segfault")
    cases[4] = make_case(4, "hang")
    workers = {name: AdapterWorker(WorkerSpec(REF + cls), **FAST) for name, cls in
               [("good", "GoodKL"), ("crashing", "SegfaultingKL"), ("hanging", "HangingKL")]}
    try:
        for w in workers.values():
            w.start()
        good_pid = workers["good"].pid
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            futures = {name: pool.submit(w.run, cases) for name, w in workers.items()}
            results = {name: f.result(timeout=60) for name, f in futures.items()}
        assert workers["good"].restarts == 0 and workers["good"].pid == good_pid
    finally:
        for w in workers.values():
            w.close()
    assert [o.status for o in results["crashing"]] == ["ok", "ok", "ok", "crash", "ok", "ok"]
    assert "SIGSEGV" in results["crashing"][3].error_message
    assert [o.status for o in results["hanging"]] == ["ok", "ok", "ok", "ok", "timeout", "ok"]
    for c, o in zip(cases, results["good"]):
        assert_matches_reference(c, o)


# ----------------------------------------------------------------------------- interpreters
@pytest.mark.skipif(not SIDE_PYTHON.exists(), reason=f"side interpreter {SIDE_PYTHON} not built")
def test_example_adapter_runs_under_another_interpreter(monkeypatch):
    # the side venv has numpy but neither execnet nor klconform: the worker gets both over the pipe
    monkeypatch.setenv("PYTHONPATH", str(EXAMPLE_DIR))
    cases = [make_case(0), make_case(1)]
    env, out = run_in_worker("inhouse_numpy_kl.adapter:NumpyKL", cases, python=str(SIDE_PYTHON), **FAST)
    assert env["python"] == str(SIDE_PYTHON)
    assert env["adapter"] == "inhouse.numpy_kl"
    for c, o in zip(cases, out):
        assert_matches_reference(c, o)


# ----------------------------------------------------------------------------- large payloads
def big_case(i: int, label: str = "") -> Case:
    """A case whose payloads exceed SHARED_PAYLOAD_BYTES: they travel through a memfd."""
    from klconform.workers import SHARED_PAYLOAD_BYTES
    n = SHARED_PAYLOAD_BYTES // 8 + 1000 * (i + 1)
    rng = np.random.default_rng(i)
    p = rng.dirichlet(np.ones(n))[None, :]
    q = rng.dirichlet(np.ones(n))[None, :]
    return Case(target=p, pred=np.log(q), grad=False, label=label or f"big{i}")


def _payload_fds() -> set[str]:
    """The controller's open payload memory files."""
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            if "klconform-payload" in os.readlink(f"/proc/self/fd/{fd}"):
                out.add(fd)
        except OSError:
            pass
    return out


def test_large_payloads_go_through_shared_memory_once_and_leave_no_descriptor():
    from klconform.workers import _PAYLOAD_FILES, SharedPayloads
    if not SharedPayloads.available():
        pytest.skip("no memfd here: large payloads take the pipe")
    _PAYLOAD_FILES.clear()
    cases = [big_case(0), make_case(1), big_case(1)]
    before = _payload_fds()
    with AdapterWorker(WorkerSpec(REF + "GoodKL"), batch_size=3, **FAST) as w:
        outcomes = w.run(cases + [cases[0]])          # the same case twice: stored once
        files = _payload_fds() - before
        assert len(files) == 4                         # target and pred of the two big cases
        again = w.run(cases[::-1])                     # another batch: the files are reused
        assert _payload_fds() - before == files
    for c, o in zip(cases, outcomes):
        assert o.status == "ok"
        np.testing.assert_allclose(o.value, reference.evaluate(c.replace(grad=False)).value, rtol=1e-12)
    assert outcomes[3].value.tobytes() == outcomes[0].value.tobytes()
    assert [o.value.tobytes() for o in again] == [o.value.tobytes() for o in outcomes[2::-1]]
    assert _PAYLOAD_FILES.pinned() == 0
    _PAYLOAD_FILES.clear()
    assert _payload_fds() <= before


def test_private_view_is_the_received_memory_and_a_write_stays_in_the_worker():
    """A worker maps large payloads copy-on-write: ``Case.private_view`` is a writable view
    of the same memory as the read-only ``sent_values`` (None for a case that came over the
    pipe), and what an adapter writes there never reaches the file other batches and
    workers map."""
    from klconform.workers import _PAYLOAD_FILES, SharedPayloads
    if not SharedPayloads.available():
        pytest.skip("no memfd here: large payloads take the pipe")
    _PAYLOAD_FILES.clear()
    big, small = big_case(3, "scribble"), make_case(1)
    want = reference.evaluate(big.replace(grad=False)).value
    with AdapterWorker(WorkerSpec(REF + "ScribblingKL"), batch_size=2, **FAST) as w:
        first = w.run([big, small])              # zeros written into the big case's pred
        again = w.run([big])                     # the next batch maps the file again
    with AdapterWorker(WorkerSpec(REF + "GoodKL"), batch_size=1, **FAST) as w:
        other = w.run([big])                     # another process maps the same file
    assert first[0].warnings == ["private_view: writable=True shares=True sent_writable=False"]
    assert first[1].warnings == ["private_view: none"]
    for o in (first[0], again[0], other[0]):
        assert o.status == "ok"
        np.testing.assert_allclose(o.value, want, rtol=1e-12)
    _PAYLOAD_FILES.clear()


def test_payload_files_are_bounded_and_a_pinned_one_is_never_closed():
    from klconform.workers import SharedPayloads, _PayloadFiles
    if not SharedPayloads.available():
        pytest.skip("no memfd here")
    files = _PayloadFiles(capacity=3 << 20)
    data = [bytes([i]) * (1 << 20) for i in range(5)]
    before = _payload_fds()
    batch = SharedPayloads(files)
    paths = [batch.put(("case", str(i)), d)["shared"][0] for i, d in enumerate(data)]   # 5 MiB pinned: all kept
    assert len(_payload_fds() - before) == 5
    for d, p in zip(data, paths):
        with open(p, "rb") as f:
            assert f.read() == d
    batch.close()                                               # unpinned: the oldest go
    assert len(_payload_fds() - before) == 3
    assert batch.put(("case", "4"), data[4])["shared"][0] == paths[4]          # kept: the same file
    assert files.pinned() == 1
    batch.close()
    files.clear()
    assert _payload_fds() <= before


def test_segfault_on_a_large_case_is_attributed_and_the_rest_still_arrive():
    cases = [big_case(0), big_case(1, "segfault"), big_case(2)]
    with AdapterWorker(WorkerSpec(REF + "SegfaultingKL"), batch_size=3, **FAST) as w:
        outcomes = w.run(cases)
        assert w.restarts == 1
    assert [o.status for o in outcomes] == ["ok", "crash", "ok"]
    np.testing.assert_allclose(outcomes[2].value, reference.evaluate(cases[2]).value, rtol=1e-12)
    from klconform.workers import _PAYLOAD_FILES
    assert _PAYLOAD_FILES.pinned() == 0       # a dead worker's batch unpinned its files too
