"""The committed dashboard (reports/dashboard/) of the committed example run: it shows every
adapter-version and every SPEC clause, its CSV says what its JSON says, and its scores are
computed again here from reports/example/results.json.gz alone -- read as plain JSON, with
the definition of docs/dashboard.md restated below and the float64 reference naming the
clauses each case reaches (about 20 s: every compared case is evaluated once).

Regenerate the dashboard (docs/dashboard.md) when the example, SPEC.md or the baselines
change."""
from __future__ import annotations

import csv
import gzip
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from klconform.case import Case
from klconform.reference import evaluate
from klconform.reference.family import Point
from klconform.reference.spec import clause_ids, clause_sections
from klconform.reference.variants import UndefinedCase

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "reports" / "example" / "results.json.gz"
SITE = ROOT / "reports" / "dashboard"
REGENERATE = "regenerate reports/dashboard/ (docs/dashboard.md)"


@pytest.fixture(scope="module")
def board():
    return json.loads((SITE / "dashboard.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def example():
    return json.loads(gzip.decompress(EXAMPLE.read_bytes()))


def test_every_adapter_version_and_every_clause_is_shown(board, example):
    matrix = [c for c in board["columns"] if c["in_matrix"]]
    shown = {(c["run"], c["version"]) for c in matrix}
    ran = {(r["adapter"], r["env"]["version"]) for r in example["runs"] if r["status"] == "ok"}
    assert ran <= shown, REGENERATE
    baselines = set()
    for f in (ROOT / "klconform" / "data" / "baselines").glob("*.jsonl"):
        head = json.loads(f.read_text(encoding="utf-8").splitlines()[0])
        baselines.add((head["run_id"], head["version"]))
    assert baselines <= shown, REGENERATE
    assert len(shown) == len(matrix)
    assert [r["id"] for r in board["rows"] if r["type"] == "clause"] == list(clause_ids()), REGENERATE
    page = (SITE / "index.html").read_text(encoding="utf-8")
    assert all(f'id="clause-{c}"' in page for c in clause_ids())
    assert board["scores"][0]["corpus_digest"] == example["corpus_digest"]


def test_the_csv_is_the_json(board):
    rows = list(csv.DictReader((SITE / "dashboard.csv").open(encoding="utf-8")))
    assert len(rows) == len(board["rows"]) * len(board["columns"])
    want = {(r["id"], cid): c["state"] for r in board["rows"] for cid, c in r["cells"].items()}
    assert {(r["row"], r["column"]): r["state"] for r in rows} == want


# ----------------------------------------------------------------------------- the definition, restated
VERDICT_CLASS_CLAUSES = {"match": "KL-VERDICT-MATCH", "precision": "KL-VERDICT-PRECISION",
                         "semantic": "KL-VERDICT-SEMANTIC", "special_value": "KL-VERDICT-SPECIAL",
                         "shape": "KL-VERDICT-SHAPE", "dtype": "KL-VERDICT-DTYPE", "error": "KL-VERDICT-ERROR",
                         "crash": "KL-VERDICT-CRASH", "timeout": "KL-VERDICT-TIMEOUT"}
# a never-canonical family member is at stake where its canonical counterpart is
AT_STAKE = [("KL-ARG-1", "KL-ARG-2 KL-ARG-ORDER"), ("KL-DEF-2", "KL-MISREAD-1 KL-GEN-1"), ("KL-ZERO-1", "KL-ZERO-3"),
            ("KL-WEIGHT-ELEMENT", "KL-WEIGHT-DIST"), ("KL-WEIGHT-DIVISOR", "KL-WEIGHT-SUMDIV"),
            ("KL-EPS-NONE", "KL-EPS-TARGET-LOG KL-EPS-CLIP"), ("KL-FAM-1", "KL-FAM-2"),
            ("KL-ZERO-1 KL-ZERO-2 KL-INF-1", "KL-GEN-2"), ("KL-INVALID-1", "KL-NEG-INF KL-NEG-ZERO"),
            ("KL-DEF-1", "KL-NORM-1"), ("KL-ZERO-1 KL-INF-1 KL-INVALID-1", "KL-NORM-2"),
            ("KL-GRAD-1", "KL-GRAD-EPS KL-GRAD-GEN KL-GRAD-NORM KL-VERDICT-GRADIENT"), ("KL-BOUND-2", "KL-BOUND-6")]


def reaches(j) -> set[str]:
    c = Case.from_json(j)
    try:
        with np.errstate(all="ignore"):
            e = evaluate(c, Point(reduction=c.reduction))
        got = set(e.clauses)
        v, vd = np.asarray(e.value, float), np.asarray(e.value_in_dtype, float)
        if np.any(np.isfinite(v) & ~np.isfinite(vd)):
            got.add("KL-DTYPE-3")
    except UndefinedCase as exc:
        got = {exc.clause}
    if j.get("target_dtype") not in (None, j["dtype"]) or j.get("pred_dtype") not in (None, j["dtype"]):
        got.add("KL-DTYPE-4")
    if j.get("target_sent_shape") is not None:
        got.add("KL-SHAPE-3")
    for named, stake in AT_STAKE:
        if got & set(named.split()):
            got |= set(stake.split())
    return got | set(VERDICT_CLASS_CLAUSES.values())


RED = {"none": "NONE", "distribution": "DIST", "sum": "SUM", "mean": "MEAN", "batchmean": "BATCHMEAN",
       "distribution_mean": "SOBS", "sample_sum": "SAMPLE-SUM", "sample_mean": "SAMPLE-MEAN"}


def not_applicable(caps) -> set[str]:
    reds, grads, w = set(caps["reductions"]), set(caps["gradients"]), set(caps["weights"])
    dividing = reds & {"mean", "batchmean", "distribution_mean", "sample_mean"}
    out = {f"KL-RED-{v}" for k, v in RED.items() if k not in reds}
    out |= {f"KL-TARGET-{k.upper()}" for k in ("prob", "logprob") if k not in caps["target_kinds"]}
    out |= {f"KL-INPUT-{k.upper()}" for k in ("prob", "logprob", "logits") if k not in caps["pred_kinds"]}
    for c in clause_ids():
        if c.startswith("KL-GRAD-PRED-"):
            ok = "pred" in grads and c.rsplit("-", 1)[1].lower() in caps["pred_kinds"]
        elif c.startswith("KL-GRAD-TARGET-"):
            ok = "target" in grads and c.rsplit("-", 1)[1].lower() in caps["target_kinds"]
        elif c.startswith("KL-GRAD-") or c in ("KL-BOUND-3", "KL-VERDICT-GRADIENT"):
            ok = bool(grads)
        elif c.startswith("KL-DISTILL-"):
            ok = "logits" in caps["target_kinds"]
        else:
            ok = {"KL-RED-0D": caps["min_ndim"] == 0 and bool(reds & {"distribution", "distribution_mean",
                                                                        "sample_sum", "sample_mean"}),
                  "KL-SPECIAL-SUM-1": bool(reds - {"none"}), "KL-EMPTY-1": bool(reds - {"none"}),
                  "KL-EMPTY-2": bool(dividing), "KL-WEIGHT-SCALAR": "scalar" in w,
                  "KL-WEIGHT-SHAPE": "sample" in w, "KL-WEIGHT-ELEMENT": "sample" in w, "KL-WEIGHT-DIST": "sample" in w,
                  "KL-WEIGHT-DIVISOR": bool(w) and bool(dividing),
                  "KL-WEIGHT-SUMDIV": "sample" in w and bool(reds & {"mean", "distribution_mean"}),
                  "KL-DTYPE-4": bool(caps["input_dtypes"]), "KL-SHAPE-3": bool(caps["reshaped_target"])}.get(c, True)
        if not ok:
            out.add(c)
    return out


def independent_scores(doc):
    cases = doc["cases"]
    large = {e["digest"] for r in doc["runs"] for e in r.get("large", [])}
    corpus = {d for d, j in cases.items() if "canonical" not in j and j.get("recipe") is None and d not in large}
    reach_of: dict[str, set[str]] = {}
    states: dict[str, dict[str, str]] = {}     # column -> clause -> "ok" | "differs"
    for r in doc["runs"]:
        if r["status"] != "ok":
            continue
        compared, differs = set(), set()
        for v in r["verdicts"]:
            j = cases[v["case"]]
            if v["against"] != "canonical" or v["cls"] == "nondeterministic" or j.get("recipe") is not None \
                    or v["case"] in large or not (v["case"] in corpus or j.get("canonical") in corpus):
                continue
            compared.add(v["case"])
            if v["cls"] != "match":
                differs |= set(v["clauses"])
        reached = set(differs)
        for d in compared:
            if d not in reach_of:
                reach_of[d] = reaches(cases[d])
            reached |= reach_of[d]
        na = not_applicable(r["capabilities"])
        states[f'{r["adapter"]} {r["env"]["version"]} {doc["corpus_digest"]}'] = {
            c: "differs" if c in differs else None if c in na or c not in reached else "ok" for c in clause_ids()}
    per_clause = {}
    for c in clause_ids():
        got = [s[c] for s in states.values() if s[c] is not None]
        per_clause[c] = (got.count("ok") / len(got)) if got else None
    per_column = {}
    for col, s in states.items():
        got = [x for x in s.values() if x is not None]
        per_column[col] = got.count("ok") / len(got)
    per_section = {}
    for number, _, ids in clause_sections():
        vals = [per_clause[c] for c in ids if per_clause[c] is not None]
        per_section[number] = sum(vals) / len(vals) if vals else None
    secs = [v for v in per_section.values() if v is not None]
    return per_clause, per_column, per_section, sum(secs) / len(secs)


def test_scores_are_reproduced_from_the_results_alone(board, example):
    per_clause, per_column, per_section, interop = independent_scores(example)
    [score] = [s for s in board["scores"] if s["corpus_digest"] == example["corpus_digest"]]
    assert set(score["columns"]) == set(per_column), REGENERATE
    for c, want in per_clause.items():
        assert score["clauses"][c]["score"] == pytest.approx(want), (c, REGENERATE)
    for col, want in per_column.items():
        assert score["column_scores"][col]["score"] == pytest.approx(want), (col, REGENERATE)
    for n, want in per_section.items():
        assert score["sections"][n]["score"] == pytest.approx(want), (n, REGENERATE)
    assert score["interop"] == pytest.approx(interop)
