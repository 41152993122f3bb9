"""The special-value table of SPEC.md §2: cells p class × q class, per encoding, the
clause that decides each, and small cases that exercise every cell.

A *cell* is one pair of value classes of the decoded entries ``p`` (target) and ``q``
(prediction) in one encoding (target kind × prediction kind, SPEC.md §3), written
``"<p class>,<q class>/<target kind>,<pred kind>"``, e.g. ``"+inf,0/prob,logprob"``.
The classes (:data:`CLASSES`) are those of the piecewise definitions of §2 (KL-INVALID-1,
KL-ZERO-1..3, KL-INF-1, KL-NEG-INF, KL-NEG-ZERO, KL-GEN-2) plus the finite ranges the
formula treats alike but implementations often do not (subnormal, below 1, 1, above 1).

What an encoding can express (:func:`expressible`): a probability holds every class; a
log-probability ``t`` holds p = exp(t) ≥ +0 only (t = −∞ is p = 0, t = 0 is p = 1, t > 0 is
p > 1, t = +∞ is p = +∞; never −0, a negative or −∞); logits hold q = softmax(z) in [0, 1]
or NaN (z = −∞ in a finite row is q = 0; a row whose other entries are all −∞ gives q = 1;
a NaN or +∞ logit makes its row NaN, KL-INPUT-LOGITS; never −0, > 1, +∞ or negative).
In log encodings ``subnormal`` means 0 < exp(t) below the dtype's smallest normal.

:data:`RULES` is §2 as data, in the order SPEC.md checks it ("the first that applies
decides"); each rule quotes the words of its clause that state it, and
tests/verdicts/test_cells.py checks the quotes, the order and the ids against SPEC.md and
each decision against the reference.  :func:`decide` gives a cell's deciding clause and term
kind at the canonical point and at the §2/§11 family points (:data:`FAMILY_RULES`).
:func:`cells_of` names the cells a (sent) case reaches; :func:`generate` writes the
``cell/...`` cases of the frozen corpus.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Iterable

import numpy as np

from . import exactmath
from .case import Case
from .reference.dtypes import FINFO

# Value classes of one decoded entry (p or q), in table order.
CLASSES = ("0", "-0", "subnormal", "lt1", "1", "gt1", "+inf", "nan", "negative", "-inf")
CLASS_MEANING = {
    "0": "+0.0", "-0": "-0.0 (a zero, not negative: KL-INVALID-1)",
    "subnormal": "positive, below the dtype's smallest normal",
    "lt1": "normal, 0 < x < 1", "1": "exactly 1", "gt1": "finite, > 1", "+inf": "+inf",
    "nan": "NaN", "negative": "finite, < 0", "-inf": "-inf (a negative probability)",
}
ZERO = ("0", "-0")
POSITIVE_FINITE = ("subnormal", "lt1", "1", "gt1")
INVALID = ("nan", "negative", "-inf")
# The classes each encoding of one side can hold (module docstring).
KIND_CLASSES = {
    "prob": CLASSES,
    "logprob": ("0", "subnormal", "lt1", "1", "gt1", "+inf", "nan"),
    "logits": ("0", "subnormal", "lt1", "1", "nan"),
}
ENCODINGS = tuple((tk, pk) for tk in ("prob", "logprob") for pk in ("prob", "logprob", "logits"))
DTYPES = ("float16", "bfloat16", "float32", "float64")
# Term kinds a rule gives (as behaviour.KINDS spells them, "finite" for the formula).
TERM_KINDS = ("nan", "zero", "+inf", "-inf", "finite", "q")


def cell_key(p_class: str, q_class: str, target_kind: str, pred_kind: str) -> str:
    return f"{p_class},{q_class}/{target_kind},{pred_kind}"


def parse_key(key: str) -> tuple[str, str, str, str]:
    classes, enc = key.split("/")
    p, q = classes.split(",")
    tk, pk = enc.split(",")
    return p, q, tk, pk


def expressible(target_kind: str, pred_kind: str) -> list[str]:
    """Every cell of one encoding that its inputs can hold, in table order."""
    return [cell_key(p, q, target_kind, pred_kind)
            for p in KIND_CLASSES[target_kind] for q in KIND_CLASSES[pred_kind]]


def inexpressible(target_kind: str, pred_kind: str) -> list[str]:
    """The cells of the full table one encoding cannot hold (module docstring says why)."""
    return [cell_key(p, q, target_kind, pred_kind) for p in CLASSES for q in CLASSES
            if p not in KIND_CLASSES[target_kind] or q not in KIND_CLASSES[pred_kind]]


def all_cells(target_kinds: Iterable[str] = ("prob", "logprob"),
              pred_kinds: Iterable[str] = ("prob", "logprob", "logits")) -> list[str]:
    return [k for tk in target_kinds for pk in pred_kinds for k in expressible(tk, pk)]


# ----------------------------------------------------------------------------- §2 as data
@dataclasses.dataclass(frozen=True)
class Rule:
    """One piece of a piecewise definition: where it applies (``applies(p, q, target_kind)``
    over classes), the term kind it gives there (``term(p, q)``), the clause and the words
    of that clause stating it (``quotes``, checked against SPEC.md by the tests)."""

    clause: str
    quotes: tuple[str, ...]
    applies: Callable[[str, str, str], bool]
    term: Callable[[str, str], str]


def _inf1(p: str, q: str) -> str:
    return "nan" if p == q == "+inf" else "+inf" if p == "+inf" else "-inf"


# Canonical §2, in SPEC order (KL-INVALID-1, KL-ZERO-1, KL-ZERO-2, KL-INF-1); what is left is
# the formula of KL-DEF-1 on finite positive entries.  KL-ZERO-3 is a family point (below).
RULES = (
    Rule("KL-INVALID-1", ("If `p` or `q` is NaN or negative, `T` is NaN", "−0.0 is zero, not negative"),
         lambda p, q, tk: p in INVALID or q in INVALID, lambda p, q: "nan"),
    Rule("KL-ZERO-1", ("`p = 0` and `q ≥ 0` (including `q = 0` and `q = +∞`): `T = 0`",
                       "In log encodings `p = 0` is a target log-probability of −∞"),
         lambda p, q, tk: p in ZERO, lambda p, q: "zero"),
    Rule("KL-ZERO-2", ("`p > 0` and `q = 0`: `T = +∞`",),
         lambda p, q, tk: q in ZERO, lambda p, q: "+inf"),
    Rule("KL-INF-1", ("`p = +∞`, `0 ≤ q < +∞` → `+∞`", "`0 < p < +∞`, `q = +∞` → `−∞`",
                      "`p = q = +∞` → NaN"),
         lambda p, q, tk: "+inf" in (p, q), _inf1),
    Rule("KL-DEF-1", ("KL(P‖Q) = Σ_c p_c · log(p_c / q_c)",),
         lambda p, q, tk: True, lambda p, q: "finite"),
)


def _neg_inf_applies(p, q, tk):
    return "nan" not in (p, q) and (p in ("negative", "-inf") or q in ("negative", "-inf"))


def _neg_zero_applies(p, q, tk):
    return p in ("negative", "-inf") and q not in INVALID


def _gen2_term(p, q):
    if p in ZERO:
        return "+inf" if q == "+inf" else "zero" if q in ZERO else "q"
    if q in ZERO:
        return "+inf"
    return "nan" if p == q == "+inf" else "+inf"


# Family points (§2 KL-ZERO-3, §11): the point's fields, the rule deciding where it departs
# from the canonical table (elsewhere the canonical rule decides).  Checked in this order
# before the canonical rules; KL-GEN-2 covers only its special values (finite positive
# pairs are the generalised formula).
FAMILY_RULES = {
    "zero_inf=nan": ({"zero_inf": "nan"}, Rule(
        "KL-ZERO-3", ("`T = NaN` when `p = 0` and either `q = 0` or the target is given as a log-probability (−∞)",),
        lambda p, q, tk: p in ZERO and q not in INVALID and (q in ZERO or tk == "logprob"), lambda p, q: "nan")),
    "negative=inf": ({"negative": "inf"}, Rule(
        "KL-NEG-INF", ("a NaN `p` or `q` still gives a NaN term, but a negative `p` or `q` gives `T = +∞`",),
        _neg_inf_applies, lambda p, q: "+inf")),
    "negative=zero": ({"negative": "zero"}, Rule(
        "KL-NEG-ZERO", ("a negative first-side entry `p` (`−∞` included) gives `T = 0`",
                        "A NaN `p`, or a NaN or negative `q`, still follows KL-INVALID-1"),
        _neg_zero_applies, lambda p, q: "zero")),
    "generalised": ({"generalised": True}, Rule(
        "KL-GEN-2", ("`p = 0`, `q ≥ 0` gives `T = q`", "`p > 0`, `q = 0` gives `+∞`",
                     "one side `+∞` and the other finite (≥ 0) gives `+∞`", "`p = q = +∞` is NaN"),
        lambda p, q, tk: p not in INVALID and q not in INVALID and (p in ZERO or q in ZERO or "+inf" in (p, q)),
        _gen2_term)),
}


@dataclasses.dataclass(frozen=True)
class Decision:
    clause: str      # the clause that decides the term
    term: str        # its kind: TERM_KINDS ("q": the value of q, KL-GEN-2)


def decide(key: str, point: str = "canonical") -> Decision:
    """The clause deciding ``key``'s term, and the term's kind, at the canonical point or a
    :data:`FAMILY_RULES` point (the first rule that applies decides, SPEC.md §2)."""
    p, q, tk, _ = parse_key(key)
    rules = RULES if point == "canonical" else (FAMILY_RULES[point][1],) + RULES
    for r in rules:
        if r.applies(p, q, tk):
            return Decision(r.clause, r.term(p, q))
    raise AssertionError("KL-DEF-1 applies everywhere")


def deciding_clauses(key: str) -> dict[str, str]:
    """Per point (canonical and each family point), the clause that decides ``key``."""
    return {pt: decide(key, pt).clause for pt in ("canonical", *FAMILY_RULES)}


# ----------------------------------------------------------------------------- classifying
def _tiny(dtype: str) -> float:
    return FINFO[dtype][1]


def _prob_classes(x: np.ndarray, dtype: str) -> np.ndarray:
    out = np.full(x.shape, "lt1", dtype=object)
    with np.errstate(invalid="ignore"):
        out[(x > 0) & (x < _tiny(dtype))] = "subnormal"
        out[x == 1] = "1"
        out[(x > 1) & np.isfinite(x)] = "gt1"
        out[x == np.inf] = "+inf"
        out[(x < 0) & np.isfinite(x)] = "negative"
        out[x == -np.inf] = "-inf"
        out[(x == 0) & ~np.signbit(x)] = "0"
        out[(x == 0) & np.signbit(x)] = "-0"
        out[np.isnan(x)] = "nan"
    return out


def _log_classes(t: np.ndarray, dtype: str) -> np.ndarray:
    """Classes of p = exp(t) for log-encoded ``t`` (exp(t) compared exactly with the dtype's
    smallest normal: t < log(tiny))."""
    out = np.full(t.shape, "lt1", dtype=object)
    with np.errstate(invalid="ignore"):
        out[np.isfinite(t) & (t < math.log(_tiny(dtype)))] = "subnormal"
        out[t == 0] = "1"
        out[(t > 0) & np.isfinite(t)] = "gt1"
        out[t == np.inf] = "+inf"
        out[t == -np.inf] = "0"
        out[np.isnan(t)] = "nan"
    return out


def _logit_classes(z: np.ndarray, axis: int, dtype: str) -> np.ndarray:
    """Classes of q = softmax(z) along ``axis`` (KL-INPUT-LOGITS)."""
    if z.ndim == 0:
        z = z.reshape(1)
        return _logit_classes(z, 0, dtype).reshape(())
    zm = np.moveaxis(z, axis, -1)
    out = np.full(zm.shape, "lt1", dtype=object)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        bad = np.any(np.isnan(zm) | (zm == np.inf), axis=-1, keepdims=True) | np.all(zm == -np.inf, axis=-1, keepdims=True)
        finite = np.isfinite(zm)
        m = np.max(np.where(finite, zm, -np.inf), axis=-1, keepdims=True)
        mm = np.where(np.isfinite(m), m, 0.0)
        lse = np.log(np.sum(np.where(finite, np.exp(zm - mm), 0.0), axis=-1, keepdims=True))
        logq = zm - mm - lse
        alone = np.sum(finite, axis=-1, keepdims=True) == 1
        out[finite & (logq < math.log(_tiny(dtype)))] = "subnormal"
        out[finite & alone] = "1"
        out[zm == -np.inf] = "0"
        out[np.broadcast_to(bad, zm.shape)] = "nan"
    return np.moveaxis(out, -1, axis)


def entry_classes(values: np.ndarray, kind: str, dtype: str, class_axis: int = -1) -> np.ndarray:
    """The class of every entry of one input (``kind`` its encoding, ``dtype`` the dtype it
    is sent in), in the input's own shape."""
    v = np.asarray(values, dtype=np.float64)
    if kind == "prob":
        return _prob_classes(v, dtype)
    if kind == "logprob":
        return _log_classes(v, dtype)
    axis = class_axis if v.ndim == 0 else class_axis % v.ndim if class_axis < 0 else class_axis
    return _logit_classes(v, axis if v.ndim else 0, dtype)


