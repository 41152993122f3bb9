"""Distillation losses (SPEC.md §12): teacher and student logits, temperature, token masks,
forward / reverse / symmetric KL, generalised JSD(β), cross-entropy; values, gradients
and bounds in float64.

A :class:`DistillCase` is one question: the student's and the teacher's logits of one
shape ``(B, T, V)`` or ``(N, V)`` (vocabulary last), the divergence asked, the temperature
and its scale, a token mask, the token reduction and the number of chunks the logits are
passed in.  A :class:`DistillPoint` is what a loss computes for it (KL-DISTILL-FAM);
:func:`evaluate` computes any point.  Like the rest of the reference this module knows
numpy and SPEC.md, nothing of a framework or of the harness.

Precision: extended (numpy ``longdouble``) for cases of up to 2¹⁶ elements and for float64
cases, float64 for larger ones of lower-precision dtypes (KL-DISTILL-BOUND, as KL-BOUND-8).
The log-softmax is taken on the exact quotient ``z/τ`` in that precision, shifted by the
row maximum (KL-DISTILL-TEMP, KL-INPUT-LOGITS).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from .dtypes import FINFO, UNIT_ROUNDOFF, check_dtype, representable
from .summation import accumulation_units
from .variants import LD, UndefinedCase

DIVERGENCES = (
    "forward",        # KL-DISTILL-FWD: KL(teacher || student)
    "reverse",        # KL-DISTILL-REV: KL(student || teacher)
    "symmetric",      # KL-DISTILL-SYM: r * forward + (1 - r) * reverse
    "jsd",            # KL-DISTILL-JSD: generalised Jensen-Shannon, beta the teacher's weight
)
REDUCTIONS = ("none", "distribution", "sum", "distribution_mean", "mean", "batchmean")   # KL-DISTILL-RED
JSD_ENDPOINTS = ("limit", "kl")       # KL-DISTILL-JSD, KL-DISTILL-JSD-ENDS
TEMPERATURE_SCALES = ("none", "tau2")  # KL-DISTILL-TAU2
EMPTY_MEANS = ("nan", "zero")         # KL-DISTILL-EMPTY
IGNORE_INDEX = -100                   # KL-DISTILL-MASK's default
#: elements above which a case of a lower-precision dtype is computed in float64
BIG = 2**16


def _choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} {value!r} is not one of {allowed}")


@dataclasses.dataclass(frozen=True, eq=False)
class DistillCase:
    """One distillation question (KL-DISTILL-CASE).  ``param`` is the symmetric ratio ``r``
    or the JSD ``β`` (None: ½); ``mask`` is boolean on the token shape (None: all kept);
    ``chunks`` the number of pieces the logits are passed in (None: whole);
    ``logits_dtype`` the dtype both logits are sent in (None: ``dtype``; bfloat16 logits with
    a float32 result is KL-DISTILL-DTYPE's cast form), their values exact in it."""

    student: np.ndarray
    teacher: np.ndarray
    dtype: str = "float32"
    divergence: str = "forward"
    param: float | None = None
    temperature: float = 1.0
    temperature_scale: str = "none"
    reduction: str = "distribution_mean"
    mask: np.ndarray | None = None
    chunks: int | None = None
    grad: bool = True
    logits_dtype: str | None = None

    def __post_init__(self):
        check_dtype(self.dtype)
        if self.logits_dtype is not None:
            check_dtype(self.logits_dtype)
        _choice("divergence", self.divergence, DIVERGENCES)
        _choice("reduction", self.reduction, REDUCTIONS)
        _choice("temperature_scale", self.temperature_scale, TEMPERATURE_SCALES)
        s = np.asarray(self.student, dtype=np.float64)
        t = np.asarray(self.teacher, dtype=np.float64)
        if s.shape != t.shape or s.ndim not in (2, 3):
            raise ValueError(f"student {s.shape} and teacher {t.shape}: one shape (B, T, V) or (N, V) expected")
        for side, a in (("student", s), ("teacher", t)):
            if not representable(a, self.sent_dtype):
                raise ValueError(f"{side}: values are not exactly representable in {self.sent_dtype}")
        object.__setattr__(self, "student", s)
        object.__setattr__(self, "teacher", t)
        if self.mask is not None:
            m = np.asarray(self.mask)
            if m.shape != s.shape[:-1]:
                raise ValueError(f"mask {m.shape}: the token shape {s.shape[:-1]} expected")
            object.__setattr__(self, "mask", m.astype(bool))
        if self.chunks is not None and (int(self.chunks) != self.chunks or self.chunks < 1):
            raise ValueError(f"chunks {self.chunks!r}: a positive integer expected")

    @classmethod
    def from_labels(cls, student, teacher, labels, ignore_index: int = IGNORE_INDEX, **kw) -> "DistillCase":
        """The mask of labels and an ignore_index: kept where ``label != ignore_index``."""
        return cls(student=student, teacher=teacher, mask=np.asarray(labels) != ignore_index, **kw)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.student.shape

    @property
    def sent_dtype(self) -> str:
        """The dtype the logits are sent in."""
        return self.logits_dtype or self.dtype

    @property
    def kept(self) -> np.ndarray:
        """The token mask, all True when none was given."""
        return np.ones(self.shape[:-1], dtype=bool) if self.mask is None else self.mask

    def asked_param(self) -> float:
        return 0.5 if self.param is None else float(self.param)


@dataclasses.dataclass(frozen=True)
class DistillPoint:
    """One member of the distillation family (KL-DISTILL-FAM)."""

    divergence: str
    reduction: str
    ratio: float = 0.5
    beta: float = 0.5
    jsd_endpoints: str = "limit"
    # KL-DISTILL-CE: every forward-KL part computed as the cross-entropy H(p, q)
    cross_entropy: bool = False
    temperature_scale: str = "none"
    empty_mean: str = "nan"
    chunk_mean: bool = False

    def __post_init__(self):
        _choice("divergence", self.divergence, DIVERGENCES)
        _choice("reduction", self.reduction, REDUCTIONS)
        _choice("jsd_endpoints", self.jsd_endpoints, JSD_ENDPOINTS)
        _choice("temperature_scale", self.temperature_scale, TEMPERATURE_SCALES)
        _choice("empty_mean", self.empty_mean, EMPTY_MEANS)

    @property
    def name(self) -> str:
        """Short stable label, e.g. ``jsd(0.5)+distribution_mean+endpoints=kl``; the
        forward point with ``cross_entropy`` is ``cross_entropy+...``."""
        div = self.divergence
        if div == "forward" and self.cross_entropy:
            div = "cross_entropy"
        elif div == "symmetric":
            div += f"({self.ratio:g})"
        elif div == "jsd":
            div += f"({self.beta:g})"
        parts = [div, self.reduction]
        if self.divergence == "jsd" and self.jsd_endpoints != "limit":
            parts.append(f"endpoints={self.jsd_endpoints}")
        if self.cross_entropy and self.divergence != "forward":
            parts.append("cross_entropy")
        if self.temperature_scale != "none":
            parts.append("tau2")
        if self.empty_mean != "nan":
            parts.append(f"empty_mean={self.empty_mean}")
        if self.chunk_mean:
            parts.append("chunk_mean")
        return "+".join(parts)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "DistillPoint":
        return cls(**d)


def canonical(case: DistillCase) -> DistillPoint:
    """The point a case asks (KL-DISTILL-CASE): its divergence, parameter, scale and
    reduction; JSD limits at the ends, NaN for an empty mean, no chunk averaging."""
    p = case.asked_param()
    return DistillPoint(divergence=case.divergence, reduction=case.reduction,
                        ratio=p if case.divergence == "symmetric" else 0.5,
                        beta=p if case.divergence == "jsd" else 0.5,
                        temperature_scale=case.temperature_scale)


@dataclasses.dataclass
class DistillExpected:
    """The reference's answer: float64 value and bound (per KL-DISTILL-RED's shape), the
    per-token divergences ``d`` (0 at ignored tokens), gradients ``{"pred": student,
    "target": teacher}`` and their bounds, and the clauses that governed them."""

    value: np.ndarray
    bound: np.ndarray
    per_token: np.ndarray
    grads: dict[str, np.ndarray]
    grad_bounds: dict[str, np.ndarray]
    clauses: tuple[str, ...]


# ----------------------------------------------------------------------------- pieces
def log_softmax_rows(x: np.ndarray) -> np.ndarray:
    """KL-INPUT-LOGITS along the last axis, in ``x``'s precision: rows with NaN or +inf,
    or only -inf, are NaN; a -inf entry of a finite row is -inf (probability 0)."""
    x = np.asarray(x)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        bad = np.any(np.isnan(x) | (x == np.inf), axis=-1, keepdims=True) | np.all(x == -np.inf, axis=-1, keepdims=True)
        safe = np.where(bad, x.dtype.type(0), x)
        m = np.max(safe, axis=-1, keepdims=True) if x.shape[-1] else np.zeros(x.shape[:-1] + (1,), x.dtype)
        shifted = safe - m
        lse = np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))
        out = shifted - lse
    return np.where(bad, x.dtype.type(np.nan), out)


