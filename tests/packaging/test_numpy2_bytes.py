"""The same cases, byte for byte, under numpy 2: a user's fresh venv where pip picks numpy
2.x (allowed by klconform's ``numpy>=1.26``), with the wheel installed (not editable) and
torch 2.13.0, sends every adapter the cases whose digests tests/data/sent-digests.json
holds, and ``baseline check`` of torch.kl_div there finds no change from a baseline made
in this checkout's environment (numpy 1.26).

The venv is built once per source state under $TMPDIR/klconform-packaging (beside the
user-project test's).  Deselect with ``-m "not packaging"``.
"""
from __future__ import annotations

import fcntl
import importlib.metadata
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "verdicts"))
import sent_digests  # noqa: E402
from test_user_project import SOURCES, _checked, _digest, _run, _venv  # noqa: E402

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[2]
NUMPY2 = "numpy==2.4.6"          # what pip picks for a user today (numpy>=1.26 allows it)
TORCH = "torch==2.13.0"          # the main environment's torch (a local wheel pip finds)
# klconform's other dependencies, at the versions running here
PINNED = ("mpmath", "execnet", "hypothesis", "jsonschema")


def _env() -> dict:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("KLCONFORM_", "PYTEST_", "PYTHON"))}
    e["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return e


@pytest.fixture(scope="session")
def numpy2_python() -> Path:
    """The interpreter of a venv with the wheel, numpy 2 and torch, built once per source state."""
    cache = Path(tempfile.gettempdir()) / "klconform-packaging"
    cache.mkdir(exist_ok=True)
    home = cache / f"numpy2-{_digest()}"
    with open(cache / "lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = home / "done"
        if not done.exists():
            shutil.rmtree(home, ignore_errors=True)
            src = home / "src"
            src.mkdir(parents=True)
            for name in SOURCES:
                s = ROOT / name
                if s.is_dir():
                    shutil.copytree(s, src / name, symlinks=True,
                                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.nbc", "*.nbi"))
                else:
                    shutil.copy2(s, src / name)
            builder = cache / "build-venv" / "bin" / "python"
            if not builder.exists():
                _venv(cache / "build-venv", ["build"])
            _checked([builder, "-m", "build", "--wheel", "--outdir", home / "dist", src])
            (wheel,) = (home / "dist").glob("klconform-*.whl")
            pins = [f"{n}=={importlib.metadata.version(n)}" for n in PINNED]
            _venv(home / "venv", [str(wheel), NUMPY2, TORCH, *pins])
            done.write_text(wheel.name)
    return home / "venv" / "bin" / "python"


def test_numpy2_venv_sends_the_golden_bytes(numpy2_python, tmp_path):
    probe = _checked([numpy2_python, "-c", "import numpy, klconform; print(numpy.__version__, klconform.__file__)"],
                     cwd=tmp_path, env=_env()).stdout.split()
    assert probe[0].startswith("2.") and "site-packages" in probe[1], probe
    # run by path from outside the checkout: imports the installed klconform
    out = _checked([numpy2_python, ROOT / "tests" / "verdicts" / "sent_digests.py", "--json"],
                   cwd=tmp_path, env=_env()).stdout
    diff = sent_digests.differences(json.loads(sent_digests.GOLDEN.read_text()), json.loads(out))
    assert not diff, "\n".join(diff[:20])


@pytest.fixture(scope="module")
def numpy2_torch_run(numpy2_python, tmp_path_factory) -> Path:
    """results.json of ``klconform run --frameworks torch.kl_div`` in the numpy-2 venv."""
    out = tmp_path_factory.mktemp("numpy2") / "out"
    _checked([numpy2_python.parent / "klconform", "run", "--frameworks", "torch.kl_div", "--out", out],
             cwd=out.parent, env=_env())
    return out / "results.json"


def _check(numpy2_python, results: Path, *baselines) -> str:
    r = _run([numpy2_python.parent / "klconform", "baseline", "check", results, *baselines],
             cwd=results.parent, env=_env())
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "compared 1 adapter run" in r.stdout, r.stdout[-3000:]
    assert "answered" not in r.stdout, r.stdout[-3000:]
    return r.stdout


def test_numpy2_venv_finds_no_change_from_a_numpy1_baseline_of_the_same_torch(numpy2_python, numpy2_torch_run,
                                                                                tmp_path):
    """The controller's numpy is the only difference: this checkout's environment (numpy
    1.26, torch 2.13.0) makes the baseline, the numpy-2 venv checks against it."""
    here, baselines = tmp_path / "numpy1", tmp_path / "baselines"
    _checked([sys.executable, "-m", "klconform", "run", "--frameworks", "torch.kl_div", "--out", here],
             cwd=ROOT, env=_env())
    _checked([sys.executable, "-m", "klconform", "baseline", "update", here / "results.json",
              "--baselines", baselines], cwd=ROOT, env=_env())
    _check(numpy2_python, numpy2_torch_run, "--baselines", baselines)


def test_numpy2_venv_finds_no_change_from_the_committed_torch_baseline(numpy2_python, numpy2_torch_run):
    """The user's own command: ``klconform baseline check`` against the
    baselines klconform ships (needs them made on the current corpus and code)."""
    _check(numpy2_python, numpy2_torch_run)
