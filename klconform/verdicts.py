"""Classify one adapter outcome against the reference: the verdicts of klconform.

:func:`classify` compares an :class:`~adapters.base.Outcome` with
``reference.evaluate(case, point)`` for one point of the reference family (the canonical
point, or the adapter's documented one) and returns the verdicts for that comparison:

* one *value* verdict — ``match``; ``semantic`` when another family point (searched in
  :func:`candidate_points`) explains the value, named in ``explained_by``; otherwise
  ``shape`` (returned shape differs), ``special_value`` (NaN / +-inf / finite disagree) or
  ``precision`` (finite, beyond the reference's per-case, per-dtype bound); ``error``
  (raised where the spec defines a value, or returned one where the spec defines an
  error), ``crash`` or ``timeout`` from the worker;
* a ``dtype`` verdict when the value or a gradient comes back in another dtype than the
  case's (a silent down-/up-cast); the value is then held to the bound of the coarser dtype;
* a ``gradient`` verdict per differentiable input whose gradient is missing or differs
  beyond its bound from the gradient of the point that explains the value.

A comparison with no discrepancy yields exactly one ``match`` verdict.  Every verdict
cites SPEC.md clause ids: the clauses the reference reports for the case plus the verdict
class clause ``KL-VERDICT-<CLASS>``.
"""
from __future__ import annotations

import dataclasses
import functools
import re
import types
import weakref
from typing import Any, Callable, Iterable

import numpy as np

from klconform.reference.family import Point

from .case import INPUT_KINDS, REDUCTIONS, TARGET_KINDS, Case
from .reference.dtypes import DTYPES, FINFO, UNIT_ROUNDOFF, round_to
from .results import Verdict

# Epsilon policies with the eps values frameworks are known to use (SPEC.md KL-EPS-*):
# MXNet adds 1e-12 inside log(target); Keras clips both into [1e-7, 1]; 1e-8 / 1e-10 / 1e-6
# are common alternatives in other code bases.
EPSILON_VARIANTS = (
    ("target_log_eps", 1e-12), ("clip_both", 1e-7), ("target_log_eps", 1e-7),
    ("target_log_eps", 1e-8), ("target_log_eps", 1e-10), ("target_log_eps", 1e-6),
    ("clip_both", 1e-12), ("clip_both", 1e-8), ("clip_both", 1e-10), ("clip_both", 1e-6),
    # Keras' epsilon() = 1e-7 as float16 holds it (the clip bound of float16 computations)
    ("clip_both", float(np.float16(1e-7))),
)
_GRAD_PREFIX = re.compile(r"^gradient wrt (\w+):")
_ERR_CAP = 1e300   # err_over_bound stays finite (JSON)


class ReferenceUndefined(Exception):
    """Raised by an ``evaluate`` function when the spec defines an *error* for the case."""


def verdict_clause(cls: str) -> str:
    """The SPEC.md clause id of a verdict class (``reference.spec.VERDICT_CLAUSES``)."""
    from klconform.reference.spec import VERDICT_CLAUSES
    return VERDICT_CLAUSES[cls]


def _undefined_types() -> tuple[type, ...]:
    """Exception types by which the reference says "the spec defines an error" (KL-RED-0D)."""
    try:
        from klconform.reference.variants import UndefinedCase
    except ImportError:   # reference not installed yet: only our own marker
        return (ReferenceUndefined,)
    return (ReferenceUndefined, UndefinedCase)


def default_evaluate(case: Case, point: Point | None = None):
    """``reference.evaluate`` (imported lazily: the reference is being written beside this)."""
    from klconform.reference.evaluate import evaluate
    return evaluate(case, point)


# ----------------------------------------------------------------------------- comparison
@dataclasses.dataclass(frozen=True)
class Comparison:
    """How an observed array relates to an expected one under a bound."""

    ok: bool
    cls: str | None              # None when ok, else "shape" | "special_value" | "precision"
    err_over_bound: float | None
    detail: str


