"""Adapters build their inputs from ``Case.sent_values`` and never widen a received case.

In a worker a case holds its inputs as received (views of the wire bytes); the float64
fields are widened on first read (``Case.__getattr__``), a full pass and twice the memory
of a float32 input on 10⁷-element cases.  An adapter that reads ``case.target``/
``case.pred`` on its way to the framework call pays that on every case.  Each framework's
adapters run here on wire-decoded cases, in a child process per framework (they are
imported as a worker imports them); the outcome must be ``ok`` for at least one case and
neither field may have been widened."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from klconform.registry import builtin_adapters

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import itertools, json, sys
import numpy as np
from klconform.case import Case, ReceivedCase
from klconform._worker_remote import case_decoder
from klconform.reference.dtypes import from_bits_carried
from klconform.registry import builtin_adapters, load_adapter

decode = case_decoder(ReceivedCase, from_bits_carried)
P = np.array([[0.25, 0.75, 0.0], [0.5, 0.25, 0.25]])
Q = np.array([[0.5, 0.25, 0.25], [0.125, 0.375, 0.5]])
VALUES = {"prob": (P, Q), "logprob": (np.log(np.where(P > 0, P, 1.0)), np.log(Q)), "logits": (None, np.log(Q) + 1.0)}
report = {}
for name in sys.argv[1:]:
    adapter = load_adapter(builtin_adapters()[name])
    adapter.setup()
    caps = adapter.capabilities()
    statuses, widened = [], []
    for tk, pk, red in itertools.product(sorted(caps.target_kinds), sorted(caps.pred_kinds), sorted(caps.reductions)):
        target, pred = VALUES[tk][0], VALUES[pk][1]
        if target is None:
            continue
        dtype = "float32" if "float32" in caps.dtypes else sorted(caps.dtypes)[0]
        sent = Case(target=target.astype(dtype).astype(float), pred=pred.astype(dtype).astype(float), dtype=dtype,
                    target_kind=tk, pred_kind=pk, reduction=red, grad=bool(caps.gradients))
        case = decode(sent.to_wire())
        out = adapter.evaluate(case)
        statuses.append(out.status)
        widened += [f"{side} ({tk}/{pk}/{red})" for side in ("target", "pred") if side in case.__dict__]
    report[name] = {"statuses": sorted(set(statuses)), "widened": widened}
print(json.dumps(report))
"""

# framework -> the module that must import here for its adapters to run in this environment
FRAMEWORKS = {"torch": "torch", "keras": "keras", "tf_keras": "tf_keras", "scipy": "scipy", "mxnet": "mxnet"}


def _adapters_of(framework: str) -> list[str]:
    return sorted(n for n in builtin_adapters() if n.split(".")[0] == framework)


@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
def test_adapters_never_widen_a_received_case(framework):
    if importlib.util.find_spec(FRAMEWORKS[framework]) is None:
        pytest.skip(f"{framework} not installed here")
    names = _adapters_of(framework)
    assert names, framework
    proc = subprocess.run([sys.executable, "-c", PROBE, *names], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    for name in names:
        assert "ok" in report[name]["statuses"], (name, report[name])
        assert report[name]["widened"] == [], (name, report[name])
