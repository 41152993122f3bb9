"""The interop dashboard's model: every SPEC.md clause against every adapter-version, the
interop scores, and the history across framework versions (docs/dashboard.md).

Pure functions over results and baselines (no framework; the installed reference only to
name the clauses each compared case reaches, as reports re-evaluate expectations):

    board = build(results=[("results.json", RunResult)], baselines=[("x.jsonl", Baseline)])
    board.to_json()        # dashboard.json (schema: docs/dashboard.md)
    to_csv(board)          # dashboard.csv, one line per cell

**Columns** are adapter-versions: each run of a results file (full detail: SPEC clause ids
on every verdict, known-record ids, capabilities) and each baseline (verdict class per
case only).  **Rows** are the SPEC clauses, grouped by SPEC section, and case kinds
(:data:`KIND_ROWS`: zero targets, batchmean, float16, ...).

A **cell** of a results column, on the compared cases of the frozen corpus (large cases
and shrunk counterexamples left out), is

* ``unexpected`` / ``recorded``: a canonical discrepancy verdict on a case cites the clause
  among its *deciding* clauses (``Verdict.clauses``, klconform/deciding.py), and no known
  record covers one of them (``unexpected``) or every one is covered (``recorded``);
* ``not_applicable``: otherwise, when the run's recorded capabilities cannot express a
  case the clause is about (:func:`applicable`);
* ``conforms``: otherwise, when a compared case *reaches* the clause (:func:`reached`:
  every clause the reference names for the case, ``Expected.clauses``, and the few the
  reference leaves implicit);
* ``not_covered``: no compared case reaches it.

A baseline column has no clause ids and no record ids: its clause cells are
``no_detail``, except the verdict-class clauses of SPEC §10, and its case-kind cells say
``differs`` (recorded or not: unknown), ``conforms`` or ``no_case`` (no capabilities
recorded: not applicable and not covered cannot be told apart).
"""
from __future__ import annotations

import csv
import dataclasses
import io
from collections import defaultdict
from typing import Any, Iterable, Sequence

import numpy as np

from klconform.reference.family import canonical as canonical_point
from klconform.reference.spec import VERDICT_CLAUSES, clause_sections

from ..baseline import Baseline, adapter_name, case_tags, from_result, version_key
from ..case import Case
from ..deciding import REDUCTION_CLAUSE
from ..diff import TAG_WORDS, compare_baselines
from ..evaluator import make_evaluator
from ..large import QUICK, read as read_large
from ..results import AdapterRun, RunResult
from .summary import _size

SCHEMA_VERSION = 1
KIND = "klconform-dashboard"

CONFORMS, RECORDED, UNEXPECTED, DIFFERS = "conforms", "recorded", "unexpected", "differs"
NOT_APPLICABLE, NOT_COVERED, NO_CASE, NO_DETAIL = "not_applicable", "not_covered", "no_case", "no_detail"
STATE_WORDS = {
    CONFORMS: "conforms",
    RECORDED: "differs as recorded (known record, upstream link)",
    UNEXPECTED: "differs unexpectedly (no known record covers it)",
    DIFFERS: "differs (baseline: recorded or not is unknown)",
    NOT_APPLICABLE: "not applicable (the API cannot express it)",
    NOT_COVERED: "not covered (no compared case reached it)",
    NO_CASE: "no case (baseline: no capabilities recorded)",
    NO_DETAIL: "no clause detail (baseline: verdict classes only)",
}
# The states a score counts: the clause was compared on this column.
COMPARED = (CONFORMS, RECORDED, UNEXPECTED)

# A framework's earlier API under another name is an earlier version of the same line:
# Keras 2 (tf_keras) before Keras 3 (keras).
FRAMEWORK_FAMILY = {"tf_keras": "keras"}

# Case kinds, in the words of klconform.diff (tags of klconform.baseline.case_tags).
_DTYPES = ("float16", "bfloat16", "float32", "float64")
_REDUCTIONS = tuple(REDUCTION_CLAUSE)
KIND_ROWS: tuple[tuple[str, str], ...] = (
    tuple((t, TAG_WORDS[t]) for t in ("zero-target", "zero-pred", "nan-input", "inf-input", "empty", "weighted"))
    + (("grad", "gradients asked"),)
    + tuple((d, f"{d} cases") for d in _DTYPES)
    + tuple((f"reduction={r}", f"reduction {r!r}") for r in _REDUCTIONS)
    + tuple((f"target={k}", f"target as {k}") for k in ("prob", "logprob"))
    + tuple((f"pred={k}", f"prediction as {k}") for k in ("prob", "logprob", "logits"))
)