def _xlogratio(w, v, lv, lo):
    """w·v·(lv − lo) with the §2 conventions: v = 0 gives 0, v > 0 with lo = −inf gives +inf;
    NaN inputs give NaN (rows are whole NaN or not, KL-DISTILL-TEMP)."""
    with np.errstate(invalid="ignore", over="ignore"):
        t = w * v * (lv - lo)
        t = np.where(v == 0, v.dtype.type(0), t)
        t = np.where((v > 0) & (lo == -np.inf), v.dtype.type(np.inf), t)
        return np.where(np.isnan(v) | np.isnan(lo), v.dtype.type(np.nan), t)


def _effective(point: DistillPoint) -> tuple[str, float]:
    """The divergence actually computed: JSD's ends under ``jsd_endpoints="kl"`` are the
    forward / reverse KL (KL-DISTILL-JSD-ENDS); symmetric at r = 1 / 0 stays symmetric."""
    if point.divergence == "jsd":
        if not 0.0 <= point.beta <= 1.0:
            raise UndefinedCase(f"beta {point.beta!r} is outside [0, 1]", "KL-DISTILL-JSD")
        if point.jsd_endpoints == "kl" and point.beta in (0.0, 1.0):
            return ("forward" if point.beta == 0.0 else "reverse"), 0.0
        return "jsd", point.beta
    if point.divergence == "symmetric":
        if not 0.0 <= point.ratio <= 1.0:
            raise UndefinedCase(f"ratio {point.ratio!r} is outside [0, 1]", "KL-DISTILL-SYM")
        return "symmetric", point.ratio
    return point.divergence, 0.0


