"""Semantic fingerprint: which point of the reference family an adapter's *observed*
behaviour matches, inferred from its outcomes alone (never from its declarations).

A *template* is a family point with the reduction left as a map: ``reductions`` says which
reduction is really applied when a case asks for reduction R (identity by default), the
other fields (epsilon policy, 0*inf convention, argument order, misread encodings, weight
level and divisor) apply to every case.  ``point_for(template, case)`` is the
:class:`reference.Point` the template means for one case.

:func:`infer_fingerprint` scores templates by *agreement*: the number of cases whose
observed value is within the reference's per-case bound of ``reference.evaluate(case,
point)`` (SPEC.md KL-BOUND-4; NaN meets NaN, infinities their sign).  It starts from the
canonical template (and the documented one when given), changes one field at a time keeping
strict improvements (coordinate search; simpler templates win ties) on a deterministic
subset of cases, then scores the winner, the canonical and the documented template on all
cases.  It is a pure function of the case and outcome data; the engine's annotation
(:mod:`klconform.annotate`) calls it to fill ``AdapterRun.fingerprint``.
"""
from __future__ import annotations

import dataclasses
import heapq
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from klconform.adapters.base import Outcome
from klconform.reference.family import PRED_KINDS, TARGET_KINDS, Point
from klconform.reference._quiet import quiet

from . import wire
from .case import REDUCTIONS, Case
from .compare import compare_arrays, expected_value, judged_dtype, result_shape, value_agrees
from .evaluator import default_evaluate
from .neighbourhood import one_field_changes

METHOD = ("coordinate search over the reference family (SPEC.md KL-FAM-1); a case agrees "
          "when the observed value is within the reference bound (KL-BOUND-4)")
# Fraction of compared cases the best template must explain to be reported as "partial"
# rather than "unexplained" (below it the report says loudly that no point explains it).
PARTIAL_THRESHOLD = 0.9
_DIVISOR_REDUCTIONS = ("mean", "distribution_mean")   # KL-WEIGHT-SUMDIV is defined for these


@dataclasses.dataclass(frozen=True)
class Template:
    """A family point with the reduction as a map from the asked to the applied reduction."""

    epsilon: str = "none"
    eps: float = 0.0
    zero_inf: str = "zero"
    swap: bool = False
    target_as: str | None = None
    pred_as: str | None = None
    weight_level: str = "element"
    weight_divisor: str = "count"
    generalised: bool = False      # SPEC.md §11 (KL-GEN-1, KL-NORM-1, KL-NEG-INF)
    normalise: bool = False
    negative: str = "nan"
    reductions: tuple[tuple[str, str], ...] = ()   # (asked, applied), only where they differ

    def applied(self, asked: str) -> str:
        return dict(self.reductions).get(asked, asked)

    def with_reduction(self, asked: str, applied: str) -> "Template":
        m = dict(self.reductions)
        if applied == asked:
            m.pop(asked, None)
        else:
            m[asked] = applied
        return dataclasses.replace(self, reductions=tuple(sorted(m.items())))

    @property
    def complexity(self) -> int:
        """Number of fields that differ from the canonical template (ties go to simpler)."""
        base = Template()
        n = sum(getattr(self, f.name) != getattr(base, f.name)
                for f in dataclasses.fields(self) if f.name not in ("eps", "reductions"))
        return n + len(self.reductions)

    @property
    def name(self) -> str:
        """E.g. ``reduction as asked+target_log_eps(1e-12)`` or ``batchmean→sum+swapped``."""
        red = ", ".join(f"{a}→{b}" for a, b in self.reductions) or "reduction as asked"
        pt = Point(reduction=red, epsilon=self.epsilon, eps=self.eps, zero_inf=self.zero_inf,
                   swap=self.swap, target_as=self.target_as, pred_as=self.pred_as,
                   weight_level=self.weight_level, weight_divisor=self.weight_divisor,
                   generalised=self.generalised, normalise=self.normalise, negative=self.negative)
        return pt.name

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["reductions"] = dict(self.reductions)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Template":
        d = dict(d)
        d["reductions"] = tuple(sorted(dict(d.get("reductions", {})).items()))
        return cls(**d)


def point_for(t: Template, case: Case) -> Point:
    """The family point ``t`` means for ``case``.  Fields that cannot act on the case are
    normalised away (a misread as the case's own kind, weight options without weights),
    so equal behaviour gives equal points."""
    weighted = case.weight is not None or case.sample_weight is not None
    reduction = t.applied(case.reduction)
    return Point(
        reduction=reduction, epsilon=t.epsilon, eps=t.eps, zero_inf=t.zero_inf, swap=t.swap,
        target_as=None if t.target_as == case.target_kind else t.target_as,
        pred_as=None if t.pred_as == case.pred_kind else t.pred_as,
        weight_level=t.weight_level if case.sample_weight is not None else "element",
        weight_divisor=t.weight_divisor if weighted and reduction in _DIVISOR_REDUCTIONS else "count",
        generalised=t.generalised, normalise=t.normalise, negative=t.negative,
    )


