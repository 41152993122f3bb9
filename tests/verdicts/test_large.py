"""The large family (klconform.large, docs/large.md): recipes, reproducible generation,
the corpus file, and the engine's large path (determinism verdict, results form)."""
import json

import numpy as np
import pytest

from klconform import engine, large
from klconform.case import Case, CaseError
from klconform.reference.dtypes import representable

from kl_doubles import ReferenceAdapter

SMALL = large.Recipe(seed=3, batch=3, classes=1000, dtype="float32")


@pytest.mark.parametrize("field, value", [("batch", 0), ("batch", 1001), ("classes", 999), ("classes", 200_001),
                                          ("dtype", "int8"), ("reduction", "none"), ("profile", "spiky"),
                                          ("seed", -1), ("batch", 2.0)])
def test_bad_recipe_is_one_line_naming_the_field(field, value):
    with pytest.raises(CaseError, match=f"recipe {field}"):
        large.Recipe(**{**SMALL.to_json(), field: value})


def test_too_many_elements_is_refused():
    with pytest.raises(CaseError, match="elements per input"):
        large.Recipe(seed=1, batch=1000, classes=200_000)


def test_quick_cases_regenerate_to_their_frozen_digests():
    for recipe, digest in large.QUICK:
        assert large.check((recipe, digest)).digest == digest


@pytest.mark.parametrize("profile", sorted(large.PROFILES))
@pytest.mark.parametrize("kinds", [("prob", "prob"), ("logprob", "logprob"), ("prob", "logits")])
def test_generated_rows_are_distributions_of_the_kind_asked(profile, kinds):
    r = large.Recipe(seed=11, batch=4, classes=3000, dtype="float32", target_kind=kinds[0], pred_kind=kinds[1],
                     profile=profile)
    c = large.generate(r)
    assert c.shape == (4, 3000) and c.class_axis == -1 and c.batch_axis == 0 and not c.grad
    assert c.label == r.label and c.recipe == r
    for values, kind in ((c.target, kinds[0]), (c.pred, kinds[1])):
        assert representable(values, "float32")
        if kind == "prob":
            assert np.all(values >= 0)
            np.testing.assert_allclose(values.sum(-1), 1, rtol=1e-5)
        elif kind == "logprob":
            np.testing.assert_allclose(np.log(np.exp(values).sum(-1)), 0, atol=2.0**-12)
        else:
            assert np.all(np.isfinite(values)) and values.std() > 0
    zeros = np.mean(c.target == 0) if kinds[0] == "prob" else np.mean(np.isneginf(c.target))
    if profile == "sparse":
        assert 0.95 < zeros < 0.995                 # about 1/64 kept
        assert np.all((c.target != 0).any(-1) if kinds[0] == "prob" else np.isfinite(c.target).any(-1))
    else:
        assert zeros == 0


def test_peaked_rows_are_peaked_and_flat_rows_flat():
    peaked = large.generate(large.Recipe(seed=5, batch=2, classes=32000, pred_kind="prob", profile="peaked"))
    flat = large.generate(large.Recipe(seed=5, batch=2, classes=32000, pred_kind="prob", profile="flat"))
    assert peaked.pred.max() > 1000 / 32000 and 0.1 / 32000 < flat.pred.min() < flat.pred.max() < 4 / 32000


def test_seeds_and_dtypes_give_different_cases_and_the_same_seed_the_same_bytes():
    a, b = large.generate(SMALL), large.generate(SMALL)
    assert a.digest == b.digest and a.target.tobytes() == b.target.tobytes()
    assert large.generate(large.Recipe(**{**SMALL.to_json(), "seed": 4})).digest != a.digest
    half = large.generate(large.Recipe(**{**SMALL.to_json(), "dtype": "bfloat16"}))
    assert half.digest != a.digest and representable(half.pred, "bfloat16")


def test_json_form_is_the_recipe_and_rebuilds_the_case():
    c = large.generate(SMALL)
    j = c.to_json()
    assert j["target"] is None and j["pred"] is None and j["recipe"] == SMALL.to_json()
    assert len(json.dumps(j)) < 2000
    assert Case.from_json(j).digest == c.digest
    bad = dict(j, digest="0" * 16)
    with pytest.raises(large.LargeCorpusError, match="generated case"):
        Case.from_json(bad)


def test_committed_corpus_reads_and_covers_every_dtype_kind_and_reduction():
    entries = large.read()
    recipes = [r for r, _ in entries]
    assert len(recipes) == len(large.catalogue()) and recipes == large.catalogue()
    assert {r.dtype for r in recipes} == {"float16", "bfloat16", "float32", "float64"}
    assert {r.reduction for r in recipes} == set(large.LARGE_REDUCTIONS)
    assert max(r.classes for r in recipes) == 200_000 and max(r.batch for r in recipes) == 1000
    assert min(r.classes for r in recipes) >= 1000
    # two entries regenerate to their digests here (all of them: klconform run --large all)
    for e in (entries[0], entries[-1]):
        large.check(e)


def test_corpus_file_errors_name_file_and_line(tmp_path):
    p = tmp_path / "l.jsonl"
    p.write_text(large.dumps([(SMALL, "abc")], "test"))
    assert large.read(p) == [(SMALL, "abc")]
    lines = p.read_text().splitlines()
    p.write_text(lines[0] + "\n" + lines[1].replace('"batch":3', '"batch":0') + "\n")
    with pytest.raises(large.LargeCorpusError, match=r"l.jsonl:2: recipe batch"):
        large.read(p)
    p.write_text("{}\n")
    with pytest.raises(large.LargeCorpusError, match=r"l.jsonl:1: not a"):
        large.read(p)


