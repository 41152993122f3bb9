"""The pytest plugin run as a user runs it (a pytest subprocess in an empty directory, the
plugin by ``-p``), on cheap test-double adapters and a 4-case corpus:

* ``--klconform-baseline DIR``: the ``::baseline`` item passes against a baseline made from
  one run (``klconform.baseline.update``), fails with the change's sentence once a recorded
  case is edited; a bad or stale baseline file is a one-line usage error (exit 4);
* under pytest-xdist (``-n 2``) each adapter's run is computed once across the workers."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from klconform import baseline, cli
from klconform.resultsio import read_results
from tests.faults.test_faults import GOOD, TINY_CORPUS

ROOT = Path(__file__).resolve().parents[2]
COMMON = ["--klconform-corpus", TINY_CORPUS, "--klconform-shrink-rounds", "0"]


def run_pytest(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    (cwd / "pytest.ini").write_text("[pytest]\n")         # the rootdir: none of this repository's conftests
    e = dict(os.environ, PYTHONPATH=os.pathsep.join([str(cwd), str(ROOT)]), TF_CPP_MIN_LOG_LEVEL="3", **env)
    e.pop("PYTEST_ADDOPTS", None)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "klconform.pytest_plugin", "-p", "no:cacheprovider",
                           "-q", "-rA", *args], cwd=cwd, env=e, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def good_baseline(tmp_path_factory) -> Path:
    """The baselines of one `klconform run` of the double on the tiny corpus."""
    d = tmp_path_factory.mktemp("baseline-run")
    assert cli.main(["run", "--adapter", GOOD, "--corpus", TINY_CORPUS, "--shrink-rounds", "0", "--quiet",
                     "--out", str(d / "out")]) in (cli.EXIT_OK, cli.EXIT_DISCREPANCY)
    (path,) = baseline.update(read_results(d / "out" / "results.json"), d / "baselines")
    return path


def _copy(path: Path, into: Path, edit=None) -> Path:
    into.mkdir()
    lines = path.read_text().splitlines()
    if edit:
        lines = edit(lines)
    (into / path.name).write_text("\n".join(lines) + "\n")
    return into


def test_baseline_item_passes_then_fails_with_the_change(good_baseline, tmp_path):
    same = _copy(good_baseline, tmp_path / "same")
    ok = run_pytest(tmp_path, "--klconform-adapter", GOOD, *COMMON, "--klconform-baseline", str(same),
                    "-k", "baseline")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "PASSED klconform::double.good::baseline" in ok.stdout, ok.stdout

    def edit(lines):          # the first recorded case: it "used to" raise
        row = json.loads(lines[1])
        row["status"] = "error:ValueError"
        return [lines[0], json.dumps(row), *lines[2:]]
    changed = _copy(good_baseline, tmp_path / "changed", edit)
    bad = run_pytest(tmp_path, "--klconform-adapter", GOOD, *COMMON, "--klconform-baseline", str(changed),
                     "-k", "baseline", "--junitxml", str(tmp_path / "j.xml"))
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "FAILED klconform::double.good::baseline" in bad.stdout, bad.stdout
    assert "1 change(s) against the baselines" in bad.stdout, bad.stdout
    assert "error (ValueError)" in bad.stdout and "Traceback" not in bad.stdout, bad.stdout
    assert 'name="klconform_baseline_changes" value="1"' in (tmp_path / "j.xml").read_text()


@pytest.mark.parametrize("kind", ["stale", "bad"])
def test_a_bad_or_stale_baseline_file_is_a_one_line_usage_error(kind, good_baseline, tmp_path):
    if kind == "stale":
        def edit(lines):
            head = json.loads(lines[0])
            head["corpus_digest"] = "0" * len(head["corpus_digest"])
            return [json.dumps(head), *lines[1:]]
        d = _copy(good_baseline, tmp_path / "b", edit)
        said = "stale baseline double.good@"
    else:
        d = _copy(good_baseline, tmp_path / "b")
        (d / "broken@1.jsonl").write_text("{not json\n")
        said = "not a readable baseline file"
    proc = run_pytest(tmp_path, "--klconform-adapter", GOOD, *COMMON, "--klconform-baseline", str(d))
    assert proc.returncode == 4, proc.stdout + proc.stderr        # pytest's usage error
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("ERROR: --klconform-baseline: ") and said in lines[0], proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


DOUBLES = '''
import os
from tests.harness.misbehaving import GoodKL


class PidA(GoodKL):
    name = "double.pid_a"

    def setup(self):
        with open(os.environ["KL_SETUP_LOG"], "a") as fh:     # in the adapter's worker process
            fh.write(f"{self.name} {os.getppid()}\\n")         # its parent: the xdist worker
        return super().setup()


class PidB(PidA):
    name = "double.pid_b"
'''


def test_xdist_computes_each_adapters_run_once(tmp_path):
    pytest.importorskip("xdist")
    (tmp_path / "pid_doubles.py").write_text(DOUBLES)
    log = tmp_path / "setups.log"
    proc = run_pytest(tmp_path, "-n", "2", "--klconform-adapter", "pid_doubles:PidA",
                      "--klconform-adapter", "pid_doubles:PidB", *COMMON, KL_SETUP_LOG=str(log))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ran = re.findall(r"^PASSED \S*klconform::([\w.]+)::", proc.stdout, re.M)     # xdist: ../klconform::...
    assert len(ran) >= 12 and set(ran) == {"double.pid_a", "double.pid_b"}, proc.stdout
    setups = log.read_text().split()[::2]
    assert sorted(setups) == ["double.pid_a", "double.pid_b"], log.read_text()
