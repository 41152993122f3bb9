"""Known-discrepancy files: validation with one-line errors, matching, strict CI semantics."""
import sys

import numpy as np
import pytest

import kl_doubles as D
from klconform import engine, explore, records as known_records
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
        "when": "w", "citation": "c", "explained_by": "sum*",
        "match": {"dtype": ["float16", "bfloat16"], "label": "zero_*"}}]}, "f")[0]
    c = Case(target=np.array([[0.0, 1.0]]), pred=np.array([[0.5, 0.5]]), pred_kind="prob",
             dtype="float16", label="zero_target/2d")
    v = Verdict(adapter="x", case=c.digest, against="canonical", cls="semantic", clauses=("KL-RED-SUM",),
                explained_by="sum")
    assert known_records.record_matches(rec, v, facts(c, v))
    assert not known_records.record_matches(rec, v, facts(c.replace(dtype="float32"), v))
    v2 = Verdict(adapter="x", case=c.digest, against="documented", cls="semantic", clauses=(), explained_by="sum")
    assert not known_records.record_matches(rec, v2, facts(c, v2))


def _run(adapter, records):
    corpus = explore.build_corpus(5, 60, [adapter.capabilities()], curated=False)
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
    corpus = explore.build_corpus(5, 60, [a.capabilities()], curated=False)
    t = engine.Target(run_id=a.name, adapter=a, runner=engine.InProcessRunner(a), env={"version": "1.8.0"})
    run, _ = engine.run_adapter(t, corpus, records=recs, shrink_rounds=0)
    assert set(run.unmatched_known) == {"sums-instead-of-batchmean", "old-version-only"}


def test_adapters_name_their_record_files(tmp_path, monkeypatch):
    """Adapter.known_records: a package resource, a path relative to the adapter's module,
    the shared torch file (both torch APIs read the very same records), a missing declared
    file is an error, and an adapter without the attribute reads klconform/known/<name>."""
    from klconform.adapters.base import Adapter
    from klconform.adapters.torch_kl_div import TorchKLDiv, TorchKLDivLoss
    torch_files = known_records.sources_for(TorchKLDiv)
    assert torch_files == known_records.sources_for(TorchKLDivLoss)
    assert [p.name for p in torch_files] == ["torch.toml"] and torch_files[0].is_file()
    assert [r.id for r in known_records.load_for(TorchKLDiv)] == [r.id for r in known_records.load_for(TorchKLDivLoss)]
    assert known_records.load_for(TorchKLDiv)

    (tmp_path / "mine.toml").write_text(
        '[[discrepancy]]\nid = "mine-1"\nclass = "semantic"\nagainst = "canonical"\nclauses = ["KL-RED-MEAN"]\nexplained_by = "sum*"\n'
        'when = "w"\nmatch = { reduction = "mean" }\ncitation = "https://example.invalid"\n')

    class Relative(Adapter):
        name = "inhouse.relative"
        known_records = ("mine.toml",)
    Relative.__module__ = "fake_inhouse_module"
    fake = type(sys)("fake_inhouse_module")
    fake.__file__ = str(tmp_path / "adapter.py")
    monkeypatch.setitem(sys.modules, "fake_inhouse_module", fake)
    assert [r.id for r in known_records.load_for(Relative)] == ["mine-1"]

    class Missing(Adapter):
        name = "inhouse.missing"
        known_records = (str(tmp_path / "nope.toml"),)
    with pytest.raises(known_records.KnownError, match="nope.toml does not exist"):
        known_records.load_for(Missing)

    class Twice(Adapter):
        name = "inhouse.twice"
        known_records = (str(tmp_path / "mine.toml"), str(tmp_path / "mine.toml"))
    with pytest.raises(known_records.KnownError, match="mine-1"):
        known_records.load_for(Twice)

    class Default(Adapter):
        name = "mxnet.KLDivLoss"
    assert known_records.sources_for(Default) == [known_records.file_for("mxnet.KLDivLoss")]
    assert known_records.load_for(Default)
