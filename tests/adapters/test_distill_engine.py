"""Registered distillation adapters through the engine (klconform.engine.run_conformance):
the distillation corpus instead of the frozen one, results.json's additive fields valid
against the schema, every discrepancy covered by a record of klconform/known/torchtune.toml
or trl.toml, and no record covering a planted wrong value at its place.  Skipped while the
side environments are absent (python3 bootstrap.py env distill distill031)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from klconform import behaviour, distill_harness as dh, engine, registry, resultsio, wire
from klconform import records as known_mod
from klconform.facts import distill_facts

ROOT = Path(__file__).resolve().parents[2]
PY = {env: Path(os.environ.get(f"KLCONFORM_PYTHON_{env.upper()}", ROOT / ".venvs" / env / "bin" / "python"))
      for env in ("distill", "distill031")}
RUNS = {"torchtune.ForwardKLLoss@distill": "distill", "trl.generalized_jsd_loss@distill": "distill",
        "torchtune.ForwardKLWithChunkedOutputLoss@distill031": "distill031"}


@pytest.fixture(scope="module")
def result():
    missing = sorted({env for env in RUNS.values() if not PY[env].exists()})
    if missing:
        pytest.skip(f"side environment(s) {missing} absent: python3 bootstrap.py env {' '.join(missing)}")
    specs = registry.resolve(list(RUNS), pythons={env: str(p) for env, p in PY.items()})
    return engine.run_conformance(specs, cases=[], shrink_rounds=0, worker_options={"setup_timeout": 300})


def test_registered_distillation_adapters_get_the_distillation_corpus(result):
    """KL-DISTILL-CASE: each run compares the recipe cases its capabilities take, stored
    as recipes; the document (additive distill_capabilities, distill case entries) is valid."""
    corpus = {s.digest: s for s in dh.load_corpus()}
    for run in result.runs:
        assert run.status == "ok" and run.distill_capabilities, run.adapter
        assert run.outcomes and set(run.outcomes) <= set(corpus)
        for d in run.outcomes:
            assert dh.is_case_json(result.cases[d])
            assert dh.case_from_json(result.cases[d]).digest == d
    doc = resultsio.to_document(result)
    resultsio.validate(doc)
    resultsio.check_references(doc)


def test_every_discrepancy_is_recorded_and_every_record_seen(result):
    for run in result.runs:
        assert not run.unmatched_known, (run.adapter, run.unmatched_known)
        assert [v for v in run.verdicts if v.cls != "match" and not v.known] == [], run.adapter
    by = {r.adapter: r for r in result.runs}
    # pytorch/torchtune#1865: 0.3.1's chunked loss is the mean of per-chunk means
    assert {v.known for v in by["torchtune.ForwardKLWithChunkedOutputLoss@distill031"].verdicts} == \
        {"torchtune-031-chunked-mean-of-chunk-means"}
    assert "trl-jsd-endpoints-are-kl" in {v.known for v in by["trl.generalized_jsd_loss@distill"].verdicts}


def test_planted_wrong_values_at_recorded_places_are_unexpected(result):
    """A record states a behaviour: a wrong value (or gradient) planted where it covers a
    verdict leaves a discrepancy no record covers."""
    corpus = {s.digest: s for s in dh.load_corpus()}
    checked = set()
    for run in result.runs:
        adapter = registry.load_adapter(registry.resolve([run.adapter.split("@")[0]])[0].adapter_ref)
        records = known_mod.applicable(known_mod.load_for(adapter), run=run.adapter, version=run.env.get("version"))
        for v in run.verdicts:
            if not v.known or v.cls == "dtype":     # a dtype verdict has no value of its own to plant
                continue
            sent = corpus[v.case]
            outcome = wire.from_json(run.outcomes[v.case])
            point = dh.canonical(sent.case) if v.against == "canonical" else dh.documented_point(adapter, sent.case)
            bad = behaviour.planted(outcome, v, behaviour.DistillObservation(sent.case, outcome, point, point))
            vs = dh.judge(sent.case, bad, adapter=run.adapter, digest=v.case, against=v.against, point=point,
                          gradients=sorted(adapter.distill_capabilities().gradients))
            uncovered = []
            for w in vs:
                if w.cls == "match":
                    continue
                obs = behaviour.DistillObservation(sent.case, bad, point, dh.judged_point(sent.case, point, vs))
                f = distill_facts(result.cases[v.case]["case_facts"], w, bad, run=run.adapter,
                                  version=run.env.get("version"))
                if known_mod.find_record(records, w, f, obs) is None:
                    uncovered.append(w)
            assert uncovered, (run.adapter, v.known, v.case)
            checked.add(v.known)
    assert {"torchtune-empty-mask-no-gradient", "trl-empty-mask-returns-zero",
            "torchtune-031-chunked-mean-of-chunk-means"} <= checked