# Clauses the reference does not name for a case but that are at stake wherever one of
# the named ones is: a family member that is never canonical (SPEC §6, KL-ZERO-3,
# KL-ARG-ORDER, KL-MISREAD-1, §5's weight variants, §11) is the question "does the
# framework avoid it?" on the cases of its canonical counterpart (the pairs
# klconform.deciding.point_difference cites together); KL-ARG-2 lists each API's
# argument order (KL-ARG-1).
AT_STAKE_WITH: dict[str, tuple[str, ...]] = {
    "KL-ARG-2": ("KL-ARG-1",), "KL-ARG-ORDER": ("KL-ARG-1",), "KL-MISREAD-1": ("KL-DEF-2",),
    "KL-ZERO-3": ("KL-ZERO-1",),
    "KL-WEIGHT-DIST": ("KL-WEIGHT-ELEMENT",), "KL-WEIGHT-SUMDIV": ("KL-WEIGHT-DIVISOR",),
    "KL-EPS-TARGET-LOG": ("KL-EPS-NONE",), "KL-EPS-CLIP": ("KL-EPS-NONE",),
    "KL-FAM-2": ("KL-FAM-1",), "KL-GEN-1": ("KL-DEF-2",), "KL-GEN-2": ("KL-ZERO-1", "KL-ZERO-2", "KL-INF-1"),
    "KL-NEG-INF": ("KL-INVALID-1",), "KL-NEG-ZERO": ("KL-INVALID-1",),
    "KL-NORM-1": ("KL-DEF-1",), "KL-NORM-2": ("KL-ZERO-1", "KL-INF-1", "KL-INVALID-1"),
    "KL-GRAD-EPS": ("KL-GRAD-1",), "KL-GRAD-GEN": ("KL-GRAD-1",), "KL-GRAD-NORM": ("KL-GRAD-1",),
    "KL-BOUND-6": ("KL-BOUND-2",),
}
# SPEC §10: every compared case could get any verdict class, a gradient one where
# gradients are compared; a nondeterministic one is asked only of large cases.
_EVERY_CASE = tuple(c for k, c in VERDICT_CLAUSES.items() if k not in ("gradient", "nondeterministic"))


# ----------------------------------------------------------------------------- SPEC
def sections() -> list[dict[str, Any]]:
    """SPEC.md's numbered sections: ``{"number", "title", "clauses"}``."""
    return [{"number": n, "title": t, "clauses": list(ids)} for n, t, ids in clause_sections()]


def reached(case: Case, expected) -> frozenset[str]:
    """The SPEC clauses a compared ``case`` reaches: what the reference names for it at the
    canonical point (``expected``: its ``Expected``, or the UndefinedCase naming the clause
    that leaves it undefined), an overflow of the exact value in the case's dtype
    (KL-DTYPE-3), mixed input dtypes (KL-DTYPE-4), a target sent in another shape
    (KL-SHAPE-3), the clauses :data:`AT_STAKE_WITH` puts at stake, and SPEC §10's verdict
    classes."""
    if isinstance(expected, BaseException):
        out = {getattr(expected, "clause", None) or "KL-RED-0D"}
    else:
        out = set(expected.clauses)
        with np.errstate(invalid="ignore"):
            v, vd = np.asarray(expected.value, dtype=np.float64), np.asarray(expected.value_in_dtype, dtype=np.float64)
            if v.shape == vd.shape and np.any(np.isfinite(v) & ~np.isfinite(vd)):
                out.add("KL-DTYPE-3")
    if case.dtype_form != "same":
        out.add("KL-DTYPE-4")
    if case.target_sent_shape is not None:
        out.add("KL-SHAPE-3")
    out.update(c for c, named in AT_STAKE_WITH.items() if not out.isdisjoint(named))
    out.update(_EVERY_CASE)
    if "KL-GRAD-1" in out:
        out.add(VERDICT_CLAUSES["gradient"])
    return frozenset(out)


_DIVIDING = ("mean", "batchmean", "distribution_mean", "sample_mean")
_NEEDS_AXIS = ("distribution", "distribution_mean", "sample_sum", "sample_mean")
_CLAUSE_REDUCTION = {c: r for r, c in REDUCTION_CLAUSE.items()}
_KIND_CLAUSE = {"KL-TARGET-PROB": ("target_kinds", "prob"), "KL-TARGET-LOGPROB": ("target_kinds", "logprob"),
                "KL-INPUT-PROB": ("pred_kinds", "prob"), "KL-INPUT-LOGPROB": ("pred_kinds", "logprob"),
                "KL-INPUT-LOGITS": ("pred_kinds", "logits")}


