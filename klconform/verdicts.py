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
import re
from typing import Any, Callable, Iterable

import numpy as np

from reference.family import Point

from .case import INPUT_KINDS, REDUCTIONS, TARGET_KINDS, Case
from .dtypes import DTYPES, FINFO, UNIT_ROUNDOFF, round_to
from .results import Verdict

# Epsilon policies with the eps values frameworks are known to use (SPEC.md KL-EPS-*):
# MXNet adds 1e-12 inside log(target); Keras clips both into [1e-7, 1]; 1e-8 / 1e-10 / 1e-6
# are common alternatives in other code bases.
EPSILON_VARIANTS = (
    ("target_log_eps", 1e-12), ("clip_both", 1e-7), ("target_log_eps", 1e-7),
    ("target_log_eps", 1e-8), ("target_log_eps", 1e-10), ("target_log_eps", 1e-6),
    ("clip_both", 1e-12), ("clip_both", 1e-8), ("clip_both", 1e-10), ("clip_both", 1e-6),
)
_GRAD_PREFIX = re.compile(r"^gradient wrt (\w+):")
_ERR_CAP = 1e300   # err_over_bound stays finite (JSON)


class ReferenceUndefined(Exception):
    """Raised by an ``evaluate`` function when the spec defines an *error* for the case."""


def verdict_clause(cls: str) -> str:
    """The SPEC.md clause id of a verdict class (``reference.spec.VERDICT_CLAUSES``)."""
    from reference.spec import VERDICT_CLAUSES
    return VERDICT_CLAUSES[cls]


def _undefined_types() -> tuple[type, ...]:
    """Exception types by which the reference says "the spec defines an error" (KL-RED-0D)."""
    try:
        from reference.variants import UndefinedCase
    except ImportError:   # reference not installed yet: only our own marker
        return (ReferenceUndefined,)
    return (ReferenceUndefined, UndefinedCase)


def default_evaluate(case: Case, point: Point | None = None):
    """``reference.evaluate`` (imported lazily: the reference is being written beside this)."""
    from reference.evaluate import evaluate
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
    out += [rep(base, epsilon=e, eps=v) for e, v in EPSILON_VARIANTS if (e, v) != (base.epsilon, base.eps)]
    if base.epsilon != "none":
        out.append(rep(base, epsilon="none", eps=0.0))
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
    """Memoises ``evaluate(case, point)`` (exceptions included) per (digest, point)."""

    def __init__(self, evaluate: Callable):
        self.evaluate = evaluate
        self.store: dict[tuple[str, Point], Any] = {}
        # per adapter: points that explained earlier outcomes, most recent first (search order)
        self.hints: dict[str, list[Point]] = {}

    def __call__(self, case: Case, point: Point, *, candidate: bool = False):
        """The reference's ``Expected``, or the UndefinedCase exception when the spec defines
        an error; for a ``candidate`` point any exception means "not applicable"."""
        key = (case.digest, point)
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


def classify(case: Case, outcome, *, adapter: str, against: str, point: Point,
             documented: Point | None = None, gradients: Iterable[str] = ("pred", "target"),
             evaluate: Callable | None = None, search: bool = True,
             max_candidates: int = 48) -> list[Verdict]:
    """The verdicts of ``outcome`` (what adapter run ``adapter`` returned for ``case``)
    compared with the reference at ``point``; ``against`` is ``"canonical"`` or
    ``"documented"``.  ``documented`` seeds the semantic search; ``gradients`` are the
    inputs the adapter can differentiate; ``evaluate`` defaults to ``reference.evaluate``
    (pass :func:`make_evaluator`'s result to share a cache).

    The semantic search prefers a point that explains the value *and* the gradients,
    then one that explains the value (gradients are then judged against it); candidates
    whose result shape differs from the returned one are skipped unevaluated."""
    ev = make_evaluator(evaluate)
    gradients = tuple(gradients)

    def V(cls, clauses=(), **kw):
        return Verdict(adapter=adapter, case=case.digest, against=against, cls=cls,
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
    full = value_only = None
    if search:
        observed_shape = tuple(outcome.shape) if outcome.shape is not None else None
        cands = candidate_points(case, point, documented)
        if base.value.ok:   # gradients only: one-field deviations suffice, skip the pair stage
            cands = cands[:1 + 2 * len(_vary(point, case))]
        hints = ev.hints.setdefault(adapter, [])
        cands = [h for h in hints if h in cands] + [c for c in cands if c not in hints]
        tried = 0
        for cand in cands:
            if observed_shape is not None and result_shape(case, cand.reduction) != observed_shape:
                continue
            tried += 1
            if tried > max_candidates:
                break
            cexp = ev(case, cand, candidate=True)
            if isinstance(cexp, Exception):
                continue
            chk = _check(cexp, outcome, case, used, gradients)
            if chk.ok:
                full = (cand, chk)
                break
            if chk.value.ok and value_only is None and not base.value.ok:
                value_only = (cand, chk)
    hit = full or value_only
    judged = base
    if hit is not None:
        cand, judged = hit
        hints = ev.hints[adapter]
        if cand in hints:
            hints.remove(cand)
        hints.insert(0, cand)
        del hints[8:]
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


# ----------------------------------------------------------------------------- facts
def facts(case: Case, verdict: Verdict | None = None, outcome=None, *, run: str = "",
          version: str | None = None) -> dict[str, Any]:
    """The facts the known-discrepancy matcher tests (vocabulary: klconform/known/__init__.py)."""
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
