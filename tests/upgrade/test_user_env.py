"""A run pointed at the interpreter of the user's own environment (``--python train=PATH``)
evaluates the framework there without klconform installed there, and the controller's
packages never shadow the environment's own: the worker's sys.path gets a directory that
holds only the klconform package."""
from __future__ import annotations

import os
import subprocess
import sys
import venv

import numpy as np
import pytest

from klconform import workers
from klconform.case import Case
from klconform.workers import package_path_dir, run_in_worker

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "examples", "inhouse_numpy_kl")
# Another numpy than the controller's, from the local wheel cache: if the controller's
# site-packages leaked onto the worker's path, the worker would report the controller's.
USER_NUMPY = "1.24.4"


@pytest.fixture(scope="session")
def numpy_only_venv(tmp_path_factory):
    """A fresh venv with only numpy (built once per session; skipped when it cannot be)."""
    d = tmp_path_factory.mktemp("user-env") / "train"
    try:
        venv.EnvBuilder(with_pip=True).create(d)
        py = str(d / "bin" / "python")
        subprocess.run([py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-index",
                        "--find-links", "/opt/pypi-more/files", f"numpy=={USER_NUMPY}"],
                       check=True, capture_output=True, timeout=300)
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"cannot build a numpy-only venv here: {exc}")
    return py


def test_worker_path_holds_only_the_package():
    d = package_path_dir()
    assert os.listdir(d) == ["klconform"]
    assert os.path.realpath(os.path.join(d, "klconform")) == str(workers.PACKAGE_DIR)


def test_user_env_without_klconform(numpy_only_venv, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)             # no checkout in the current directory either
    check = subprocess.run([numpy_only_venv, "-c", "import klconform"], capture_output=True)
    assert check.returncode != 0            # klconform is not installed there
    monkeypatch.setenv("PYTHONPATH", EXAMPLE)   # the in-house adapter, as a user would add it
    case = Case(target=np.array([[0.25, 0.75]]), pred=np.array([[-0.5, -1.0]]), dtype="float64", reduction="sum")
    env, (out,) = run_in_worker("inhouse_numpy_kl.adapter:NumpyKL", [case], python=numpy_only_venv)
    assert env["python"] == numpy_only_venv
    assert env["numpy"] == USER_NUMPY != np.__version__
    assert out.status == "ok", out.error_message
    from klconform.reference import evaluate
    assert abs(float(out.value) - float(evaluate(case).value)) <= 1e-12


def test_gateway_spec_is_accepted_where_an_interpreter_is(numpy_only_venv, monkeypatch, tmp_path):
    """``--python train=popen//python=PATH``: an execnet spec goes to execnet as it is."""
    from klconform import registry
    spec = f"popen//python={numpy_only_venv}"
    assert registry.interpreter_for("train", {"train": spec}) == (spec, None)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", EXAMPLE)
    case = Case(target=np.array([0.5, 0.5]), pred=np.array([-1.0, -0.5]), dtype="float64", reduction="sum")
    env, (out,) = run_in_worker("inhouse_numpy_kl.adapter:NumpyKL", [case], python=spec)
    assert env["numpy"] == USER_NUMPY and out.status == "ok"


def test_remote_gateway_gets_the_package_sources(numpy_only_venv, monkeypatch, tmp_path):
    """What an ssh= gateway gets (the sources over the channel, no progress file), exercised
    on a local popen gateway treated as remote; a real sshd: docs/upgrade-checks.md."""
    monkeypatch.setattr(workers, "_is_remote", lambda spec: True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", EXAMPLE)
    assert "klconform/reference/evaluate.py" in workers.package_sources()
    case = Case(target=np.array([0.5, 0.5]), pred=np.array([-1.0, -0.5]), dtype="float64", reduction="sum")
    env, (out,) = run_in_worker("inhouse_numpy_kl.adapter:NumpyKL", [case], python=f"popen//python={numpy_only_venv}")
    assert env["numpy"] == USER_NUMPY and out.status == "ok"