def applicable(clause: str, caps: dict[str, Any]) -> bool:
    """Whether an adapter with the recorded capabilities ``caps`` (``AdapterRun.capabilities``)
    can be asked a case the clause is about (docs/dashboard.md lists the rules); clauses
    about values are applicable to every API."""
    reds = set(caps.get("reductions") or ())
    grads = set(caps.get("gradients") or ())
    weights = set(caps.get("weights") or ())
    if clause in _CLAUSE_REDUCTION:
        return _CLAUSE_REDUCTION[clause] in reds
    if clause in _KIND_CLAUSE:
        field, kind = _KIND_CLAUSE[clause]
        return kind in (caps.get(field) or ())
    if clause.startswith("KL-GRAD-") or clause in ("KL-BOUND-3", VERDICT_CLAUSES["gradient"]):
        parts = clause.split("-")     # KL-GRAD-<SIDE>-<ENCODING>: that side's partial, that encoding
        if len(parts) == 4 and parts[2] in ("PRED", "TARGET"):
            side = parts[2].lower()
            return side in grads and parts[3].lower() in (caps.get(f"{side}_kinds") or ())
        return bool(grads)
    if clause == "KL-RED-0D":
        return int(caps.get("min_ndim", 0)) == 0 and bool(reds & set(_NEEDS_AXIS))
    if clause in ("KL-SPECIAL-SUM-1", "KL-EMPTY-1"):      # sums of several terms
        return bool(reds - {"none"})
    if clause == "KL-EMPTY-2":
        return bool(reds & set(_DIVIDING))
    if clause == "KL-WEIGHT-SCALAR":
        return "scalar" in weights
    if clause in ("KL-WEIGHT-SHAPE", "KL-WEIGHT-ELEMENT", "KL-WEIGHT-DIST"):
        return "sample" in weights
    if clause == "KL-WEIGHT-DIVISOR":
        return bool(weights) and bool(reds & set(_DIVIDING))
    if clause == "KL-WEIGHT-SUMDIV":
        return "sample" in weights and bool(reds & {"mean", "distribution_mean"})
    if clause == "KL-DTYPE-4":
        return bool(caps.get("input_dtypes"))
    if clause == "KL-SHAPE-3":
        return bool(caps.get("reshaped_target"))
    if clause.startswith("KL-DISTILL-"):          # SPEC §12: the teacher is given as logits
        return "logits" in (caps.get("target_kinds") or ())
    return True


def kind_applicable(kind: str, caps: dict[str, Any]) -> bool:
    """Whether an adapter with ``caps`` can be sent a case of ``kind`` (a case_tags tag)."""
    key, _, value = kind.partition("=")
    if kind in _DTYPES:
        return kind in (caps.get("dtypes") or ())
    if key == "reduction":
        return value in (caps.get("reductions") or ())
    if key == "target":
        return value in (caps.get("target_kinds") or ())
    if key == "pred":
        return value in (caps.get("pred_kinds") or ())
    if kind == "weighted":
        return bool(caps.get("weights"))
    if kind == "grad":
        return bool(caps.get("gradients"))
    return True


# ----------------------------------------------------------------------------- model
@dataclasses.dataclass
class Column:
    """One adapter-version: a run of a results file, or a baseline."""

    id: str                 # "<run> <version> <corpus digest>"
    run: str                # run id, e.g. "mxnet.KLDivLoss@mxnet180"
    adapter: str            # without @env
    api: str
    framework: str
    family: str             # framework, with Keras 2 (tf_keras) under keras
    line: str               # family + API name: the versions of one line are its history
    version: str
    corpus_digest: str
    source: str             # "results" | "baseline"
    origin: str             # the input file
    detail: str             # "clauses" | "verdict classes"
    lacks: str = ""         # what a baseline column cannot say
    in_matrix: bool = True  # False: an older measurement of an adapter-version the matrix shows
    compared: int = 0       # compared corpus cases

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Cell:
    state: str
    cases: int = 0           # compared cases that reach the row
    recorded: int = 0        # of them: cases whose discrepancies citing the row are all recorded
    unexpected: int = 0      # cases with a discrepancy citing the row that no record covers
    differs: int = 0         # baseline columns: cases with a discrepancy (attribution unknown)
    records: list[str] = dataclasses.field(default_factory=list)
    smallest: str | None = None    # results columns: the smallest case showing the state (the smallest
                                   # unexpected one, else differing, else reaching the row); baselines: None
    # The cases themselves (not written out): what the history matches klconform diff's
    # sentences against.
    reach: frozenset = dataclasses.field(default=frozenset(), repr=False, compare=False)
    differing: frozenset = dataclasses.field(default=frozenset(), repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "cases": self.cases, "recorded": self.recorded, "unexpected": self.unexpected,
                "differs": self.differs, "records": list(self.records), "smallest": self.smallest}


