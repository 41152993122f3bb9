"""`klconform explore`: bad input is one line and exit 2 before anything runs; a run with a
conforming adapter finds nothing new, exits 0 and writes a loadable (empty) corpus file."""
from __future__ import annotations

import pytest

from klconform import cli, frozen

GOOD = "tests.harness.misbehaving:GoodKL"


def explore(args, capsys):
    try:
        rc = cli.main(["explore", "--quiet", *args])
    except SystemExit as exc:       # argparse's own errors
        rc = exc.code
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


@pytest.mark.parametrize("args,needle", [
    (["--examples", "0"], "--examples"),
    (["--examples", "1000000000"], "--examples"),
    (["--seed", "x"], "--seed"),
    (["--frameworks", "nosuch.adapter"], "unknown adapter"),
    (["--adapter", GOOD, "--save", "/nonexistent-dir/new.jsonl"], "--save"),
])
def test_bad_input_is_one_line_and_exit_2(args, needle, capsys):
    rc, out, err = explore(args, capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == cli.EXIT_USAGE and len(lines) == 1 and needle in lines[0], err
    assert "Traceback" not in err and "internal error" not in err


def test_a_conforming_adapter_shows_nothing_new(tmp_path, capsys):
    save = tmp_path / "new.jsonl"
    rc, out, err = explore(["--adapter", GOOD, "--examples", "20", "--save", str(save)], capsys)
    assert rc == cli.EXIT_OK, err
    assert "double.good: nothing the frozen corpus does not show" in out
    assert frozen.load(save) == []


def test_a_faulty_adapter_with_new_kinds_exits_1(capsys, monkeypatch):
    """A swapping double: the drawn cases show a discrepancy kind the frozen corpus does not
    (the run's own known records are empty, so every finding is unrecorded).  The frozen
    corpus here is the small test corpus: the real one, with every special-value cell,
    already shows every kind this double has."""
    from pathlib import Path
    small = Path(__file__).resolve().parents[1] / "data" / "small-corpus.jsonl"
    real = cli.load_corpus
    monkeypatch.setattr(cli, "load_corpus", lambda path: real(small if path is None else path))
    rc, out, err = explore(["--adapter", "tests.verdicts.kl_doubles:Swapped", "--examples", "20",
                                  "--dtypes", "float16"], capsys)
    assert rc == cli.EXIT_DISCREPANCY, err
    assert "double.swapped: NEW" in out
