"""Green means checked, on the command line: ``run``, ``diff`` and ``baseline check`` end
with a line saying how many adapter runs x cases they compared, and exit 3 with one line
"nothing compared: <why>" when they compared nothing -- never a green "0 changes".

Real worker processes (the test double of tests/harness/misbehaving.py) and real corpus,
results and baseline files."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from klconform import cli, frozen
from tests.faults.test_faults import GOOD, TINY_CORPUS

QUICK = ["--shrink-rounds", "0", "--quiet"]
NOTHING = "klconform: error: nothing compared: "


def klconform(capsys, *argv) -> tuple[int, str, str]:
    rc = cli.main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def previous(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text("previous report\n")
    return out / "report.md"


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    """results.json of the double on the 4-case corpus (every case one it takes)."""
    out = tmp_path_factory.mktemp("good")
    assert cli.main(["run", "--frameworks", GOOD, "--corpus", TINY_CORPUS, "--large", "none", *QUICK,
                     "--out", str(out)]) in (cli.EXIT_OK, cli.EXIT_DISCREPANCY)
    return out / "results.json"


@pytest.fixture(scope="module")
def good_baselines(good_run, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("baselines")
    assert cli.main(["baseline", "update", str(good_run), "--baselines", str(d)]) == cli.EXIT_OK
    return d


# ----------------------------------------------------------------------------- run
def test_run_ends_with_the_adapter_runs_by_cases_compared(good_run, tmp_path, capsys):
    rc, out, _ = klconform(capsys, "run", "--frameworks", GOOD, "--corpus", TINY_CORPUS, "--large", "none",
                           *QUICK, "--out", tmp_path)
    assert rc in (cli.EXIT_OK, cli.EXIT_DISCREPANCY)
    assert out.splitlines()[-1] == "compared 1 adapter run × 4 cases (double.good 4)", out


@pytest.mark.parametrize("corpus, dtypes, large, why", [
    ("empty", "float64", "none", "no case left: {corpus} has 0 case(s), --large none adds none"),
    ("tiny", "float32", "none", "no case left: {corpus} has 4 case(s), none of dtype float32, --large none adds none"),
    # cases are left (the quick large set's float32 cases), but the double takes none of them
    ("tiny", "float32", "quick", "no adapter took any of the 0 case(s) and "),
])
def test_run_with_no_case_compared_is_exit_3_and_keeps_the_previous_report(corpus, dtypes, large, why,
                                                                          tmp_path, capsys):
    path = TINY_CORPUS if corpus == "tiny" else frozen.dump([], tmp_path / "empty.jsonl", made_by="tests/upgrade")
    report = previous(tmp_path / "out")
    rc, out, err = klconform(capsys, "run", "--frameworks", GOOD, "--corpus", path, "--dtypes", dtypes,
                             "--large", large, *QUICK, "--out", report.parent)
    assert rc == cli.EXIT_NOT_CHECKED, err
    assert one_line(err).startswith(NOTHING + why.format(corpus=path)), err
    assert out == ""
    assert report.read_text() == "previous report\n" and not (report.parent / "results.json").exists()


def test_a_named_adapter_at_an_env_without_interpreter_is_exit_3(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("KLCONFORM_PYTHON_TRAIN", raising=False)
    rc, _, err = klconform(capsys, "run", "--frameworks", f"{GOOD}@train", "--corpus", TINY_CORPUS,
                           "--large", "none", *QUICK, "--out", tmp_path)
    assert rc == cli.EXIT_NOT_CHECKED
    assert one_line(err).startswith(NOTHING + "no adapter could run: double.good@train (missing: interpreter "
                                              "for @train not configured"), err


def test_a_named_adapter_that_takes_no_case_beside_a_good_one_is_exit_3(tmp_path, capsys):
    rc, out, err = klconform(capsys, "run", "--frameworks", f"{GOOD},tests.faults.faulty:NothingExpressible",
                             "--corpus", TINY_CORPUS, "--large", "none", *QUICK, "--out", tmp_path)
    assert rc == cli.EXIT_NOT_CHECKED, err
    assert one_line(err) == ("klconform: error: adapter(s) asked for compared no case: fault.nothing_expressible "
                             "(none of the 4 case(s) and 0 large case(s) left is one they take)")
    assert out.splitlines()[-1] == ("compared 1 adapter run × 4 cases (double.good 4); not compared: "
                                    "fault.nothing_expressible (no case it takes)"), out
    assert (tmp_path / "results.json").exists()       # what was compared is reported


# ----------------------------------------------------------------------------- diff
def test_diff_of_a_run_with_itself_is_0_changes_over_what_it_compared(good_run, capsys):
    rc, out, _ = klconform(capsys, "diff", good_run, good_run)
    assert rc == cli.EXIT_OK
    assert out.splitlines()[-1] == "0 changes; compared 1 adapter run × 4 cases (double.good 4) in common", out


def test_diff_with_no_adapter_in_common_is_exit_3(good_run, good_baselines, tmp_path, capsys):
    other = tmp_path / "other"
    assert cli.main(["run", "--frameworks", "tests.harness.misbehaving:RaisingKL", "--corpus", TINY_CORPUS,
                     "--large", "none", *QUICK, "--out", str(other)]) in (cli.EXIT_OK, cli.EXIT_DISCREPANCY)
    capsys.readouterr()
    rc, out, err = klconform(capsys, "diff", good_run, other / "results.json")
    assert rc == cli.EXIT_NOT_CHECKED and out == ""
    assert one_line(err) == (f"{NOTHING}no adapter in common: {good_run} has double.good; "
                             f"{other / 'results.json'} has double.raise")
    # two unrelated baseline files (different adapters) are the same: nothing in common
    assert cli.main(["baseline", "update", str(other / "results.json"), "--baselines", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    (mine,), (theirs,) = good_baselines.glob("*.jsonl"), (tmp_path / "b").glob("*.jsonl")
    rc, out, err = klconform(capsys, "diff", mine, theirs)
    assert rc == cli.EXIT_NOT_CHECKED and out == "" and one_line(err).startswith(NOTHING + "no adapter in common: ")


def _header_only(baselines: Path, into: Path) -> Path:
    """A copy of the baselines that answered no case (header line only)."""
    into.mkdir()
    for f in baselines.glob("*.jsonl"):
        (into / f.name).write_text(f.read_text().splitlines()[0] + "\n")
    return into


def test_diff_and_baseline_check_with_no_case_in_common_are_exit_3(good_run, good_baselines, tmp_path, capsys):
    empty = _header_only(good_baselines, tmp_path / "empty")
    (full,), (none,) = good_baselines.glob("*.jsonl"), empty.glob("*.jsonl")
    rc, out, err = klconform(capsys, "diff", full, none)
    assert rc == cli.EXIT_NOT_CHECKED and out == ""
    assert one_line(err).startswith(NOTHING + "no case in common between ") and \
        "(double.good: 4 case(s) in OLD, 0 in NEW, none the same)" in err, err
    rc, out, err = klconform(capsys, "baseline", "check", good_run, "--baselines", empty)
    assert rc == cli.EXIT_NOT_CHECKED and out == ""
    assert one_line(err) == f"{NOTHING}no case in common with the baselines in {empty}: double.good"


def test_baseline_check_without_any_baseline_is_exit_3_and_a_real_check_says_what_it_compared(
        good_run, good_baselines, tmp_path, capsys):
    (tmp_path / "none").mkdir()
    rc, out, err = klconform(capsys, "baseline", "check", good_run, "--baselines", tmp_path / "none")
    assert rc == cli.EXIT_NOT_CHECKED and out == ""
    assert one_line(err).startswith(f"{NOTHING}no baseline in {tmp_path / 'none'} for double.good"), err
    rc, out, _ = klconform(capsys, "baseline", "check", good_run, "--baselines", good_baselines)
    assert rc == cli.EXIT_OK
    assert out.splitlines()[-1] == "0 changes; compared 1 adapter run × 4 cases (double.good 4) in common", out


def test_baseline_check_names_each_run_with_its_environment(good_baselines, tmp_path, capsys):
    """Two runs of one adapter (a side interpreter beside the main one) that both changed:
    two headings, each naming its run, never one heading for both."""
    out_dir = tmp_path / "two"
    rc, out, err = klconform(capsys, "run", "--frameworks", f"{GOOD}@train,{GOOD}", "--python",
                             f"train={sys.executable}", "--corpus", TINY_CORPUS, "--large", "none", *QUICK,
                             "--out", out_dir)
    assert rc in (cli.EXIT_OK, cli.EXIT_DISCREPANCY), err
    assert out.splitlines()[-1] == "compared 2 adapter runs × 4 cases (double.good@train 4, double.good 4)", out
    doc = json.loads((out_dir / "results.json").read_text())
    for run in doc["runs"]:         # the same value doubled in both runs: a change in each
        first = run["outcomes"][next(iter(run["outcomes"]))]
        first["value"]["data"] = [2 * x for x in first["value"]["data"]]
    (out_dir / "results.json").write_text(json.dumps(doc))
    rc, out, _ = klconform(capsys, "baseline", "check", out_dir / "results.json", "--baselines", good_baselines)
    assert rc == cli.EXIT_DISCREPANCY
    headings = [ln for ln in out.splitlines() if not ln.startswith(" ") and ln.endswith(":")]
    assert len(headings) == 2, out
    assert headings[0].startswith("double.good@train (double.good ") and "-> double.good@train " in headings[0], out
    assert headings[1].startswith("double.good ") and "@train" not in headings[1], out
    assert out.splitlines()[-1].startswith("2 changes; compared 2 adapter runs × 4 cases "
                                           "(double.good@train 4, double.good 4) in common"), out
