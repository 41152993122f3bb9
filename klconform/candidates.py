"""Which family points might explain an outcome, and how much each claims (simplest first).

:func:`candidate_points` lists the points the verdicts' explanation search
(:mod:`klconform.explain`) tries; :func:`complexity` and :func:`point_distance` rank them;
:func:`ranked_candidates` caches the ranked list per kind of case.
"""
from __future__ import annotations

import dataclasses
import functools
import types

from klconform.reference.family import PRED_KINDS, TARGET_KINDS, Point

from .case import REDUCTIONS, Case
from .neighbourhood import EPSILON_VARIANTS, one_field_changes

# Cost of changing one field of a point (SPEC.md §Family): misreading the arguments or
# their encodings is a bigger claim than a different reduction, epsilon or convention.
_FIELD_COSTS = (("reduction", 1), ("epsilon", 1), ("eps", 0), ("weight_level", 1),
                ("weight_divisor", 1), ("zero_inf", 1), ("generalised", 1), ("normalise", 1),
                ("negative", 1), ("swap", 2), ("target_as", 2), ("pred_as", 2))
_WEIGHT_FIELDS = ("weight_level", "weight_divisor")


def _vary(base: Point, case: Case) -> list[Point]:
    """Points one field away from ``base``: another reduction, then the shared
    neighbourhood (:func:`klconform.neighbourhood.one_field_changes`)."""
    weighted = case.weight is not None or case.sample_weight is not None
    out = [dataclasses.replace(base, reduction=r) for r in REDUCTIONS if r != base.reduction]
    out += [dataclasses.replace(base, **ch) for ch in one_field_changes(
        base, input_options=PRED_KINDS, input_now=base.pred_as or case.pred_kind,
        target_options=TARGET_KINDS, target_now=base.target_as or case.target_kind,
        divisor=weighted and base.reduction in ("mean", "distribution_mean"), level=weighted,
        functions=False)]
    return out


def candidate_points(case: Case, compared: Point, documented: Point | None = None) -> list[Point]:
    """Family points that might explain an outcome that ``compared`` does not, simplest
    first: the documented point; one field away from the compared point; one field away
    from the documented point; then each reduction with each epsilon variant, swapped
    arguments or a 0*inf = NaN convention on top of the documented (else compared) point.
    ``compared`` itself is excluded."""
    weighted = case.weight is not None or case.sample_weight is not None
    return list(_candidates(compared, documented, weighted, case.pred_kind, case.target_kind))


@functools.lru_cache(maxsize=4096)
def _candidates(compared: Point, documented: Point | None, weighted: bool, pred_kind: str,
                target_kind: str) -> tuple[Point, ...]:
    """:func:`candidate_points`, which depends on the case only through these arguments:
    built once per combination (each ``dataclasses.replace`` re-validates a Point; ~150 per
    list were 10-20 % of a run's controller time)."""
    case = types.SimpleNamespace(weight=1.0 if weighted else None, sample_weight=None,
                                 pred_kind=pred_kind, target_kind=target_kind)
    rep = dataclasses.replace
    seq: list[Point] = []
    if documented is not None:
        seq.append(documented)
    seq += _vary(compared, case)
    if documented is not None:
        seq += _vary(documented, case)
    base = documented or compared
    for r in REDUCTIONS:
        for e, v in EPSILON_VARIANTS:
            seq.append(rep(base, reduction=r, epsilon=e, eps=v))
        seq.append(rep(base, reduction=r, swap=not base.swap))
        seq.append(rep(base, reduction=r, zero_inf="nan"))
    seen, out = {compared}, []
    for p in seq:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return tuple(out)


def point_distance(a: Point, b: Point, *, weighted: bool = True) -> int:
    """How far apart two family points are: the summed cost of the fields that differ
    (``epsilon`` and ``eps`` count once; swap and misread encodings count 2; the weight
    fields only when the case is ``weighted`` -- without weights they change nothing)."""
    d = 0
    for name, cost in _FIELD_COSTS:
        if not weighted and name in _WEIGHT_FIELDS:
            continue
        if getattr(a, name) != getattr(b, name):
            d += cost if not (name == "eps" and a.epsilon == b.epsilon) else 1
    return d


def complexity(cand: Point, compared: Point, documented: Point | None = None, *, weighted: bool = True) -> int:
    """How much ``cand`` claims beyond the compared point: its distance from it, or one
    more than its distance from the (different) documented point, whichever is less."""
    c = point_distance(cand, compared, weighted=weighted)
    if documented is not None and documented != compared:
        c = min(c, 1 + point_distance(cand, documented, weighted=weighted))
    return c


def reduction_rank(cand: Point, compared: Point, case: Case, documented: Point | None) -> int:
    """Tie-break among equally simple candidates: the compared point's reduction first,
    then the case's own or the documented one, then any other (two reductions that give
    the same value here -- 'distribution' and 'sample_sum' on 2-D input, every reduction
    on a NaN -- are told apart in favour of the reduction the question asked about)."""
    if cand.reduction == compared.reduction:
        return 0
    if cand.reduction == case.reduction or (documented is not None and cand.reduction == documented.reduction):
        return 1
    return 2


@functools.lru_cache(maxsize=4096)
def ranked_candidates(compared: Point, documented: Point | None, weighted: bool, pred_kind: str,
                      target_kind: str, reduction: str) -> tuple[tuple[int, int, int, Point], ...]:
    """:func:`candidate_points` with their :func:`complexity` and reduction rank, sorted by
    both (ties: generation order).  They depend on the case only through these arguments,
    so the list is built once per combination."""
    like = types.SimpleNamespace(weight=1.0 if weighted else None, sample_weight=None,
                                 pred_kind=pred_kind, target_kind=target_kind, reduction=reduction)
    out = [(complexity(c, compared, documented, weighted=weighted), reduction_rank(c, compared, like, documented), i, c)
           for i, c in enumerate(candidate_points(like, compared, documented))]
    out.sort(key=lambda r: r[:3])
    return tuple(out)
