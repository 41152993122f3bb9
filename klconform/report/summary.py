"""What a report says, computed once from a :class:`RunResult` and rendered by
:mod:`.markdown` and :mod:`.html`: the verdict matrix, fingerprints, discrepancy groups with
their minimal counterexamples, documentation claims, environment and reproduction.

Only results data and the float64 reference are used (no framework).  The expectations
shown (counterexamples, gradient plots, value claims) are re-evaluated with the installed
reference; :func:`reference_note` says so when the results were made with another one
(``RunResult.reference``, docs/DESIGN.md).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from klconform.reference.evaluate import evaluate
from klconform.reference.family import Point

from .. import wire
from ..areas import AREAS, area_of
from ..case import Case
from ..compare import compare_arrays
from ..evaluator import UNDEFINED
from ..facts import facts, facts_of_json
from ..fingerprint import Template, infer_fingerprint, point_for
from ..provenance import reference_identity
from ..results import AdapterRun, RunResult, Verdict
from ..unexpected import unexpected_findings
from .claims import ClaimResult, check_claims

AREA_TITLES = {
    "values": "values", "reductions": "reductions", "epsilon_zeros": "epsilon / zeros",
    "dtypes": "dtypes", "gradients": "gradients", "shapes_invalid": "shapes / invalid input",
}
EXIT_DOC = ("0: no unexpected discrepancy; 1: unexpected discrepancy (new, or a known record not observed); "
            "2: usage or input error; 3: an adapter asked for could not run or compared no case")


@dataclasses.dataclass
class Cell:
    """Verdict counts of one run in one area (comparisons against the canonical point)."""

    match: int = 0
    known: int = 0       # discrepancies covered by a known record
    new: int = 0         # discrepancies no record covers
    by_class: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def state(self) -> str:
        if self.new:
            return "new"
        if self.known:
            return "known"
        return "match" if self.match else "empty"

    @property
    def text(self) -> str:
        if not (self.match or self.known or self.new):
            return "–"
        parts = [f"{self.match} ✓"]
        if self.known or self.new:
            parts.append(f"{self.known + self.new} ✗")
            if self.new:
                parts.append(f"({self.new} new)")
        return " ".join(parts)


@dataclasses.dataclass
class Example:
    """One case shown in full: what it asks, what came back, what the reference expects."""

    digest: str
    label: str
    question: str          # dtype, kinds, reduction, shapes
    target: str
    pred: str
    observed: str
    expected: str
    bound: str
    point: str             # the family point the expectation is for
    native_call: str = ""
    blob: str = ""
    shrink: str = ""       # how it was found / shrunk


@dataclasses.dataclass
class Group:
    """Discrepancy verdicts of one run sharing (against, class, explaining point, record)."""

    against: str
    cls: str
    explained_by: str | None
    known: str | None
    count: int
    clauses: list[str]
    detail: str
    citation: str = ""
    when: str = ""
    example: Example | None = None


@dataclasses.dataclass
class RunView:
    run: AdapterRun
    label: str                      # "torch.kl_div — torch 2.13.0"
    fingerprint: dict[str, Any]
    documented_name: str
    cells: dict[str, Cell]
    groups: list[Group]
    failures: list[str]             # CI failures (new discrepancies, unmatched records)
    counts: dict[str, int]          # outcome statuses


@dataclasses.dataclass
class ReportModel:
    result: RunResult
    runs: list[RunView]
    claims: list[ClaimResult]
    reference_note: str = ""        # which reference the verdicts and the shown expectations used
    # The status the command writing this report exits with when the findings alone do not
    # give it (3: an adapter asked for was not checked): the report never says another.
    command_status: int | None = None

    @property
    def failures(self) -> list[str]:
        return [f for r in self.runs for f in r.failures]

    @property
    def exit_status(self) -> int:
        if self.command_status is not None:
            return self.command_status
        return 1 if self.failures else 0


# ----------------------------------------------------------------------------- helpers
def _fmt_array(a, limit: int = 12) -> str:
    if a is None:
        return "—"
    a = np.asarray(a, dtype=np.float64)
    if a.size <= limit:
        body = np.array2string(a, precision=9, separator=", ", max_line_width=10**6)
        return body.replace("\n", " ")
    return f"array{list(a.shape)} (min {np.nanmin(a):.6g}, max {np.nanmax(a):.6g})"


def run_label(run: AdapterRun) -> str:
    env = run.env or {}
    fw = env.get("framework") or run.adapter.split(".", 1)[0]
    ver = env.get("version")
    return f"{run.adapter} — {fw} {ver}" if ver else f"{run.adapter} ({run.status})"


def ensure_fingerprint(result: RunResult, run: AdapterRun) -> dict[str, Any]:
    """``run.fingerprint`` with the inferred observed point (computed here when the engine
    stored only its verdict counts)."""
    fp = dict(run.fingerprint or {})
    if "observed" not in fp and run.status == "ok":
        fp.update(infer_fingerprint(result.cases, run.outcomes, documented=run.documented or None))
        run.fingerprint = fp
    return fp


def _case(result: RunResult, cache: dict, digest: str) -> Case | None:
    if digest not in cache:
        j = result.cases.get(digest)
        # a distillation case (SPEC.md §12) is no canonical Case: its verdicts' details show it
        cache[digest] = Case.from_json(j) if j is not None and j.get("kind") != "distill" else None
    return cache[digest]


def documented_point(run: AdapterRun, case: Case) -> Point:
    pts = (run.documented or {}).get("points") or {}
    if case.reduction in pts:
        return Point.from_json(pts[case.reduction])
    return Point(reduction=case.reduction)


def make_example(result: RunResult, run: AdapterRun, case: Case, against: str, *, blob: str = "",
                 shrink: str = "") -> Example:
    """The case, the observed outcome and the reference's expectation for ``against``."""
    point = Point(reduction=case.reduction) if against == "canonical" else documented_point(run, case)
    o = wire.from_json(run.outcomes[case.digest]) if case.digest in run.outcomes else None
    try:
        with np.errstate(all="ignore"):
            exp = evaluate(case, point)
        expected, bound = _fmt_array(exp.value_in_dtype), _fmt_array(exp.bound)
        grads = {k: g for k, g in exp.grads.items()}
    except UNDEFINED as exc:   # the spec defines an error for this case
        expected, bound, grads = f"undefined ({exc})", "—", {}
    if o is None:
        observed = "—"
    elif o.status == "ok":
        observed = f"{_fmt_array(o.value)} ({o.dtype}, shape {list(o.shape) if o.shape is not None else '?'})"
        for k in sorted(o.grads):
            if k in grads and np.asarray(o.grads[k]).size <= 12:
                observed += f"; d/d{k} {_fmt_array(o.grads[k])}"
                expected += f"; d/d{k} {_fmt_array(grads[k])}"
    else:
        observed = f"{o.status}: {o.error_type or ''} {(o.error_message or '')[:160]}".strip()
    q = (f"{case.dtype}, P {case.target_kind}{list(case.target.shape)}, Q {case.pred_kind}{list(case.pred.shape)}, "
         f"reduction {case.reduction}, class_axis {case.class_axis}, batch_axis {case.batch_axis}"
         + (f", weight {case.weight}" if case.weight is not None else "")
         + (f", sample_weight {_fmt_array(case.sample_weight)}" if case.sample_weight is not None else ""))
    return Example(digest=case.digest, label=case.label, question=q, target=_fmt_array(case.target, 16),
                   pred=_fmt_array(case.pred, 16), observed=observed, expected=expected, bound=bound,
                   point=point.name, native_call=(o.native_call if o else ""), blob=blob, shrink=shrink)


