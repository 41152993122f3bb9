"""Input files and I/O failures, each one plain line and exit 2 -- never an internal error:

* every input file (corpus, large corpus, results, baselines, records) is read only when
  it is a regular file, and with a size limit: ``/dev/zero``, a FIFO without a writer, a
  symlink to a device, a file past the limit, 200,000-deep JSON;
* I/O failures while writing (ENOSPC, EACCES, EROFS), from a real read-only filesystem, a
  full stdout (``/dev/full``) or an injected error, name the path; a reader that closes the
  pipe early (``klconform diff A B | head -1``) ends the command quietly;
* an adapter whose ``documented()`` or ``capabilities()`` raises costs that adapter only;
* ``--devices cuda`` when no selected adapter declares cuda compares nothing: exit 3."""
from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from klconform import cli, resultsio
from tests.faults.test_faults import F, GOOD, ROOT, SMALL, TINY_CORPUS, cli_run, good_results, one_line_error  # noqa: F401
from tests.faults.test_output_sets import small_tmpfs


def klconform(args, *, stdout=subprocess.PIPE, timeout=90, close_stdout=False, cwd=ROOT):
    """``python -m klconform ARGS`` under a 3 GiB address-space limit (an unbounded read
    must fail, not take the machine); ``close_stdout``: the reader closes the pipe at once,
    before klconform writes (a ``| head`` that has read what it wanted)."""
    e = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, resource.RLIM_INFINITY))
    proc = subprocess.Popen([sys.executable, "-m", "klconform", *args], cwd=cwd, env=e, text=True, stdout=stdout,
                            stderr=subprocess.PIPE, preexec_fn=limit)
    if close_stdout:
        proc.stdout.close()
    try:
        err = proc.stderr.read() if close_stdout else proc.communicate(timeout=timeout)[1]
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


def plain_error(err: str, *needles: str) -> bool:
    """One line, 'klconform: error: ...', no traceback, no internal error, each needle in it."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    return (len(lines) == 1 and lines[0].startswith("klconform: error: ") and "internal error" not in err
            and "Traceback" not in err and all(n in lines[0] for n in needles))


# ----------------------------------------------------------------------------- input files
@pytest.fixture
def results_file(good_results, tmp_path) -> Path:
    path = tmp_path / "results.json"
    path.write_text(json.dumps(good_results))
    return path


def _bad(kind: str, tmp_path: Path) -> Path:
    if kind == "dev-zero":
        return Path("/dev/zero")
    if kind == "link-to-dev-zero":
        (tmp_path / "link.json").symlink_to("/dev/zero")
        return tmp_path / "link.json"
    if kind == "fifo":
        os.mkfifo(tmp_path / "fifo.json")
        return tmp_path / "fifo.json"
    path = tmp_path / "huge.json"          # sparse: past the limit, nothing on disk
    with open(path, "wb") as fh:
        fh.truncate(resultsio.MAX_INPUT_BYTES + 1)
    return path


COMMANDS = {
    "run --corpus": ["run", "--frameworks", GOOD, "--corpus", "{bad}", "--quiet", "--out", "{out}"],
    "run --large": ["run", "--frameworks", GOOD, "--corpus", TINY_CORPUS, "--large", "{bad}", "--quiet", "--out", "{out}"],
    "report": ["report", "{bad}", "--out", "{out}"],
    "diff": ["diff", "{bad}", "{results}"],
    "baseline check": ["baseline", "check", "{bad}"],
    "corpus add": ["corpus", "add", "{bad}", "--corpus", "{corpus}"],
    "corpus coverage": ["corpus", "coverage", "--corpus", "{bad}", "--frameworks", GOOD],
    "show": ["show", "0", "--results", "{bad}"],
    "dashboard": ["dashboard", "{bad}", "--out", "{out}"],
}


@pytest.mark.parametrize("kind", ["dev-zero", "link-to-dev-zero", "fifo", "past-the-limit"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_an_input_that_is_no_regular_file_or_too_big_is_one_line(command, kind, results_file, tmp_path):
    if kind != "dev-zero" and command not in ("run --corpus", "report", "baseline check", "corpus add"):
        pytest.skip("one command per reader is enough for this kind")
    bad = _bad(kind, tmp_path)
    corpus = tmp_path / "corpus.jsonl"
    shutil.copy(TINY_CORPUS, corpus)
    args = [a.format(bad=bad, out=tmp_path / "out", results=results_file, corpus=corpus) for a in COMMANDS[command]]
    t0 = time.monotonic()
    rc, err = klconform(args)
    assert rc == cli.EXIT_USAGE and plain_error(err, str(bad)), err
    assert time.monotonic() - t0 < 60
    assert Path(corpus).read_bytes() == Path(TINY_CORPUS).read_bytes()


RECORDS_SCRIPT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, resource.RLIM_INFINITY))   # an unbounded read fails here
from pathlib import Path
from klconform import records
try:
    records.load_file(Path(sys.argv[1]))
except records.KnownError as exc:
    print("KnownError:", exc)
"""


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "past-the-limit"])
def test_a_known_records_file_that_is_no_regular_file_or_too_big_is_one_line(kind, tmp_path):
    bad = _bad(kind, tmp_path)
    out = subprocess.run([sys.executable, "-c", RECORDS_SCRIPT, str(bad)], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=ROOT)
    assert out.stdout.startswith(f"KnownError: {bad}: cannot read (") and out.stderr == "", out


