"""Bad input to the options this session's CLI paths added (--large, --devices, corpus
freeze-large / freeze --out): one line naming the problem, exit 2, before any work (a
freeze would otherwise spend minutes generating before failing to write)."""
from __future__ import annotations

import time

import pytest

from klconform import cli, large


def main(args, capsys):
    try:
        rc = cli.main(args)
    except SystemExit as exc:       # argparse's own errors
        rc = exc.code
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


@pytest.mark.parametrize("args,needle", [
    (["run", "--quiet", "--frameworks", "scipy.entropy", "--large", "/nonexistent-dir/l.jsonl"], "--large"),
    (["run", "--quiet", "--frameworks", "scipy.entropy", "--large", "bogus"], "--large bogus"),
    (["run", "--quiet", "--frameworks", "scipy.entropy", "--devices", "tpu"], "--devices 'tpu'"),
    (["run", "--quiet", "--frameworks", "scipy.entropy", "--devices", ""], "--devices"),
    (["corpus", "freeze-large", "--out", "/nonexistent-dir/x.jsonl"], "--out"),
    (["corpus", "freeze", "--out", "/nonexistent-dir/x.jsonl"], "--out"),
])
def test_bad_input_is_one_line_and_exit_2(args, needle, capsys, monkeypatch):
    def no_work(*a, **k):
        raise AssertionError("work started before the bad option was refused")
    monkeypatch.setattr(large, "freeze", no_work)
    t = time.monotonic()
    rc, out, err = main(args, capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == cli.EXIT_USAGE and len(lines) == 1 and needle in lines[0], err
    assert "Traceback" not in err and "internal error" not in err
    assert time.monotonic() - t < 30


def test_a_damaged_large_corpus_names_file_and_line(tmp_path, capsys):
    bad = tmp_path / "l.jsonl"
    bad.write_text(large.dumps([(large.QUICK[0][0], large.QUICK[0][1])], "test").replace('"batch":16', '"batch":0'))
    rc, out, err = main(["run", "--quiet", "--frameworks", "scipy.entropy", "--large", str(bad)], capsys)
    assert rc == cli.EXIT_USAGE and "l.jsonl:2: recipe batch" in err, err
