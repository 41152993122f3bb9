"""The interop dashboard's model (klconform/report/dashboard.py) on planted data: every cell
state from a hand-made results file whose verdicts say what the expected state is, the
scores computed here by hand, baseline columns, the history and its links to klconform
diff's sentences, and "nothing to show".

Which clauses a planted case reaches is SPEC.md's: a zero target entry is KL-ZERO-1, a
positive target against a zero prediction KL-ZERO-2 (and KL-SPECIAL-SUM-1 in a sum), every
case KL-DEF-1 and its reduction's clause; nothing here reads them from the code under test.
"""
from __future__ import annotations

import numpy as np
import pytest

from klconform.baseline import Baseline
from klconform.case import Case
from klconform.reference.spec import clause_ids, clause_sections
from klconform.report import dashboard as D
from klconform.results import AdapterRun, RunResult, Verdict

CAPS = {"batch_axis": False, "broadcasting": True, "class_axis": False, "devices": ["cpu"],
        "dtypes": ["float32", "float64"], "gradients": [], "input_dtypes": [], "max_ndim": 8, "min_ndim": 0,
        "options": [], "pred_kinds": ["prob"], "reductions": ["sum"], "reshaped_target": False,
        "target_kinds": ["prob"], "weights": []}


def case(p, q, reduction="sum", **kw) -> Case:
    return Case(target=np.array(p, float), pred=np.array(q, float), dtype="float64", target_kind="prob",
                pred_kind="prob", reduction=reduction, grad=False, **kw)


ZERO_T = case([[0.0, 1.0]], [[0.5, 0.5]])            # p = 0: KL-ZERO-1
ZERO_Q = case([[0.5, 0.5]], [[0.0, 1.0]])            # p > 0, q = 0: KL-ZERO-2, in a sum KL-SPECIAL-SUM-1
PLAIN = case([[0.25, 0.75]], [[0.5, 0.5]])
BIG = case([[0.25, 0.25, 0.25, 0.25]] * 3, [[0.1, 0.2, 0.3, 0.4]] * 3)   # the same kind, larger


def verdict(run, c, cls="match", clauses=("KL-VERDICT-MATCH",), known=None, against="canonical"):
    return Verdict(adapter=run, case=c.digest, against=against, cls=cls, clauses=tuple(clauses), known=known)


def adapter_run(name, verdicts, caps=CAPS, version="1.0", records=None, large=()):
    return AdapterRun(adapter=name, api=f"{name}()", env={"framework": name.split(".")[0], "version": version},
                      capabilities=dict(caps), verdicts=list(verdicts), known_records=records or {},
                      large=[{"digest": d} for d in large])


def results(runs, cases, digest="corpus-a", extra_cases=None) -> RunResult:
    js = {c.digest: c.to_json() for c in cases}
    js.update(extra_cases or {})
    return RunResult(schema_version=1, seed=0, hypothesis={}, corpus_digest=digest, cases=js, runs=list(runs))


def cells(board, row_id, col_id=None):
    row = next(r for r in board.rows if r.id == row_id)
    return row.cells[col_id or board.columns[0].id]


REC = {"rec-zero2": {"citation": "https://example.org/issue/1", "when": "q = 0", "cls": "special_value"}}


@pytest.fixture(scope="module")
def board():
    n = "fw.api"
    vs = [verdict(n, ZERO_T),
          verdict(n, ZERO_Q, "special_value", ("KL-ZERO-2", "KL-VERDICT-SPECIAL"), known="rec-zero2"),
          verdict(n, PLAIN, "precision", ("KL-BOUND-2", "KL-BOUND-4", "KL-VERDICT-PRECISION")),
          verdict(n, BIG, "precision", ("KL-BOUND-2", "KL-BOUND-4", "KL-VERDICT-PRECISION")),
          # documented comparisons never enter the matrix
          verdict(n, ZERO_T, "semantic", ("KL-ARG-1",), against="documented")]
    return D.build([("r.json", results([adapter_run(n, vs, records=REC)], [ZERO_T, ZERO_Q, PLAIN, BIG]))])