@pytest.mark.parametrize("command,suffix", [(["report", "{bad}", "--out", "{out}"], ".json"),
                                            (["diff", "{bad}", "{bad}"], ".jsonl"),
                                            (["run", "--frameworks", GOOD, "--corpus", "{bad}", "--quiet",
                                              "--out", "{out}"], ".jsonl")])
def test_json_nested_200000_deep_is_one_line(command, suffix, tmp_path, capsys):
    bad = tmp_path / f"deep{suffix}"
    bad.write_text("[" * 200_000 + "]" * 200_000 + "\n")
    rc, err = cli_run([a.format(bad=bad, out=tmp_path / "out") for a in command], capsys)
    assert rc == cli.EXIT_USAGE and plain_error(err, str(bad)), err


# ----------------------------------------------------------------------------- I/O failures
@pytest.mark.parametrize("args", [["list", "--frameworks", "all"], ["diff", "{results}", "{results}"]])
def test_a_closed_stdout_pipe_ends_quietly(args, results_file):
    rc, err = klconform([a.format(results=results_file) for a in args], close_stdout=True)
    assert err == "" and rc == cli.EXIT_USAGE, (rc, err)


def test_diff_into_head_ends_quietly(results_file, tmp_path):
    """The pipeline as typed; its reader may close before or after klconform's writes."""
    e = dict(os.environ, PYTHONPATH=str(ROOT))
    script = f'"{sys.executable}" -m klconform diff "{results_file}" "{results_file}" 2>"{tmp_path}/err" | head -1'
    out = subprocess.run(["sh", "-c", script], env=e, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.stdout.startswith("0 changes"), out
    assert (tmp_path / "err").read_text() == ""


@pytest.mark.parametrize("args", [["list", "--frameworks", "all"], ["diff", "{results}", "{results}"]])
def test_a_full_stdout_is_one_line_naming_it(args, results_file):
    with open("/dev/full", "w") as full:
        rc, err = klconform([a.format(results=results_file) for a in args], stdout=full)
    assert rc == cli.EXIT_USAGE and plain_error(err, "standard output", "No space left on device"), err


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EDQUOT, errno.EIO])
def test_an_io_failure_escaping_a_command_is_one_line_naming_the_path(code, tmp_path, capsys, monkeypatch):
    where = tmp_path / "somewhere" / "file.json"

    def fail(args):
        raise OSError(code, os.strerror(code), str(where))
    monkeypatch.setattr(cli, "cmd_list", fail)
    rc, err = cli_run(["list"], capsys)
    assert rc == cli.EXIT_USAGE and plain_error(err, str(where), os.strerror(code)), err


def test_an_injected_eacces_while_writing_a_corpus_is_one_line(tmp_path, capsys, monkeypatch):
    corpus = tmp_path / "corpus.jsonl"
    shutil.copy(TINY_CORPUS, corpus)
    before = corpus.read_bytes()

    more = tmp_path / "more.jsonl"
    from klconform import frozen
    frozen.dump([c for c in frozen.load() if c.dtype == "float32"][:2], more, made_by="test")

    def denied(*a, **k):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(tmp_path))
    monkeypatch.setattr(resultsio.tempfile, "mkstemp", denied)
    rc, err = cli_run(["corpus", "add", str(more), "--corpus", str(corpus)], capsys)
    assert rc == cli.EXIT_USAGE and plain_error(err, str(corpus)), err
    assert corpus.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["corpus.jsonl", "more.jsonl"]


@pytest.fixture
def read_only_fs(tmp_path):
    with small_tmpfs(tmp_path / "ro", 256) as fs:
        shutil.copy(TINY_CORPUS, fs / "corpus.jsonl")
        (fs / "out").mkdir()
        (fs / "baselines").mkdir()
        made = subprocess.run(["mount", "-o", "remount,ro", str(fs)], capture_output=True, text=True)
        if made.returncode != 0:
            pytest.skip(f"cannot remount read-only here: {made.stderr.strip()}")
        yield fs