def template_from_points(points: Mapping[str, Point]) -> Template:
    """The template of per-reduction points (e.g. documented ones); non-reduction fields are
    taken from the first point in reduction order."""
    if not points:
        return Template()
    first = points[sorted(points)[0]]
    t = Template(epsilon=first.epsilon, eps=first.eps, zero_inf=first.zero_inf, swap=first.swap,
                 target_as=first.target_as, pred_as=first.pred_as, weight_level=first.weight_level,
                 weight_divisor=first.weight_divisor, generalised=first.generalised,
                 normalise=first.normalise, negative=first.negative)
    for asked, p in sorted(points.items()):
        t = t.with_reduction(asked, p.reduction)
    return t


# ----------------------------------------------------------------------------- agreement
def _as_case(c) -> Case:
    return c if isinstance(c, Case) else Case.from_json(c)


def _as_outcome(o) -> Outcome:
    return o if isinstance(o, Outcome) else wire.from_json(o)


class _Scorer:
    """Memoised agreement of one outcome with one point."""

    def __init__(self, items: list[tuple[Case, Any]], evaluate: Callable, cache=None):
        self.items = items
        self.evaluate = evaluate
        self.cache = cache
        self.memo: dict[tuple[str, Point], bool] = {}
        self.evaluations = 0
        self._gradless: dict[str, Case] = {}

    def _expected(self, case: Case, point: Point):
        """``evaluate`` of ``case`` without gradients at ``point``; the gradient-free copy is
        made once per case (a Case's construction checks every field: ~70 us, ~20 times per
        case in a search).  Raises what ``evaluate`` raises.  With a run's ReferenceCache the
        cache does both (and remembers across adapters)."""
        if self.cache is not None:
            exp = self.cache(case, point, candidate=True, values_only=True)
            if isinstance(exp, BaseException):
                raise exp
            return exp
        bare = self._gradless.get(case.digest)
        if bare is None:
            bare = self._gradless[case.digest] = case.replace(grad=False) if case.grad else case
        with quiet:
            return self.evaluate(bare, point)

    def agrees(self, case: Case, outcome, point: Point) -> bool:
        key = (case.digest, point)
        hit = self.memo.get(key)
        if hit is not None:
            return hit
        ok = False
        shape = result_shape(case, point.reduction)
        if outcome.shape is None or shape is None or tuple(outcome.shape) == tuple(shape):
            self.evaluations += 1
            try:
                exp = self._expected(case, point)
            except Exception:   # as for the verdicts' candidates: a point the reference
                exp = None      # cannot evaluate for this case (KL-RED-0D, ...) explains nothing
            ok = exp is not None and value_agrees(exp, outcome, case)
            if ok and point.reduction != case.reduction and self._reshaped_asked(case, outcome, point):
                ok = False
        self.memo[key] = ok
        return ok

    def _reshaped_asked(self, case: Case, outcome, point: Point) -> bool:
        """True when ``outcome`` is the asked reduction's value in another shape (a
        flattened ``none`` on (N, 1) input "is" a per-sample sum): no evidence that the
        reduction is mapped to ``point``'s -- the case agrees with neither."""
        asked = result_shape(case, case.reduction)
        value = np.asarray(outcome.value)
        if asked is None or tuple(asked) == tuple(value.shape) or int(np.prod(asked)) != value.size:
            return False   # same shape: the asked reduction agrees or not on its own
        try:
            exp = self._expected(case, dataclasses.replace(point, reduction=case.reduction))
        except Exception:
            return False
        v, b = expected_value(exp, case.dtype, judged_dtype(case.dtype, outcome.dtype))
        return compare_arrays(v, b, np.asarray(outcome.value, dtype=np.float64).reshape(v.shape)).ok

    def score(self, t: Template, items=None, floor: int | None = None) -> int | None:
        """How many of ``items`` (default: the search's) agree with ``t``; None as soon
        as so many disagree that the score must be below ``floor``."""
        items = self.items if items is None else items
        allowed = len(items) if floor is None else len(items) - floor    # disagreements
        agree = 0
        for c, o in items:
            if self.agrees(c, o, point_for(t, c)):
                agree += 1
            else:
                allowed -= 1
                if allowed < 0:
                    return None
        return agree

    def disagreeing(self, t: Template) -> list[str]:
        return [c.digest for c, o in self.items if not self.agrees(c, o, point_for(t, c))]