def test_every_state_of_a_results_column(board):
    assert cells(board, "KL-ZERO-1").state == D.CONFORMS            # reached (p = 0), matched
    z2 = cells(board, "KL-ZERO-2")
    assert (z2.state, z2.cases, z2.recorded, z2.unexpected, z2.records) == (D.RECORDED, 1, 1, 0, ["rec-zero2"])
    b2 = cells(board, "KL-BOUND-2")
    assert (b2.state, b2.cases, b2.unexpected) == (D.UNEXPECTED, 4, 2)
    assert b2.smallest == PLAIN.digest                               # the smaller of the two
    assert cells(board, "KL-RED-BATCHMEAN").state == D.NOT_APPLICABLE   # the API declares only "sum"
    assert cells(board, "KL-EMPTY-1").state == D.NOT_COVERED         # sums are declared; no empty case
    assert cells(board, "KL-INF-1").state == D.NOT_COVERED           # no infinite entry
    assert cells(board, "KL-ARG-1").state == D.CONFORMS              # the documented verdict is not counted
    assert cells(board, "KL-RED-SUM").cases == 4


def test_every_spec_clause_is_a_row_in_spec_order(board):
    assert [r.id for r in board.rows if r.type == "clause"] == list(clause_ids())
    assert [c for _, _, ids in clause_sections() for c in ids] == list(clause_ids())
    assert [s["number"] for s in board.sections] == [str(i) for i in range(1, len(board.sections) + 1)]


def test_case_kinds(board):
    zt = cells(board, "zero-target")
    assert (zt.state, zt.cases) == (D.CONFORMS, 1)
    zq = cells(board, "zero-pred")
    assert (zq.state, zq.cases, zq.recorded) == (D.RECORDED, 1, 1)
    assert cells(board, "float64").state == D.UNEXPECTED             # the precision verdicts
    assert cells(board, "float16").state == D.NOT_APPLICABLE         # not among the declared dtypes
    assert cells(board, "reduction=batchmean").state == D.NOT_APPLICABLE
    assert cells(board, "empty").state == D.NOT_COVERED


def test_a_recorded_and_an_unexpected_case_make_the_cell_unexpected():
    n = "fw.api"
    vs = [verdict(n, ZERO_Q, "special_value", ("KL-ZERO-2",), known="rec-zero2"),
          verdict(n, case([[1.0, 0.0]], [[0.0, 1.0]]), "special_value", ("KL-ZERO-2",))]
    b = D.build([("r.json", results([adapter_run(n, vs, records=REC)], [ZERO_Q, case([[1.0, 0.0]], [[0.0, 1.0]])]))])
    c = cells(b, "KL-ZERO-2")
    assert (c.state, c.recorded, c.unexpected) == (D.UNEXPECTED, 1, 1)
    assert c.smallest == case([[1.0, 0.0]], [[0.0, 1.0]]).digest    # the unexpected one is shown


def test_a_cited_clause_differs_even_where_not_applicable():
    n = "fw.api"
    vs = [verdict(n, PLAIN, "semantic", ("KL-RED-SUM", "KL-RED-MEAN", "KL-VERDICT-SEMANTIC"), known="r")]
    b = D.build([("r.json", results([adapter_run(n, vs, records={"r": {}})], [PLAIN]))])
    assert cells(b, "KL-RED-MEAN").state == D.RECORDED   # "mean" is not declared, but the verdict names it


def test_only_the_frozen_corpus_counts():
    """Verdicts on a large case, on a shrunk or other case outside the corpus, and
    nondeterministic verdicts are left out; a translated case counts as its corpus case."""
    n = "fw.api"
    sent = ZERO_T.replace(target=np.array([[0.0, 1.0]]), pred=np.log(np.array([[0.5, 0.5]])), pred_kind="logprob")
    large = case([[0.5, 0.5]], [[0.0, 1.0]], label="large/x")
    outside = case([[0.7, 0.3]], [[0.0, 1.0]])
    extra = {sent.digest: dict(sent.to_json(), canonical=ZERO_T.digest, conversions=[]),
             large.digest: large.to_json(),
             outside.digest: dict(outside.to_json(), canonical="not-in-the-corpus", conversions=[])}
    vs = [verdict(n, sent, "special_value", ("KL-ZERO-1", "KL-VERDICT-SPECIAL")),
          verdict(n, large, "special_value", ("KL-ZERO-2",)),
          verdict(n, outside, "special_value", ("KL-INF-1",)),
          verdict(n, PLAIN, "nondeterministic", ("KL-VERDICT-NONDETERMINISTIC",))]
    caps = dict(CAPS, pred_kinds=["prob", "logprob"])
    b = D.build([("r.json", results([adapter_run(n, vs, caps, large=[large.digest])], [ZERO_T, PLAIN],
                                    extra_cases=extra))])
    assert cells(b, "KL-ZERO-1").state == D.UNEXPECTED
    assert cells(b, "KL-ZERO-2").state == D.NOT_COVERED
    assert cells(b, "KL-INF-1").state == D.NOT_COVERED
    assert cells(b, "KL-VERDICT-NONDETERMINISTIC").state == D.NOT_COVERED
    assert b.columns[0].compared == 1


