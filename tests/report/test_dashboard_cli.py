"""``klconform dashboard``: exit statuses (bad input one line and 2, nothing to show 3), the
three files written together, and their schema (docs/dashboard.md)."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from klconform import cli, resultsio
from klconform.reference.spec import clause_ids
from klconform.report import dashboard as D
from klconform.results import AdapterRun

BASELINES = Path(__file__).resolve().parents[2] / "klconform" / "data" / "baselines"


@pytest.fixture(scope="module")
def results_file(recorded, tmp_path_factory):
    path = tmp_path_factory.mktemp("dash") / "results.json"
    resultsio.write_results(recorded, path)
    return path


def run(argv, capsys):
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_writes_the_page_the_json_and_the_csv(results_file, recorded, tmp_path, capsys):
    out = tmp_path / "site"
    rc, stdout, err = run(["dashboard", str(results_file), "--out", str(out), "--no-baselines"], capsys)
    assert rc == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["dashboard.csv", "dashboard.json", "index.html"]
    assert "adapter-versions" in stdout and "interop" in stdout
    doc = json.loads((out / "dashboard.json").read_text())
    ran = [r.adapter for r in recorded.runs if r.status == "ok"]
    check_schema(doc, ran)
    rows = list(csv.DictReader(io.StringIO((out / "dashboard.csv").read_text())))
    assert len(rows) == len(doc["rows"]) * len(doc["columns"])
    by = {(r["row"], r["column"]): r for r in rows}
    for row in doc["rows"]:
        for cid, cell in row["cells"].items():
            line = by[(row["id"], cid)]
            assert (line["state"], int(line["cases"]), int(line["differs_recorded"]), int(line["differs_unexpected"])) \
                == (cell["state"], cell["cases"], cell["recorded"], cell["unexpected"])
    page = (out / "index.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page
    assert all(f'id="clause-{c}"' in page for c in clause_ids())


def check_schema(doc, runs):
    """The documented schema (docs/dashboard.md), field by field."""
    assert doc["kind"] == "klconform-dashboard" and doc["schema"] == 1
    assert set(doc["states"]) == {D.CONFORMS, D.RECORDED, D.UNEXPECTED, D.DIFFERS, D.NOT_APPLICABLE,
                                  D.NOT_COVERED, D.NO_CASE, D.NO_DETAIL}
    assert {"kind", "schema", "states", "inputs", "reference", "sections", "columns", "rows", "scores", "history",
            "records", "notes"} == set(doc)
    for s in doc["sections"]:
        assert set(s) == {"number", "title", "clauses"}
    col_keys = {"id", "run", "adapter", "api", "framework", "family", "line", "version", "corpus_digest", "source",
                "origin", "detail", "lacks", "in_matrix", "compared"}
    assert all(set(c) == col_keys for c in doc["columns"])
    assert sorted(c["run"] for c in doc["columns"] if c["source"] == "results") == sorted(runs)
    ids = [c["id"] for c in doc["columns"]]
    assert [r["id"] for r in doc["rows"] if r["type"] == "clause"] == list(clause_ids())
    assert [r["id"] for r in doc["rows"] if r["type"] == "case_kind"] == [k for k, _ in D.KIND_ROWS]
    for r in doc["rows"]:
        assert set(r) == {"type", "id", "title", "section", "cells"} and list(r["cells"]) == ids
        for cell in r["cells"].values():
            assert set(cell) == {"state", "cases", "recorded", "unexpected", "differs", "records", "smallest"}
            assert cell["state"] in doc["states"]
    for s in doc["scores"]:
        assert set(s) == {"corpus_digest", "columns", "clauses", "sections", "column_scores", "interop"}
        assert set(s["clauses"]) == set(clause_ids())
        for v in s["clauses"].values():
            assert set(v) == {"score", "conforming", "compared"}
            assert v["score"] is None or 0 <= v["score"] <= 1
    assert set(doc["history"]) == {"groups", "not_compared"}


@pytest.mark.parametrize("make,needle", [
    (lambda d: d / "missing.json", "no such results file"),
    (lambda d: (d / "x.json").write_text("{}") and d / "x.json", "schema_version"),
    (lambda d: (d / "x.jsonl").write_text("{}\n") and d / "x.jsonl", "not a klconform baseline"),
    (lambda d: (d / "empty").mkdir() or d / "empty", "without baseline files"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(make, needle, tmp_path, capsys):
    bad = make(tmp_path)
    out = tmp_path / "site"
    rc, _, err = run(["dashboard", str(bad), "--out", str(out)], capsys)
    assert rc == cli.EXIT_USAGE
    assert needle in one_line(err)
    assert not out.exists()


def test_nothing_to_show_exits_3(recorded, tmp_path, capsys):
    out = tmp_path / "site"
    # baselines alone: no clause detail
    rc, _, err = run(["dashboard", str(BASELINES), "--out", str(out), "--no-baselines"], capsys)
    assert rc == cli.EXIT_NOT_CHECKED and "nothing compared" in one_line(err)
    # results whose adapters did not run
    import dataclasses
    empty = dataclasses.replace(recorded, runs=[AdapterRun(adapter="x.y", api="x", env={}, status="missing",
                                                           reason="no module named x")])
    path = tmp_path / "results.json"
    resultsio.write_results(empty, path)
    rc, _, err = run(["dashboard", str(path), "--out", str(out)], capsys)
    assert rc == cli.EXIT_NOT_CHECKED and "no adapter run" in one_line(err)
    assert not out.exists()


def test_an_unwritable_output_is_exit_2(results_file, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    rc, _, err = run(["dashboard", str(results_file), "--out", str(blocker), "--no-baselines"], capsys)
    assert rc == cli.EXIT_USAGE and "not writable" in one_line(err)
