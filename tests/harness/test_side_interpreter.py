"""The worker side needs numpy only: what a side interpreter (``.venvs/NAME``) must import
to host an adapter -- the adapter interface, the case codec, the outcome codec and the
worker loop -- pulls in neither mpmath nor numba nor the harness's controller-side
dependencies.

Expected values come from ``reference.evaluate`` in this (the main) interpreter."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from klconform import reference
from klconform.case import Case
from klconform.reference.family import Point
from klconform.workers import run_in_worker

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_DIR = ROOT / "examples" / "inhouse_numpy_kl"
MXNET180_PYTHON = ROOT / ".venvs" / "mxnet180" / "bin" / "python"

# What a worker process must not need: the controller's dependencies and every framework.
BLOCKED = ("mpmath", "numba", "llvmlite", "hypothesis", "execnet", "jsonschema",
           "torch", "tensorflow", "keras", "tf_keras", "mxnet")

# Installed first in the child: any import of a BLOCKED top-level package raises.
BLOCKER = f"""
import sys
BLOCKED = {BLOCKED!r}
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"blocked import: {{name}}")
        return None
sys.meta_path.insert(0, Blocker())
"""

# The worker's own path: decode a case wire with the worker's decoder, run it on a numpy
# adapter through evaluate_wire, and print the outcome wire.
WORKER_SIDE = """
import json, pickle
import klconform.adapters.base, klconform.case, klconform.wire, klconform._worker_remote
import klconform.reference.dtypes, klconform.reference.family
from klconform import _worker_remote as remote, wire as codec
from klconform.case import ReceivedCase
from klconform.reference.dtypes import from_bits_carried
adapter, env = remote.start_adapter("inhouse_numpy_kl.adapter:NumpyKL")
assert adapter is not None, env
decode = remote.case_decoder(ReceivedCase, from_bits_carried)
case_wire = pickle.loads(bytes.fromhex(sys.argv[1]))
out = remote.evaluate_wire(adapter, case_wire, decode, codec)
value = codec.from_wire(out).value
print(json.dumps({"status": out["status"], "error": out["error_message"],
                  "value": value.tolist(), "shape": list(value.shape),
                  "loaded": sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)}))
"""


def run_child(code: str, *args: str) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": f"{ROOT}:{EXAMPLE_DIR}", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", BLOCKER + code, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def tiny_case() -> Case:
    p = np.array([[0.5, 0.25, 0.25], [0.125, 0.375, 0.5]])
    q = np.array([[0.25, 0.5, 0.25], [0.5, 0.25, 0.25]])
    return Case(target=p, pred=np.log(q), reduction="batchmean")


def test_blocker_blocks():
    # The test below can only fail if the blocker works: a blocked import must fail.
    proc = run_child("import mpmath")
    assert proc.returncode != 0
    assert "blocked import: mpmath" in proc.stderr


def test_worker_side_runs_a_case_with_numpy_only():
    import pickle
    case = tiny_case()
    proc = run_child(WORKER_SIDE, pickle.dumps(case.to_wire(), protocol=4).hex())
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["loaded"] == []
    assert result["status"] == "ok", result["error"]
    expected = reference.evaluate(case).value
    assert result["shape"] == list(expected.shape)
    np.testing.assert_allclose(result["value"], expected, rtol=1e-12)


def test_adapter_interface_does_not_load_mpmath():
    proc = subprocess.run(
        [sys.executable, "-c", "import sys, klconform.adapters.base; "
         "print(sorted(m for m in ('mpmath', 'numba') if m in sys.modules))"],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.skipif(not MXNET180_PYTHON.exists(), reason=f"side interpreter {MXNET180_PYTHON} not built")
def test_mxnet180_side_interpreter_runs_a_case_end_to_end():
    # MXNet's KLDivLoss averages over the non-batch axes: its documented point is
    # sample_mean; with p >= 1/8 its 1e-12 epsilon moves the value by under 1e-11 relative.
    p = np.array([[0.5, 0.25, 0.25], [0.125, 0.375, 0.5]])
    q = np.array([[0.25, 0.5, 0.25], [0.5, 0.25, 0.25]])
    case = Case(target=p, pred=np.log(q), reduction="sample_sum", grad=False)
    env, (outcome,) = run_in_worker("klconform.adapters.mxnet_kldivloss:MXNetKLDivLoss", [case],
                                    python=str(MXNET180_PYTHON), case_timeout=30.0, setup_timeout=120.0)
    assert env["python"] == str(MXNET180_PYTHON)
    assert env["version"].startswith("1.8.0")
    assert outcome.status == "ok", (outcome.status, outcome.error_message)
    expected = reference.evaluate(case, Point(reduction="sample_mean")).value
    np.testing.assert_allclose(outcome.value, expected, rtol=1e-9)
