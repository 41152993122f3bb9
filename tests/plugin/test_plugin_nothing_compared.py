"""Green means checked, in the pytest plugin (a pytest subprocess in an empty directory, real
adapter worker processes, real corpus files):

* a named adapter that cannot start -- ``@ENV`` without an interpreter, ``@ENV`` with a
  broken one, an import error in ``setup()`` -- or that takes no case of the corpus fails
  every one of its items with one line; an unknown name is a one-line usage error;
* adapters that only came with ``all`` and cannot start are skipped, but a run in which
  nothing at all was compared does not pass;
* the header says what is to be compared, the terminal summary what was (adapter runs x
  cases), and "collected N items" counts the items that run."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from klconform import frozen
from tests.faults.test_faults import GOOD, TINY_CORPUS
from tests.plugin.test_plugin_runs import run_pytest

QUICK = ["--klconform-shrink-rounds", "0", "--klconform-large", "none"]
TINY = ["--klconform-corpus", TINY_CORPUS, *QUICK]
AREAS = ("values", "reductions", "epsilon_zeros", "dtypes", "gradients", "shapes_invalid")


def _failed_items(stdout: str, run_id: str) -> set[str]:
    return set(re.findall(rf"^FAILED \S*klconform::{re.escape(run_id)}::(\S+)", stdout, re.M))


def _broken_python(tmp_path: Path) -> Path:
    script = tmp_path / "broken-python"
    script.write_text("#!/bin/sh\necho 'this interpreter is broken' >&2\nexit 1\n")
    script.chmod(0o755)
    return script


@pytest.mark.parametrize("how", ["no-interpreter", "broken-interpreter", "import-error", "no-case-it-takes"])
def test_a_named_adapter_that_cannot_be_checked_fails_every_item(how, tmp_path):
    args, run_id, said = {
        "no-interpreter": (["--klconform-frameworks", f"{GOOD}@train"], "double.good@train",
                           "interpreter for @train not configured"),
        "broken-interpreter": (["--klconform-frameworks", f"{GOOD}@train",
                                "--klconform-python", f"train={_broken_python(tmp_path)}"], "double.good@train", ""),
        "import-error": (["--klconform-adapter", "tests.harness.misbehaving:BrokenImportKL"],
                         "double.broken_import", "libinhouse.so"),
        "no-case-it-takes": (["--klconform-adapter", "tests.faults.faulty:NothingExpressible"],
                             "fault.nothing_expressible", "compared no case: none of the 4 corpus case(s)"),
    }[how]
    proc = run_pytest(tmp_path, *args, *TINY)
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert _failed_items(out, run_id) == set(AREAS), out
    assert "passed" not in out.splitlines()[-1] and "skipped" not in out.splitlines()[-1], out
    failures = re.findall(rf"^klconform: {re.escape(run_id)} could not be checked \((.*)\)$", out, re.M)
    assert len(failures) == len(AREAS) and said in failures[0], out         # one line per item
    assert f"klconform: nothing compared: {run_id} (" in out, out
    assert "Traceback" not in out


def test_an_unknown_adapter_name_is_a_one_line_usage_error(tmp_path):
    proc = run_pytest(tmp_path, "--klconform-frameworks", "no.such_adapter", *TINY)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("ERROR: klconform: unknown adapter 'no.such_adapter'"), proc.stderr


def test_all_mode_skips_what_cannot_start_but_nothing_compared_does_not_pass(tmp_path):
    """``all`` with a side interpreter configured that is not there: its ``NAME@ENV`` run is
    skipped (it only came with ``all``), and as it is the only one selected, nothing was
    compared: exit 1, not a green run of skips."""
    proc = run_pytest(tmp_path, "--klconform-frameworks", "all", "--klconform-python",
                      f"mxnet180={tmp_path / 'no-such-python'}", "-k", "mxnet180 and not known", *TINY)
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert re.search(r"^SKIPPED \[6\] .*mxnet\.KLDivLoss@mxnet180 not checked \(missing: interpreter for "
                     r"@mxnet180 not found", out, re.M), out
    assert "failed" not in out.splitlines()[-1] and "6 skipped" in out.splitlines()[-1], out
    assert "klconform: nothing compared: mxnet.KLDivLoss@mxnet180 (missing: " in out, out


def test_an_empty_corpus_compares_nothing_and_fails(tmp_path):
    empty = frozen.dump([], tmp_path / "empty.jsonl", made_by="tests/plugin")
    proc = run_pytest(tmp_path, "--klconform-adapter", GOOD, "--klconform-corpus", str(empty), *QUICK, "-v")
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert _failed_items(out, "double.good") == set(AREAS), out
    assert "klconform: to compare: 1 adapter run(s) × 0 corpus case(s) + 0 large" in out, out
    assert "compared no case: none of the 0 corpus case(s) and 0 large case(s)" in out, out


def test_header_and_summary_say_what_was_compared_and_collection_counts_every_item(tmp_path):
    (tmp_path / "test_own.py").write_text("def test_own():\n    pass\n")
    proc = run_pytest(tmp_path, "--klconform-adapter", GOOD, *TINY, "-v")
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "klconform: to compare: 1 adapter run(s) × 4 corpus case(s) + 0 large" in out, out
    ran = re.findall(r"^PASSED ", out, re.M)
    assert len(ran) == 1 + len(AREAS), out
    assert f"collected {len(ran)} items" in out, out       # not "collected 1 item"
    # the tiny corpus: 4 float64 batchmean cases, every one of which the double takes
    assert "klconform: compared 1 adapter run × 4 cases (double.good 4)" in out, out