@dataclasses.dataclass
class Row:
    type: str               # "clause" | "case_kind"
    id: str                 # clause id or case_tags tag
    title: str
    section: str = ""       # SPEC section number (clauses)
    cells: dict[str, Cell] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "id": self.id, "title": self.title, "section": self.section,
                "cells": {k: c.to_json() for k, c in self.cells.items()}}


@dataclasses.dataclass
class Dashboard:
    inputs: list[dict[str, Any]]
    sections: list[dict[str, Any]]
    columns: list[Column]
    rows: list[Row]
    scores: list[dict[str, Any]]
    history: dict[str, Any]
    records: dict[str, dict[str, Any]]          # record id -> {citation, when, cls, columns}
    cases: dict[str, dict[str, Any]]            # digest -> case JSON of every linked results case
    notes: list[str]
    reference: dict[str, Any]

    def column(self, col_id: str) -> Column:
        return next(c for c in self.columns if c.id == col_id)

    def to_json(self) -> dict[str, Any]:
        return {"kind": KIND, "schema": SCHEMA_VERSION, "states": STATE_WORDS, "inputs": self.inputs,
                "reference": self.reference, "sections": self.sections,
                "columns": [c.to_json() for c in self.columns], "rows": [r.to_json() for r in self.rows],
                "scores": self.scores, "history": self.history, "records": self.records, "notes": self.notes}


class NothingToShow(Exception):
    """No adapter-version compared a clause: nothing a dashboard could show (exit 3)."""


def column_id(run: str, version: str, digest: str) -> str:
    return f"{run} {version} {digest}"


def _line(adapter: str, framework: str) -> str:
    """``family:API``: ``tf_keras.KLDivergence`` and ``keras.KLDivergence`` are one line."""
    return f"{FRAMEWORK_FAMILY.get(framework, framework)}:{adapter.partition('.')[2] or adapter}"


def _order(c: Column) -> tuple:
    return (c.family, c.line, version_key(c.version), c.run, c.corpus_digest)


# ----------------------------------------------------------------------------- results
class _Facts:
    """Per results file: what each compared case of the frozen corpus is (tags, size, the
    clauses it reaches), computed once for all its runs."""

    def __init__(self, result: RunResult, evaluate, shared: dict[str, tuple]):
        self.result = result
        large = {entry.get("digest") for r in result.runs for entry in (r.large or [])}
        cases = result.cases
        # the corpus: cases as the run started (no "canonical": not a translation) that no
        # large entry names and that are not generated from a recipe
        self.corpus = {d for d, j in cases.items() if "canonical" not in j and j.get("recipe") is None and d not in large}
        self.large = large
        self.evaluate = evaluate
        self.shared = shared

    def from_corpus(self, digest: str) -> bool:
        j = self.result.cases.get(digest)
        if j is None or j.get("recipe") is not None or digest in self.large:
            return False
        return digest in self.corpus or j.get("canonical") in self.corpus

    def of(self, digest: str) -> tuple[frozenset[str], tuple[str, ...], tuple]:
        """(clauses reached, tags, size key) of a case of the results."""
        got = self.shared.get(digest)
        if got is None:
            j = self.result.cases[digest]
            case = Case.from_json(j)
            exp = self.evaluate(case, canonical_point(case))
            got = self.shared[digest] = (reached(case, exp), tuple(case_tags(case)), _size(j))
        return got


def _state(recorded: int, unexpected: int, ok: bool, cases: int) -> str:
    if unexpected:
        return UNEXPECTED
    if recorded:
        return RECORDED
    if not ok:
        return NOT_APPLICABLE
    return CONFORMS if cases else NOT_COVERED