def _fmt(a: np.ndarray) -> str:
    a = np.asarray(a)
    if a.size <= 4:
        return np.array2string(a.reshape(-1) if a.ndim else a, precision=17, separator=", ")
    return f"array{list(a.shape)}"


def compare_arrays(expected: np.ndarray, bound, observed: np.ndarray | None,
                   observed_shape: tuple[int, ...] | None = None) -> Comparison:
    """Compare ``observed`` with ``expected`` entry by entry: the shapes must be equal,
    NaN must meet NaN and +-inf the same infinity, finite entries must be within ``bound``
    (broadcastable to ``expected``; 0 demands equality)."""
    expected = np.asarray(expected, dtype=np.float64)
    if observed is None:
        return Comparison(False, "shape", None, "no value returned")
    observed = np.asarray(observed, dtype=np.float64)
    shape = tuple(observed_shape) if observed_shape is not None else observed.shape
    if shape != expected.shape or observed.shape != expected.shape:
        return Comparison(False, "shape", None, f"shape {list(shape)} expected {list(expected.shape)}")
    b = np.broadcast_to(np.asarray(bound, dtype=np.float64), expected.shape)
    e_nan, o_nan = np.isnan(expected), np.isnan(observed)
    e_inf, o_inf = np.isinf(expected), np.isinf(observed)
    special_bad = (e_nan != o_nan) | (e_inf != o_inf) | (e_inf & o_inf & (np.sign(expected) != np.sign(observed)))
    finite = ~(e_nan | o_nan | e_inf | o_inf)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        diff = np.abs(observed - expected)
        ratio = np.where(finite, np.where(b > 0, diff / np.where(b > 0, b, 1.0),
                                          np.where(diff > 0, np.inf, 0.0)), 0.0)
    err = float(min(_ERR_CAP, ratio.max())) if ratio.size else 0.0
    if special_bad.any():
        i = np.flatnonzero(special_bad.reshape(-1))[0]
        return Comparison(False, "special_value", err,
                          f"entry {i}: observed {observed.reshape(-1)[i]!r}, expected {expected.reshape(-1)[i]!r}")
    if err > 1.0:
        i = int(np.argmax(ratio.reshape(-1)))
        return Comparison(False, "precision", err,
                          f"entry {i}: observed {observed.reshape(-1)[i]!r}, expected {expected.reshape(-1)[i]!r}, "
                          f"bound {b.reshape(-1)[i]:.3g} ({err:.3g}x)")
    return Comparison(True, None, err, f"within bound ({err:.3g}x)")


# ----------------------------------------------------------------------------- candidates
def _vary(base: Point, case: Case) -> list[Point]:
    """Points one field away from ``base``, most plausible kinds of deviation first:
    reduction, epsilon policy, 0*inf convention, weight divisor and level, argument
    order, misread encodings."""
    rep = dataclasses.replace
    out = [rep(base, reduction=r) for r in REDUCTIONS if r != base.reduction]
    if base.epsilon != "none":      # no epsilon at all: the simplest epsilon change
        out.append(rep(base, epsilon="none", eps=0.0))
    out += [rep(base, epsilon=e, eps=v) for e, v in EPSILON_VARIANTS if (e, v) != (base.epsilon, base.eps)]
    fields = {f.name for f in dataclasses.fields(Point)}
    if "zero_inf" in fields:        # KL-ZERO-3
        out.append(rep(base, zero_inf="nan" if getattr(base, "zero_inf") != "nan" else "zero"))
    weighted = case.weight is not None or case.sample_weight is not None
    if "weight_divisor" in fields and weighted and base.reduction in ("mean", "distribution_mean"):
        out.append(rep(base, weight_divisor="weight_sum" if getattr(base, "weight_divisor") != "weight_sum"
                       else "count"))                                           # KL-WEIGHT-SUMDIV
    if weighted:
        out.append(rep(base, weight_level="distribution" if base.weight_level == "element" else "element"))
    out.append(rep(base, swap=not base.swap))
    out += [rep(base, input_as=k) for k in INPUT_KINDS if k != (base.input_as or case.input_kind)]
    out += [rep(base, target_as=k) for k in TARGET_KINDS if k != (base.target_as or case.target_kind)]
    return out