def test_applicability_comes_from_the_recorded_capabilities():
    caps = dict(CAPS, reductions=["none"], gradients=[], weights=["scalar"], target_kinds=["prob"])
    assert not D.applicable("KL-RED-SUM", caps) and D.applicable("KL-RED-NONE", caps)
    assert not D.applicable("KL-SPECIAL-SUM-1", caps)        # nothing is summed
    assert not D.applicable("KL-GRAD-ZERO", caps)            # no gradient
    assert D.applicable("KL-WEIGHT-SCALAR", caps) and not D.applicable("KL-WEIGHT-ELEMENT", caps)
    assert not D.applicable("KL-TARGET-LOGPROB", caps) and D.applicable("KL-ZERO-1", caps)
    grads = dict(caps, gradients=["pred"], pred_kinds=["logits"])
    assert D.applicable("KL-GRAD-PRED-LOGITS", grads) and not D.applicable("KL-GRAD-TARGET-PROB", grads)


def test_scores_by_hand():
    """Two columns on one corpus: a clause's score is the share of the columns compared on
    it that conform; a column's the share of its compared clauses it conforms to."""
    a = [verdict("a.x", ZERO_T), verdict("a.x", ZERO_Q), verdict("a.x", PLAIN)]
    b = [verdict("b.x", ZERO_T, "special_value", ("KL-ZERO-1",), known="r"), verdict("b.x", ZERO_Q),
         verdict("b.x", PLAIN)]
    res = results([adapter_run("a.x", a), adapter_run("b.x", b, records={"r": {}})], [ZERO_T, ZERO_Q, PLAIN])
    board = D.build([("r.json", res)])
    [s] = board.scores
    assert s["corpus_digest"] == "corpus-a"
    assert s["clauses"]["KL-ZERO-1"] == {"score": 0.5, "conforming": 1, "compared": 2}
    assert s["clauses"]["KL-ZERO-2"]["score"] == 1.0
    assert s["clauses"]["KL-RED-BATCHMEAN"] == {"score": None, "conforming": 0, "compared": 0}   # n/a on both
    # by hand from the states: a conforms wherever it is compared, b differs on one clause
    for col, wrong in (("a.x", 0), ("b.x", 1)):
        cid = next(c.id for c in board.columns if c.run == col)
        states = [r.cells[cid].state for r in board.rows if r.type == "clause"]
        compared = sum(st in (D.CONFORMS, D.RECORDED, D.UNEXPECTED) for st in states)
        assert s["column_scores"][cid]["compared"] == compared
        assert s["column_scores"][cid]["score"] == pytest.approx((compared - wrong) / compared)
    two = next(sec for sec in board.sections if sec["number"] == "2")
    vals = [s["clauses"][c]["score"] for c in two["clauses"] if s["clauses"][c]["score"] is not None]
    assert s["sections"]["2"]["score"] == pytest.approx(sum(vals) / len(vals))
    assert 0.5 in vals
    secs = [v["score"] for v in s["sections"].values() if v["score"] is not None]
    assert s["interop"] == pytest.approx(sum(secs) / len(secs))


def test_corpus_digests_are_never_mixed_in_a_score():
    r1 = results([adapter_run("a.x", [verdict("a.x", ZERO_T)])], [ZERO_T], digest="corpus-a")
    r2 = results([adapter_run("b.x", [verdict("b.x", ZERO_T, "special_value", ("KL-ZERO-1",))])], [ZERO_T],
                 digest="corpus-b")
    board = D.build([("1.json", r1), ("2.json", r2)])
    assert [s["corpus_digest"] for s in board.scores] == ["corpus-a", "corpus-b"]
    assert [s["clauses"]["KL-ZERO-1"]["score"] for s in board.scores] == [1.0, 0.0]
    assert all(len(s["columns"]) == 1 for s in board.scores)


def baseline(adapter, version, entries, digest="corpus-a", run=None) -> Baseline:
    header = {"kind": "klconform-baseline", "schema": 1, "adapter": adapter, "run_id": run or adapter,
              "api": f"{adapter}()", "framework": adapter.split(".")[0], "version": version,
              "corpus_digest": digest, "fingerprint": {}}
    return Baseline(header, {e["case"]: e for e in entries})


def entry(digest, tags, verdict="match", status="ok"):
    return {"case": digest, "tags": list(tags), "status": status, "verdict": verdict}


