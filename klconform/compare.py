"""How an observed outcome relates to the reference's expectation at one family point.

The one home of the comparison rules shared by the verdicts (:mod:`klconform.verdicts`,
:mod:`klconform.explain`), the semantic fingerprint (:mod:`klconform.fingerprint`) and the
reports: entry-by-entry comparison under a bound (NaN meets NaN, infinities their sign,
SPEC.md KL-BOUND-4), the expectation for a result delivered in another dtype (KL-DTYPE-3),
the dtype a result is judged in, and the result shape of a reduction (KL-SHAPE-2).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from klconform.reference._quiet import quiet
from .case import Case
from .reference.dtypes import DTYPES, FINFO, UNIT_ROUNDOFF, round_to

_ERR_CAP = 1e300   # err_over_bound stays finite (JSON)


@dataclasses.dataclass(frozen=True)
class Comparison:
    """How an observed array relates to an expected one under a bound."""

    ok: bool
    cls: str | None              # None when ok, else "shape" | "special_value" | "precision"
    err_over_bound: float | None
    detail: str
    entry: int | None = None     # flat index of the entry that decides a failure (None: ok or shape)


def format_number(x) -> str:
    """One number as a user reads it: the shortest decimal that round-trips (``-0.5``,
    ``1e-12``, ``nan``, ``-inf``), never a numpy repr such as ``np.float64(-0.5)``; integers
    as integers.  The one formatter of numbers in messages, verdict details and reports."""
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    try:
        return repr(float(x))
    except (TypeError, ValueError):
        return str(x)


def format_array(a, limit: int = 4) -> str:
    """Up to ``limit`` entries, each by :func:`format_number` (a 0-D array as one number),
    else ``array[shape]`` (verdict details)."""
    a = np.asarray(a)
    if a.ndim == 0:
        return format_number(a.item())
    if a.size <= limit:
        return "[" + ", ".join(format_number(x) for x in a.reshape(-1).tolist()) + "]"
    return f"array{[int(n) for n in a.shape]}"


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
    with quiet:
        diff = np.abs(observed - expected)
        ratio = np.where(finite, np.where(b > 0, diff / np.where(b > 0, b, 1.0),
                                          np.where(diff > 0, np.inf, 0.0)), 0.0)
    err = float(min(_ERR_CAP, ratio.max())) if ratio.size else 0.0
    if special_bad.any():
        i = int(np.flatnonzero(special_bad.reshape(-1))[0])
        return Comparison(False, "special_value", err,
                          f"entry {i}: observed {format_number(observed.reshape(-1)[i])}, "
                          f"expected {format_number(expected.reshape(-1)[i])}", entry=i)
    if err > 1.0:
        i = int(np.argmax(ratio.reshape(-1)))
        return Comparison(False, "precision", err,
                          f"entry {i}: observed {format_number(observed.reshape(-1)[i])}, "
                          f"expected {format_number(expected.reshape(-1)[i])}, "
                          f"bound {b.reshape(-1)[i]:.3g} ({err:.3g}x)", entry=i)
    return Comparison(True, None, err, f"within bound ({err:.3g}x)")


def departing_entries(expected, bound, observed) -> np.ndarray | None:
    """Mask of the entries of ``observed`` that depart from ``expected`` under ``bound``
    (KL-BOUND-4: NaN meets NaN, an infinity the same one, finite entries within the bound);
    None when the shapes differ."""
    e = np.asarray(expected, dtype=np.float64)
    o = np.asarray(observed, dtype=np.float64)
    if e.shape != o.shape:
        return None
    b = np.broadcast_to(np.asarray(bound, dtype=np.float64), e.shape)
    with quiet:
        same_special = (np.isnan(e) & np.isnan(o)) | (np.isinf(e) & (e == o))
        close = np.isfinite(e) & np.isfinite(o) & (np.abs(o - e) <= b)
    return ~(same_special | close)


def coarser_dtype(a: str, b: str) -> str:
    """The coarser of two dtypes (larger unit roundoff; ``a`` on a tie)."""
    return a if UNIT_ROUNDOFF[a] >= UNIT_ROUNDOFF[b] else b


def judged_dtype(case_dtype: str, returned_dtype: str | None) -> str:
    """The dtype a result is judged in: the coarser of the case's and the returned one (a
    down-cast is a ``dtype`` verdict, not a value discrepancy); the case's when the
    returned dtype is unknown."""
    if returned_dtype in DTYPES and returned_dtype != case_dtype:
        return coarser_dtype(case_dtype, returned_dtype)
    return case_dtype


def expected_in_dtype(values, bound, case_dtype: str, used_dtype: str):
    """Expected values and bound for a result delivered in ``used_dtype``: values rounded
    into it (overflow to +-inf, KL-DTYPE-3), the bound scaled by the unit-roundoff ratio
    plus the rounding itself when ``used_dtype`` is coarser than the case's dtype."""
    v = np.asarray(values, dtype=np.float64)
    with quiet:
        # KL-DTYPE-3: overflow as IEEE rounding has it (|v| >= max + half an ulp)
        big = np.isfinite(v) & np.isinf(round_to(v, used_dtype))
        v_used = np.where(big, np.sign(v) * np.inf, v)
    b = np.asarray(bound, dtype=np.float64)
    if used_dtype != case_dtype:
        with quiet:
            r = round_to(np.where(np.isfinite(v_used), v_used, 0.0), used_dtype)
            b = (b * (UNIT_ROUNDOFF[used_dtype] / UNIT_ROUNDOFF[case_dtype])
                 + np.abs(r - np.where(np.isfinite(v_used), v_used, 0.0)) + 4 * FINFO[used_dtype][1] * UNIT_ROUNDOFF[used_dtype])
    return v_used, b


