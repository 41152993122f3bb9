"""Known-discrepancy files: validation with one-line errors, matching, strict CI semantics."""
import numpy as np
import pytest

import kl_doubles as D
from klconform import engine, records as known_records
from klconform.case import Case
from klconform.results import Verdict
from klconform.facts import facts
from klconform.unexpected import unexpected_findings

GOOD = '''
[[discrepancy]]
id = "sums-instead-of-batchmean"
class = "semantic"
against = ["canonical", "documented"]
clauses = ["KL-RED-BATCHMEAN"]
when = "averaging reductions are computed as sums"
match = { reduction = ["batchmean", "mean", "distribution_mean"], ndim = { min = 1 } }
explained_by = "sum"
citation = "test double"
'''


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_good_file_parses(tmp_path):
    recs = known_records.load_file(write(tmp_path, "double_x.toml", GOOD))
    assert recs[0].id == "sums-instead-of-batchmean" and recs[0].against == ("canonical", "documented")


@pytest.mark.parametrize("mutation, message", [
    (('class = "semantic"', 'class = "wrong"'), "class 'wrong'"),
    (('ndim = { min = 1 }', 'colour = "red"'), "match field 'colour'"),
    (('citation = "test double"', ''), "missing citation"),
    (('clauses = ["KL-RED-BATCHMEAN"]', 'clauses = ["RED"]'), "clauses"),
    (('against = ["canonical", "documented"]', 'against = "sideways"'), "against"),
    (('ndim = { min = 1 }', 'ndim = "two"'), "match.ndim"),
])
def test_bad_entries_give_one_line_errors_naming_file_and_entry(tmp_path, mutation, message):
    p = write(tmp_path, "double_x.toml", GOOD.replace(*mutation))
    with pytest.raises(known_records.KnownError) as exc:
        known_records.load_file(p)
    text = str(exc.value)
    assert "\n" not in text and "double_x.toml" in text and "entry 1" in text and message in text


def test_invalid_toml_names_the_file(tmp_path):
    with pytest.raises(known_records.KnownError, match="bad.toml"):
        known_records.load_file(write(tmp_path, "bad.toml", "[[discrepancy]\n"))


def test_file_for_strips_env_suffix():
    assert known_records.file_for("mxnet.KLDivLoss@mxnet180").name == "mxnet_KLDivLoss.toml"


def test_matching_respects_every_condition():
    rec = known_records.parse_records({"discrepancy": [{
        "id": "a", "class": "semantic", "against": "canonical", "clauses": ["KL-RED-SUM"],
        "when": "w", "citation": "c", "match": {"dtype": ["float16", "bfloat16"], "label": "zero_*"}}]}, "f")[0]
    c = Case(target=np.array([[0.0, 1.0]]), pred=np.array([[0.5, 0.5]]), pred_kind="prob",
             dtype="float16", label="zero_target/2d")
    v = Verdict(adapter="x", case=c.digest, against="canonical", cls="semantic", clauses=("KL-RED-SUM",))
    assert known_records.record_matches(rec, v, facts(c, v))
    assert not known_records.record_matches(rec, v, facts(c.replace(dtype="float32"), v))
    v2 = Verdict(adapter="x", case=c.digest, against="documented", cls="semantic", clauses=())
    assert not known_records.record_matches(rec, v2, facts(c, v2))


def _run(adapter, records):
    corpus = engine.build_corpus(5, 60, [adapter.capabilities()], curated=False)
    t = engine.Target(run_id=adapter.name, adapter=adapter, runner=engine.InProcessRunner(adapter), env={})
    run, _ = engine.run_adapter(t, corpus, records=records, shrink_rounds=0)
    return run


def test_recorded_deviation_passes_new_one_fails(tmp_path):
    recs = known_records.load_file(write(tmp_path, "double_wrong_reduction.toml", GOOD))
    run = _run(D.WrongReduction(), recs)
    problems = unexpected_findings(run)
    # the sum/batchmean deviation is recorded; what remains must be other reductions only
    assert all("sum" not in line or "NEW" not in line or "batchmean" not in line for line in problems)
    assert any(v.known == "sums-instead-of-batchmean" for v in run.verdicts)
    unrecorded = _run(D.WrongReduction(), [])
    assert any("NEW semantic" in line for line in unexpected_findings(unrecorded))


def test_record_no_longer_observed_fails(tmp_path):
    recs = known_records.load_file(write(tmp_path, "double_reference.toml", GOOD))
    run = _run(D.ReferenceAdapter(), recs)
    assert run.unmatched_known == ["sums-instead-of-batchmean"]
    assert any("not observed" in line for line in unexpected_findings(run))


VERSIONED = GOOD + '''
[[discrepancy]]
id = "old-version-only"
class = "semantic"
against = "canonical"
clauses = ["KL-RED-BATCHMEAN"]
when = "only the 1.8 line sums"
match = { version = "1.8*" }
explained_by = "sum"
citation = "test double"
'''


def test_record_for_another_version_is_neither_matched_nor_unobserved(tmp_path):
    """A file shared by two versions' runs (mxnet.KLDivLoss and @mxnet180): a record whose
    version condition excludes this run does not apply, so its absence is no failure."""
    recs = known_records.load_file(write(tmp_path, "double_wrong_reduction.toml", VERSIONED))
    assert [r.id for r in known_records.applicable(recs, run="double.wrong_reduction", version="0")] == \
        ["sums-instead-of-batchmean"]
    run = _run(D.WrongReduction(), recs)          # env version "" -> None: 1.8* does not apply
    assert "old-version-only" not in run.unmatched_known
    assert not any(v.known == "old-version-only" for v in run.verdicts)


def test_record_for_this_version_must_be_observed(tmp_path):
    recs = known_records.load_file(write(tmp_path, "double_reference.toml", VERSIONED))
    a = D.ReferenceAdapter()
    corpus = engine.build_corpus(5, 60, [a.capabilities()], curated=False)
    t = engine.Target(run_id=a.name, adapter=a, runner=engine.InProcessRunner(a), env={"version": "1.8.0"})
    run, _ = engine.run_adapter(t, corpus, records=recs, shrink_rounds=0)
    assert set(run.unmatched_known) == {"sums-instead-of-batchmean", "old-version-only"}