def _run_cells(facts: _Facts, run: AdapterRun, clause_rows: Sequence[str]) -> tuple[dict, dict, int]:
    """Clause cells and case-kind cells of one results run, and its compared cases."""
    verdicts: dict[str, list] = defaultdict(list)
    for v in run.verdicts:
        if v.against == "canonical" and v.cls != "nondeterministic" and facts.from_corpus(v.case):
            verdicts[v.case].append(v)
    caps = run.capabilities or {}
    touched: dict[str, list] = defaultdict(list)        # clause -> [(size, digest)]
    by_kind: dict[str, list] = defaultdict(list)
    diff: dict[str, dict[str, bool]] = defaultdict(dict)  # clause -> digest -> unexpected?
    kind_diff: dict[str, dict[str, bool]] = defaultdict(dict)
    records: dict[str, set[str]] = defaultdict(set)
    kind_records: dict[str, set[str]] = defaultdict(set)
    for digest, vs in verdicts.items():
        clauses, tags, size = facts.of(digest)
        bad = [v for v in vs if v.cls != "match"]
        cited = {c for v in bad for c in v.clauses}
        for c in clauses | cited:
            touched[c].append((size, digest))
        for t in tags:
            by_kind[t].append((size, digest))
        for v in bad:
            for c in v.clauses:
                diff[c][digest] = diff[c].get(digest, False) or not v.known
                if v.known:
                    records[c].add(v.known)
            for t in tags:
                kind_diff[t][digest] = kind_diff[t].get(digest, False) or not v.known
                if v.known:
                    kind_records[t].add(v.known)

    def cell(touch, differ, recs, ok) -> Cell:
        unexpected = sum(differ.values())
        recorded = len(differ) - unexpected
        state = _state(recorded, unexpected, ok, len(touch))
        pool = [(s, d) for s, d in touch if d in differ and (differ[d] or state != UNEXPECTED)] or touch
        return Cell(state=state, cases=len(touch), recorded=recorded, unexpected=unexpected,
                    records=sorted(recs), smallest=min(pool)[1] if pool else None,
                    reach=frozenset(d for _, d in touch), differing=frozenset(differ))

    clause_cells = {c: cell(touched.get(c, []), diff.get(c, {}), records.get(c, ()), applicable(c, caps))
                    for c in clause_rows}
    kind_cells = {k: cell(by_kind.get(k, []), kind_diff.get(k, {}), kind_records.get(k, ()), kind_applicable(k, caps))
                  for k, _ in KIND_ROWS}
    return clause_cells, kind_cells, len(verdicts)


# ----------------------------------------------------------------------------- baselines
def _large_digests(extra: Iterable[str] = ()) -> set[str]:
    """The large cases klconform knows (its large corpus and quick set): a baseline holds
    them beside the corpus without marking them."""
    return {d for _, d in read_large()} | {d for _, d in QUICK} | set(extra)


def _baseline_cells(b: Baseline, clause_rows: Sequence[str], large: set[str]) -> tuple[dict, dict, int]:
    """A baseline's cells: case kinds from its tags and verdict classes, SPEC §10's clauses
    from the verdict classes, every other clause ``no_detail``."""
    entries = [e for d, e in b.cases.items() if e.get("verdict") and d not in large]   # no verdict: a shrunk case
    by_kind: dict[str, list[str]] = defaultdict(list)
    kind_diff: dict[str, list[str]] = defaultdict(list)
    cls_of: dict[str, list[str]] = defaultdict(list)
    for e in sorted(entries, key=lambda e: e["case"]):
        cls = e["verdict"].partition(":")[0]
        cls_of[VERDICT_CLAUSES.get(cls, "")].append(e["case"])
        for t in e.get("tags", []):
            by_kind[t].append(e["case"])
            if cls != "match":
                kind_diff[t].append(e["case"])
    kinds = {}
    for k, _ in KIND_ROWS:
        n, bad = len(by_kind.get(k, [])), kind_diff.get(k, [])
        kinds[k] = Cell(state=DIFFERS if bad else CONFORMS if n else NO_CASE, cases=n, differs=len(bad),
                        reach=frozenset(by_kind.get(k, ())), differing=frozenset(bad))
    grads = [e["case"] for e in entries if "grad" in e.get("tags", [])]
    verdict_rows = {c: k for k, c in VERDICT_CLAUSES.items()}
    clauses = {}
    for c in clause_rows:
        if c not in verdict_rows:
            clauses[c] = Cell(state=NO_DETAIL)
            continue
        k = verdict_rows[c]
        reach = [] if k == "nondeterministic" else grads if k == "gradient" else [e["case"] for e in entries]
        hits = cls_of.get(c, [])
        if k == "match":
            clauses[c] = Cell(state=CONFORMS if hits else NO_CASE, cases=len(hits), reach=frozenset(hits))
        else:
            clauses[c] = Cell(state=DIFFERS if hits else CONFORMS if reach else NO_CASE, cases=len(reach),
                              differs=len(hits), reach=frozenset(reach), differing=frozenset(hits))
    return clauses, kinds, len(entries)


