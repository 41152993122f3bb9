"""Distillation cases through the harness (klconform/distill_harness.py): their own wire kind
(the canonical Case wire untouched), the recipe corpus, the judge on hand-built outcomes
(expected values from SPEC.md's one-token example), and the real worker path in the side
environments (skipped while .venvs/distill or .venvs/distill031 is absent)."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest

from klconform import distill_harness as dh
from klconform.adapters.base import Outcome
from klconform.case import Case
from klconform.reference.distill import canonical

ROOT = Path(__file__).resolve().parents[2]
PY = {env: Path(os.environ.get(f"KLCONFORM_PYTHON_{env.upper()}", ROOT / ".venvs" / env / "bin" / "python"))
      for env in ("distill", "distill031")}
# SPEC's one-token example: teacher [0.25, 0.75], student [0.5, 0.5]
KL = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)          # 0.130812
CE = -(0.25 * math.log(0.5) + 0.75 * math.log(0.5))         # log 2


def _one_token():
    return {s.label: s for s in dh.load_corpus()}["one-token/forward"]


def test_wire_round_trip_through_case_from_wire():
    """KL-DISTILL-CASE: every corpus case comes back from Case.from_wire (the worker's
    decoder) bit for bit, mask and fields included; digests are distinct."""
    cases = dh.load_corpus()
    assert len({c.digest for c in cases}) == len(cases)
    for sent in cases:
        back = Case.from_wire(sent.to_wire())
        assert np.array_equal(back.student, sent.case.student) and np.array_equal(back.teacher, sent.case.teacher)
        assert np.array_equal(back.kept, sent.case.kept)
        assert (back.divergence, back.param, back.chunks, back.reduction, back.sent_dtype) == \
            (sent.case.divergence, sent.case.param, sent.case.chunks, sent.case.reduction, sent.case.sent_dtype)


def test_canonical_case_wire_is_not_a_distill_wire():
    """The canonical wire keeps version 1 and no kind (its bytes and digests are unchanged)."""
    w = Case(target=np.array([0.25, 0.75]), pred=np.log([0.5, 0.5])).to_wire()
    assert w["v"] == 1 and "kind" not in w
    assert dh.to_wire(_one_token().case)["v"] != w["v"]


def _ok(value, grads=None):
    return Outcome(status="ok", value=np.asarray(value, dtype=float), dtype="float32", shape=(),
                   grads=grads or {}, grad_dtypes={k: "float32" for k in (grads or {})})


def test_judge_names_the_cross_entropy_point():
    """KL-DISTILL-CE: log 2 where KL is 0.130812 is the cross-entropy point, with the KL's
    student gradient softmax(s) - softmax(t) = [0.25, -0.25]; a wrong value is no point."""
    sent = _one_token()
    case = sent.case
    grads = {"pred": np.array([[0.25, -0.25]])}
    vs = dh.judge(case, _ok(CE, grads), adapter="a", digest=sent.digest, against="canonical",
                  point=canonical(case), gradients=("pred",))
    assert [(v.cls, v.explained_by) for v in vs] == [("semantic", "cross_entropy+distribution_mean")]
    assert "KL-DISTILL-CE" in vs[0].clauses
    vs = dh.judge(case, _ok(KL, grads), adapter="a", digest=sent.digest, against="canonical",
                  point=canonical(case), gradients=("pred",))
    assert [v.cls for v in vs] == ["match"]
    vs = dh.judge(case, _ok(0.5, grads), adapter="a", digest=sent.digest, against="canonical",
                  point=canonical(case), gradients=("pred",))
    assert [v.cls for v in vs] == ["precision"]


RUNS = [("klconform.adapters.torchtune_kd:TorchtuneForwardKLChunked", "distill"),
        ("klconform.adapters.torchtune_kd:TorchtuneForwardKLChunked", "distill031")]


@pytest.mark.parametrize("ref,env", RUNS, ids=["torchtune-0.6.1", "torchtune-0.3.1"])
def test_chunked_forward_through_a_worker(ref, env):
    """KL-DISTILL-CHUNK KL-DISTILL-CHUNK-MEAN: through a real worker, torchtune's chunked
    forward loss on 2x8 tokens in 4 chunks holding 0 and 2 kept tokens is the cross-entropy
    token mean in 0.6.1 and the mean of per-chunk means in 0.3.1 (pytorch/torchtune#1865)."""
    if not PY[env].exists():
        pytest.skip(f"side environment {env} absent: python3 bootstrap.py env {env}")
    cases = [s for s in dh.load_corpus() if s.label == "small/forward-chunked-uneven"]
    env_report, results = dh.run_adapter(ref, f"TorchtuneForwardKLChunked@{env}", cases, python=str(PY[env]),
                                         setup_timeout=300)
    (_, outcome, vs), = results
    assert outcome.status == "ok"
    want = "cross_entropy+distribution_mean" + ("+chunk_mean" if env == "distill031" else "")
    assert {(v.against, v.cls, v.explained_by) for v in vs} == \
        {("canonical", "semantic", want), ("documented", "semantic", want)}