def _forward_terms(w, p, lp, q, lq, ce):
    """w·KL(p‖q)'s terms, or w·H(p, q)'s under ``cross_entropy`` (KL-DISTILL-CE: p = 0 gives
    0, p > 0 with q = 0 gives +inf)."""
    if not ce:
        return _xlogratio(w, p, lp, lq)
    with np.errstate(invalid="ignore", over="ignore"):
        t = np.where(p == 0, p.dtype.type(0), -w * p * lq)
        return np.where(np.isnan(p) | np.isnan(lq), p.dtype.type(np.nan), t)


def _terms(div, param, ce, p, lp, q, lq):
    """Elementwise terms t and the JSD log-mixture (None elsewhere), in the working precision."""
    one = p.dtype.type(1)
    if div == "forward":
        return _forward_terms(one, p, lp, q, lq, ce), None
    if div == "reverse":
        return _xlogratio(one, q, lq, lp), None
    if div == "symmetric":
        r = p.dtype.type(param)
        parts = []
        if param != 0.0:
            parts.append(_forward_terms(r, p, lp, q, lq, ce))
        if param != 1.0:
            parts.append(_xlogratio(one - r, q, lq, lp))
        return (parts[0] if len(parts) == 1 else parts[0] + parts[1]), None
    # jsd
    nan_rows = np.isnan(p) | np.isnan(q)
    if param in (0.0, 1.0):          # the limit: m is the side weighted 1 (KL-DISTILL-JSD)
        return np.where(nan_rows, p.dtype.type(np.nan), p.dtype.type(0)), None
    b = p.dtype.type(param)
    with np.errstate(divide="ignore", invalid="ignore"):
        lm = np.logaddexp(np.log(b) + lp, np.log1p(-b) + lq)
        t = _xlogratio(b, p, lp, lm) + _xlogratio(one - b, q, lq, lm)
    return np.where(nan_rows, p.dtype.type(np.nan), t), lm


