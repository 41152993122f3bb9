"""The command line: exit statuses, one-line errors, outputs, determinism, interruption.

Runs in-process with the test doubles in InProcessRunner targets (engine.open_target is
replaced: the worker pool has its own tests), except the end-to-end test at the bottom,
which runs ``python -m klconform`` with a double in a real worker process.
"""
from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from klconform import cli, engine, registry, resultsio

ROOT = Path(__file__).resolve().parents[2]
SMALL_CORPUS = str(ROOT / "tests" / "data" / "small-corpus.jsonl")
CANON = "tests.report.doubles:PointAdapter"
EPS = "tests.report.doubles:TargetEps"


@pytest.fixture
def in_process(monkeypatch):
    """engine.open_target without worker processes."""
    pids = itertools.count(1000)

    def open_target(spec, **kw):   # like a worker: the env carries a fresh pid every time
        a = registry.load_adapter(spec.adapter_ref)
        return engine.Target(spec.run_id or a.name, a, engine.InProcessRunner(a), env=dict(a.setup(), pid=next(pids)))
    monkeypatch.setattr(engine, "open_target", open_target)


def run_cli(args, capsys):
    rc = cli.main(args)
    err = capsys.readouterr().err
    return rc, err


def small(out, *refs, extra=()):
    return ["run", "--frameworks", ",".join(refs), "--corpus", SMALL_CORPUS, "--dtypes", "float32",
            "--shrink-rounds", "0", "--quiet", "--out", str(out), *extra]


@pytest.mark.parametrize("argv,needle", [
    (["run", "--frameworks", "no.such_adapter"], "unknown adapter 'no.such_adapter'"),
    (["run", "--formats", "json,pdf"], "--formats 'json,pdf'"),
    (["run", "--dtypes", "float8"], "unknown dtype float8"),
    (["run", "--jobs", "many"], "invalid int value"),
    (["run", "--examples", "3"], "unrecognized arguments: --examples"),
    (["run", "--python", "novalue"], "expected ENV=PATH"),
    (["frobnicate"], "invalid choice"),
    (["run", "--adapter", "no_such_module:Adapter"], "module 'no_such_module' not found"),
])
def test_usage_errors_are_one_line_exit_2(argv, needle, capsys, tmp_path):
    rc, err = run_cli(argv + (["--out", str(tmp_path)] if argv[0] == "run" else []), capsys)
    assert rc == cli.EXIT_USAGE
    assert err.count("\n") == 1 and err.startswith("klconform: error: ") and needle in err, err


def test_unwritable_output_dir(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc, err = run_cli(["run", "--out", str(blocker / "sub")], capsys)
    assert rc == 2 and err.count("\n") == 1 and "is not writable" in err
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        rc, err = run_cli(["run", "--out", str(ro)], capsys)
        assert rc == 2 and "is not writable" in err
    finally:
        ro.chmod(0o700)


def test_report_bad_inputs(capsys, tmp_path):
    for content, needle in (("{", "not valid JSON"), ('{"schema_version": 99}', "schema_version 99"),
                            ('{"schema_version": 1}', "does not match the results schema")):
        p = tmp_path / "r.json"
        p.write_text(content)
        rc, err = run_cli(["report", str(p), "--out", str(tmp_path)], capsys)
        assert rc == 2 and err.count("\n") == 1 and needle in err, err
    rc, err = run_cli(["report", str(tmp_path / "none.json")], capsys)
    assert rc == 2 and "no such results file" in err


def test_run_writes_three_files_and_exit_status(in_process, capsys, tmp_path):
    out = tmp_path / "out"
    rc, _ = run_cli(small(out, CANON), capsys)
    assert rc == cli.EXIT_OK
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.md", "results.json"]
    res = resultsio.read_results(out / "results.json")
    assert res.complete and [r.adapter for r in res.runs] == ["double.canonical"]
    run = res.runs[0]
    assert run.fingerprint["status"] == "exact" and run.fingerprint["observed"]["name"] == "reduction as asked"
    assert run.documented["name"] == "reduction as asked"
    assert {c["dtype"] for c in res.cases.values()} == {"float32"}
    assert res.command == ("python -m klconform run --corpus " + SMALL_CORPUS + " --frameworks " + CANON + " --dtypes float32")
    # a deviating double has discrepancies no known record covers: exit 1
    rc, _ = run_cli(small(tmp_path / "eps", EPS), capsys)
    assert rc == cli.EXIT_DISCREPANCY
    # re-rendering from the results file gives the same exit status and reports
    rc, err = run_cli(["report", str(tmp_path / "eps" / "results.json"), "--out", str(tmp_path / "re")], capsys)
    assert rc == cli.EXIT_DISCREPANCY and err == ""
    assert (tmp_path / "re" / "report.md").read_text() == (tmp_path / "eps" / "report.md").read_text()


def test_formats_option(in_process, capsys, tmp_path):
    rc, _ = run_cli(small(tmp_path, CANON, extra=["--formats", "md"]), capsys)
    assert rc == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]


def test_same_seed_same_results_apart_from_timing(in_process, capsys, tmp_path):
    docs = []
    for name in ("a", "b"):
        rc, _ = run_cli(small(tmp_path / name, CANON, EPS), capsys)
        assert rc == 1
        docs.append(json.loads((tmp_path / name / "results.json").read_text()))
    assert docs[0] != docs[1]                       # timing differs ...
    assert resultsio.strip_timing(docs[0]) == resultsio.strip_timing(docs[1])   # ... and nothing else


def test_interrupted_run_keeps_previous_report_and_completed_results(in_process, monkeypatch, capsys, tmp_path):
    (tmp_path / "report.md").write_text("previous report")
    real = engine.run_adapter
    calls = []

    def interrupted(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **kw)
    monkeypatch.setattr(engine, "run_adapter", interrupted)
    rc, err = run_cli(small(tmp_path, CANON, EPS, extra=("--jobs", "1")), capsys)   # one adapter after the other
    assert rc == cli.EXIT_INTERRUPTED and "interrupted" in err
    assert (tmp_path / "report.md").read_text() == "previous report"
    partial = resultsio.read_results(tmp_path / cli.PARTIAL)
    assert not partial.complete and [r.adapter for r in partial.runs] == ["double.canonical"]
    assert not (tmp_path / "results.json").exists()


def test_progress_on_stderr(in_process, capsys, tmp_path):
    argv = [a for a in small(tmp_path, CANON) if a != "--quiet"]
    rc, err = run_cli(argv, capsys)
    assert rc == 0
    assert "32 cases (" in err and "1 adapter(s)" in err and "double.canonical: 32/32 cases" in err
    assert "exit status 0" in err


def test_end_to_end_in_a_worker_process(tmp_path):
    """``python -m klconform run`` with a third-party adapter (--adapter) in a real worker."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "klconform", "run", "--frameworks", "", "--adapter", CANON,
                           "--corpus", SMALL_CORPUS, "--dtypes", "float64", "--shrink-rounds", "0", "--out", str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = resultsio.read_results(tmp_path / "results.json")
    assert [r.adapter for r in res.runs] == ["double.canonical"] and res.runs[0].status == "ok"
    assert res.runs[0].env.get("framework") == "numpy"
    assert "<svg" in (tmp_path / "report.html").read_text()