def _neighbours(t: Template, asked: Iterable[str], weighted: bool, sample_weighted: bool) -> list[Template]:
    """Templates one field away from ``t``: the shared neighbourhood
    (:func:`klconform.neighbourhood.one_field_changes`; a template misreads every case's
    encoding alike, so "as given" (None) is an option), then each asked reduction mapped
    to another."""
    out = [dataclasses.replace(t, **ch) for ch in one_field_changes(
        t, input_options=(None, *PRED_KINDS), input_now=t.pred_as, target_options=(None, *TARGET_KINDS),
        target_now=t.target_as, divisor=weighted, level=sample_weighted)]
    for a in sorted(asked):
        for r in REDUCTIONS:
            if r != t.applied(a):
                out.append(t.with_reduction(a, r))
    return out


#: What the result reports beside the best template: the next ALTERNATIVES by score.
ALTERNATIVES = 3


def _search(scorer: _Scorer, start: Template, asked, weighted, sample_weighted, scored: dict[Template, int],
            below: dict[Template, int], max_sweeps: int = 4, prune: bool = True) -> tuple[Template, int]:
    """Coordinate search from ``start``: take the best strict improvement among the
    neighbours until none improves; returns (best, its score).  Every template scored goes
    into ``scored`` (template -> score, shared by the searches), or into ``below``
    (template -> a floor its score is under) when its scoring stopped early (``prune``):
    once it disagrees with so many cases that it can neither improve on the sweep's best
    nor rank among the top 1 + ALTERNATIVES scores already known, its exact score changes
    nothing the result reports.  A later search with a lower floor scores it again."""

    def score(t, best_s=None):
        if t in scored:
            return scored[t]
        floor = None
        if prune and best_s is not None and len(scored) > ALTERNATIVES:
            floor = min(best_s, heapq.nlargest(ALTERNATIVES + 1, scored.values())[-1])
        if floor is not None and below.get(t, -1) >= floor:
            return -1                          # known to be below a floor at least this high
        s = scorer.score(t, floor=floor)
        if s is None:
            below[t] = floor
            return -1
        below.pop(t, None)
        scored[t] = s
        return s

    cur, cur_s = start, score(start)
    n = len(scorer.items)
    for _ in range(max_sweeps):
        if cur_s == n:
            break
        best, best_s = cur, cur_s
        for cand in _neighbours(cur, asked, weighted, sample_weighted):
            s = score(cand, best_s)
            if s > best_s or (s == best_s and best is not cur and cand.complexity < best.complexity):
                best, best_s = cand, s
                if s == n:
                    break
        if best is cur:
            break
        cur, cur_s = best, best_s
    return cur, cur_s


def _search_subset(items: list[tuple[Case, Any]], limit: int) -> list[tuple[Case, Any]]:
    """A deterministic subset for the search: curated cases first, then by digest, at most
    ``limit``, keeping every asked reduction represented."""
    ordered = sorted(items, key=lambda co: (not co[0].label.startswith("curated/"), co[0].digest))
    if len(ordered) <= limit:
        return ordered
    chosen = ordered[:limit]
    have = {c.reduction for c, _ in chosen}
    for co in ordered[limit:]:
        if co[0].reduction not in have:
            chosen.append(co)
            have.add(co[0].reduction)
    return chosen


def _status(agree: int, compared: int) -> str:
    if compared == 0:
        return "no_data"
    if agree == compared:
        return "exact"
    return "partial" if agree / compared >= PARTIAL_THRESHOLD else "unexplained"


def documented_template(documented: Mapping[str, Any] | None) -> Template | None:
    """The template of an ``AdapterRun.documented`` summary ({"points": {R: Point json}})."""
    if not documented or not documented.get("points"):
        return None
    return template_from_points({r: Point.from_json(p) for r, p in documented["points"].items()})


def differing_fields(a: Template, b: Template) -> list[str]:
    """Names of the fields where two templates differ (``reductions`` as ``reduction[R]``)."""
    out = [f.name for f in dataclasses.fields(Template)
           if f.name != "reductions" and getattr(a, f.name) != getattr(b, f.name)]
    asked = sorted(set(dict(a.reductions)) | set(dict(b.reductions)))
    out += [f"reduction[{r}]" for r in asked if a.applied(r) != b.applied(r)]
    return out


def _is_large(case) -> bool:
    """A large case (klconform.large): what an API computes is read from the small cases;
    a large one only adds size, and would cost a generation and 10⁷-term evaluations per
    template."""
    return (case.get("recipe") if isinstance(case, dict) else getattr(case, "recipe", None)) is not None