def _grads(div, param, ce, p, lp, q, lq, lm):
    """(G^S, G^T) per KL-DISTILL-GRAD, before the factor c_i/τ; each part's own value
    stands in its formula."""
    zero = p.dtype.type(0)
    one = p.dtype.type(1)

    def times(v, f):                    # v·f, 0 where v == 0 (never 0·inf)
        with np.errstate(invalid="ignore", over="ignore"):
            return np.where(v == 0, zero, v * f)

    with np.errstate(invalid="ignore", over="ignore"):
        def fwd():
            own = _forward_terms(one, p, lp, q, lq, ce).sum(axis=-1, keepdims=True)
            return q - p, (times(p, -(lq + own)) if ce else times(p, (lp - lq) - own))

        def rev():
            own = _xlogratio(one, q, lq, lp).sum(axis=-1, keepdims=True)
            return times(q, (lq - lp) - own), p - q

        if div == "forward":
            return fwd()
        if div == "reverse":
            return rev()
        if div == "symmetric":
            r = p.dtype.type(param)
            gs, gt = zero * p, zero * p
            if param != 0.0:
                fs, ft = fwd()
                gs, gt = gs + r * fs, gt + r * ft
            if param != 1.0:
                rs, rt = rev()
                gs, gt = gs + (one - r) * rs, gt + (one - r) * rt
            return gs, gt
        # jsd
        if lm is None:                   # beta at an end, the limit: zero gradients
            return zero * p, zero * p
        b = p.dtype.type(param)
        kq = _xlogratio(one, q, lq, lm).sum(axis=-1, keepdims=True)
        kp = _xlogratio(one, p, lp, lm).sum(axis=-1, keepdims=True)
        return (one - b) * times(q, (lq - lm) - kq), b * times(p, (lp - lm) - kp)


