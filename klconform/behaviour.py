"""What a known record says the framework computes where it departs, and the check that an
observed outcome does that (klconform/records.py: ``observed``).

A record names *where* a framework differs (``match``: facts of the case and verdict) and
*what it does there* (``observed``).  It covers a verdict only when both hold, so a wrong
value at a recorded place — a planted wrong divisor where the record says "the gradient is
NaN" — stays unexpected.  The rules, all of which must hold:

=========== ====================================================================
rule        holds when
=========== ====================================================================
value       every entry of the returned value that departs from the compared
            point's expectation (beyond its bound, or another special value) is of
            this kind: "nan" | "+inf" | "-inf" | "finite" | "zero" | "non-finite"
            (NaN or ±inf, mixed: a backward that gives NaN at some entries, −inf at
            others)
grad        the same for the gradient the verdict is about (``grad_input``), or
            "absent": no gradient of that input came back (a constant returned); it is
            judged against the point the harness judged it at (the compared point,
            or the point a ``semantic`` verdict of the same comparison named).  One
            more kind for a log-probability prediction: "-p", every departing entry is
            −p·c (KL-GRAD-PRED-LOGPROB's formula evaluated on its own, c = w·W/D, summed
            to the prediction's shape) — "d/d(log q) = −p where the reference gives NaN"
point       a table of family-point fields (``reference.Point``) replacing those of
            the compared point: the value (value verdicts) or the gradient
            (gradient verdicts) agrees with the reference there within its bound
divided_by  the value (value verdicts) or the gradient (gradient verdicts) is the
            compared point's *sum* divided by this count of the sent arrays:
            "pred.shape[0]" | "target.shape[0]" (1 for a 0-D array) | "pred.size" |
            "target.size" — a divisor no family reduction has (torch's batchmean with
            a broadcast input)
within      the verdict's ``err_over_bound`` is at most this factor (how far
            beyond the bound the framework's rounding goes)
dtype       the dtype returned (the value's; for a gradient verdict, the gradient's), or
            "pred" / "target": the dtype that input was sent in
error       the framework raised an exception whose type matches this glob
            ("*" any); "value": it returned a value where the spec defines an error
shape       (``shape`` verdicts) "squeezed": the returned shape is the compared
            point's result shape with its one-element axes removed (torch.squeeze),
            and the value, read in the result shape, is the compared point's — or
            what the record's other rules (``value``, ``point``) say of it
=========== ====================================================================

``point`` together with ``value`` (or ``grad``) says "the point's value (gradient), except
entries of this kind": the kind rule then judges the entries departing from *that point*
(none departing is fine) and replaces the point's strict agreement — e.g. torch's Categorical
gradients are the normalised point's, except the zeros its clamp leaves.

A ``semantic`` record's ``explained_by`` is such a statement already (the explanation
search found the outcome within the bound of that point); others need ``observed``.
"""
from __future__ import annotations

import dataclasses
import fnmatch
from typing import Any, Callable

import numpy as np

from klconform.reference._quiet import quiet
from .case import Case
from .compare import compare_arrays, departing_entries, expected_gradient, expected_value, judged_dtype
from .reference.dtypes import UNIT_ROUNDOFF
from .reference.distill import DistillPoint, evaluate as distill_evaluate
from .reference.family import Point
from .reference.variants import prepare, sum_to_shape

KINDS = ("nan", "+inf", "-inf", "finite", "zero", "non-finite")
RULES = {"value": str, "grad": str, "point": dict, "divided_by": str, "within": (int, float), "dtype": str,
         "error": str, "shape": str}
SHAPES = ("squeezed",)
DIVISORS = ("pred.shape[0]", "target.shape[0]", "pred.size", "target.size")
# the verdict classes a rule can speak about
RULE_CLASSES = {
    "value": ("special_value", "precision", "semantic", "shape"),
    "grad": ("gradient",),
    "point": ("special_value", "precision", "semantic", "gradient", "shape"),
    "divided_by": ("special_value", "precision", "semantic", "gradient"),
    "within": ("precision", "gradient", "semantic", "special_value"),
    "dtype": ("dtype",),
    "error": ("error",),
    "shape": ("shape",),
}