def _size(case_json: dict) -> tuple:
    n = int(np.prod(case_json.get("target_shape") or [1])) + int(np.prod(case_json.get("pred_shape") or [1]))
    return (n, case_json.get("dtype") != "float64", case_json.get("digest", ""))


# Clauses every evaluated case carries; a group lists them only where they are the point.
_GENERIC = ("KL-DEF-1", "KL-DEF-2", "KL-ARG-1", "KL-SHAPE-1", "KL-SHAPE-2", "KL-DTYPE-1", "KL-FAM-1",
            "KL-BOUND-1", "KL-BOUND-2", "KL-BOUND-3", "KL-BOUND-4", "KL-BOUND-5", "KL-GRAD-1", "KL-GRAD-RED")
_KEEP = {"precision": ("KL-BOUND-2", "KL-BOUND-4"), "gradient": ("KL-BOUND-3", "KL-GRAD-1"),
         "shape": ("KL-SHAPE-2",), "dtype": ("KL-DTYPE-1",)}


def group_clauses(cls: str, vs: list[Verdict]) -> list[str]:
    """The SPEC clauses every verdict of a group cites, without the generic ones (kept
    where the class is about them, e.g. the bounds for ``precision``)."""
    common = set(vs[0].clauses)
    for v in vs[1:]:
        common &= set(v.clauses)
    keep = _KEEP.get(cls, ())
    return [c for c in vs[0].clauses if c in common and (c not in _GENERIC or c in keep)]