@pytest.mark.parametrize("command", [
    ["run", "--frameworks", GOOD, *SMALL, "--out", "{fs}/out"],
    ["report", "{results}", "--out", "{fs}/out"],
    ["report", "{results}", "--out", "{fs}/new"],
    ["baseline", "update", "{results}", "--baselines", "{fs}/baselines"],
    ["corpus", "add", TINY_CORPUS, "--corpus", "{fs}/corpus.jsonl"],
    ["corpus", "freeze", "--examples", "1", "--out", "{fs}/frozen.jsonl"],
])
def test_a_read_only_filesystem_is_one_line_naming_the_path(command, read_only_fs, results_file, capsys):
    args = [a.format(fs=read_only_fs, results=results_file) for a in command]
    rc, err = cli_run(args, capsys)
    assert rc == cli.EXIT_USAGE and plain_error(err, str(read_only_fs)), err


def test_baseline_update_on_a_full_filesystem_is_one_line_and_leaves_nothing(results_file, tmp_path, capsys):
    with small_tmpfs(tmp_path / "fs", 128) as fs:
        (fs / "b").mkdir()
        with open(fs / "filler", "wb", buffering=0) as fh:      # every block taken
            try:
                while True:
                    fh.write(b"x" * 4096)
            except OSError:
                pass
        rc, err = cli_run(["baseline", "update", str(results_file), "--baselines", str(fs / "b")], capsys)
        assert rc == cli.EXIT_USAGE and plain_error(err, "No space left on device"), err
        assert sorted(p.name for p in fs.rglob("*")) == ["b", "filler"]


# ----------------------------------------------------------------------------- adapter faults
@pytest.mark.parametrize("bad,said", [("DocumentedRaises", "documented() raised RuntimeError: documented exploded"),
                                      ("CapabilitiesRaise", "capabilities() failed (RuntimeError: capabilities exploded)")])
def test_an_adapter_whose_interface_method_raises_costs_that_adapter_only(bad, said, tmp_path, capsys):
    rc, err = cli_run(["run", "--frameworks", f"{GOOD},{F}{bad}", *SMALL, "--out", str(tmp_path)], capsys)
    assert rc == cli.EXIT_NOT_CHECKED and "internal error" not in err and "Traceback" not in err, err
    assert said in err, err
    runs = {r["adapter"]: r for r in json.loads((tmp_path / "results.json").read_text())["runs"]}
    assert runs["double.good"]["status"] == "ok" and runs["double.good"]["outcomes"]
    (other,) = [r for name, r in runs.items() if name != "double.good"]
    assert other["status"] == "error" and said in other["reason"], other


@pytest.mark.parametrize("ref,said", [(F + "DocumentedRaises", "documented exploded"),
                                      (F + "CapabilitiesRaise", "capabilities exploded"),
                                      ("klconform.adapters.base:Adapter", "capabilities() failed (NotImplementedError")])
def test_an_adapter_whose_interface_method_raises_alone_compares_nothing(ref, said, tmp_path, capsys):
    rc, err = cli_run(["run", "--frameworks", ref, *SMALL, "--out", str(tmp_path)], capsys)
    assert rc == cli.EXIT_NOT_CHECKED and one_line_error(err) and "nothing compared: no adapter could run" in err, err
    assert said in err.splitlines()[-1] and "internal error" not in err, err


def test_devices_cuda_without_an_adapter_declaring_it_compares_nothing(tmp_path, capsys):
    rc, err = cli_run(["run", "--frameworks", GOOD, *SMALL, "--devices", "cuda", "--out", str(tmp_path)], capsys)
    assert rc == cli.EXIT_NOT_CHECKED and one_line_error(err), err
    assert "nothing compared" in err and "cuda" in err and "double.good" in err, err
    assert not (tmp_path / "results.json").exists()


# ----------------------------------------------------------------------------- environment
@pytest.mark.parametrize("command", [["list"], ["run", "--frameworks", "scipy.rel_entr", "--large", "none"]])
def test_a_bad_klconform_variable_is_one_line_before_any_work(command, tmp_path, monkeypatch):
    """KLCONFORM_REFERENCE_BACKEND is read by the reference deep inside a run: a bad value
    is the user's input (one line, exit 2), checked before anything runs or is written."""
    monkeypatch.setenv("KLCONFORM_REFERENCE_BACKEND", "bogus")
    out = tmp_path / "out"
    args = command + (["--out", str(out)] if command[0] == "run" else [])
    rc, err = klconform(args)
    assert rc == cli.EXIT_USAGE and plain_error(err, "KLCONFORM_REFERENCE_BACKEND", "bogus"), err
    assert not out.exists()