# classes whose verdict is the behaviour itself (the worker died, hung, or answered twice
# differently): their records need no ``observed`` rule
SELF_STATED = ("crash", "timeout", "nondeterministic")


class BehaviourError(ValueError):
    """A malformed ``observed`` table (the message names the rule)."""


def validate(observed: Any, cls: str) -> dict[str, Any]:
    """``observed`` checked for a record of verdict class ``cls``; returns it as a dict."""
    if not isinstance(observed, dict) or not observed:
        raise BehaviourError("observed must be a non-empty table of rules "
                             f"({', '.join(RULES)})")
    for key, val in observed.items():
        if key not in RULES:
            raise BehaviourError(f"observed.{key} is not a rule ({', '.join(RULES)})")
        if not isinstance(val, RULES[key]) or isinstance(val, bool):
            raise BehaviourError(f"observed.{key} = {val!r} has the wrong type")
        if cls not in RULE_CLASSES[key]:
            raise BehaviourError(f"observed.{key} says nothing about a {cls!r} verdict "
                                 f"(it speaks of {', '.join(RULE_CLASSES[key])})")
        allowed = KINDS + (("-p", "absent") if key == "grad" else ())
        if key in ("value", "grad") and val not in allowed:
            raise BehaviourError(f"observed.{key} = {val!r} is not one of {allowed}")
        if key == "shape" and val not in SHAPES:
            raise BehaviourError(f"observed.shape = {val!r} is not one of {SHAPES}")
        if key == "divided_by" and val not in DIVISORS:
            raise BehaviourError(f"observed.divided_by = {val!r} is not one of {DIVISORS}")
        if key == "within" and not val >= 1:
            raise BehaviourError(f"observed.within = {val!r}: a factor of the bound, at least 1")
        if key == "point":
            try:
                Point(**{"reduction": "sum", **val})
            except (TypeError, ValueError) as exc:
                try:                # or a distillation point's fields (KL-DISTILL-FAM)
                    DistillPoint(**{"divergence": "forward", "reduction": "sum", **val})
                except (TypeError, ValueError):
                    raise BehaviourError(f"observed.point: {exc}") from None
    return dict(observed)


@dataclasses.dataclass
class Observation:
    """What the rules of one verdict look at: the sent case, the outcome, the point it was
    compared at, the point its gradients were judged at, and the reference."""

    case: Case
    outcome: Any
    compared: Point
    judged: Point
    evaluate: Callable


def _kind_of(x: np.ndarray) -> dict[str, np.ndarray]:
    return {"nan": np.isnan(x), "+inf": x == np.inf, "-inf": x == -np.inf,
            "finite": np.isfinite(x), "zero": x == 0, "non-finite": ~np.isfinite(x)}


def _entries_are(kind: str, expected, bound, observed, minus_p=None, vacuous: bool = False) -> bool:
    dep = departing_entries(expected, bound, observed)
    if dep is None:
        return False
    if not dep.any():
        return vacuous
    o = np.asarray(observed, dtype=np.float64)
    if kind == "-p":
        if minus_p is None:
            return False
        want, tol = minus_p
        with quiet:
            ok = (np.isnan(want) & np.isnan(o)) | (want == o) | (np.abs(o - want) <= tol)
        return bool(np.all(ok[dep]))
    return bool(np.all(_kind_of(o)[kind][dep]))


