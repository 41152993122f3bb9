"""Outputs under hostile conditions: an output set is replaced whole or not at
all, and every writer writes only regular files or new paths.

* ``klconform.resultsio.write_set``: a file that cannot be rendered (an adapter's invalid
  outcome, a renderer's bug), written (a full filesystem: a real small tmpfs where this
  machine lets a test mount one, an injected ENOSPC otherwise too) or replaced leaves the
  previous set byte-identical, no temp file and no ``results.partial.json``;
* ``klconform.resultsio.output_target``: a device node, FIFO or directory where a writer
  would write is refused with one line (exit 2) and left as it was; a symlink is written
  through to the file it names;
* ``baseline update`` names files only from adapter names that cannot leave the directory."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from klconform import cli, frozen, resultsio
from tests.faults.test_faults import F, GOOD, M, SMALL, TINY_CORPUS, cli_run, good_results, one_line_error  # noqa: F401

FILES = ("results.json", "report.md", "report.html")


def previous_set(out: Path) -> dict[str, bytes]:
    """A previous output set in ``out``; what the directory holds, byte for byte."""
    out.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        (out / name).write_text(f"previous {name}\n")
    return snapshot(out)


def snapshot(out: Path) -> dict[str, bytes]:
    """Every entry of ``out`` (temp files, locks and partial files included)."""
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


@pytest.fixture
def error_logs(tmp_path, monkeypatch):
    """Internal-error logs go to a folder of the test's (removed with it), not the shared
    temp directory; the test reads what was logged."""
    logs = tmp_path / "logs"
    logs.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(logs))
    monkeypatch.setattr(resultsio, "INTERNAL_LOG", [])
    return logs


# ----------------------------------------------------------------------------- one transaction
def test_an_invalid_outcome_leaves_the_previous_set_byte_identical(tmp_path, capsys, error_logs):
    out = tmp_path / "out"
    before = previous_set(out)
    rc, err = cli_run(["run", "--adapter", F + "InvalidStatus", *SMALL, "--out", str(out)], capsys)
    assert rc == cli.EXIT_USAGE and one_line_error(err), err
    assert "results.json: not rendered" in err and "'bogus'" in err and "nothing replaced" in err, err
    assert snapshot(out) == before                  # no new report.md beside the old results, no partial file
    assert list(error_logs.glob("klconform-error-*")) == []    # an invalid document is said in the line, not logged


def test_a_nan_literal_in_a_results_file_is_refused_before_anything_is_written(good_results, tmp_path, capsys):
    doc = json.loads(json.dumps(good_results))
    doc["elapsed_s"] = float("nan")
    src = tmp_path / "results.json"
    src.write_text(json.dumps(doc))                 # Python writes the literal NaN, which is not JSON
    out = tmp_path / "out"
    before = previous_set(out)
    rc, err = cli_run(["report", str(src), "--out", str(out), "--formats", "json,md,html"], capsys)
    assert rc == cli.EXIT_USAGE and one_line_error(err) and "NaN" in err, err
    assert snapshot(out) == before


def test_a_renderer_failure_replaces_none_of_the_set(tmp_path, error_logs):
    before = previous_set(tmp_path / "out")

    def broken():
        raise RuntimeError("a renderer bug")
    done = resultsio.write_set(tmp_path / "out", {"results.json": "new", "report.md": broken, "report.html": "new"})
    assert done.written == [] and len(done.problems) == 1 and "report.md: not rendered" in done.problems[0]
    assert snapshot(tmp_path / "out") == before
    assert len(list(error_logs.glob("klconform-error-*"))) == 1     # a bug of klconform's: its traceback is logged


@pytest.mark.parametrize("failing", ["replace", "remove"])
def test_a_step_failing_while_replacing_is_undone(failing, tmp_path, monkeypatch):
    """The last step fails after the others succeeded (a rename refused): the steps done are
    undone from the links kept to the previous files."""
    out = tmp_path / "out"
    before = previous_set(out)
    real_replace, real_rename = os.replace, os.rename

    def replace(src, dst):
        if failing == "replace" and str(dst).endswith("report.md") and ".old." not in str(src):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_replace(src, dst)

    def rename(src, dst):
        if failing == "remove" and str(src).endswith("report.html"):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_rename(src, dst)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "rename", rename)
    done = resultsio.write_set(out, {"results.json": "new results", "report.md": "new md"}, remove=["report.html"])
    assert done.written == [] and done.removed == [], done
    assert any("Input/output error" in p for p in done.problems) and "nothing replaced" in done.problems[-1]
    assert snapshot(out) == before


def test_a_directory_in_the_place_of_one_file_refuses_the_whole_set(tmp_path, capsys):
    out = tmp_path / "out"
    previous_set(out)
    (out / "report.md").unlink()
    (out / "report.md").mkdir()
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    rc, err = cli_run(["run", "--frameworks", GOOD, *SMALL, "--out", str(out)], capsys)
    assert rc == cli.EXIT_USAGE and one_line_error(err) and "report.md: is a directory" in err, err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)


def test_an_injected_full_disk_on_the_last_file_keeps_the_whole_previous_set(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    before = previous_set(out)
    real = resultsio.stage_text

    def stage(directory, name, text, staged):
        if name == "report.html":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(directory, name, text, staged)
    monkeypatch.setattr(resultsio, "stage_text", stage)
    rc, err = cli_run(["run", "--frameworks", GOOD, *SMALL, "--out", str(out)], capsys)
    assert rc == cli.EXIT_USAGE and one_line_error(err) and "No space left on device" in err, err
    assert snapshot(out) == before


@contextlib.contextmanager
def small_tmpfs(where: Path, size_kib: int):
    where.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({made.stderr.strip() or made.returncode}); "
                    f"the injected ENOSPC test covers the logic")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(fs: Path, room_kib: int) -> None:
    st = os.statvfs(fs)
    (fs / "filler").write_bytes(b"x" * (st.f_bavail * st.f_frsize - room_kib * 1024))


@pytest.mark.parametrize("room_kib", [24, 2])     # room for results.json but not the rest; for nothing
def test_a_really_full_filesystem_keeps_the_whole_previous_set(room_kib, tmp_path, capsys, error_logs):
    with small_tmpfs(tmp_path / "fs", 128) as fs:
        out = fs / "out"
        before = previous_set(out)
        _fill(fs, room_kib)
        rc, err = cli_run(["run", "--frameworks", GOOD, *SMALL, "--out", str(out)], capsys)
        assert rc == cli.EXIT_USAGE and one_line_error(err) and "No space left on device" in err, err
        assert "internal error" not in err
        assert snapshot(out) == before                  # the partial snapshot not written either


def test_a_corpus_on_a_full_filesystem_is_one_line_and_left_as_it_was(tmp_path, capsys, error_logs):
    with small_tmpfs(tmp_path / "fs", 128) as fs:
        corpus = fs / "corpus.jsonl"
        corpus.write_bytes(Path(TINY_CORPUS).read_bytes())
        before = snapshot(fs)
        _fill(fs, 4)
        rc, err = cli_run(["corpus", "freeze", "--examples", "1", "--out", str(corpus)], capsys)
        assert rc == cli.EXIT_USAGE and one_line_error(err) and "No space left on device" in err, err
        assert str(corpus) in err and "internal error" not in err
        assert {n: b for n, b in snapshot(fs).items() if n != "filler"} == before


def test_a_symlinked_output_file_is_written_through(tmp_path, capsys):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    previous_set(out)
    elsewhere.mkdir()
    (elsewhere / "report.md").write_text("previous\n")
    (out / "report.md").unlink()
    (out / "report.md").symlink_to(elsewhere / "report.md")
    rc, err = cli_run(["run", "--frameworks", GOOD, *SMALL, "--out", str(out)], capsys)
    assert rc in (cli.EXIT_OK, cli.EXIT_DISCREPANCY), err
    assert (out / "report.md").is_symlink() and (elsewhere / "report.md").read_text().startswith("#")
    assert sorted(p.name for p in elsewhere.iterdir()) == ["report.md"]


def test_the_reports_state_the_status_the_run_exits_with(tmp_path, capsys):
    """A named adapter that cannot run beside one that does: exit 3, and the reports say 3,
    not the 0 of the findings alone."""
    rc, err = cli_run(["run", "--frameworks", f"{GOOD},{M}BrokenImportKL", *SMALL, "--out", str(tmp_path)], capsys)
    assert rc == cli.EXIT_NOT_CHECKED, err
    for name in ("report.md", "report.html"):
        text = (tmp_path / name).read_text()
        assert "(exit status 3)" in text and "exit status 0" not in text, name


# ----------------------------------------------------------------------------- what a writer writes
def _node(path: Path, kind: str) -> Path:
    if kind == "fifo":
        os.mkfifo(path)
    else:
        try:
            os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))    # a private /dev/null
        except PermissionError:
            pytest.skip("mknod not permitted here")
    return path


def _same_kind(path: Path, kind: str) -> bool:
    mode = os.lstat(path).st_mode
    return stat.S_ISFIFO(mode) if kind == "fifo" else stat.S_ISCHR(mode)


@pytest.mark.parametrize("kind", ["fifo", "chardev"])
@pytest.mark.parametrize("command", [
    ["corpus", "freeze", "--examples", "1", "--out", "{node}"],
    ["corpus", "freeze-large", "--out", "{node}"],
    ["explore", "--frameworks", GOOD, "--examples", "1", "--quiet", "--save", "{node}"],
    ["corpus", "add", TINY_CORPUS, "--corpus", "{node}"],
    ["corpus", "freeze", "--examples", "1", "--out", "{link}"],
])
def test_a_writer_refuses_a_device_node_or_fifo_and_leaves_it(command, kind, tmp_path, capsys):
    node = _node(tmp_path / "node", kind)
    (tmp_path / "link").symlink_to(node)
    args = [a.format(node=node, link=tmp_path / "link") for a in command]
    rc, err = cli_run(args, capsys)
    assert rc == cli.EXIT_USAGE and one_line_error(err), err
    assert ("FIFO" if kind == "fifo" else "character device") in err and str(node) in err, err
    assert _same_kind(node, kind) and (tmp_path / "link").is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "node"]


def test_run_refuses_a_fifo_in_the_place_of_an_output_file(tmp_path, capsys):
    out = tmp_path / "out"
    before = previous_set(out)
    (out / "report.html").unlink()
    os.mkfifo(out / "report.html")
    del before["report.html"]
    rc, err = cli_run(["run", "--frameworks", GOOD, *SMALL, "--out", str(out)], capsys)
    assert rc == cli.EXIT_USAGE and one_line_error(err) and "report.html: is a FIFO" in err, err
    assert stat.S_ISFIFO(os.lstat(out / "report.html").st_mode)
    assert {n: b for n, b in snapshot_files(out).items()} == before


def snapshot_files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}


def test_corpus_add_through_a_symlink_updates_the_corpus_it_names(tmp_path, capsys):
    real = tmp_path / "real.jsonl"
    real.write_bytes(Path(TINY_CORPUS).read_bytes())
    link = tmp_path / "link.jsonl"
    link.symlink_to(real.name)
    base = frozen.load(real)
    more = [c for c in frozen.load() if c.dtype == "float32"][:2]
    frozen.dump(more, tmp_path / "more.jsonl", made_by="test")
    rc, err = cli_run(["corpus", "add", str(tmp_path / "more.jsonl"), "--corpus", str(link)], capsys)
    assert rc == cli.EXIT_OK, err
    assert link.is_symlink() and os.readlink(link) == real.name
    assert [c.digest for c in frozen.load(real)] == [c.digest for c in base] + sorted(c.digest for c in more)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.jsonl", "more.jsonl", "real.jsonl"]


# ----------------------------------------------------------------------------- names from file contents
@pytest.mark.parametrize("name", ["../../escaped", "../escaped", "a/b", "/abs", "..", ".hidden", "x\\y"])
def test_baseline_update_never_writes_outside_its_directory(name, good_results, tmp_path, capsys):
    doc = json.loads(json.dumps(good_results))
    doc["runs"][0]["adapter"] = name
    src = tmp_path / "in" / "results.json"
    src.parent.mkdir()
    src.write_text(json.dumps(doc))
    baselines = tmp_path / "deep" / "er" / "baselines"
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    rc, err = cli_run(["baseline", "update", str(src), "--baselines", str(baselines)], capsys)
    assert rc == cli.EXIT_USAGE and one_line_error(err) and "cannot name a baseline file" in err, err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_baseline_update_of_a_plain_name_writes_inside(good_results, tmp_path, capsys):
    src = tmp_path / "results.json"
    src.write_text(json.dumps(good_results))
    rc, err = cli_run(["baseline", "update", str(src), "--baselines", str(tmp_path / "b")], capsys)
    assert rc == cli.EXIT_OK, err
    (made,) = (tmp_path / "b").iterdir()
    assert made.name.startswith("double.good@") and made.name.endswith(".jsonl")
