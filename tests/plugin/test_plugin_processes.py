"""The pytest plugin's processes and temp files, as a user's pytest run meets them (a pytest
subprocess in an empty directory, its own session and temp directory):

* SIGINT (Ctrl-C, to the whole process group as a terminal sends it) while an adapter
  hangs stops the run as it stops pytest: exit 2, "KeyboardInterrupt", within seconds --
  not swallowed until the case times out;
* SIGINT or SIGTERM leaves no ``klconform-*`` entry in the temp directory and no process
  behind (with and without xdist);
* an adapter whose setup() forks a child leaves no process behind (xdist ``-n 2``)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.faults import faulty
from tests.faults.test_faults import TINY_CORPUS, session_alive
from tests.faults.test_processes import alive, children_of, still_alive

ROOT = Path(__file__).resolve().parents[2]
QUICK = ["--klconform-corpus", TINY_CORPUS, "--klconform-shrink-rounds", "0", "--klconform-large", "none"]
HANGS = "tests.faults.faulty:EveryCaseHangs"


def start_pytest(cwd: Path, *args: str, **env: str) -> subprocess.Popen:
    """pytest in its own session (a terminal's foreground group) and temp directory."""
    (cwd / "pytest.ini").write_text("[pytest]\n")
    tmp = cwd / "tmp"
    tmp.mkdir()
    e = dict(os.environ, PYTHONPATH=os.pathsep.join([str(cwd), str(ROOT)]), TF_CPP_MIN_LOG_LEVEL="3",
             TMPDIR=str(tmp), **env)
    e.pop("PYTEST_ADDOPTS", None)
    return subprocess.Popen([sys.executable, "-m", "pytest", "-p", "klconform.pytest_plugin", "-p", "no:cacheprovider",
                             "-q", "-rA", *args], cwd=cwd, env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def klconform_temp_entries(cwd: Path) -> list[str]:
    return sorted(p.name for p in (cwd / "tmp").iterdir() if p.name.startswith("klconform"))


def wait_for_adapter_worker(proc: subprocess.Popen, at_least: int) -> None:
    """Until ``at_least`` processes of pytest's session run (pytest, its adapter worker(s),
    the xdist workers), then a moment more: the case is hanging."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and len(session_alive(proc.pid)) < at_least:
        time.sleep(0.1)
    assert len(session_alive(proc.pid)) >= at_least, "the adapter worker did not start"
    time.sleep(1.5)


def gone(sid: int, grace: float = 5.0) -> list[int]:
    deadline = time.monotonic() + grace
    while session_alive(sid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return session_alive(sid)


def test_sigint_during_a_hanging_adapter_stops_the_run_as_it_stops_pytest(tmp_path):
    proc = start_pytest(tmp_path, "-p", "no:xdist", "--klconform-adapter", HANGS, *QUICK,
                        "--klconform-case-timeout", "600")
    try:
        wait_for_adapter_worker(proc, 2)
        t0 = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 2, out[-3000:]                 # pytest's ExitCode.INTERRUPTED
    assert "KeyboardInterrupt" in out, out[-3000:]
    assert " passed" not in out and " failed" not in out, out[-3000:]
    assert took < 10, took
    assert gone(proc.pid) == []
    assert klconform_temp_entries(tmp_path) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("xdist", [False, True])
def test_a_signalled_pytest_leaves_no_temp_file_and_no_process(sig, xdist, tmp_path):
    if xdist:
        pytest.importorskip("xdist")
    dist = ["-n", "2"] if xdist else ["-p", "no:xdist"]
    proc = start_pytest(tmp_path, *dist, "--klconform-adapter", HANGS, *QUICK, "--klconform-case-timeout", "600")
    try:
        wait_for_adapter_worker(proc, 4 if xdist else 2)
        os.killpg(proc.pid, sig)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert gone(proc.pid) == [], out[-3000:]
    assert klconform_temp_entries(tmp_path) == [], out[-3000:]
    if sig == signal.SIGTERM:
        assert proc.returncode == -signal.SIGTERM, out[-3000:]      # still killed by the signal, as pytest is


DOUBLES = '''
from tests.faults.faulty import ForksInSetup


class ForksA(ForksInSetup):
    name = "double.forks_a"


class ForksB(ForksInSetup):
    name = "double.forks_b"
'''


@pytest.mark.parametrize("mode", ["group", "daemon"])
def test_a_forking_adapter_leaves_no_process_under_xdist(mode, tmp_path):
    pytest.importorskip("xdist")
    (tmp_path / "fork_doubles.py").write_text(DOUBLES)
    log = tmp_path / "children.log"
    log.touch()
    proc = start_pytest(tmp_path, "-n", "2", "--klconform-adapter", "fork_doubles:ForksA",
                        "--klconform-adapter", "fork_doubles:ForksB", *QUICK,
                        **{faulty.FORK_MODE_ENV: mode, faulty.CHILD_LOG_ENV: str(log)})
    try:
        out, _ = proc.communicate(timeout=180)
        pids = children_of(log)
        assert proc.returncode in (0, 1), out[-3000:]
        assert len(pids) >= 2, out[-3000:]
        assert still_alive(pids) == [], f"stray processes: {pids}"
        assert klconform_temp_entries(tmp_path) == []
    finally:
        for pid in children_of(log):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
