"""Processes and memory under hostile adapters:

* every worker runs in its own process group and is killed with it, and with every
  process that inherited its environment (however it left the group), so an adapter whose
  setup() forks a child leaves no process behind -- when the worker is closed, killed for a
  timeout, or crashes, and when the controller is interrupted;
* an answer far larger than any result of its case (10⁸ values) is a ``crash`` outcome in
  the worker and never travels: the controller's peak memory stays that of a small run;
* an outcome's text (message, warnings) is bounded in the worker;
* a circuit breaker: after N consecutive timeouts an adapter's remaining cases are not
  sent, and are reported as skipped."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from klconform import cli, frozen, workers
from klconform.case import Case
from tests.faults import faulty
from tests.faults.test_faults import F, GOOD, M, ROOT, SMALL, cli_run, session_alive, spawn

FORKS = F + "ForksInSetup"


def alive(pid: int) -> bool:
    """``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def children_of(log: Path) -> list[int]:
    return [int(x) for x in log.read_text().split()] if log.exists() else []


def still_alive(pids: list[int], grace: float = 3.0) -> list[int]:
    """The pids of ``pids`` alive after ``grace`` seconds at most (a SIGKILL sent just
    before takes a moment to show)."""
    deadline = time.monotonic() + grace
    while True:
        left = [p for p in pids if alive(p)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


@pytest.fixture
def child_log(tmp_path):
    """The file the forking double logs its children in; whatever the test found, they are
    killed afterwards (a failing test must not leave hour-long sleepers on the machine)."""
    log = tmp_path / "children.log"
    log.touch()
    yield log
    for pid in children_of(log):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def fork_env(mode: str, log: Path, fault: str = "") -> dict[str, str]:
    return {faulty.FORK_MODE_ENV: mode, faulty.CHILD_LOG_ENV: str(log), faulty.CASE_FAULT_ENV: fault}


# ----------------------------------------------------------------------------- stray processes
@pytest.mark.parametrize("mode", ["group", "session", "daemon"])
@pytest.mark.parametrize("fault", ["", "hang", "segfault"])
def test_a_forking_adapter_leaves_no_process_after_the_run(mode, fault, child_log, tmp_path):
    """Closed at the end of the run (no fault), killed for a timeout, or crashed: the
    worker's children go with it, in its group, in a new session, or re-parented away."""
    proc = spawn(["run", "--frameworks", FORKS, *SMALL, "--case-timeout", "1", "--out", str(tmp_path / "out")],
                 **fork_env(mode, child_log, fault))
    _, err = proc.communicate(timeout=120)
    assert "Traceback" not in err and "internal error" not in err, err
    assert proc.returncode in (cli.EXIT_OK, cli.EXIT_DISCREPANCY), err
    pids = children_of(child_log)
    assert pids, err                                 # the double did fork
    assert still_alive(pids) == [], f"stray processes of the {mode} double: {pids}"
    assert session_alive(proc.pid) == []


def test_a_forking_adapter_leaves_no_process_after_an_interrupted_run(child_log, tmp_path):
    proc = spawn(["run", "--frameworks", FORKS, *SMALL, "--case-timeout", "600", "--out", str(tmp_path / "out")],
                 **fork_env("daemon", child_log, "hang"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not children_of(child_log):
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == cli.EXIT_INTERRUPTED, err
    pids = children_of(child_log)
    assert pids and still_alive(pids) == []


def test_a_killed_controller_takes_its_workers_children_along(child_log, tmp_path):
    """SIGKILL cannot be caught: the worker notices its controller is gone and takes its
    own children with it before it exits."""
    proc = spawn(["run", "--frameworks", FORKS, *SMALL, "--case-timeout", "600", "--out", str(tmp_path / "out")],
                 **fork_env("session", child_log, "hang"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not children_of(child_log):
        time.sleep(0.1)
    time.sleep(0.5)
    proc.kill()
    proc.communicate(timeout=30)
    pids = children_of(child_log)
    assert pids and still_alive(pids, grace=5.0) == []


def test_in_process_workers_clean_up_too(child_log, monkeypatch):
    """The library path (workers.run_in_worker, what the plugin uses): closed worker, no child."""
    for k, v in fork_env("session", child_log).items():
        monkeypatch.setenv(k, v)
    env, out = workers.run_in_worker(FORKS, [_case("a")], case_timeout=20)
    assert out[0].status == "ok"
    pids = children_of(child_log)
    assert pids and still_alive(pids) == []


# ----------------------------------------------------------------------------- sizes
def _case(label: str = "") -> Case:
    p = np.array([[0.5, 0.5]])
    return Case(target=p, pred=np.log(p), label=label)


def test_an_oversized_answer_is_a_crash_outcome_decided_in_the_worker():
    env, (out,) = workers.run_in_worker(F + "Oversized", [_case()], case_timeout=60)
    assert out.status == "crash" and out.error_type == "OversizedOutcome", out
    assert out.value is None and not out.grads
    assert "100000000" in out.error_message and "KL-SHAPE-2" in out.error_message, out.error_message


def test_small_answers_of_another_shape_reach_the_controller():
    """The size check bounds memory only: a wrong but small shape (2 entries for a 1-entry
    result) and the right answer of a case with an empty class axis (a (2, 0) case's
    per-distribution loss has 2 entries) are judged by the controller, not refused."""
    from klconform._worker_remote import SMALL_ANSWER, result_limit

    empty = Case(target=np.zeros((2, 0)), pred=np.zeros((2, 0)), reduction="distribution")
    assert result_limit(empty) >= 2 and result_limit(_case()) >= SMALL_ANSWER
    assert result_limit(_case()) < 10**8


def test_an_outcomes_text_is_bounded_in_the_worker():
    env, (out,) = workers.run_in_worker(F + "LongMessages", [_case()], case_timeout=120)
    assert out.status == "error" and out.error_type == "ValueError"
    assert len(out.error_message) <= 20_000, len(out.error_message)
    assert len(out.warnings) <= 60 and sum(map(len, out.warnings)) <= 100_000, len(out.warnings)
    assert "more warning(s) dropped" in out.warnings[-1], out.warnings[-1]


PEAK_SCRIPT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (8 * 2**30, resource.RLIM_INFINITY))   # a regression fails, not the machine
from klconform import cli
rc = cli.main(sys.argv[1:])
print("PEAK_KIB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "RC", rc)
"""


def controller_peak_kib(args: list[str]) -> tuple[int, int, str]:
    e = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, *args], cwd=ROOT, env=e, capture_output=True,
                          text=True, timeout=300)
    words = proc.stdout.split()
    assert "PEAK_KIB" in words, proc.stdout + proc.stderr
    return int(words[words.index("PEAK_KIB") + 1]), int(words[words.index("RC") + 1]), proc.stderr


def test_the_controllers_memory_stays_bounded_with_an_oversized_adapter(tmp_path):
    """The oversized double answers each of the 4 cases with 800 MB; the controller's peak
    must stay near a good adapter's run (both measured here; docs/adapters.md quotes them)."""
    good, rc_good, _ = controller_peak_kib(["run", "--frameworks", GOOD, *SMALL, "--out", str(tmp_path / "good")])
    big, rc, err = controller_peak_kib(["run", "--frameworks", F + "Oversized", *SMALL, "--out", str(tmp_path / "big")])
    print(f"controller peak RSS: good adapter {good / 1024:.0f} MiB, oversized adapter {big / 1024:.0f} MiB")
    assert rc == cli.EXIT_DISCREPANCY and "internal error" not in err, err      # crash verdicts, unrecorded
    assert big < good + 100 * 1024, (good, big)
    doc = json.loads((tmp_path / "big" / "results.json").read_text())
    assert {o["error_type"] for o in doc["runs"][0]["outcomes"].values()} == {"OversizedOutcome"}


# ----------------------------------------------------------------------------- circuit breaker
def corpus_of(n: int, where: Path) -> str:
    cases = [c for c in frozen.load() if c.dtype == "float64" and c.reduction == "batchmean"
             and c.target_kind == "prob" and c.pred_kind == "logprob"][:n]
    assert len(cases) == n
    return str(frozen.dump(cases, where / f"corpus{n}.jsonl", made_by="tests/faults"))


def test_the_breaker_stops_sending_after_n_consecutive_timeouts():
    cases = [_case(str(i)) for i in range(6)]
    t0 = time.monotonic()
    env, out = workers.run_in_worker(F + "EveryCaseHangs", cases, case_timeout=0.5, max_consecutive_timeouts=2)
    took = time.monotonic() - t0
    assert [o.status for o in out] == ["timeout", "timeout"] + ["skipped"] * 4, [o.status for o in out]
    assert all(o.error_message == "not sent: skipped after 2 consecutive timeouts" for o in out[2:]), out[2]
    assert took < 15, took


def test_an_answer_between_timeouts_resets_the_breaker():
    labels = ["hang", "a", "hang", "hang", "b", "c"]
    env, out = workers.run_in_worker(M + "HangingKL", [_case(x) for x in labels], case_timeout=0.5,
                                     max_consecutive_timeouts=2, batch_size=2)
    assert [o.status for o in out] == ["timeout", "ok", "timeout", "timeout", "skipped", "skipped"], \
        [o.status for o in out]


def test_zero_turns_the_breaker_off():
    env, out = workers.run_in_worker(F + "EveryCaseHangs", [_case(str(i)) for i in range(3)], case_timeout=0.3,
                                     max_consecutive_timeouts=0)
    assert [o.status for o in out] == ["timeout"] * 3


def test_the_breaker_in_a_run_is_reported_and_the_exit_status_keeps_the_contract(tmp_path, capsys):
    corpus = corpus_of(12, tmp_path)
    out = tmp_path / "out"
    t0 = time.monotonic()
    rc, err = cli_run(["run", "--frameworks", F + "EveryCaseHangs", "--corpus", corpus, "--shrink-rounds", "0",
                       "--case-timeout", "0.5", "--max-consecutive-timeouts", "3", "--out", str(out)], capsys)
    took = time.monotonic() - t0
    assert rc == cli.EXIT_DISCREPANCY, err           # three unrecorded timeouts
    assert took < 40, took
    doc = json.loads((out / "results.json").read_text())
    statuses = sorted(o["status"] for o in doc["runs"][0]["outcomes"].values())
    assert statuses == ["skipped"] * 9 + ["timeout"] * 3, statuses
    assert "9 case(s) skipped after 3 consecutive timeouts" in err, err
    assert "9 case(s) skipped after 3 consecutive timeouts" in (out / "report.md").read_text()
    assert "9 case(s) skipped after 3 consecutive timeouts" in (out / "report.html").read_text()


@pytest.mark.parametrize("value", ["-1", "x", "1.5"])
def test_a_bad_breaker_value_is_one_line_exit_2(value, tmp_path, capsys):
    rc, err = cli_run(["run", "--frameworks", GOOD, *SMALL, "--max-consecutive-timeouts", value,
                       "--out", str(tmp_path)], capsys)
    assert rc == cli.EXIT_USAGE and "--max-consecutive-timeouts" in err and "Traceback" not in err, err