class Jittery(ReferenceAdapter):
    """Adds a different 1-ulp-sized jitter on each call: a nondeterministic framework."""

    name = "double.jittery"

    def __init__(self):
        self.calls = 0

    def evaluate(self, case):
        out = super().evaluate(case)
        self.calls += 1
        out.value = out.value * (1 + self.calls * 2.0**-23)
        return out


@pytest.mark.parametrize("cls, expect", [(ReferenceAdapter, "identical"), (Jittery, "differs")])
def test_engine_runs_each_large_case_twice_and_judges_determinism(cls, expect):
    a = cls()
    t = engine.Target(a.name, a, engine.InProcessRunner(a), env={"version": "0"})
    entry = (SMALL, large.generate(SMALL).digest)
    sink = {}
    run, evaluated = engine.run_adapter(t, [], records=[], large=[entry], large_cases=sink)
    assert evaluated == [] and list(sink) == [entry[1]] and sink[entry[1]]["recipe"] == SMALL.to_json()
    assert [e["repeat"] for e in run.large] == [expect]
    nondet = [v for v in run.verdicts if v.cls == "nondeterministic"]
    assert run.outcomes[entry[1]]["status"] == "ok"
    if expect == "identical":
        assert not nondet and run.large[0]["verdicts"] == ["match"]
    else:
        assert {v.against for v in nondet} == {"canonical", "documented"}
        assert "entries differ" in nondet[0].detail and nondet[0].clauses == ("KL-VERDICT-NONDETERMINISTIC",)
        assert run.counterexamples["nondeterministic"]["case"] == entry[1]
        assert engine.case_from_blob(run.counterexamples["nondeterministic"]["blob"]).digest == entry[1]


def test_large_case_needing_a_conversion_is_skipped():
    class ProbOnly(ReferenceAdapter):
        name = "double.probonly"

        def capabilities(self):
            import dataclasses
            return dataclasses.replace(super().capabilities(), pred_kinds=frozenset({"prob"}))
    a = ProbOnly()
    t = engine.Target(a.name, a, engine.InProcessRunner(a), env={"version": "0"})
    run, _ = engine.run_adapter(t, [], records=[], large=[(SMALL, large.generate(SMALL).digest)])
    assert run.large == [] and run.outcomes == {}


def test_fingerprint_inference_leaves_large_cases_out():
    """What an API computes is read from the small cases; a large case would cost a
    generation and a 10⁷-term evaluation per template."""
    from klconform.fingerprint import infer_fingerprint
    a = ReferenceAdapter()
    t = engine.Target(a.name, a, engine.InProcessRunner(a), env={"version": "0"})
    sink = {}
    run, _ = engine.run_adapter(t, [], records=[], large=[(SMALL, large.generate(SMALL).digest)], large_cases=sink)
    fp = infer_fingerprint(sink, run.outcomes)
    assert fp["compared"] == 0 and len(run.outcomes) == 1


def test_json_form_keeps_the_case_facts_so_reports_need_not_generate():
    from klconform.facts import facts, facts_of_json
    for recipe in (SMALL, large.Recipe(seed=4, batch=2, classes=1000, target_kind="logprob", profile="sparse")):
        case = large.generate(recipe)
        j = case.to_json()
        assert facts_of_json(j) == facts(case)
        assert j["case_facts"]["has_zero_target"] == (recipe.profile == "sparse")


class ErrorsOnce(ReferenceAdapter):
    """Raises on the first call only: a status that changes between two evaluations."""

    name = "double.errors_once"

    def __init__(self):
        self.calls = 0

    def evaluate(self, case):
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("transient")
        return super().evaluate(case)


def test_a_status_that_changes_between_the_two_evaluations_is_nondeterministic():
    a = ErrorsOnce()
    t = engine.Target(a.name, a, engine.InProcessRunner(a), env={"version": "0"})
    run, _ = engine.run_adapter(t, [], records=[], large=[(SMALL, large.generate(SMALL).digest)])
    assert run.large[0]["repeat"] == "differs"
    nondet = [v for v in run.verdicts if v.cls == "nondeterministic"]
    assert nondet and "status: error then ok" in nondet[0].detail


def test_results_files_check_a_large_cases_recipe_without_generating_it(monkeypatch):
    from klconform.resultsio import ResultsError, check_references
    j = large.generate(SMALL).to_json()
    monkeypatch.setattr(large, "generate", lambda r: (_ for _ in ()).throw(AssertionError("generated")))
    check_references({"cases": {j["digest"]: j}, "runs": []})
    bad = dict(j, recipe=dict(j["recipe"], classes=5))
    with pytest.raises(ResultsError, match="does not decode.*recipe classes"):
        check_references({"cases": {j["digest"]: bad}, "runs": []})


def test_report_section_sums_up_the_large_cases():
    from klconform.report import scale
    from klconform.results import RunResult
    runs = []
    for cls in (ReferenceAdapter, Jittery):
        a = cls()
        t = engine.Target(a.name, a, engine.InProcessRunner(a), env={"version": "0"})
        runs.append(engine.run_adapter(t, [], records=[], large=[(SMALL, large.generate(SMALL).digest)])[0])

    class Model:
        result = RunResult(schema_version=1, seed=0, hypothesis={}, corpus_digest="", cases={}, runs=runs)
    rows = scale.large_rows(Model)
    assert [r[0] for r in rows] == ["double.reference", "double.jittery"]
    assert rows[0][1:5] == ["1", "match 1", "0", "0 differ"] and rows[0][5] == "3,000"
    assert rows[1][4].startswith("1 differ (e.g. large/") and 0 < float(rows[1][3]) < 1   # jitter within the bound
    html = scale.html_section(Model)
    assert "<code>nondeterministic</code>" in html and "`" not in html