def candidate_points(case: Case, compared: Point, documented: Point | None = None) -> list[Point]:
    """Family points that might explain an outcome that ``compared`` does not, simplest
    first: the documented point; one field away from the compared point; one field away
    from the documented point; then each reduction with each epsilon variant, swapped
    arguments or a 0*inf = NaN convention on top of the documented (else compared) point.
    ``compared`` itself is excluded."""
    rep = dataclasses.replace
    seq: list[Point] = []
    if documented is not None:
        seq.append(documented)
    seq += _vary(compared, case)
    if documented is not None:
        seq += _vary(documented, case)
    base = documented or compared
    has_zero_inf = "zero_inf" in {f.name for f in dataclasses.fields(Point)}
    for r in REDUCTIONS:
        for e, v in EPSILON_VARIANTS:
            seq.append(rep(base, reduction=r, epsilon=e, eps=v))
        seq.append(rep(base, reduction=r, swap=not base.swap))
        if has_zero_inf:
            seq.append(rep(base, reduction=r, zero_inf="nan"))
    seen, out = {compared}, []
    for p in seq:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def result_shape(case: Case, reduction: str) -> tuple[int, ...] | None:
    """The result shape of ``reduction`` on ``case`` (SPEC.md KL-SHAPE-2), None if undefined."""
    shape = case.shape
    nd = len(shape)
    if reduction == "none":
        return shape
    if reduction in ("sum", "mean", "batchmean", "distribution_mean"):
        return ()
    if nd == 0:
        return None
    if reduction == "distribution":
        ca = case.class_axis % nd
        return shape[:ca] + shape[ca + 1:]
    return (shape[case.batch_axis % nd],)


# ----------------------------------------------------------------------------- classify
def _coarser(a: str, b: str) -> str:
    return a if UNIT_ROUNDOFF[a] >= UNIT_ROUNDOFF[b] else b


class _Cache:
    """Memoises ``evaluate(case, point)`` (exceptions included) per (digest, point).

    ``values_only=True`` evaluates a gradient-free copy of the case: the candidate search
    checks a point's value first and computes its gradients only when the value fits."""

    def __init__(self, evaluate: Callable):
        self.evaluate = evaluate
        self.store: dict[tuple[str, Point], Any] = {}
        # per adapter: points that explained earlier outcomes, most recent first (search order)
        self.hints: dict[str, list[Point]] = {}
        self._digests: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._gradless: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def digest(self, case: Case) -> str:
        """``case.digest``, computed once per case object (it hashes the payload)."""
        d = self._digests.get(case)
        if d is None:
            d = self._digests[case] = case.digest
        return d

    def _without_grad(self, case: Case) -> Case:
        c = self._gradless.get(case)
        if c is None:
            c = self._gradless[case] = case.replace(grad=False) if case.grad else case
        return c

    def __call__(self, case: Case, point: Point, *, candidate: bool = False, values_only: bool = False):
        """The reference's ``Expected``, or the UndefinedCase exception when the spec defines
        an error; for a ``candidate`` point any exception means "not applicable"."""
        if values_only and case.grad:
            full = self.store.get((self.digest(case), point))
            if full is not None:
                return full
            case = self._without_grad(case)
        key = (self.digest(case), point)
        if key not in self.store:
            try:
                with np.errstate(all="ignore"):
                    self.store[key] = self.evaluate(case, point)
            except _undefined_types() as exc:
                self.store[key] = exc
            except Exception as exc:
                if not candidate:
                    raise
                self.store[key] = exc
        return self.store[key]

    def forget(self, digest: str) -> None:
        """Drop the cached results of one case (bounded memory on long runs)."""
        for k in [k for k in self.store if k[0] == digest]:
            del self.store[k]