def _minus_p(case: Case, point: Point, dtype: str):
    """(−p·c summed to the prediction's shape, its tolerance) for a log-probability
    prediction at ``point``, or None: the formula of KL-GRAD-PRED-LOGPROB evaluated on its
    own, whatever the term's value."""
    if (point.pred_as or case.pred_kind) != "logprob" or point.swap or point.generalised or point.normalise:
        return None
    try:
        prep = prepare(case, point)
    except ValueError:
        return None
    with quiet:
        c = np.asarray(prep.coef, dtype=np.float64) / float(prep.divisor)
        p = np.broadcast_to(np.asarray(prep.target.v, dtype=np.float64), prep.shape)
        shape = tuple(np.shape(case.pred))
        g = sum_to_shape(-p * c, shape)
        k = max(1, int(np.prod(prep.shape, dtype=np.int64)) // max(1, int(np.prod(shape, dtype=np.int64))))
        tol = 4 * (k + 2) * UNIT_ROUNDOFF[dtype] * sum_to_shape(np.abs(p * c), shape)
    return np.asarray(g, dtype=np.float64), np.asarray(tol, dtype=np.float64)


def _grad_input(verdict) -> str | None:
    detail = verdict.detail or ""
    for k in ("pred", "target"):
        if detail.startswith(f"gradient wrt {k}"):
            return k
    return None




_BAD_POINT = object()


def _point_with_kind(observed: dict, compared, key):
    """The point of a ``point`` rule that goes with a ``value`` (or, for a gradient
    verdict, ``grad``) kind: the compared point with the rule's fields (module docstring);
    None without one; ``_BAD_POINT`` when the fields name no point of the family."""
    if "point" not in observed or ("grad" not in observed if key else "value" not in observed):
        return None
    try:
        return dataclasses.replace(compared, **observed["point"])
    except (TypeError, ValueError):
        return _BAD_POINT


def _status_rule(rule: str, want, verdict, out) -> bool:
    """The rules about a verdict's error ratio and an outcome's status, alike for every case
    kind: ``within`` (err_over_bound at most ``want``), ``error`` ("value": a value came back;
    else an error whose type matches the glob ``want``)."""
    if rule == "within":
        return verdict.err_over_bound is not None and verdict.err_over_bound <= want
    if want == "value":
        return out.status == "ok"
    return out.status == "error" and fnmatch.fnmatchcase(out.error_type or "", want)


def holds(observed: dict[str, Any], verdict, obs: Observation) -> bool:
    """True when every rule of ``observed`` holds for ``verdict`` on ``obs``."""
    if isinstance(obs, DistillObservation):
        return _holds_distill(observed, verdict, obs)
    case, out = obs.case, obs.outcome
    used = judged_dtype(case.dtype, out.dtype)
    key = _grad_input(verdict)
    if "shape" in observed:
        out = _unsqueezed(out, obs, used, stated=any(r in observed for r in ("value", "point")))
        if out is None:
            return False
    at = _point_with_kind(observed, obs.compared, key)   # "the point's, except entries of this kind"
    if at is _BAD_POINT:
        return False
    for rule, want in observed.items():
        if rule == "shape" or (rule == "point" and at is not None):
            continue
        if rule in ("within", "error"):
            if not _status_rule(rule, want, verdict, out):
                return False
        elif rule == "dtype":
            got = (out.grad_dtypes or {}).get(key) if key else out.dtype
            if want in ("pred", "target"):        # the dtype that input was sent in
                want = case.input_dtype(want)
            if got != want and not (key is None and want in [d for d in (out.grad_dtypes or {}).values()]):
                return False
        elif rule == "value":
            exp = obs.evaluate(case, at or obs.compared)
            if isinstance(exp, Exception) or out.value is None:
                return False
            v, b = expected_value(exp, case.dtype, used)
            if not _entries_are(want, v, b, out.value, vacuous=at is not None):
                return False
        elif rule == "grad":
            got = (out.grads or {}).get(key) if key else None
            exp = obs.evaluate(case, at or obs.judged)
            if got is None or isinstance(exp, Exception):
                return False
            eg = expected_gradient(exp, key, case, used, (out.grad_dtypes or {}).get(key, used))
            mp = _minus_p(case, obs.judged, (out.grad_dtypes or {}).get(key) or used) \
                if want == "-p" and key == "pred" else None
            if eg is None or not _entries_are(want, eg[0], eg[1], got, mp, vacuous=at is not None):
                return False
        elif rule in ("point", "divided_by"):
            scale = 1.0
            try:
                if rule == "point":
                    point = dataclasses.replace(obs.compared, **want)
                else:
                    point = dataclasses.replace(obs.compared, reduction="sum")
                    scale = 1.0 / _count(case, want)
            except (TypeError, ValueError):
                return False
            exp = obs.evaluate(case, point)
            if isinstance(exp, Exception) or not _agrees(exp, key, case, out, used, scale):
                return False
    return True


def _unsqueezed(out, obs: Observation, used: str, stated: bool):
    """``out`` with its value read in the compared point's result shape, when the returned
    shape is that shape squeezed (``shape = "squeezed"``); None otherwise.  Unless other
    rules state the value (``stated``), it must be the compared point's."""
    exp = obs.evaluate(obs.case, obs.compared)
    if isinstance(exp, Exception) or out.value is None:
        return None
    want = tuple(np.shape(exp.value))
    if want == tuple(out.shape or ()) or tuple(out.shape or ()) != tuple(n for n in want if n != 1):
        return None
    o = np.asarray(out.value)
    if o.size != int(np.prod(want, dtype=np.int64)):
        return None
    out = dataclasses.replace(out, value=o.reshape(want), shape=want)
    if not stated:
        v, b = expected_value(exp, obs.case.dtype, used)
        if not compare_arrays(v, b, out.value, out.shape).ok:
            return None
    return out


def _count(case: Case, what: str) -> int:
    side, attr = what.split(".")
    shape = tuple(case.sent_shape(side))
    if attr == "size":
        return max(1, int(np.prod(shape, dtype=np.int64)))
    return shape[0] if shape else 1


def _agrees(exp, key, case: Case, out, used: str, scale: float) -> bool:
    """The outcome's value (``key`` None) or gradient ``key`` within the bound of ``exp``'s
    scaled by ``scale`` (the bound scales alike, plus the division's own rounding)."""
    if key is None:
        v, b = expected_value(exp, case.dtype, used)
        got, shape, dt = out.value, out.shape, used
    else:
        got, shape = (out.grads or {}).get(key), None
        dt = (out.grad_dtypes or {}).get(key, used)
        eg = expected_gradient(exp, key, case, used, dt)
        if got is None or eg is None:
            return False
        v, b = eg
    with quiet:
        v = np.asarray(v, dtype=np.float64) * scale
        b = np.asarray(b, dtype=np.float64) * scale + (UNIT_ROUNDOFF.get(dt, UNIT_ROUNDOFF[case.dtype]) * np.abs(v)
                                                       if scale != 1.0 else 0.0)
        b = np.where(np.isfinite(b), b, 0.0)
    return compare_arrays(v, b, got, shape).ok


def planted(outcome, verdict, obs: "Observation | None" = None, margin: float = 1.0):
    """``outcome`` with a wrong value planted where ``verdict`` says the framework departs
    (tests: a record must not cover a wrong value at its place).  Every entry of the value
    (value verdicts) or of the gradient the verdict is about becomes finite and wrong: with
    ``obs``, the reference's expectation there (compared point; the judged point for a
    gradient) moved by 0.25 + |e|/2 + 4·margin·bound (``margin``: a record's ``within``), so
    it departs from the reference as well as from any special value; without, NaN -> 0.375,
    ±inf -> ±1e3, x -> x + 0.25 + |x|/2."""
    key = _grad_input(verdict)
    base = (outcome.grads or {}).get(key) if key is not None else outcome.value
    ref = None
    if isinstance(obs, DistillObservation):
        used = judged_dtype(obs.case.dtype, outcome.dtype)
        ref = _distill_expected(obs, obs.judged if key else obs.compared, key,
                                used if key is None else (outcome.grad_dtypes or {}).get(key, used))
        if base is None and ref is not None:     # a gradient not returned: plant a wrong one
            base = ref[0]
    if base is None:
        return outcome
    if obs is not None and not isinstance(obs, DistillObservation):
        exp = obs.evaluate(obs.case, obs.judged if key else obs.compared)
        if not isinstance(exp, Exception):
            used = judged_dtype(obs.case.dtype, outcome.dtype)
            ref = (expected_value(exp, obs.case.dtype, used) if key is None else
                   expected_gradient(exp, key, obs.case, used, (outcome.grad_dtypes or {}).get(key, used)))
    a = np.asarray(base, dtype=np.float64)
    with quiet:
        if ref is not None and np.shape(ref[0]) == a.shape:
            e = np.asarray(ref[0], dtype=np.float64)
            b = np.broadcast_to(np.asarray(ref[1], dtype=np.float64), e.shape)
            moved = e + 0.25 + np.abs(e) / 2 + 4 * margin * b
            wrong = np.where(np.isfinite(moved), moved, 0.375)
        else:
            wrong = np.where(np.isnan(a), 0.375, np.where(np.isinf(a), np.sign(a) * 1e3, a + 0.25 + np.abs(a) / 2))
    if key is not None:
        return dataclasses.replace(outcome, grads={**(outcome.grads or {}), key: wrong})
    return dataclasses.replace(outcome, value=wrong)


# ----------------------------------------------------------------------------- distillation
@dataclasses.dataclass
class DistillObservation:
    """What the rules of a distillation verdict (SPEC.md §12, klconform.distill_harness) look
    at: the sent :class:`~klconform.reference.distill.DistillCase`, the outcome, the
    :class:`~klconform.reference.distill.DistillPoint` it was compared at and the one its
    gradients were judged at."""

    case: Any
    outcome: Any
    compared: DistillPoint
    judged: DistillPoint


def _distill_expected(obs: DistillObservation, point: DistillPoint, key: str | None, dtype: str):
    """(expected, bound) of the value (``key`` None) or gradient ``key`` at ``point``, rounded
    into ``dtype`` (the dtype the result came back in); None where the case is undefined."""
    from .reference.dtypes import round_to
    try:
        case = obs.case if dtype == obs.case.dtype else dataclasses.replace(obs.case, dtype=dtype, logits_dtype=obs.case.sent_dtype)
        e = distill_evaluate(case, point)
    except ValueError:
        return None
    v, b = (e.value, e.bound) if key is None else (e.grads.get(key), e.grad_bounds.get(key))
    if v is None:
        return None
    return round_to(np.asarray(v, dtype=np.float64), dtype), np.asarray(b, dtype=np.float64)


def _holds_distill(observed: dict[str, Any], verdict, obs: DistillObservation) -> bool:
    """:func:`holds` for a distillation verdict: rules ``value``, ``grad`` (the kinds, and
    "absent"), ``point`` (DistillPoint fields), ``within``, ``dtype`` ("pred"/"target": the
    logits' dtype), ``error``."""
    out, key = obs.outcome, _grad_input(verdict)
    used = judged_dtype(obs.case.dtype, out.dtype)
    at = _point_with_kind(observed, obs.compared, key)   # "the point's, except entries of this kind"
    if at is _BAD_POINT:
        return False
    for rule, want in observed.items():
        if rule == "point" and at is not None:
            continue
        if rule in ("within", "error"):
            if not _status_rule(rule, want, verdict, out):
                return False
        elif rule == "dtype":
            got = (out.grad_dtypes or {}).get(key) if key else out.dtype
            if got != (obs.case.sent_dtype if want in ("pred", "target") else want):
                return False
        elif rule == "grad" and want == "absent":
            if key is None or out.status != "ok" or (out.grads or {}).get(key) is not None:
                return False
        elif rule in ("value", "grad"):
            got = out.value if rule == "value" else (out.grads or {}).get(key) if key else None
            dt = used if rule == "value" else (out.grad_dtypes or {}).get(key, used)
            exp = _distill_expected(obs, at or (obs.compared if rule == "value" else obs.judged),
                                    None if rule == "value" else key, dt)
            if got is None or exp is None or not _entries_are(want, exp[0], exp[1], got, vacuous=at is not None):
                return False
        elif rule == "point":
            try:
                point = dataclasses.replace(obs.compared, **want)
            except (TypeError, ValueError):
                return False
            got = out.value if key is None else (out.grads or {}).get(key)
            dt = used if key is None else (out.grad_dtypes or {}).get(key, used)
            exp = _distill_expected(obs, point, key, dt)
            if got is None or exp is None:
                return False
            dep = departing_entries(exp[0], exp[1], got)
            if dep is None or dep.any():
                return False
        else:                       # a canonical-only rule (divided_by, shape) says nothing here
            return False
    return True