def deviation(explained_by: str | None, asked: str | None) -> str | None:
    """``explained_by`` with the reduction written as ``as asked`` when it is the case's own
    (so one deviation, e.g. an epsilon, forms one group across reductions)."""
    if not explained_by:
        return explained_by
    head, plus, rest = explained_by.partition("+")
    if head == asked:
        return "as asked" + plus + rest
    return f"{asked}→{head}" + plus + rest if asked else explained_by


def discrepancy_groups(result: RunResult, run: AdapterRun, cache: dict) -> list[Group]:
    """Non-match verdicts of ``run`` grouped, new groups first, then by count."""
    by: dict[tuple, list[Verdict]] = {}
    for v in run.verdicts:
        if v.cls != "match":
            asked = (result.cases.get(v.case) or {}).get("reduction")
            by.setdefault((v.against, v.cls, deviation(v.explained_by, asked), v.known), []).append(v)
    groups = []
    for (against, cls, eb, known), vs in by.items():
        clauses = group_clauses(cls, vs)
        rec = (run.known_records or {}).get(known or "", {})
        cx = (run.counterexamples or {}).get(cls)
        example = None
        cx_v = (cx or {}).get("verdict") or {}
        if cx and cx.get("case") in result.cases and cx_v.get("against", against) == against \
                and deviation(cx_v.get("explained_by"), result.cases[cx["case"]].get("reduction")) == eb:
            c = _case(result, cache, cx["case"])
            if c is not None:
                example = make_example(result, run, c, against, blob=cx.get("blob", ""),
                                       shrink=f"shrunk in {cx.get('shrink_rounds', 0)} round(s) from case "
                                              f"{cx.get('found_as', '?')} (seed {cx.get('seed', result.seed)})")
        if example is None:
            smallest = min((v.case for v in vs if v.case in result.cases), key=lambda d: _size(result.cases[d]),
                           default=None)
            c = _case(result, cache, smallest) if smallest else None
            if c is not None:
                example = make_example(result, run, c, against, shrink="smallest case of the group")
        detail = next((v.detail for v in vs if example and v.case == example.digest), vs[0].detail)
        groups.append(Group(against=against, cls=cls, explained_by=eb, known=known, count=len(vs),
                            clauses=clauses, detail=detail, citation=rec.get("citation", ""),
                            when=rec.get("when", ""), example=example))
    groups.sort(key=lambda g: (g.known is not None, g.against != "canonical", -g.count, g.cls, g.explained_by or ""))
    return groups


def verdict_cells(result: RunResult, run: AdapterRun, cache: dict) -> dict[str, Cell]:
    """Counts per area of the canonical comparisons (SPEC.md §10 classes)."""
    cells = {a: Cell() for a in AREAS}
    for v in run.verdicts:
        if v.against != "canonical":
            continue
        cj = result.cases.get(v.case)
        if cj is None:
            continue
        # a large case's JSON keeps the facts that need its values: no generation per verdict
        area = area_of(v, facts_of_json(cj, v) if cj.get("case_facts") is not None
                       else facts(_case(result, cache, v.case), v))
        cell = cells.setdefault(area, Cell())
        cell.by_class[v.cls] = cell.by_class.get(v.cls, 0) + 1
        if v.cls == "match":
            cell.match += 1
        elif v.known:
            cell.known += 1
        else:
            cell.new += 1
    return cells


def build_model(result: RunResult, claims=None) -> ReportModel:
    """Everything a report shows, from ``result`` alone (``claims``: loaded claims, default
    klconform/claims.toml)."""
    cache: dict[str, Case | None] = {}
    views = []
    for run in result.runs:
        fp = ensure_fingerprint(result, run)
        doc_name = (run.documented or {}).get("name") or ""
        counts: dict[str, int] = {}
        for o in run.outcomes.values():
            counts[o["status"]] = counts.get(o["status"], 0) + 1
        views.append(RunView(run=run, label=run_label(run), fingerprint=fp, documented_name=doc_name,
                             cells=verdict_cells(result, run, cache),
                             groups=discrepancy_groups(result, run, cache),
                             failures=unexpected_findings(run), counts=counts))
    return ReportModel(result=result, runs=views, claims=check_claims(result, claims),
                       reference_note=reference_note(result))


