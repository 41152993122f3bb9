"""results.json: schema-valid, deterministic bytes, atomic writes, one-line read errors."""
from __future__ import annotations

import json
import os

import jsonschema
import pytest

from klconform import resultsio
from klconform.results import RunResult


def test_schema_is_a_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(resultsio.schema())


def test_round_trip_and_schema(recorded, tmp_path):
    p = tmp_path / "results.json"
    doc = resultsio.write_results(recorded, p)
    jsonschema.validate(json.loads(p.read_text()), resultsio.schema())
    back = resultsio.read_results(p)
    assert isinstance(back, RunResult)
    assert resultsio.to_document(back) == doc
    assert [r.adapter for r in back.runs] == ["double.canonical", "double.target_eps", "double.swapped_sum"]


def test_same_result_same_bytes_apart_from_timing(recorded, tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    resultsio.write_results(recorded, a)
    recorded_copy = resultsio.read_results(a)
    recorded_copy.elapsed_s = 12345.0
    recorded_copy.started_at = "2000-01-01T00:00:00Z"
    recorded_copy.runs[0].elapsed_s = 99.0
    resultsio.write_results(recorded_copy, b)
    assert a.read_bytes() != b.read_bytes()
    da, db = (resultsio.strip_timing(json.loads(p.read_text())) for p in (a, b))
    assert da == db
    text = a.read_text()
    assert text == resultsio.dumps(json.loads(text))   # canonical: sorted keys, compact


def test_nan_is_never_a_json_literal(recorded, tmp_path):
    p = tmp_path / "r.json"
    resultsio.write_results(recorded, p)
    json.loads(p.read_text(), parse_constant=lambda c: pytest.fail(f"literal {c} in results.json"))


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    p = tmp_path / "report.md"
    p.write_text("previous report")

    def boom(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        resultsio.atomic_write_text(p, "new report")
    assert p.read_text() == "previous report"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["report.md"]   # no temp file left


def test_atomic_write_gives_ordinary_permissions(tmp_path):
    p = tmp_path / "report.md"
    resultsio.atomic_write_text(p, "x")
    mask = os.umask(0)
    os.umask(mask)
    assert p.stat().st_mode & 0o777 == 0o666 & ~mask


def one_line_error(path) -> str:
    with pytest.raises(resultsio.ResultsError) as info:
        resultsio.read_results(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_read_errors_are_one_line(recorded, tmp_path):
    assert "no such results file" in one_line_error(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert "not valid JSON" in one_line_error(bad)
    arr = tmp_path / "list.json"
    arr.write_text("[]")
    assert "top level is list" in one_line_error(arr)
    good = tmp_path / "good.json"
    doc = resultsio.write_results(recorded, good)
    old = dict(doc, schema_version=0)
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert "schema_version 0 is not supported" in one_line_error(tmp_path / "old.json")
    broken = json.loads(good.read_text())
    del broken["runs"][1]["verdicts"][0]["cls"]
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    assert "runs/1/verdicts/0" in one_line_error(tmp_path / "broken.json")
    items = json.loads(good.read_text())
    o = next(o for o in items["runs"][0]["outcomes"].values() if o["value"])
    o["value"]["data"][0] = "oops"
    (tmp_path / "items.json").write_text(json.dumps(items))
    assert "'oops'" in one_line_error(tmp_path / "items.json")


def test_an_interrupt_wrapped_in_a_renderer_stops_the_set_instead_of_skipping_a_file(tmp_path):
    """A signal landing while a renderer imports a module that creates a dataclass comes
    back as "RuntimeError: Error calling __set_name__" caused by the KeyboardInterrupt: the
    set stops (KeyboardInterrupt), the previous files stay, no temp file is left - not a
    renderer bug that skips one file and replaces the others."""
    for name in ("report.md", "report.html"):
        (tmp_path / name).write_text("old")

    def interrupted_render():
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise RuntimeError("Error calling __set_name__ on 'Field' instance 'by_class' in 'Cell'") from exc
    with pytest.raises(KeyboardInterrupt):
        resultsio.write_set(tmp_path, {"report.md": "new", "report.html": interrupted_render})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "report.md"]
    assert {p.read_text() for p in tmp_path.iterdir()} == {"old"}


def test_fast_validator_agrees_with_the_reference_implementation(recorded, tmp_path):
    """The compiled schema (jsonschema-rs) decides validity; pure-Python jsonschema words
    the error.  They must agree on valid documents and on every kind of violation the
    schema states (required key, type, enum, pattern, additional property)."""
    import jsonschema

    doc = json.loads(json.dumps(resultsio.write_results(recorded, tmp_path / "r.json")))
    for run in doc["runs"]:       # a few outcomes per run keep every kind of node, and the test quick
        run["outcomes"] = dict(list(run["outcomes"].items())[:3])
    reference = jsonschema.Draft202012Validator(resultsio.schema())

    def mutants():
        yield "valid", doc
        for path, change in [
            (("runs", 0, "verdicts", 0), lambda d: d.pop("cls")),
            (("runs", 0, "verdicts", 0), lambda d: d.__setitem__("cls", "nonsense-class")),
            (("runs", 0), lambda d: d.__setitem__("status", 7)),
            (("runs", 0), lambda d: d.__setitem__("unexpected_key", 1)),
            ((), lambda d: d.__setitem__("seed", "zero")),
            (("runs", 0, "verdicts", 0), lambda d: d.__setitem__("clauses", ["KL-def-1"])),
            (("cases",), lambda d: next(iter(d.values())).__setitem__("target", "not-hex!")),
        ]:
            m = json.loads(json.dumps(doc))
            node = m
            for k in path:
                node = node[k]
            change(node)
            yield f"{path}", m

    for name, d in mutants():
        assert reference.is_valid(d) == (name == "valid"), name      # each mutant breaks a rule
        assert resultsio._fast_validator().is_valid(d) == reference.is_valid(d), name


def test_snapshot_documents_made_with_a_memo_equal_the_plain_ones(recorded):
    """results.partial.json snapshots reuse each finished run's JSON (``memo``): the
    document must be the one made from scratch, snapshot after snapshot."""
    import dataclasses as dc

    memo: dict = {}
    for k in range(1, len(recorded.runs) + 1):
        part = dc.replace(recorded, runs=recorded.runs[:k], complete=False)
        assert resultsio.dumps(resultsio.to_document(part, memo)) == resultsio.dumps(resultsio.to_document(part))
    assert resultsio.to_document(recorded, memo) == resultsio.to_document(recorded)


def test_verdict_json_is_a_plain_copy_of_every_field(recorded):
    import dataclasses as dc

    v = next(v for r in recorded.runs for v in r.verdicts)
    assert v.to_json() == {**dc.asdict(v), "clauses": list(v.clauses)}