def _pieces(T: int, k: int) -> list[slice]:
    """torch.chunk's pieces of T positions: ⌈T/k⌉ each, the last shorter (KL-DISTILL-CHUNK)."""
    size = -(-T // k) if T else 0
    return [slice(a, min(a + size, T)) for a in range(0, T, size)] if size else []


# ----------------------------------------------------------------------------- evaluate
def working_dtype(case: DistillCase) -> type:
    """Extended precision, or float64 for a large case of a lower-precision dtype."""
    return LD if case.dtype == "float64" or case.student.size <= BIG else np.float64


def evaluate(case: DistillCase, point: DistillPoint | None = None) -> DistillExpected:
    """Value, bound and gradients of ``case`` under ``point`` (default: canonical)."""
    point = canonical(case) if point is None else point
    tau = float(case.temperature)
    if not (math.isfinite(tau) and tau > 0):
        raise UndefinedCase(f"temperature {tau!r} is not finite and positive", "KL-DISTILL-TEMP")
    if point.chunk_mean and (point.reduction != "distribution_mean" or case.student.ndim != 3):
        raise UndefinedCase("chunk_mean is a token mean over pieces of (B, T, V) logits", "KL-DISTILL-CHUNK-MEAN")
    div, param = _effective(point)
    ce = point.cross_entropy
    clauses = {"KL-DISTILL-CASE", "KL-DISTILL-TEMP", "KL-DISTILL-RED", "KL-DISTILL-BOUND"}
    clauses.add({"forward": "KL-DISTILL-FWD", "reverse": "KL-DISTILL-REV", "symmetric": "KL-DISTILL-SYM",
                 "jsd": "KL-DISTILL-JSD"}[div])
    if ce and div in ("forward", "symmetric"):
        clauses.add("KL-DISTILL-CE")
    if point.divergence == "jsd" and div != "jsd":
        clauses.add("KL-DISTILL-JSD-ENDS")
    W = working_dtype(case)
    shape = case.shape
    V = shape[-1]
    kept = case.kept
    keep = kept[..., None]
    t_w = W(tau)
    # ignored tokens never enter: their rows are replaced by zeros before any arithmetic
    zs = np.where(keep, case.student, 0.0).astype(W) / t_w
    zt = np.where(keep, case.teacher, 0.0).astype(W) / t_w
    lq, lp = log_softmax_rows(zs), log_softmax_rows(zt)
    with np.errstate(over="ignore", invalid="ignore"):
        q, p = np.exp(lq), np.exp(lp)
    t, lm = _terms(div, param, ce, p, lp, q, lq)
    t = np.where(keep, t, W(0))
    with np.errstate(invalid="ignore", over="ignore"):
        d = t.sum(axis=-1)
    d = np.where(kept, d, W(0))
    scale = W(tau * tau) if point.temperature_scale == "tau2" else W(1)
    if point.temperature_scale == "tau2":
        clauses.add("KL-DISTILL-TAU2")
    if case.mask is not None:
        clauses.add("KL-DISTILL-MASK")
    if case.chunks is not None:
        clauses.add("KL-DISTILL-CHUNK")

    # the per-token coefficient c_i = s·m_i / D of Σ(output) (KL-DISTILL-GRAD)
    n_kept = int(kept.sum())
    red = point.reduction
    empty = False
    if point.chunk_mean:
        clauses.add("KL-DISTILL-CHUNK-MEAN")
        k = int(case.chunks or 1)
        coeff = np.zeros(shape[:-1], dtype=W)
        for sl in _pieces(shape[1], k):
            kc = int(kept[:, sl].sum())
            if kc:
                coeff[:, sl] = kept[:, sl] / W(k * kc)
        coeff = coeff * scale
        summands = coeff * d
        with np.errstate(invalid="ignore", over="ignore"):
            value = np.asarray(summands.sum())
    else:
        if red in ("distribution_mean", "mean"):
            D = n_kept * (V if red == "mean" else 1)
            empty = D == 0
        elif red == "batchmean":
            D = shape[0]
            empty = D == 0
        else:
            D = 1
        coeff = np.where(kept, scale / W(D) if D else W(np.nan), W(0)).astype(W)
        with np.errstate(invalid="ignore", over="ignore"):
            if red == "none":
                value = scale * t
            elif red == "distribution":
                value = scale * d
            elif empty:
                value = np.asarray(W(0) if point.empty_mean == "zero" else W(np.nan))
                clauses.add("KL-DISTILL-EMPTY")
            else:
                value = np.asarray((scale * d).sum() / W(D))
        if empty:
            coeff = np.zeros(shape[:-1], dtype=W)
    if not np.any(kept):
        clauses.add("KL-DISTILL-EMPTY")

    bound = _value_bound(case, point, value, coeff, p, lp, q, lq, lm, t, d, n_kept, zs, zt)
    grads, grad_bounds = {}, {}
    if case.grad:
        clauses.add("KL-DISTILL-GRAD")
        gs, gt = _grads(div, param, ce, p, lp, q, lq, lm)
        nan_row = np.any(np.isnan(p) | np.isnan(q), axis=-1, keepdims=True)
        c = (coeff / t_w)[..., None]
        for side, g, v in (("pred", gs, q), ("target", gt, p)):
            g = np.where(nan_row, W(np.nan), g)
            with np.errstate(invalid="ignore", over="ignore"):
                full = np.where(keep, c * g, W(0))
            grads[side] = full.astype(np.float64)
            grad_bounds[side] = _grad_bound(case.sent_dtype, c, g, v, p, lp, q, lq, lm, zs, zt, full)
    value = np.asarray(value).astype(np.float64)
    return DistillExpected(value=value, bound=np.where(np.isfinite(value), bound, 0.0),
                           per_token=d.astype(np.float64), grads=grads, grad_bounds=grad_bounds,
                           clauses=tuple(sorted(clauses)))


# ----------------------------------------------------------------------------- bounds
def _lambda(x, lv):
    """λ of KL-DISTILL-BOUND for one side: |x| + |x − max x| + σ(V) + log V + |log v|."""
    V = x.shape[-1]
    with np.errstate(invalid="ignore", over="ignore"):
        finite = np.where(np.isfinite(x), x, 0)
        m = np.max(finite, axis=-1, keepdims=True) if V else 0
        lam = np.abs(finite) + np.abs(finite - m) + np.log(max(V, 1)) + np.where(np.isfinite(lv), np.abs(lv), 0)
    return lam


def _logs(lp, lq, lm):
    with np.errstate(invalid="ignore"):
        out = np.where(np.isfinite(lp), np.abs(lp), 0) + np.where(np.isfinite(lq), np.abs(lq), 0)
        if lm is not None:
            out = out + np.where(np.isfinite(lm), np.abs(lm), 0)
    return out


def _value_bound(case, point, value, coeff, p, lp, q, lq, lm, t, d, n_kept, zs, zt):
    u = UNIT_ROUNDOFF[case.dtype]
    V = case.shape[-1]
    nV = accumulation_units(V, case.dtype)
    lam = _lambda(zt, lp) + _lambda(zs, lq) + nV
    with np.errstate(invalid="ignore", over="ignore"):
        per_entry = (np.where(np.isfinite(p), p, 0) + np.where(np.isfinite(q), q, 0)) * (_logs(lp, lq, lm) + 1 + lam)
        at = np.where(np.isfinite(t), np.abs(t), 0)
        per_token = per_entry.sum(axis=-1) + (nV + 3) * at.sum(axis=-1)
        ad = np.where(np.isfinite(d), np.abs(d), 0)
        c = np.abs(np.where(np.isfinite(coeff), coeff, 0))
        red = point.reduction
        if red == "none":
            b = 2 * u * (np.abs(coeff)[..., None] * (per_entry + 3 * at))
        elif red == "distribution":
            b = 2 * u * c * per_token
        else:
            nK = accumulation_units(max(n_kept, 1), case.dtype)
            b = 2 * u * ((c * per_token).sum() + nK * (c * ad).sum())
        v = np.asarray(value).astype(np.float64)
        eta = FINFO[case.dtype][1] * u          # subnormal results (KL-BOUND-1)
        return (np.asarray(b).astype(np.float64) + u * np.where(np.isfinite(v), np.abs(v), 0) + 4 * eta)


def _grad_bound(dtype, c, g, v, p, lp, q, lq, lm, zs, zt, full):
    u = UNIT_ROUNDOFF[dtype]
    V = p.shape[-1]
    nV = accumulation_units(V, dtype)
    lam = _lambda(zt, lp) + _lambda(zs, lq)
    with np.errstate(invalid="ignore", over="ignore"):
        fin = lambda a: np.where(np.isfinite(a), a, 0)      # noqa: E731
        ag = np.abs(fin(g))
        sv = fin(v)
        budget = (fin(p) + fin(q)) * (1 + _logs(lp, lq, lm))
        e = (lam + 4) * (ag + sv * ag.sum(axis=-1, keepdims=True)) + sv * (nV + lam) * budget.sum(axis=-1, keepdims=True)
        # + 4η: subnormal results (KL-BOUND-1's absolute error, as KL-BOUND-3)
        b = 2 * u * np.abs(fin(c)) * e + u * np.abs(fin(full)) + 4 * FINFO[dtype][1] * u
    b = b.astype(np.float64)
    return np.where(np.isfinite(full.astype(np.float64)), b, 0.0)