def skipped_note(run: AdapterRun) -> str:
    """``9 case(s) skipped after 5 consecutive timeouts``: the cases of ``run`` its circuit
    breaker did not send (klconform.workers), '' when none."""
    by: dict[str, int] = {}
    for o in run.outcomes.values():
        if o.get("status") == "skipped":
            why = (o.get("error_message") or "not sent").removeprefix("not sent: ")
            by[why] = by.get(why, 0) + 1
    return "; ".join(f"{n} case(s) {why}" for why, n in by.items())


def reference_note(result: RunResult) -> str:
    """How the expectations a report shows relate to the reference the verdicts used: the
    report re-evaluates them with the installed reference (``RunResult.reference`` records
    the one the run used; old results record none)."""
    installed = reference_identity()
    used = result.reference or {}
    if used.get("digest") == installed["digest"]:
        return f"reference {installed['digest']} (the one the verdicts used)"
    made = f"reference {used['digest']}" if used.get("digest") else "an unrecorded reference"
    return (f"verdicts made with {made}; expectations shown re-evaluated with the installed reference "
            f"{installed['digest']}")


# ----------------------------------------------------------------------------- plot data
def error_points(result: RunResult, run: AdapterRun, cache: dict | None = None, limit: int = 800):
    """(magnitude, err/bound, dtype) per canonical value comparison with a finite error:
    magnitude is max |observed| over finite entries (0 -> 1e-300 floor), err/bound as the
    verdicts measured it.  Deterministic subsample (by case digest) of at most ``limit``."""
    cache = {} if cache is None else cache
    seen: dict[str, float] = {}
    for v in run.verdicts:
        if v.against != "canonical" or v.err_over_bound is None or v.cls == "gradient":
            continue
        seen[v.case] = max(seen.get(v.case, 0.0), float(v.err_over_bound))
    out = []
    for d in sorted(seen)[: max(limit, 0)] if len(seen) <= limit else _spread(sorted(seen), limit):
        o = run.outcomes.get(d)
        if not o or o["status"] != "ok" or not o["value"]:
            continue
        vals = [x for x in o["value"]["data"] if isinstance(x, (int, float))]
        mag = max((abs(x) for x in vals), default=0.0)
        out.append((mag, seen[d], result.cases[d]["dtype"] if d in result.cases else "?"))
    return out


def _spread(items: list, n: int) -> list:
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def gradient_points(result: RunResult, run: AdapterRun, fp: dict, cache: dict | None = None,
                    limit: int = 300):
    """(|gradient| max, err/bound, dtype, input) per returned gradient, against the point the
    observed fingerprint gives the case (canonical when there is none).  At most ``limit``
    cases (deterministic spread over digests)."""
    cache = {} if cache is None else cache
    tmpl = (fp.get("observed") or {}).get("template")
    t = Template.from_json(tmpl) if tmpl else Template()
    digests = sorted(d for d, o in run.outcomes.items() if o["status"] == "ok" and o.get("grads"))
    if len(digests) > limit:
        digests = _spread(digests, limit)
    out = []
    for d in digests:
        c = _case(result, cache, d)
        if c is None or not c.grad:
            continue
        o = wire.from_json(run.outcomes[d])
        try:
            with np.errstate(all="ignore"):
                exp = evaluate(c, point_for(t, c))
        except Exception:   # a fingerprint point the reference cannot evaluate here: no plot point
            continue
        for k, g in sorted(o.grads.items()):
            if k not in exp.grads:
                continue
            cmp = compare_arrays(exp.grads[k], exp.grad_bounds.get(k, 0.0), g)
            if cmp.err_over_bound is None:
                continue
            fin = np.asarray(g)[np.isfinite(g)]
            out.append((float(np.max(np.abs(fin))) if fin.size else 0.0, float(cmp.err_over_bound), c.dtype, k))
    return out


# ----------------------------------------------------------------------------- first screen
# The first screen answers "what does this API compute?" per framework-version, in the
# family's vocabulary (SPEC.md §Family), from the OBSERVED fingerprint; a mark where that
# differs from the documented template (≠doc) or from the canonical definition (≠canon).
FIRST_SCREEN_COLUMNS = ("argument order", "term summed", "input convention", "reductions", "epsilon / clipping",
                        "zeros and infinities", "computes in", "gradients at zeros", "shapes")


def _marked(text: str, field_differs_doc: bool, field_differs_canon: bool) -> str:
    marks = [m for m, on in (("≠doc", field_differs_doc), ("≠canon", field_differs_canon)) if on]
    return text + (f" ({', '.join(marks)})" if marks else "")


