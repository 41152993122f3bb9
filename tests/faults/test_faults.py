"""Fault injection: klconform never ends in a traceback and its exit status never lies.

Exit statuses (klconform/cli.py): 0 clean, 1 unexpected discrepancy, 2 usage/input/internal
error (one line), 3 an adapter asked for could not run / nothing checked, 130 interrupted.
In-process tests use InProcessRunner-free paths where possible; the rest start real
``python -m klconform`` processes with the test doubles (tests/harness/misbehaving.py,
tests/faults/faulty.py) and small corpora, so the module stays fast."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from klconform import cli, resultsio, workers
from klconform.case import Case

ROOT = Path(__file__).resolve().parents[2]
GOOD = "tests.harness.misbehaving:GoodKL"
F = "tests.faults.faulty:"
M = "tests.harness.misbehaving:"


def _tiny_corpus() -> str:
    """A corpus file of 4 float64 batchmean cases (what the doubles support), so that a
    run takes about a second; removed at exit."""
    import atexit
    import shutil
    import tempfile
    from klconform import frozen
    cases = [c for c in frozen.load() if c.dtype == "float64" and c.reduction == "batchmean"
             and c.target_kind == "prob" and c.pred_kind == "logprob"][:4]
    d = tempfile.mkdtemp(prefix="klconform-test-corpus-")
    atexit.register(shutil.rmtree, d, True)
    return str(frozen.dump(cases, os.path.join(d, "tiny.jsonl"), made_by="tests/faults"))


TINY_CORPUS = _tiny_corpus()
SMALL = ["--corpus", TINY_CORPUS, "--dtypes", "float64", "--shrink-rounds", "0", "--quiet"]


def cli_run(args, capsys):
    rc = cli.main(args)
    return rc, capsys.readouterr().err


def one_line_error(err: str) -> bool:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    return bool(lines) and lines[-1].startswith("klconform: error: ") and "Traceback" not in err


def spawn(args, cwd=ROOT, **env):
    e = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT), **env)
    return subprocess.Popen([sys.executable, "-m", "klconform", *args], cwd=cwd, env=e, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def session_alive(sid: int) -> list[int]:
    """Pids still in session ``sid`` (zombies excluded): a spawned klconform (a session of
    its own) and its workers, each of which leads a process group of its own in it."""
    alive = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[3]) == sid and stat[0] != "Z":
                alive.append(int(d.name))
    return alive


def previous_report(out: Path) -> dict[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    files = {"results.json": '{"old": 1}\n', "report.md": "old md\n", "report.html": "old html\n"}
    for name, text in files.items():
        (out / name).write_text(text)
    return files


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.endswith(".tmp") or p.name.startswith(".klconform"))


# ----------------------------------------------------------------------------- controller-side faults
# An adapter whose capabilities() raises is that adapter's failure, not a usage error
# (exit 3: tests/faults/test_inputs.py).
@pytest.mark.parametrize("args,needle", [
    (["--frameworks", F + "NeedsArguments"], "cannot be constructed without arguments"),
    (["--frameworks", GOOD, "--batch-size", "0"], "--batch-size"),
    (["--frameworks", GOOD, "--case-timeout", "0"], "--case-timeout"),
    (["--frameworks", GOOD, "--case-timeout", "-1"], "--case-timeout"),
    (["--frameworks", GOOD, "--case-timeout", "nan"], "--case-timeout"),
    (["--frameworks", GOOD, "--setup-timeout", "inf"], "--setup-timeout"),
    (["--frameworks", GOOD, "--jobs", "0"], "--jobs"),
    (["--frameworks", GOOD, "--worker-memory", "12"], "--worker-memory"),
])
def test_bad_adapter_or_option_is_one_line_exit_2(args, needle, tmp_path, capsys):
    old = previous_report(tmp_path)
    rc, err = cli_run(["run", *args, *SMALL, "--out", str(tmp_path)], capsys)
    assert rc == cli.EXIT_USAGE and one_line_error(err) and needle in err, err
    assert {n: (tmp_path / n).read_text() for n in old} == old


# A directory or a full disk where an output file goes: the whole set is refused and the
# previous one stays (tests/faults/test_output_sets.py).


def test_internal_error_is_one_line_with_a_log(tmp_path, capsys, monkeypatch, private_temp_dir):
    monkeypatch.setattr(cli, "cmd_run", lambda args: {}["boom"])
    rc, err = cli_run(["run", "--out", str(tmp_path)], capsys)
    assert rc == cli.EXIT_USAGE and one_line_error(err) and "internal error: KeyError" in err, err
    log = Path(err.rsplit("details in ", 1)[1].strip())
    assert "Traceback" in log.read_text()
    assert log.parent == private_temp_dir      # the test's own temp directory (conftest), not the shared one


def test_concurrent_run_into_one_out_fails_clearly(tmp_path, capsys):
    with resultsio.OutputLock(tmp_path):
        rc, err = cli_run(["run", "--frameworks", GOOD, *SMALL, "--out", str(tmp_path)], capsys)
    assert rc == cli.EXIT_USAGE and one_line_error(err) and "another klconform run" in err, err
    assert not (tmp_path / "results.json").exists()


def test_unused_python_option_warns(tmp_path, capsys):
    rc, err = cli_run(["run", "--frameworks", GOOD, "--python", f"nowhere={sys.executable}", *SMALL,
                       "--out", str(tmp_path)], capsys)
    assert rc in (cli.EXIT_OK, cli.EXIT_DISCREPANCY), err   # the double has unrecorded discrepancies
    assert "warning: --python nowhere=" in err


def test_list_takes_the_run_selection_options(capsys):
    assert cli.main(["list", "--adapter", GOOD, "--frameworks", "torch.kl_div"]) == cli.EXIT_OK
    listed = capsys.readouterr().out.splitlines()
    assert [ln.split("\t")[1] for ln in listed] == ["klconform.adapters.torch_kl_div:TorchKLDiv", GOOD]


@pytest.mark.parametrize("adapter", ["EveryCaseRaises", "NothingExpressible"])
def test_an_adapter_without_an_observed_point_is_reported_not_an_internal_error(adapter, tmp_path, capsys):
    """An ok run whose fingerprint observes no point (every outcome an error, or no case the
    adapter can take): the progress line says so; the run ends with a report, unless it
    compared no case at all: then nothing was compared (exit 3, no report)."""
    args = [a for a in SMALL if a != "--quiet"]
    rc, err = cli_run(["run", "--frameworks", F + adapter, *args, "--jobs", "2", "--out", str(tmp_path)], capsys)
    assert "internal error" not in err and "Traceback" not in err
    assert "no observed point" in err, err
    if adapter == "NothingExpressible":
        assert rc == cli.EXIT_NOT_CHECKED and one_line_error(err) and "nothing compared: " in err, err
        assert not (tmp_path / "results.json").exists()
        return
    assert rc in (cli.EXIT_OK, cli.EXIT_DISCREPANCY), err
    (run,) = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert run["status"] == "ok" and run["fingerprint"]["observed"] is None
    assert (tmp_path / "report.md").stat().st_size > 0


@pytest.mark.parametrize("fingerprint", [None, {}, {"observed": None}, {"observed": {}},
                                         {"status": "no_data", "observed": None, "reason": "no outcome"}])
def test_the_progress_line_takes_any_fingerprint(fingerprint):
    from klconform.results import AdapterRun
    run = AdapterRun(adapter="x", api="", env={}, status="ok")
    run.fingerprint = fingerprint
    assert cli.adapter_done_line(run).startswith("x: 0 outcomes, 0 discrepancy verdicts, no observed point")
    run.fingerprint = {"observed": {"name": "sum+swapped"}}
    assert cli.adapter_done_line(run).endswith("observed sum+swapped")
    skipped = AdapterRun(adapter="y", api="", env={}, status="import_error", reason="no module", fingerprint=None)
    assert cli.adapter_done_line(skipped) == "y: skipped (import_error: no module)"


# ----------------------------------------------------------------------------- worker faults
@pytest.mark.parametrize("adapter,extra", [
    ("BrokenImportKL", []), ("CrashOnImportKL", []), ("HangOnImportKL", ["--setup-timeout", "1"]),
])
def test_named_adapter_that_cannot_start_is_exit_3_and_keeps_the_previous_report(adapter, extra, tmp_path, capsys):
    old = previous_report(tmp_path)
    rc, err = cli_run(["run", "--frameworks", M + adapter, *SMALL, *extra, "--out", str(tmp_path)], capsys)
    assert rc == cli.EXIT_NOT_CHECKED and one_line_error(err) and "nothing compared: no adapter could run" in err, err
    assert {n: (tmp_path / n).read_text() for n in old} == old
    assert leftovers(tmp_path) == []


def test_one_named_adapter_missing_beside_a_good_one_is_exit_3_with_a_report(tmp_path, capsys):
    rc, err = cli_run(["run", "--frameworks", f"{GOOD},{M}BrokenImportKL", *SMALL,
                       "--out", str(tmp_path)], capsys)
    assert rc == cli.EXIT_NOT_CHECKED and "could not run: double.broken_import" in err, err
    statuses = {r["adapter"]: r["status"] for r in json.loads((tmp_path / "results.json").read_text())["runs"]}
    assert statuses == {"double.good": "ok", "double.broken_import": "import_error"}


def _case(label):
    p = np.array([[0.5, 0.5]])
    return Case(target=p, pred=np.log(p), label=label)


def test_memory_exhaustion_is_a_crash_outcome_and_the_worker_goes_on():
    env, out = workers.run_in_worker(F + "MemoryHog", [_case("a"), _case("b")], case_timeout=20,
                                     memory_limit=2 * 2**30)
    assert [o.status for o in out] == ["crash", "crash"] and out[0].error_type == "MemoryError"


def test_stderr_flood_is_capped_with_a_note():
    env, out = workers.run_in_worker(F + "StderrFlood", [_case("a")], case_timeout=20)
    text = "\n".join(out[0].warnings)
    assert len(text) < 9000 and "byte(s) of stderr dropped" in text, text[-200:]


# ----------------------------------------------------------------------------- report input
@pytest.fixture(scope="module")
def good_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("good")
    assert cli.main(["run", "--frameworks", GOOD, *SMALL, "--out", str(out)]) in (cli.EXIT_OK, cli.EXIT_DISCREPANCY)
    return json.loads((out / "results.json").read_text())


@pytest.mark.parametrize("damage,needle", [
    (lambda d: d["cases"].pop(d["runs"][0]["verdicts"][0]["case"]), "not in 'cases'"),
    (lambda d: d["cases"].clear(), "not in 'cases'"),
    (lambda d: next(iter(d["cases"].values())).update(target=next(iter(d["cases"].values()))["target"][:-4]),
     "does not decode"),
])
def test_report_refuses_inconsistent_results(good_results, damage, needle, tmp_path, capsys):
    doc = json.loads(json.dumps(good_results))
    damage(doc)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(doc))
    rc, err = cli_run(["report", str(path)], capsys)
    assert rc == cli.EXIT_USAGE and one_line_error(err) and needle in err, err


# ----------------------------------------------------------------------------- interruption
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("during", ["setup", "case"])
def test_signal_stops_the_run_fast_and_cleanly(sig, during, tmp_path):
    out = tmp_path / "out"
    old = previous_report(out)
    adapter = M + "HangOnImportKL" if during == "setup" else F + "EveryCaseHangs"
    before = set(Path(os.environ.get("TMPDIR", "/tmp")).glob("klconform-progress-*"))
    proc = spawn(["run", "--frameworks", adapter, *SMALL, "--case-timeout", "600", "--out", str(out)])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(session_alive(proc.pid)) < 2:   # the worker is up
        time.sleep(0.1)
    time.sleep(1.0)                       # ... and busy in setup or in its first case
    assert len(session_alive(proc.pid)) >= 2
    t0 = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=20)
    took = time.monotonic() - t0
    assert proc.returncode == cli.EXIT_INTERRUPTED, err
    assert took < 2.5, took
    assert "Traceback" not in err and "kept in" not in err, err
    assert {n: (out / n).read_text() for n in old} == old
    assert leftovers(out) == []
    time.sleep(0.2)
    assert session_alive(proc.pid) == []
    assert set(Path(os.environ.get("TMPDIR", "/tmp")).glob("klconform-progress-*")) <= before


def test_killed_controller_takes_its_worker_along(tmp_path):
    proc = spawn(["run", "--frameworks", F + "EveryCaseHangs", *SMALL, "--out", str(tmp_path)])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(session_alive(proc.pid)) < 2:
        time.sleep(0.1)
    time.sleep(0.5)
    proc.kill()
    proc.communicate(timeout=10)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and session_alive(proc.pid):
        time.sleep(0.1)
    assert session_alive(proc.pid) == []


def test_relative_out_resolves_against_the_callers_directory(tmp_path):
    proc = spawn(["run", "--frameworks", GOOD, *SMALL, "--out", "rel-out"], cwd=ROOT,
                 KLCONFORM_CALLER_CWD=str(tmp_path))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (cli.EXIT_OK, cli.EXIT_DISCREPANCY), err
    assert (tmp_path / "rel-out" / "results.json").exists()
    assert not (ROOT / "rel-out").exists()