def cells_of(case: Case) -> set[str]:
    """The cells the (sent) ``case`` reaches: the class pair of every broadcast entry, in
    the case's own encoding."""
    if case.target.size == 0 or case.pred.size == 0:
        return set()
    shape = case.shape
    pc = entry_classes(case.target, case.target_kind, case.input_dtype("target"))
    pred_axis = case.class_axis if case.pred.ndim == len(shape) else -1
    qc = entry_classes(case.pred, case.pred_kind, case.input_dtype("pred"), pred_axis)
    pc, qc = np.broadcast_to(pc, shape).reshape(-1), np.broadcast_to(qc, shape).reshape(-1)
    enc = f"{case.target_kind},{case.pred_kind}"
    return {f"{p},{q}/{enc}" for p, q in set(zip(pc.tolist(), qc.tolist()))}


# ----------------------------------------------------------------------------- generation
_SUBNORMAL_LOG = {"float16": -12.0, "bfloat16": -90.0, "float32": -90.0, "float64": -720.0}


def _prob_value(cls: str, dtype: str) -> float:
    return {"0": 0.0, "-0": -0.0, "subnormal": _tiny(dtype) / 4, "lt1": 0.25, "1": 1.0, "gt1": 2.0,
            "+inf": math.inf, "nan": math.nan, "negative": -0.25, "-inf": -math.inf}[cls]