def make_evaluator(evaluate: Callable | None = None) -> _Cache:
    """A memoising wrapper around ``evaluate`` (default :func:`default_evaluate`); share one
    per run so both comparisons and the candidate search reuse reference results."""
    return evaluate if isinstance(evaluate, _Cache) else _Cache(evaluate or default_evaluate)


def _in_dtype(values, bound, case_dtype: str, used_dtype: str):
    """Expected values and bound for a result delivered in ``used_dtype``: values rounded
    into it (overflow to +-inf, KL-DTYPE-3), the bound scaled by the unit-roundoff ratio
    plus the rounding itself when ``used_dtype`` is coarser than the case's dtype."""
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        big = np.isfinite(v) & (np.abs(v) > FINFO[used_dtype][0])
        v_used = np.where(big, np.sign(v) * np.inf, v)
    b = np.asarray(bound, dtype=np.float64)
    if used_dtype != case_dtype:
        with np.errstate(invalid="ignore"):
            r = round_to(np.where(np.isfinite(v_used), v_used, 0.0), used_dtype)
            b = (b * (UNIT_ROUNDOFF[used_dtype] / UNIT_ROUNDOFF[case_dtype])
                 + np.abs(r - np.where(np.isfinite(v_used), v_used, 0.0)) + 4 * FINFO[used_dtype][1] * UNIT_ROUNDOFF[used_dtype])
    return v_used, b


def _expected_value(exp, case_dtype: str, used_dtype: str):
    """(value, bound) a correct framework meets for ``exp`` when answering in ``used_dtype``."""
    v = getattr(exp, "value_in_dtype", None)
    return _in_dtype(exp.value if v is None else v, exp.bound, case_dtype, used_dtype)


