"""The explanation search of the verdicts: which other family point explains an outcome
that the compared point does not (a ``semantic`` verdict names it).

:func:`explain` tries :func:`klconform.candidates.ranked_candidates` simplest first and
accepts a point that explains the value *and* the gradients (complexity <= :data:`FULL_MAX`),
else one that explains the value alone (<= :data:`VALUE_ONLY_MAX`, gross value errors only).
NaN-only disagreements are evidence for no point.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from klconform.reference.family import Point
from klconform.reference._quiet import quiet

from .candidates import point_distance, ranked_candidates
from .case import Case
from .compare import (PointCheck, check_outcome, departing_entries, expected_gradient, expected_value,
                      result_shape)
from .evaluator import ReferenceCache

# A semantic verdict names a point within this complexity when it explains the value and
# the gradients, and within VALUE_ONLY_MAX when it explains the value alone (weaker
# evidence, so only the simplest points: in float16/bfloat16 a loose bound lets far
# points fit a value by coincidence) -- and then only a gross value discrepancy (special
# values, a shape, or at least VALUE_ONLY_MIN_ERR times the bound): a precision-level
# error fitted by, say, another epsilon is a coincidence the gradients did not confirm.
FULL_MAX = 2
VALUE_ONLY_MAX = 1
VALUE_ONLY_MIN_ERR = 16.0
# ... except that a finite value off by this many bounds may name a two-field point on the
# value alone (e.g. another reduction plus the framework's epsilon where NaN inputs leave
# no gradient to confirm it): no coincidence gets that close.
VALUE_ONLY_FAR_ERR = 1e3


def _entry_errors(expected: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """|observed - expected| per entry; 0 where NaN meets NaN or an infinity the same
    infinity, +inf where the NaN / infinity patterns disagree."""
    with quiet:
        same_special = (np.isnan(expected) & np.isnan(observed)) | (np.isinf(expected) & (expected == observed))
        finite = np.isfinite(expected) & np.isfinite(observed)
        return np.where(same_special, 0.0, np.where(finite, np.abs(observed - expected), np.inf))


def _improves(base_expected, base_bound, cand_expected, observed) -> bool:
    """True when a candidate's expected array is closer to ``observed`` than the compared
    point's on the entries where the compared point fails: nowhere farther, somewhere
    nearer.  A candidate that fits only because its own bound is wider (a sum's bound is
    n times a mean's) is no explanation."""
    bad = departing_entries(base_expected, base_bound, observed)
    if bad is None or not bad.any():
        return True
    o = np.asarray(observed, dtype=np.float64)[bad]
    base_err = _entry_errors(np.asarray(base_expected, dtype=np.float64)[bad], o)
    cand = np.broadcast_to(np.asarray(cand_expected, dtype=np.float64), bad.shape)[bad]
    cand_err = _entry_errors(cand, o)
    return bool(np.all(cand_err <= base_err) and np.any(cand_err < base_err))


def _nan_only(expected, bound, observed) -> bool:
    """True when every entry of ``observed`` that disagrees with ``expected`` (beyond
    ``bound``, or in its NaN/inf pattern) is NaN: such a disagreement says nothing about
    *which* semantics produced it (any NaN-producing point would "explain" it)."""
    if observed is None:
        return False
    bad = departing_entries(expected, bound, observed)
    if bad is None:
        return False
    o = np.asarray(observed, dtype=np.float64)
    return bool(bad.any()) and bool(np.all(np.isnan(o[bad])))


def _discriminates(base_expected, base_bound, cand_expected, cand_bound, observed) -> bool:
    """True when a candidate's expectation is evidence against the compared point's on this
    case: some entry of ``observed`` agrees with the candidate where the candidate is
    distinguishable from the compared point (NaN against a number, an infinity against a
    finite value, or a finite value outside the compared point's bound).  Entries where
    both points give the same NaN / infinity, or the candidate's value lies within the
    compared point's bound (a loose candidate bound then "fits" anything near), are no evidence, nor is a result shape that differs only as a reshape of the
    same values (a flattened ``none`` output "is" a per-sample sum on (N, 1) input)."""
    e = np.asarray(base_expected, dtype=np.float64)
    c = np.asarray(cand_expected, dtype=np.float64)
    o = np.asarray(observed, dtype=np.float64)
    eb = np.broadcast_to(np.asarray(base_bound, dtype=np.float64), e.shape)
    cb = np.broadcast_to(np.asarray(cand_bound, dtype=np.float64), c.shape)
    if e.shape != c.shape:
        if e.size != c.size:
            return True           # another result shape, not a reshape: the shape discriminates
        e, eb = e.reshape(c.shape), eb.reshape(c.shape)
    if o.shape != c.shape:
        if o.size != c.size:
            return False
        o = o.reshape(c.shape)
    distinct = _entry_errors(e, c) > np.maximum(eb, cb)
    with quiet:
        agrees = _entry_errors(c, o) <= cb
    return bool(np.any(distinct & agrees))


def _grad_failures_nan_only(base: PointCheck, outcome, case: Case, used: str) -> bool:
    """True when every failing gradient of ``base`` fails only at entries the framework
    returned as NaN (no candidate point can be credited for "explaining" those)."""
    for k, c in base.grad_fails:
        if c is None:
            return False
        gv, gb = expected_gradient(base.exp, k, case, used, (outcome.grad_dtypes or {}).get(k, used))
        if not _nan_only(gv, gb, (outcome.grads or {}).get(k)):
            return False
    return True


def _improves_gradients(base: PointCheck, cexp, outcome, case: Case, used: str) -> bool:
    """:func:`_improves` for every gradient the compared point gets wrong."""
    cgrads = getattr(cexp, "grads", None) or {}
    for k, c in base.grad_fails:
        got = (outcome.grads or {}).get(k)
        if c is None or got is None or cgrads.get(k) is None:
            return False
        gdt = (outcome.grad_dtypes or {}).get(k, used)
        gv, gb = expected_gradient(base.exp, k, case, used, gdt)
        cv, _ = expected_gradient(cexp, k, case, used, gdt)
        if not _improves(gv, gb, cv, got):
            return False
    return True


def explain(case: Case, outcome, base: PointCheck, point: Point, documented: Point | None,
            ev: ReferenceCache, *, adapter: str, used: str, gradients, max_candidates: int):
    """The point that explains ``outcome`` where ``point`` does not (``base`` is the check
    against ``point``; ``used`` the dtype the value is judged in), as ``(point, check,
    explains_gradients_too)``, or None.  Points that explained this ``adapter``'s earlier
    outcomes are remembered in ``ev.hints`` (tried first among equally simple points)."""
    base_v, base_b = expected_value(base.exp, case.dtype, used)
    if base.value.ok:
        # only gradients differ: a point must explain them.  NaN-only differences can't
        # credit one, nor can gradients of a NaN value (a backward through NaN is arbitrary).
        if (_grad_failures_nan_only(base, outcome, case, used)
                or np.any(np.isnan(np.asarray(outcome.value, dtype=np.float64)))):
            return None
        limit, value_limit, nan_value = FULL_MAX, -1, False
    else:
        nan_value = base.value.cls != "shape" and _nan_only(base_v, base_b, outcome.value)
        limit = VALUE_ONLY_MAX if nan_value else FULL_MAX
        err = base.value.err_over_bound or 0.0
        if base.value.cls == "precision" and err >= VALUE_ONLY_FAR_ERR:
            value_limit = FULL_MAX
        elif base.value.cls != "precision" or err >= VALUE_ONLY_MIN_ERR:
            value_limit = VALUE_ONLY_MAX
        else:
            value_limit = -1
    observed_shape = tuple(outcome.shape) if outcome.shape is not None else None
    # gradients compared at all? Without them a "full" fit is only a value fit.
    graded = case.grad and any(k in (outcome.grads or {}) for k in gradients)
    hints = ev.hints.setdefault(adapter, [])
    hinted = set(hints)
    weighted = case.weight is not None or case.sample_weight is not None
    shapes: dict[str, Any] = {}
    ranked = []
    for cost, rrank, i, cand in ranked_candidates(point, documented, weighted, case.pred_kind,
                                                   case.target_kind, case.reduction):
        if cost > limit:
            break
        if observed_shape is not None:
            if cand.reduction not in shapes:
                shapes[cand.reduction] = result_shape(case, cand.reduction)
            if shapes[cand.reduction] != observed_shape:
                continue
        # Points that explained this adapter's earlier outcomes are tried first among equally
        # simple ones (speed: MXNet 1.9 against its docstring is 'sample_sum' every time),
        # except for a NaN-only value, where the reduction rank must decide.
        hint = cand not in hinted
        ranked.append((cost, rrank if nan_value else 0, hint, rrank, i, cand))
    ranked.sort(key=lambda r: r[:5])
    value_only: tuple[int, Point, PointCheck] | None = None
    full = None
    named = {p for p in (documented, Point(reduction=case.reduction)) if p is not None}
    for tried, (cost, _, _, rrank, _, cand) in enumerate(ranked):
        if tried >= max_candidates or (value_only is not None and cost > value_only[0] + 1):
            break
        if value_only is not None and point_distance(cand, value_only[1], weighted=weighted) > 1:
            continue   # after a value-only hit, only its one-field refinements can do better
        quick = ev(case, cand, candidate=True, values_only=True)
        if isinstance(quick, Exception):
            continue
        if not check_outcome(quick, outcome, case, used, ()).value.ok:
            continue
        cand_v, cand_b = expected_value(quick, case.dtype, used)
        if not base.value.ok and base.value.cls != "shape" and not _improves(base_v, base_b, cand_v, outcome.value):
            continue
        # The evidence must discriminate (a candidate indistinguishable from the compared
        # point here explains nothing): on the value when the value is wrong.  When only
        # gradients are wrong the value cannot tell reductions apart (a reduction scales the
        # value as it scales the gradients; a value of 0 scales to 0): another reduction is
        # named only if the question is about it -- the asked or the documented one (MXNet's
        # docstring says mean, it sums) --, else a gradient bug is the likelier cause.
        # (The points the question names -- the documented one, and the canonical one when
        # the documented is compared -- need no such evidence: the documentation, or the
        # definition asked for, is the evidence for them.)
        if (not base.value.ok and cand not in named
                and not _discriminates(base_v, base_b, cand_v, cand_b, outcome.value)):
            continue
        if base.value.ok and cand.reduction != point.reduction and rrank > 1:
            continue
        cexp = ev(case, cand, candidate=True)
        if isinstance(cexp, Exception):
            continue
        chk = check_outcome(cexp, outcome, case, used, gradients)
        # Without gradients to compare, a value fit is all the evidence there is: one-field
        # points are named on it, two-field ones only when the value is far off (a weak fit).
        allowed = cost <= value_limit
        if chk.ok and not graded and not (cost <= VALUE_ONLY_MAX or allowed):
            continue
        if chk.ok and (not base.value.ok or _improves_gradients(base, cexp, outcome, case, used)):
            full = (cand, chk, True)
            break
        if value_only is None and allowed and not base.value.ok:
            value_only = (cost, cand, chk)
    hit = full or (None if value_only is None else (value_only[1], value_only[2], False))
    if hit is not None:
        cand = hit[0]
        if cand in hints:
            hints.remove(cand)
        hints.insert(0, cand)
        del hints[8:]
    return hit