def first_screen(v: RunView) -> dict[str, str]:
    """One row of the first-screen table for a run (columns :data:`FIRST_SCREEN_COLUMNS`)."""
    from ..fingerprint import Template
    fp = v.fingerprint or {}
    obs = (fp.get("observed") or {}).get("template")
    if v.run.status != "ok" or not obs:
        return {c: "—" for c in FIRST_SCREEN_COLUMNS}
    t = Template.from_json(obs)
    dt = (fp.get("documented") or {}).get("template")
    d = Template.from_json(dt) if dt else None
    c = Template()
    caps = v.run.capabilities or {}

    def diff(*fields):
        return (d is not None and any(getattr(t, f) != getattr(d, f) for f in fields),
                any(getattr(t, f) != getattr(c, f) for f in fields))
    row = {}
    row["argument order"] = _marked("swapped: computes KL(Q‖P)" if t.swap else "KL(P‖Q), target first", *diff("swap"))
    # which function is summed (SPEC.md §11): the generalised term, and inputs normalised first
    term = "p·log(p/q) − p + q (generalised)" if t.generalised else "p·log(p/q)"
    row["term summed"] = _marked(term + ("; P, Q normalised along the class axis first" if t.normalise else ""),
                                 *diff("generalised", "normalise"))
    kinds = f"pred {'/'.join(caps.get('pred_kinds', []) or ['?'])}, target {'/'.join(caps.get('target_kinds', []) or ['?'])}"
    mis = [f"pred read as {t.pred_as}"] if t.pred_as else []
    mis += [f"target read as {t.target_as}"] if t.target_as else []
    row["input convention"] = _marked(kinds + ("; " + ", ".join(mis) if mis else ""), *diff("pred_as", "target_as"))
    asked = sorted((fp.get("observed") or {}).get("points", {}))
    mapped = [f"{a}→{t.applied(a)}" for a in asked if t.applied(a) != a]
    doc_red = d is not None and any(t.applied(a) != d.applied(a) for a in asked)
    row["reductions"] = _marked(("as asked" if not mapped else ", ".join(mapped))
                                + (f" (of {', '.join(asked)})" if asked else ""), doc_red, bool(mapped))
    eps = {"none": "none", "target_log_eps": f"log(p + {t.eps:g})", "clip_both": f"p, q clipped into [{t.eps:g}, 1]"}
    row["epsilon / clipping"] = _marked(eps.get(t.epsilon, t.epsilon), *diff("epsilon", "eps"))
    zeros = "0·log 0 = 0, p>0 & q=0 → +∞" if t.zero_inf == "zero" else "0·∞ = NaN"
    row["zeros and infinities"] = _marked(zeros + ("; negative entries → +∞" if t.negative == "inf" else ""),
                                          *diff("zero_inf", "negative"))
    dtype_verdicts = sum(1 for x in v.run.verdicts if x.against == "canonical" and x.cls == "dtype")
    row["computes in"] = ("the case's dtype" if not dtype_verdicts
                          else f"another dtype in {dtype_verdicts} case(s) (≠canon)")
    grad = v.cells.get("gradients")
    row["gradients at zeros"] = ("as the reference (KL-GRAD-*)" if grad is None or not (grad.known or grad.new)
                                 else f"differs in {grad.known + grad.new} case(s) (≠canon)")
    shape_n = sum(1 for x in v.run.verdicts if x.against == "canonical" and x.cls == "shape")
    row["shapes"] = "as SPEC KL-SHAPE-2" if not shape_n else f"other result shape in {shape_n} case(s) (≠canon)"
    return row


def alarm(v: RunView) -> str | None:
    """The loud line for a run whose behaviour nothing explains -- no family point (the
    fingerprint) and no known record -- or None.  A fingerprint that explains most outcomes
    with the rest recorded (precision, outside-family records) is no alarm."""
    fp = v.fingerprint or {}
    if v.run.status != "ok" or fp.get("status") in (None, "exact", "no_data"):
        return None
    unrecorded = [x for x in v.run.verdicts if x.against == "canonical" and x.cls != "match" and not x.known]
    if not unrecorded:
        return None
    return (f"{v.run.adapter}: {len(unrecorded)} outcome verdict(s) that neither a point of the reference family "
            f"(best {fp.get('agree')}/{fp.get('compared')}: {(fp.get('observed') or {}).get('name')}) nor a known "
            f"record explains")


def recorded_rest(v: RunView) -> list[str]:
    """The known records that explain what the fingerprint does not (ids, in order)."""
    seen: list[str] = []
    for x in v.run.verdicts:
        if x.against == "canonical" and x.known and x.known not in seen:
            seen.append(x.known)
    return seen