# ----------------------------------------------------------------------------- scores
def scores(columns: Sequence[Column], rows: Sequence[Row], secs: Sequence[dict]) -> list[dict[str, Any]]:
    """Per corpus digest of the results columns (never mixed): per clause the share of
    those columns that conform among those the clause was compared on; per SPEC section the
    mean of its clauses' scores (wpt.fyi's interop: per test, then averaged per area); per
    column the share of its compared clauses it conforms to; ``interop`` the mean of the
    section scores."""
    out = []
    digests = list(dict.fromkeys(c.corpus_digest for c in columns if c.detail == "clauses"))
    clause_rows = [r for r in rows if r.type == "clause"]
    for digest in digests:
        cols = [c for c in columns if c.detail == "clauses" and c.corpus_digest == digest]
        per_clause = {}
        for r in clause_rows:
            states = [r.cells[c.id].state for c in cols]
            n = sum(s in COMPARED for s in states)
            ok = sum(s == CONFORMS for s in states)
            per_clause[r.id] = {"score": ok / n if n else None, "conforming": ok, "compared": n}
        per_section = {}
        for s in secs:
            vals = [per_clause[c]["score"] for c in s["clauses"] if per_clause.get(c, {}).get("score") is not None]
            per_section[s["number"]] = {"score": sum(vals) / len(vals) if vals else None, "clauses_scored": len(vals),
                                        "clauses": len(s["clauses"])}
        per_column = {}
        for c in cols:
            states = [r.cells[c.id].state for r in clause_rows]
            n = sum(s in COMPARED for s in states)
            ok = sum(s == CONFORMS for s in states)
            per_column[c.id] = {"score": ok / n if n else None, "conforms": ok, "compared": n,
                                "not_covered": states.count(NOT_COVERED), "not_applicable": states.count(NOT_APPLICABLE)}
        secs_scored = [v["score"] for v in per_section.values() if v["score"] is not None]
        out.append({"corpus_digest": digest, "columns": [c.id for c in cols], "clauses": per_clause,
                    "sections": per_section, "column_scores": per_column,
                    "interop": sum(secs_scored) / len(secs_scored) if secs_scored else None})
    return out


# ----------------------------------------------------------------------------- history
CHANGE_CASES = 20     # case digests a change lists in the dashboard (the count is always given)


def history(columns: Sequence[Column], rows: Sequence[Row], baseline_of, digests: Sequence[str] = ()) -> dict[str, Any]:
    """Per corpus digest, the consecutive versions of each line (``Column.line``: one API,
    Keras 2 before Keras 3) with ``klconform diff``'s sentences between them and, per row
    whose cell moved, the sentences about its cases (``moved``: those naming a case that
    differs on the row in either version, or reaches it in one only; most such cases first).  Versions
    measured on different corpora are never compared: a line whose versions share no
    corpus is listed in ``not_compared``.  Corpora come in the order of ``digests`` (the
    results'), then of ``columns``."""
    by_line: dict[str, list[Column]] = defaultdict(list)
    for c in columns:
        by_line[c.line].append(c)
    not_compared = []
    for line, cols in sorted(by_line.items()):
        corpora = {c.corpus_digest for c in cols}
        if len({c.version for c in cols}) > 1 and not any(
                len({c.version for c in cols if c.corpus_digest == d}) > 1 for d in corpora):
            not_compared.append(f"{line}: " + ", ".join(f"{c.version} on corpus {c.corpus_digest}"
                                                        for c in sorted(cols, key=_order)))
    groups = []
    n_step = 0
    for digest in dict.fromkeys([*digests, *(c.corpus_digest for c in columns)]):
        steps = []
        for line in sorted(by_line):
            seq = sorted((c for c in by_line[line] if c.corpus_digest == digest), key=_order)
            for old, new in zip(seq, seq[1:]):
                if old.version == new.version:
                    continue
                changes = compare_baselines(baseline_of(old), baseline_of(new))
                chg = [{"id": f"chg-{n_step}-{i}", "kind": ch.kind, "sentence": ch.sentence,
                        "is_change": ch.is_change, "cases_total": len(ch.cases), "cases": ch.cases[:CHANGE_CASES]}
                       for i, ch in enumerate(changes)]
                moved = {}
                for r in rows:
                    a, b = r.cells[old.id], r.cells[new.id]
                    if NO_DETAIL in (a.state, b.state) or _summary(a) == _summary(b):
                        continue
                    cases = a.differing | b.differing | (a.reach ^ b.reach)
                    hits = [(len(cases.intersection(ch.cases)), i) for i, ch in enumerate(changes) if ch.is_change]
                    moved[f"{r.type}:{r.id}"] = [chg[i]["id"] for n, i in sorted(hits, key=lambda t: (-t[0], t[1])) if n]
                steps.append({"id": f"step-{n_step}", "line": line, "old": old.id, "new": new.id,
                              "changes": chg, "moved": moved})
                n_step += 1
        if steps:
            groups.append({"corpus_digest": digest, "steps": steps})
    return {"groups": groups, "not_compared": not_compared}