def infer_fingerprint(cases: Mapping[str, Any], outcomes: Mapping[str, Any], *,
                      documented: Mapping[str, Any] | None = None, max_search_cases: int = 300,
                      evaluate: Callable | None = None, prune: bool = True, cache=None) -> dict[str, Any]:
    """The observed semantics of one adapter.

    ``cases``: digest -> :class:`Case` or ``Case.to_json()`` (large cases are left out); ``outcomes``: digest ->
    :class:`~klconform.adapters.base.Outcome` or ``klconform.wire.to_json(outcome)`` (only ``ok`` outcomes with a value
    are compared); ``documented``: optional ``AdapterRun.documented`` summary, used as a
    second starting point and scored for comparison; ``evaluate(case, point)`` defaults
    to ``reference.evaluate``; ``cache``: a :class:`~klconform.evaluator.ReferenceCache` used
    instead (values only, shared with the run's verdicts); ``prune=False`` scores every template in full (the same
    result, more evaluations: :func:`_search`).  Returns a JSON-ready dict (keys ``observed``, ``agree``,
    ``compared``, ``fraction``, ``status`` — "exact" | "partial" | "unexplained" |
    "no_data" —, ``canonical``, ``documented``, ``ties``, ``alternatives``,
    ``unexplained_cases``, ``differs_from_documented``, ``search``, ``method``)."""
    items: list[tuple[Case, Any]] = []
    for digest in sorted(outcomes):
        o = _as_outcome(outcomes[digest])
        if o.status != "ok" or o.value is None or digest not in cases or _is_large(cases[digest]):
            continue
        items.append((_as_case(cases[digest]), o))
    doc_t = documented_template(documented)
    result: dict[str, Any] = {"method": METHOD, "compared": len(items)}
    if not items:
        result.update(status="no_data", agree=0, fraction=None, observed=None, canonical=None,
                      documented=None if doc_t is None else {"name": doc_t.name, "template": doc_t.to_json()},
                      ties=[], ties_templates=[], alternatives=[], unexplained_cases=[], differs_from_documented=[],
                      search={"cases": 0, "templates": 0, "evaluations": 0},
                      reason="no outcome with a value to compare")
        return result
    ev = evaluate or default_evaluate
    subset = _search_subset(items, max_search_cases)
    scorer = _Scorer(subset, ev, cache)
    asked = sorted({c.reduction for c, _ in items})
    weighted = any(c.weight is not None or c.sample_weight is not None for c, _ in subset)
    sample_weighted = any(c.sample_weight is not None for c, _ in subset)
    starts = [Template()] + ([doc_t] if doc_t is not None and doc_t != Template() else [])
    scored: dict[Template, int] = {}
    below: dict[Template, int] = {}
    finals = []
    for s in starts:
        best, best_s = _search(scorer, s, asked, weighted, sample_weighted, scored, below, prune=prune)
        finals.append((best_s, -best.complexity, best))
    best_s, _, best = max(finals, key=lambda x: (x[0], x[1]))
    top = max(scored.values())
    # equally good templates that mean another point for some case, one (the simplest) per
    # meaning: a field that is a no-op on every case (reading a log-prob input "as logprob")
    # does not make another template
    def meaning(t):
        return tuple(point_for(t, c) for c, _ in subset)
    best_meaning, by_meaning = meaning(best), {}
    for t in sorted((t for t, s in scored.items() if s == top and t != best), key=lambda t: (t.complexity, t.name)):
        by_meaning.setdefault(meaning(t), t)
    ties = [t for m, t in by_meaning.items() if m != best_meaning]
    alternatives = sorted((t for t in scored if t != best), key=lambda t: (-scored[t], t.complexity, t.name))[:ALTERNATIVES]

    full = _Scorer(items, ev, cache)
    full.memo, full._gradless = scorer.memo, scorer._gradless   # same digests
    n = len(items)
    agree = full.score(best)
    canon = full.score(Template())
    observed_points = {}
    for a in asked:
        c = next(c for c, _ in items if c.reduction == a)
        observed_points[a] = point_for(best, c).to_json()
    result.update(
        observed={"name": best.name, "template": best.to_json(), "points": observed_points},
        agree=agree, fraction=agree / n, status=_status(agree, n),
        canonical={"name": Template().name, "agree": canon},
        documented=None if doc_t is None else {"name": doc_t.name, "template": doc_t.to_json(),
                                                "agree": full.score(doc_t)},
        ties=[t.name for t in ties[:5]],
        ties_templates=[{"name": t.name, "template": t.to_json()} for t in ties[:5]],
        alternatives=[{"name": t.name, "agree_in_search": scored[t]} for t in alternatives],
        unexplained_cases=full.disagreeing(best)[:10],
        differs_from_documented=[] if doc_t is None else differing_fields(best, doc_t),
        search={"cases": len(subset), "templates": len(scored) + len(below),
                "evaluations": scorer.evaluations + full.evaluations},
    )
    return result