def _log_value(cls: str, dtype: str) -> float:
    """t with exp(t) in ``cls`` (exactly representable in every dtype)."""
    return {"0": -math.inf, "subnormal": _SUBNORMAL_LOG[dtype], "lt1": -1.5, "1": 0.0, "gt1": 0.5,
            "+inf": math.inf, "nan": math.nan}[cls]


# The ordinary pair beside the cell: p = 0.75, q = 0.5 (a finite, positive term).
_ORDINARY_P, _ORDINARY_Q = 0.75, 0.5


def cell_arrays(key: str, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """Target and prediction of shape (1, 2) for cell ``key`` in ``dtype``: entry 0 the
    cell's pair, entry 1 an ordinary pair (p = 0.75, q = 0.5, encoded); with logits the row
    is shared, so the companion logit is 0 and the cell's logit sets q (q = 1 needs the
    companion at −∞, q = 0: its p is then 0, a KL-ZERO-1 term)."""
    p, q, tk, pk = parse_key(key)
    ord_t = exactmath.log(np.array([_ORDINARY_P]), dtype)[0] if tk == "logprob" else _ORDINARY_P
    t0 = _prob_value(p, dtype) if tk == "prob" else _log_value(p, dtype)
    if pk == "prob":
        z = [_prob_value(q, dtype), _ORDINARY_Q]
    elif pk == "logprob":
        z = [_log_value(q, dtype), exactmath.log(np.array([_ORDINARY_Q]), dtype)[0]]
    else:
        z = {"0": [-math.inf, 0.0], "subnormal": [_SUBNORMAL_LOG[dtype], 0.0], "lt1": [-1.0, 0.0],
             "1": [0.0, -math.inf], "nan": [math.nan, 0.0]}[q]
        if q == "1":
            ord_t = -math.inf if tk == "logprob" else 0.0
    return np.array([[t0, ord_t]]), np.array([z])


def _covered_by(caps, tk: str, pk: str, reduction: str, dtype: str) -> bool:
    return (tk in caps.target_kinds and pk in caps.pred_kinds and reduction in caps.reductions
            and dtype in caps.dtypes and caps.min_ndim <= 2 <= caps.max_ndim)


def plan(caps_by_name: dict[str, object], key: str, index: int) -> list[tuple[str, str]]:
    """The (reduction, dtype) pairs of cell ``key``'s cases: a greedy cover of the adapters
    whose own encodings include the cell's (each takes at least one case), the dtypes
    rotated with ``index`` so that the cells spread over all four."""
    _, _, tk, pk = parse_key(key)
    need = {n for n, c in caps_by_name.items() if tk in c.target_kinds and pk in c.pred_kinds
            and c.min_ndim <= 2 <= c.max_ndim}
    order = DTYPES[index % 4:] + DTYPES[:index % 4]
    reductions = sorted({r for n in need for r in caps_by_name[n].reductions})
    out: list[tuple[str, str]] = []
    while need:
        best = max(((r, d) for r in reductions for d in order),
                   key=lambda rd: (sum(_covered_by(caps_by_name[n], tk, pk, *rd) for n in need),
                                   -order.index(rd[1])))
        got = {n for n in need if _covered_by(caps_by_name[n], tk, pk, *best)}
        if not got:
            break
        out.append(best)
        need -= got
    return out


def generate(caps_by_name: dict[str, object]) -> list[Case]:
    """The ``cell/...`` cases: for every expressible cell of every encoding, one case per
    :func:`plan` pair (gradients asked), labelled ``cell/<p class>,<q class>/<encoding>``."""
    out = []
    for i, key in enumerate(all_cells()):
        p, q, tk, pk = parse_key(key)
        for reduction, dtype in plan(caps_by_name, key, i):
            target, pred = cell_arrays(key, dtype)
            out.append(Case(target=target, pred=pred, dtype=dtype, target_kind=tk, pred_kind=pk,
                            reduction=reduction, grad=True, label=f"cell/{p},{q}/{tk},{pk}"))
    return out
