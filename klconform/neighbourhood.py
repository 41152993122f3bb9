"""The neighbourhood of a family point: the one-field changes both semantic searches try.

The verdicts' explanation search (:mod:`klconform.explain`, over :class:`Point`) and the
fingerprint's coordinate search (:mod:`klconform.fingerprint`, over templates) change the
same fields (SPEC.md §Family) in the same order: epsilon policy, 0*inf convention,
argument order, misread encodings, weight divisor and level.  Each caller adds the
reductions itself (a point has one, a template a map of them).
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

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
# Every epsilon option: no epsilon first (the simplest change), then the variants.
EPSILON_OPTIONS = (("none", 0.0),) + EPSILON_VARIANTS


def one_field_changes(p, *, input_options: Iterable[Any], input_now: Any, target_options: Iterable[Any],
                      target_now: Any, divisor: bool, level: bool, functions: bool = True) -> list[dict[str, Any]]:
    """The field changes one step from ``p`` (a Point or a template: anything with the
    fields epsilon, eps, zero_inf, swap, generalised, normalise, negative, weight_divisor,
    weight_level), simplest kinds
    first.  Misread encodings range over ``*_options`` minus what ``*_now`` reads them as;
    the weight divisor changes only when ``divisor``, the weight level only when ``level``
    (where the case's weights can make them matter).  ``functions``: also change which
    function is computed (generalised, normalised, negative=inf; SPEC.md §11) — the
    run-wide fingerprint search does; the per-case explanation search does not, because on
    one case those fields "explain" NaN and inf entries of any KL implementation without
    discriminating evidence (a normalised inf is NaN), so it keeps the documented point's
    function and names a different function only through the fingerprint."""
    out: list[dict[str, Any]] = [{"epsilon": e, "eps": v} for e, v in EPSILON_OPTIONS
                                 if (e, v) != (p.epsilon, p.eps) and not (e == "none" and p.epsilon == "none")]
    out.append({"zero_inf": "nan" if p.zero_inf != "nan" else "zero"})       # KL-ZERO-3
    out.append({"swap": not p.swap})
    # SPEC.md §11: functions beside the canonical KL (KL-GEN-1, KL-NORM-1, KL-NEG-INF)
    if functions:
        out.append({"generalised": not p.generalised})
        out.append({"normalise": not p.normalise})
        out += [{"negative": v} for v in ("nan", "inf", "zero") if v != p.negative]
    out += [{"pred_as": k} for k in input_options if k != input_now]
    out += [{"target_as": k} for k in target_options if k != target_now]
    if divisor:                                                                # KL-WEIGHT-SUMDIV
        out.append({"weight_divisor": "weight_sum" if p.weight_divisor != "weight_sum" else "count"})
    if level:
        out.append({"weight_level": "distribution" if p.weight_level == "element" else "element"})
    return out