def _summary(cell: Cell) -> tuple:
    return (cell.state, cell.cases, cell.recorded, cell.unexpected, cell.differs)


# ----------------------------------------------------------------------------- build
def build(results: Sequence[tuple[str, RunResult]] = (), baselines: Sequence[tuple[str, Baseline]] = ()) -> Dashboard:
    """The dashboard of ``results`` (``(name, RunResult)``) and ``baselines`` (``(name,
    Baseline)``), in the order given: an adapter-version on one corpus appears once (the
    first input that has it; results before baselines), an adapter-version measured on
    several corpora once in the matrix (its first) and each time in the history.
    :class:`NothingToShow` when no column compared a clause."""
    from ..provenance import reference_identity
    secs = sections()
    clause_rows = [c for s in secs for c in s["clauses"]]
    evaluate = make_evaluator()
    shared: dict[str, tuple] = {}
    columns: list[Column] = []
    cells: dict[str, tuple[dict, dict]] = {}
    inputs: list[dict[str, Any]] = []
    notes: list[str] = []
    records: dict[str, dict[str, Any]] = {}
    linked: dict[str, dict[str, Any]] = {}
    result_of: dict[str, tuple[RunResult, AdapterRun]] = {}
    baseline_cols: dict[str, Baseline] = {}
    seen: set[tuple[str, str, str]] = set()
    spec_clauses = set(clause_rows)
    for name, result in results:
        facts = _Facts(result, evaluate, shared)
        ran = [r for r in result.runs if r.status == "ok"]
        inputs.append({"path": name, "kind": "results", "corpus_digest": result.corpus_digest,
                       "corpus_cases": len(facts.corpus), "runs": [r.adapter for r in ran],
                       "not_run": [f"{r.adapter} ({r.status})" for r in result.runs if r.status != "ok"],
                       "reference": (result.reference or {}).get("digest", "")})
        for run in ran:
            env = run.env or {}
            version = str(env.get("version", ""))
            key = (run.adapter, version, result.corpus_digest)
            if key in seen:
                notes.append(f"{name}: {run.adapter} {version} on corpus {result.corpus_digest} is already in an "
                             f"earlier input; shown once")
                continue
            seen.add(key)
            fw = str(env.get("framework") or run.adapter.split(".", 1)[0])
            col = Column(id=column_id(run.adapter, version, result.corpus_digest), run=run.adapter,
                         adapter=adapter_name(run.adapter), api=run.api, framework=fw,
                         family=FRAMEWORK_FAMILY.get(fw, fw), line=_line(adapter_name(run.adapter), fw),
                         version=version, corpus_digest=result.corpus_digest, source="results", origin=name,
                         detail="clauses")
            cl, kd, col.compared = _run_cells(facts, run, clause_rows)
            cells[col.id] = (cl, kd)
            columns.append(col)
            result_of[col.id] = (result, run)
            uncited = sorted({c for v in run.verdicts if v.against == "canonical" for c in v.clauses} - spec_clauses)
            if uncited:
                notes.append(f"{col.run} {version}: verdicts cite {', '.join(uncited)}, which SPEC.md does not define")
            for rid, rec in (run.known_records or {}).items():
                entry = records.setdefault(rid, {"citation": rec.get("citation", ""), "when": rec.get("when", ""),
                                                 "cls": rec.get("cls", ""), "columns": []})
                entry["columns"].append(col.id)
            for cell in list(cl.values()) + list(kd.values()):
                if cell.smallest and cell.smallest in result.cases:
                    linked.setdefault(cell.smallest, dict(result.cases[cell.smallest], _results=name))
    large = _large_digests(d for _, r in results for run in r.runs for d in (e.get("digest") for e in run.large or []))
    for name, b in baselines:
        run = str(b.header.get("run_id") or b.adapter)
        digest = str(b.header.get("corpus_digest", ""))
        key = (run, b.version, digest)
        inputs.append({"path": name, "kind": "baseline", "corpus_digest": digest, "runs": [run],
                       "version": b.version, "reference": b.header.get("reference", ""),
                       "shown": key not in seen})
        if key in seen:
            continue
        seen.add(key)
        fw = str(b.header.get("framework") or b.adapter.split(".", 1)[0])
        col = Column(id=column_id(run, b.version, digest), run=run, adapter=b.adapter, api=str(b.header.get("api", "")),
                     framework=fw, family=FRAMEWORK_FAMILY.get(fw, fw), line=_line(b.adapter, fw), version=b.version,
                     corpus_digest=digest, source="baseline", origin=name, detail="verdict classes",
                     lacks="a baseline keeps each case's verdict class and family point: no SPEC clause ids, no "
                           "known-record ids (recorded or unexpected), no capabilities (not applicable or not covered)")
        cl, kd, col.compared = _baseline_cells(b, clause_rows, large)
        cells[col.id] = (cl, kd)
        columns.append(col)
        baseline_cols[col.id] = b
    if not any(c.detail == "clauses" and c.compared for c in columns):
        why = ("no adapter run in the results given has answers" if results else "no results file given")
        raise NothingToShow(f"{why}; a dashboard needs a results.json with at least one compared case "
                            f"(baselines alone have no clause detail)")
    columns.sort(key=_order)
    shown: set[tuple[str, str]] = set()
    scored = next((c.corpus_digest for c in columns if c.detail == "clauses"), "")
    for c in sorted(columns, key=lambda c: (c.detail != "clauses", c.corpus_digest != scored)):
        c.in_matrix = (c.run, c.version) not in shown
        shown.add((c.run, c.version))
    rows = [Row("clause", c, c, section=s["number"], cells={col.id: cells[col.id][0][c] for col in columns})
            for s in secs for c in s["clauses"]]
    rows += [Row("case_kind", k, words, cells={col.id: cells[col.id][1][k] for col in columns}) for k, words in KIND_ROWS]
    made: dict[str, Baseline] = {}

    def baseline_of(col: Column) -> Baseline:
        if col.id in baseline_cols:
            return baseline_cols[col.id]
        if col.id not in made:
            result, run = result_of[col.id]
            made[col.id] = from_result(result, [run])[0]
        return made[col.id]

    hist = history(columns, rows, baseline_of, [r.corpus_digest for _, r in results])
    installed = reference_identity()["digest"]
    for i in inputs:
        if i["kind"] == "results" and i.get("reference") and i["reference"] != installed:
            notes.append(f"{i['path']}: verdicts made with reference {i['reference']}; the clauses each case reaches "
                         f"are named by the installed reference {installed}")
    for c in linked.values():
        c.pop("canonical", None), c.pop("conversions", None)
    return Dashboard(inputs=inputs, sections=secs, columns=columns, rows=rows, scores=scores(columns, rows, secs),
                     history=hist, records=records, cases=linked, notes=notes,
                     reference={"installed": installed})


# ----------------------------------------------------------------------------- CSV
CSV_FIELDS = ("row_type", "section", "row", "row_title", "column", "run", "adapter", "framework", "version",
              "corpus_digest", "source", "in_matrix", "state", "cases", "differs_recorded", "differs_unexpected",
              "differs_unattributed", "records", "smallest_case")


def to_csv(board: Dashboard) -> str:
    """dashboard.csv: one line per cell (row x column), columns :data:`CSV_FIELDS`."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    for r in board.rows:
        for c in board.columns:
            cell = r.cells[c.id]
            w.writerow([r.type, r.section, r.id, r.title, c.id, c.run, c.adapter, c.framework, c.version,
                        c.corpus_digest, c.source, int(c.in_matrix), cell.state, cell.cases, cell.recorded,
                        cell.unexpected, cell.differs, " ".join(cell.records), cell.smallest or ""])
    return buf.getvalue()
