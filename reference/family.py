"""The reference family: every KL-loss semantics the frameworks use, as one parameter set.

A :class:`Point` says *how* a loss turns a case's values (the canonical case fields:
target, pred, their encodings, dtype, reduction, axes, weights) into a number: which
reduction it really applies, which epsilon policy, where sample weights act, and whether
it (mis)reads the arguments.  The canonical semantics of a case is
``Point(reduction=case.reduction)``; a framework's documented or observed behaviour is
another point.  ``reference.evaluate(case, point)`` computes any point in float64.

Clause ids in comments refer to reference/SPEC.md.
"""
from __future__ import annotations

import dataclasses

EPSILON_POLICIES = (
    "none",            # KL-EPS-NONE: the canonical definition, no epsilon
    "target_log_eps",  # KL-EPS-TARGET-LOG: p * (log(p + eps) - log q)   (MXNet: eps=1e-12)
    "clip_both",       # KL-EPS-CLIP: p, q clipped into [eps, 1] first   (Keras: eps=1e-7)
)
WEIGHT_DIVISORS = (
    "count",       # KL-WEIGHT-DIVISOR: means divide by element / distribution counts
    "weight_sum",  # KL-WEIGHT-SUMDIV: mean and distribution_mean divide by sum of weights
)
ZERO_INF = (
    "zero",  # KL-ZERO-1: 0 * log(0/q) = 0, also where log q or log p is -inf
    "nan",   # KL-ZERO-3: literal IEEE 0 * (-inf) = NaN (e.g. torch kl_div)
)
PRED_KINDS = ("prob", "logprob", "logits")
TARGET_KINDS = ("prob", "logprob")
NEGATIVE = (
    "nan",  # KL-INVALID-1: a negative p or q gives a NaN term
    "inf",  # KL-NEG-INF: a negative p or q gives +inf (scipy.special.rel_entr / kl_div)
    "zero",  # KL-NEG-ZERO: a negative p gives 0 (Paddle's label <= 0 branch; torch <= 1.12)
)
WEIGHT_LEVELS = (
    "element",       # KL-WEIGHT-ELEMENT: weights multiply the elementwise loss (MXNet)
    "distribution",  # KL-WEIGHT-DIST: weights multiply per-distribution losses (Keras)
)


@dataclasses.dataclass(frozen=True)
class Point:
    """One member of the reference family (SPEC.md §Family)."""

    reduction: str
    epsilon: str = "none"
    eps: float = 0.0
    weight_level: str = "element"
    # Argument-order mistake: compute KL(Q || P) from the same inputs (KL-ARG-ORDER).
    swap: bool = False
    # Misread encodings: treat the target / prediction as another kind than the case says
    # (e.g. log-probabilities read as probabilities). None means "as the case says".
    target_as: str | None = None
    pred_as: str | None = None
    # Additive fields (defaults keep older names and JSON unchanged).
    weight_divisor: str = "count"
    zero_inf: str = "zero"
    # Functions that are not the canonical KL (SPEC.md §11): the generalised KL term
    # p log(p/q) - p + q (KL-GEN-1), inputs divided by their class-axis sums first
    # (KL-NORM-1), and the scipy.special convention for negative entries (KL-NEG-INF).
    generalised: bool = False
    normalise: bool = False
    negative: str = "nan"

    def __post_init__(self):
        if self.epsilon not in EPSILON_POLICIES:
            raise ValueError(f"epsilon policy {self.epsilon!r} is not one of {EPSILON_POLICIES}")
        if self.weight_level not in WEIGHT_LEVELS:
            raise ValueError(f"weight_level {self.weight_level!r} is not one of {WEIGHT_LEVELS}")
        if self.epsilon == "none" and self.eps != 0.0:
            raise ValueError("eps must be 0 when the epsilon policy is 'none'")
        if self.epsilon != "none" and not self.eps > 0.0:
            raise ValueError(f"eps must be > 0 for epsilon policy {self.epsilon!r}, got {self.eps!r}")
        if self.weight_divisor not in WEIGHT_DIVISORS:
            raise ValueError(f"weight_divisor {self.weight_divisor!r} is not one of {WEIGHT_DIVISORS}")
        if self.zero_inf not in ZERO_INF:
            raise ValueError(f"zero_inf {self.zero_inf!r} is not one of {ZERO_INF}")
        if self.negative not in NEGATIVE:
            raise ValueError(f"negative {self.negative!r} is not one of {NEGATIVE}")
        if self.target_as is not None and self.target_as not in TARGET_KINDS:
            raise ValueError(f"target_as {self.target_as!r} is not one of {TARGET_KINDS}")
        if self.pred_as is not None and self.pred_as not in PRED_KINDS:
            raise ValueError(f"pred_as {self.pred_as!r} is not one of {PRED_KINDS}")

    @property
    def name(self) -> str:
        """Short stable label, e.g. ``sample_mean+target_log_eps(1e-12)``."""
        parts = [self.reduction]
        if self.epsilon != "none":
            parts.append(f"{self.epsilon}({self.eps:g})")
        if self.weight_level != "element":
            parts.append(f"weights@{self.weight_level}")
        if self.weight_divisor != "count":
            parts.append(f"div_{self.weight_divisor}")
        if self.zero_inf != "zero":
            parts.append(f"0*inf={self.zero_inf}")
        if self.generalised:
            parts.append("generalised")
        if self.normalise:
            parts.append("normalised")
        if self.negative != "nan":
            parts.append(f"negative={self.negative}")
        if self.swap:
            parts.append("swapped")
        if self.target_as:
            parts.append(f"target_as_{self.target_as}")
        if self.pred_as:
            parts.append(f"pred_as_{self.pred_as}")
        return "+".join(parts)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "Point":
        """Inverse of :meth:`to_json`; fields missing from older files take their defaults."""
        return cls(**d)


def canonical(case) -> Point:
    """The canonical semantics of ``case``: its own reduction, no epsilon, no misreading."""
    return Point(reduction=case.reduction)