def test_baseline_columns_say_what_they_lack():
    res = results([adapter_run("a.x", [verdict("a.x", ZERO_T)])], [ZERO_T])
    old = baseline("b.y", "1.0", [entry("d1", ["float32", "zero-target"]),
                                  entry("d2", ["float32", "grad"], "gradient"),
                                  {"case": "d3", "tags": ["float32"], "status": "ok"}])   # shrunk: no verdict
    board = D.build([("r.json", res)], [("b.jsonl", old)])
    col = next(c for c in board.columns if c.run == "b.y")
    assert (col.source, col.detail, col.compared) == ("baseline", "verdict classes", 2)
    assert "no SPEC clause ids" in col.lacks
    assert cells(board, "KL-ZERO-1", col.id).state == D.NO_DETAIL
    assert cells(board, "KL-VERDICT-GRADIENT", col.id).state == D.DIFFERS
    assert cells(board, "KL-VERDICT-PRECISION", col.id).state == D.CONFORMS
    assert cells(board, "zero-target", col.id).state == D.CONFORMS
    grad = cells(board, "grad", col.id)
    assert (grad.state, grad.cases, grad.differs) == (D.DIFFERS, 1, 1)
    assert cells(board, "float16", col.id).state == D.NO_CASE        # capabilities unknown
    assert all(s["columns"] == [c.id for c in board.columns if c.source == "results"] for s in board.scores)


def test_history_links_each_moved_row_to_the_diff_sentence():
    res = results([adapter_run("a.x", [verdict("a.x", ZERO_T)])], [ZERO_T])
    old = baseline("b.y", "1.0", [entry("d1", ["float32", "zero-target"]), entry("d2", ["float32"])])
    new = baseline("b.y", "1.1", [entry("d1", ["float32", "zero-target"], "error", "error:ValueError"),
                                  entry("d2", ["float32"])])
    elsewhere = baseline("b.y", "2.0", [entry("d1", ["float32"])], digest="corpus-z")
    board = D.build([("r.json", res)], [("new.jsonl", new), ("old.jsonl", old), ("z.jsonl", elsewhere)])
    [group] = [g for g in board.history["groups"] if g["corpus_digest"] == "corpus-a"]
    [step] = group["steps"]
    assert board.column(step["old"]).version == "1.0" and board.column(step["new"]).version == "1.1"
    [change] = [c for c in step["changes"] if c["is_change"]]
    assert change["sentence"].startswith("new error (ValueError)") and change["cases"] == ["d1"]
    assert step["moved"]["case_kind:zero-target"] == [change["id"]]
    assert "case_kind:float32" in step["moved"]
    assert "case_kind:float64" not in step["moved"]
    # 2.0 is on another corpus: the matrix shows it (its own adapter-version), the history never pairs it
    assert all(board.column(s["new"]).version != "2.0" for g in board.history["groups"] for s in g["steps"])


def test_a_version_on_two_corpora_is_one_matrix_column():
    res = results([adapter_run("a.x", [verdict("a.x", ZERO_T)], version="1.0")], [ZERO_T])
    same = baseline("a.x", "1.0", [entry("d1", ["float64"])], digest="corpus-old")
    board = D.build([("r.json", res)], [("old.jsonl", same)])
    assert [(c.source, c.in_matrix) for c in board.columns] == [("results", True), ("baseline", False)]


def test_versions_only_on_different_corpora_are_not_compared():
    res = results([adapter_run("a.x", [verdict("a.x", ZERO_T)], version="1.0")], [ZERO_T])
    newer = baseline("a.x", "2.0", [entry("d1", ["float64"])], digest="corpus-old")
    board = D.build([("r.json", res)], [("new.jsonl", newer)])
    assert board.history["groups"] == []
    assert board.history["not_compared"] == ["a:x: 1.0 on corpus corpus-a, 2.0 on corpus corpus-old"]


def test_nothing_to_show():
    with pytest.raises(D.NothingToShow):
        D.build([], [("b.jsonl", baseline("b.y", "1.0", [entry("d1", ["float32"])]))])
    missing = AdapterRun(adapter="a.x", api="a()", env={}, status="missing", reason="no module")
    with pytest.raises(D.NothingToShow):
        D.build([("r.json", results([missing], [ZERO_T]))])


def test_csv_has_one_line_per_cell(board):
    lines = D.to_csv(board).splitlines()
    assert lines[0].split(",") == list(D.CSV_FIELDS)
    assert len(lines) == 1 + len(board.rows) * len(board.columns)