def expected_value(exp, case_dtype: str, used_dtype: str):
    """(value, bound) a correct framework meets for the reference's ``Expected`` ``exp``
    when answering in ``used_dtype``."""
    v = getattr(exp, "value_in_dtype", None)
    return expected_in_dtype(exp.value if v is None else v, exp.bound, case_dtype, used_dtype)


def gradient_dtype(used_dtype: str, grad_dtype: str | None) -> str:
    """The dtype a gradient is judged in: the coarser of ``used_dtype`` (the value's) and
    the gradient's own ``grad_dtype`` (``used_dtype`` when that is unknown)."""
    return coarser_dtype(used_dtype, grad_dtype) if grad_dtype in DTYPES else used_dtype


def expected_gradient(exp, key: str, case: Case, used_dtype: str, grad_dtype: str | None):
    """(gradient, bound) w.r.t. input ``key`` a correct framework meets for the reference's
    ``Expected`` ``exp``, judged in :func:`gradient_dtype`; None when the reference has no
    such gradient."""
    g = (getattr(exp, "grads", None) or {}).get(key)
    if g is None:
        return None
    return expected_in_dtype(g, (getattr(exp, "grad_bounds", None) or {}).get(key, 0.0), case.dtype,
                             gradient_dtype(used_dtype, grad_dtype))


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


def value_agrees(exp, outcome, case: Case) -> bool:
    """True when ``outcome``'s value is within ``exp``'s bound (KL-BOUND-4), judged in
    :func:`judged_dtype`: the agreement test of a point against an outcome."""
    v, b = expected_value(exp, case.dtype, judged_dtype(case.dtype, outcome.dtype))
    return compare_arrays(v, b, outcome.value, outcome.shape).ok


@dataclasses.dataclass
class PointCheck:
    """An outcome checked against one point: value comparison and failing gradients."""

    exp: Any
    value: Comparison
    grad_fails: list[tuple[str, Comparison | None]]   # (input, comparison or None = missing)

    @property
    def ok(self) -> bool:
        return self.value.ok and not self.grad_fails


def check_outcome(exp, outcome, case: Case, used: str, gradients) -> PointCheck:
    """``outcome`` against ``exp`` (the reference at one point) with the value judged in
    ``used``; each gradient of ``gradients`` in the coarser of ``used`` and its own dtype."""
    v, b = expected_value(exp, case.dtype, used)
    cmp = compare_arrays(v, b, outcome.value, outcome.shape)
    fails: list[tuple[str, Comparison | None]] = []
    if case.grad and cmp.cls != "shape":
        grads = getattr(exp, "grads", None) or {}
        for k in sorted(set(gradients) & set(grads)):
            if grads[k] is None:
                continue
            got = (outcome.grads or {}).get(k)
            if got is None:
                fails.append((k, None))
                continue
            gv, gb = expected_gradient(exp, k, case, used, (outcome.grad_dtypes or {}).get(k, used))
            c = compare_arrays(gv, gb, got)
            if not c.ok:
                fails.append((k, c))
    return PointCheck(exp, cmp, fails)