def _clauses(*groups: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for g in groups:
        for c in g or ():
            if c not in out:
                out.append(c)
    return tuple(out)


@dataclasses.dataclass
class _Check:
    """An outcome checked against one point: value comparison and failing gradients."""

    exp: Any
    value: Comparison
    grad_fails: list[tuple[str, Comparison | None]]   # (input, comparison or None = missing)

    @property
    def ok(self) -> bool:
        return self.value.ok and not self.grad_fails


def _check(exp, outcome, case: Case, used: str, gradients) -> _Check:
    v, b = _expected_value(exp, case.dtype, used)
    cmp = compare_arrays(v, b, outcome.value, outcome.shape)
    fails: list[tuple[str, Comparison | None]] = []
    if case.grad and cmp.cls != "shape":
        grads = getattr(exp, "grads", None) or {}
        bounds = getattr(exp, "grad_bounds", None) or {}
        for k in sorted(set(gradients) & set(grads)):
            if grads[k] is None:
                continue
            got = (outcome.grads or {}).get(k)
            if got is None:
                fails.append((k, None))
                continue
            gdt = (outcome.grad_dtypes or {}).get(k, used)
            gused = _coarser(used, gdt) if gdt in DTYPES else used
            gv, gb = _in_dtype(grads[k], bounds.get(k, 0.0), case.dtype, gused)
            c = compare_arrays(gv, gb, got)
            if not c.ok:
                fails.append((k, c))
    return _Check(exp, cmp, fails)


def _entry_errors(expected: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """|observed - expected| per entry; 0 where NaN meets NaN or an infinity the same
    infinity, +inf where the NaN / infinity patterns disagree."""
    with np.errstate(invalid="ignore", over="ignore"):
        same_special = (np.isnan(expected) & np.isnan(observed)) | (np.isinf(expected) & (expected == observed))
        finite = np.isfinite(expected) & np.isfinite(observed)
        return np.where(same_special, 0.0, np.where(finite, np.abs(observed - expected), np.inf))


def _failing(expected, bound, observed) -> np.ndarray | None:
    """Mask of the entries of ``observed`` that disagree with ``expected`` beyond ``bound``
    (None when the shapes differ)."""
    e = np.asarray(expected, dtype=np.float64)
    o = np.asarray(observed, dtype=np.float64)
    if e.shape != o.shape:
        return None
    b = np.broadcast_to(np.asarray(bound, dtype=np.float64), e.shape)
    with np.errstate(invalid="ignore"):
        return ~(_entry_errors(e, o) <= b)


def _improves(base_expected, base_bound, cand_expected, observed) -> bool:
    """True when a candidate's expected array is closer to ``observed`` than the compared
    point's on the entries where the compared point fails: nowhere farther, somewhere
    nearer.  A candidate that fits only because its own bound is wider (a sum's bound is
    n times a mean's) is no explanation."""
    bad = _failing(base_expected, base_bound, observed)
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
    e = np.asarray(expected, dtype=np.float64)
    o = np.asarray(observed, dtype=np.float64)
    if e.shape != o.shape:
        return False
    b = np.broadcast_to(np.asarray(bound, dtype=np.float64), e.shape)
    with np.errstate(invalid="ignore", over="ignore"):
        ok = ((np.isnan(e) & np.isnan(o)) | (np.isinf(e) & (e == o))
              | (np.isfinite(e) & np.isfinite(o) & (np.abs(o - e) <= b)))
    bad = ~ok
    return bool(bad.any()) and bool(np.all(np.isnan(o[bad])))


def _grad_failures_nan_only(base: "_Check", outcome, case: Case, used: str) -> bool:
    """True when every failing gradient of ``base`` fails only at entries the framework
    returned as NaN (no candidate point can be credited for "explaining" those)."""
    grads = getattr(base.exp, "grads", None) or {}
    bounds = getattr(base.exp, "grad_bounds", None) or {}
    for k, c in base.grad_fails:
        if c is None:
            return False
        gv, gb = _in_dtype(grads[k], bounds.get(k, 0.0), case.dtype, used)
        if not _nan_only(gv, gb, (outcome.grads or {}).get(k)):
            return False
    return True


def _improves_gradients(base: "_Check", cexp, outcome, case: Case, used: str) -> bool:
    """:func:`_improves` for every gradient the compared point gets wrong."""
    grads = getattr(base.exp, "grads", None) or {}
    bounds = getattr(base.exp, "grad_bounds", None) or {}
    cgrads = getattr(cexp, "grads", None) or {}
    for k, c in base.grad_fails:
        got = (outcome.grads or {}).get(k)
        if c is None or got is None or cgrads.get(k) is None:
            return False
        gv, gb = _in_dtype(grads[k], bounds.get(k, 0.0), case.dtype, used)
        cv, _ = _in_dtype(cgrads[k], 0.0, case.dtype, used)
        if not _improves(gv, gb, cv, got):
            return False
    return True


# Cost of changing one field of a point (SPEC.md §Family): misreading the arguments or
# their encodings is a bigger claim than a different reduction, epsilon or convention.
_FIELD_COSTS = (("reduction", 1), ("epsilon", 1), ("eps", 0), ("weight_level", 1),
                ("weight_divisor", 1), ("zero_inf", 1), ("swap", 2), ("target_as", 2), ("input_as", 2))


_WEIGHT_FIELDS = ("weight_level", "weight_divisor")


def point_distance(a: Point, b: Point, *, weighted: bool = True) -> int:
    """How far apart two family points are: the summed cost of the fields that differ
    (``epsilon`` and ``eps`` count once; swap and misread encodings count 2; the weight
    fields only when the case is ``weighted`` -- without weights they change nothing)."""
    d = 0
    for name, cost in _FIELD_COSTS:
        if not weighted and name in _WEIGHT_FIELDS:
            continue
        if getattr(a, name, None) != getattr(b, name, None):
            d += cost if not (name == "eps" and a.epsilon == b.epsilon) else 1
    return d


def complexity(cand: Point, compared: Point, documented: Point | None = None, *, weighted: bool = True) -> int:
    """How much ``cand`` claims beyond the compared point: its distance from it, or one
    more than its distance from the (different) documented point, whichever is less."""
    c = point_distance(cand, compared, weighted=weighted)
    if documented is not None and documented != compared:
        c = min(c, 1 + point_distance(cand, documented, weighted=weighted))
    return c


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


def effective_point(point: Point | None, case: Case) -> Point | None:
    """``point`` with the fields that cannot matter for ``case`` reset to their defaults:
    without weights, where weights act and what they divide by change nothing
    (KL-WEIGHT-*), so ``distribution+weights@distribution`` is just ``distribution``."""
    if point is None or case.weight is not None or case.sample_weight is not None:
        return point
    if point.weight_level == "element" and point.weight_divisor == "count":
        return point
    return dataclasses.replace(point, weight_level="element", weight_divisor="count")


def classify(case: Case, outcome, *, adapter: str, against: str, point: Point,
             documented: Point | None = None, gradients: Iterable[str] = ("pred", "target"),
             evaluate: Callable | None = None, search: bool = True,
             max_candidates: int = 24) -> list[Verdict]:
    """The verdicts of ``outcome`` (what adapter run ``adapter`` returned for ``case``)
    compared with the reference at ``point``; ``against`` is ``"canonical"`` or
    ``"documented"``.  ``documented`` seeds the semantic search; ``gradients`` are the
    inputs the adapter can differentiate; ``evaluate`` defaults to ``reference.evaluate``
    (pass :func:`make_evaluator`'s result to share a cache).

    Semantic search (when the compared point does not explain the outcome): candidate
    points (:func:`candidate_points`) are tried simplest first (:func:`complexity`; among
    equally simple ones, those keeping the compared reduction first).  The verdict names
    the simplest point explaining the value *and* the gradients (complexity <=
    :data:`FULL_MAX`), else the simplest explaining the value (<= :data:`VALUE_ONLY_MAX`),
    whose gradients are then judged.  A disagreement made only of NaN entries is not
    evidence for any point: a NaN value allows only one-field points, and NaN-only
    gradient differences (with a matching value) name none -- the gradient verdict then
    stands against the compared point.  Candidates whose result shape differs from the
    returned one are skipped unevaluated."""
    ev = make_evaluator(evaluate)
    gradients = tuple(gradients)
    digest = ev.digest(case)
    point, documented = effective_point(point, case), effective_point(documented, case)

    def V(cls, clauses=(), **kw):
        return Verdict(adapter=adapter, case=digest, against=against, cls=cls,
                       clauses=_clauses(clauses, [verdict_clause(cls)]), **kw)

    status = outcome.status
    if status in ("crash", "timeout"):
        return [V(status, detail=(outcome.error_message or status)[:300])]
    if status in ("unsupported", "missing", "import_error"):
        return []
    exp = ev(case, point)
    if isinstance(exp, Exception):
        if status == "error":
            return [V("match", detail=f"spec defines an error ({exp}); raised {outcome.error_type}")]
        return [V("error", detail=f"returned a value where the spec defines an error: {exp}")]
    clauses = tuple(exp.clauses)
    if status == "error":
        return [V("error", clauses, detail=f"raised {outcome.error_type}: {(outcome.error_message or '')[:200]} "
                                            f"where the spec defines {_fmt(exp.value)}")]
    verdicts: list[Verdict] = []
    used = case.dtype
    rdt = outcome.dtype
    grad_dts = {k: v for k, v in (outcome.grad_dtypes or {}).items() if v != case.dtype}
    if (rdt and rdt != case.dtype) or grad_dts:
        if rdt in DTYPES and rdt != case.dtype:
            used = _coarser(case.dtype, rdt)
        parts = [f"value returned as {rdt}"] if rdt != case.dtype else []
        parts += [f"gradient wrt {k} as {v}" for k, v in sorted(grad_dts.items())]
        verdicts.append(V("dtype", clauses, detail=f"{', '.join(parts)} for a {case.dtype} case"))

    base = _check(exp, outcome, case, used, gradients)
    if base.ok:
        return verdicts or [V("match", clauses, err_over_bound=base.value.err_over_bound, detail=base.value.detail)]
    hit = _search(case, outcome, base, point, documented, ev, adapter=adapter, used=used,
                  gradients=gradients, max_candidates=max_candidates) if search else None
    judged = base
    if hit is not None:
        cand, judged, full = hit
        verdicts.append(V("semantic", _clauses(clauses, judged.exp.clauses), explained_by=cand.name,
                          err_over_bound=base.value.err_over_bound,
                          detail=f"{point.name} gives {_fmt(exp.value)}; observed {_fmt(outcome.value)} "
                                 f"is {cand.name}" + ("" if full else " (value only)")))
    elif not base.value.ok:
        verdicts.append(V(base.value.cls, clauses, err_over_bound=base.value.err_over_bound, detail=base.value.detail))
    for k, c in judged.grad_fails:
        if c is None:
            verdicts.append(V("gradient", clauses, detail=f"gradient wrt {k}: not returned"))
        else:
            verdicts.append(V("gradient", clauses, err_over_bound=c.err_over_bound,
                              detail=f"gradient wrt {k}: {c.cls}: {c.detail}"))
    return verdicts


@functools.lru_cache(maxsize=4096)
def _ranked_candidates(compared: Point, documented: Point | None, weighted: bool, input_kind: str,
                       target_kind: str, reduction: str) -> tuple[tuple[int, int, int, Point], ...]:
    """:func:`candidate_points` with their :func:`complexity` and reduction rank, sorted by
    both (ties: generation order).  They depend on the case only through these arguments,
    so the list is built once per combination."""
    like = types.SimpleNamespace(weight=1.0 if weighted else None, sample_weight=None,
                                 input_kind=input_kind, target_kind=target_kind, reduction=reduction)
    out = [(complexity(c, compared, documented, weighted=weighted), _reduction_rank(c, compared, like, documented), i, c)
           for i, c in enumerate(candidate_points(like, compared, documented))]
    out.sort(key=lambda r: r[:3])
    return tuple(out)


def _reduction_rank(cand: Point, compared: Point, case: Case, documented: Point | None) -> int:
    """Tie-break among equally simple candidates: the compared point's reduction first,
    then the case's own or the documented one, then any other (two reductions that give
    the same value here -- 'distribution' and 'sample_sum' on 2-D input, every reduction
    on a NaN -- are told apart in favour of the reduction the question asked about)."""
    if cand.reduction == compared.reduction:
        return 0
    if cand.reduction == case.reduction or (documented is not None and cand.reduction == documented.reduction):
        return 1
    return 2


def _search(case: Case, outcome, base: _Check, point: Point, documented: Point | None, ev: _Cache, *,
            adapter: str, used: str, gradients, max_candidates: int):
    """The semantic search of :func:`classify`: ``(point, check, explains_gradients_too)``
    or None."""
    base_v, base_b = _expected_value(base.exp, case.dtype, used)
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
    for cost, rrank, i, cand in _ranked_candidates(point, documented, weighted, case.input_kind,
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
    value_only: tuple[int, Point, _Check] | None = None
    full = None
    for tried, (cost, _, _, _, _, cand) in enumerate(ranked):
        if tried >= max_candidates or (value_only is not None and cost > value_only[0] + 1):
            break
        if value_only is not None and point_distance(cand, value_only[1], weighted=weighted) > 1:
            continue   # after a value-only hit, only its one-field refinements can do better
        quick = ev(case, cand, candidate=True, values_only=True)
        if isinstance(quick, Exception):
            continue
        if not _check(quick, outcome, case, used, ()).value.ok:
            continue
        if not base.value.ok and base.value.cls != "shape" and not _improves(
                base_v, base_b, _expected_value(quick, case.dtype, used)[0], outcome.value):
            continue
        cexp = ev(case, cand, candidate=True)
        if isinstance(cexp, Exception):
            continue
        chk = _check(cexp, outcome, case, used, gradients)
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


# ----------------------------------------------------------------------------- facts
def facts(case: Case, verdict: Verdict | None = None, outcome=None, *, run: str = "",
          version: str | None = None) -> dict[str, Any]:
    """The facts the known-discrepancy matcher tests (vocabulary: klconform/records.py)."""
    t, q = case.target, case.pred
    with np.errstate(invalid="ignore"):
        zero_t = bool(np.any(t == 0)) if case.target_kind == "prob" else bool(np.any(t == -np.inf))
        zero_q = (bool(np.any(q == 0)) if case.input_kind == "prob"
                  else bool(np.any(q == -np.inf)) if case.input_kind == "logprob" else False)
        neg = ((case.target_kind == "prob" and bool(np.any(t < 0)))
               or (case.input_kind == "prob" and bool(np.any(q < 0))))
    arrays = [t, q] + ([case.sample_weight] if case.sample_weight is not None else [])
    shape = case.shape
    grad_input = None
    if verdict is not None and verdict.cls == "gradient":
        m = _GRAD_PREFIX.match(verdict.detail or "")
        grad_input = m.group(1) if m else None
    return {
        "dtype": case.dtype, "reduction": case.reduction, "input_kind": case.input_kind,
        "target_kind": case.target_kind, "ndim": len(shape), "size": int(np.prod(shape, dtype=np.int64)),
        "empty": 0 in shape, "broadcast": t.shape != q.shape, "has_zero_target": zero_t,
        "has_zero_pred": zero_q, "has_nonfinite": not all(np.all(np.isfinite(a)) for a in arrays),
        "has_nan": bool(np.any(np.isnan(t)) or np.any(np.isnan(q))), "has_negative": neg,
        "has_weight": case.weight is not None, "has_sample_weight": case.sample_weight is not None,
        "grad": case.grad, "family": case.label.split("/", 1)[0], "label": case.label,
        "explained_by": None if verdict is None else verdict.explained_by, "grad_input": grad_input,
        "returned_dtype": None if outcome is None else outcome.dtype,
        "status": None if outcome is None else outcome.status,
        "error_type": None if outcome is None else outcome.error_type,
        "version": version, "run": run,
    }


# ----------------------------------------------------------------------------- areas
AREAS = ("values", "reductions", "epsilon_zeros", "dtypes", "gradients", "shapes_invalid")


def area_of(verdict: Verdict, case_facts: dict[str, Any]) -> str:
    """The report/test area (one of :data:`AREAS`) a verdict belongs to: gradients, dtypes;
    shape/error/crash/timeout and special values on invalid, non-finite or empty input
    -> shapes_invalid; a semantic verdict by what its explaining point changes
    (reduction -> reductions, epsilon or 0*inf convention -> epsilon_zeros); special values
    on zero entries -> epsilon_zeros; everything else (matches by case family) -> values."""
    cls, f = verdict.cls, case_facts
    invalid = f.get("has_nonfinite") or f.get("has_negative") or f.get("empty")
    zeros = f.get("has_zero_target") or f.get("has_zero_pred")
    if cls == "gradient":
        return "gradients"
    if cls == "dtype":
        return "dtypes"
    if cls in ("shape", "error", "crash", "timeout"):
        return "shapes_invalid"
    if cls == "semantic":
        name = verdict.explained_by or ""
        if name.split("+", 1)[0] != f.get("reduction"):
            return "reductions"
        if "eps" in name or "clip" in name or "0*inf" in name:
            return "epsilon_zeros"
        return "values"
    if cls == "special_value":
        return "shapes_invalid" if invalid else "epsilon_zeros" if zeros else "values"
    if cls == "precision":
        return "values"
    # match: by what the case exercises
    if invalid or f.get("broadcast"):
        return "shapes_invalid"
    if zeros or f.get("family") in ("tiny", "one_hot"):
        return "epsilon_zeros"
    if f.get("dtype") in ("float16", "bfloat16"):
        return "dtypes"
    return "values"
