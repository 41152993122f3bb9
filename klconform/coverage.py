"""What a corpus exercises, per adapter: counts of the cases sent that reach each SPEC
clause, each capability value the adapter declares, each special value and each cell of
SPEC.md §2's special-value table its encodings can express (klconform/cells.py).

    cov = count([t.case for t in translate_all(corpus, caps)], caps)
    # {"capabilities": {"dtype=float16": 1290, ...}, "cells": {"+inf,0/prob,logprob": 3, ...},
    #  "clauses": {"KL-ZERO-1": 412, ...}, "special": {"nan": 88, ...}}

Every key :func:`declared` lists for the adapter is present (0 when no case reaches it), so
a gap shows as a zero.  The floor the frozen corpus must keep (docs/corpus.md) is
:data:`FLOOR`; tests/verdicts/test_coverage.py checks it.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np

from . import cells as cells_mod
from .case import Case
from .evaluator import UNDEFINED, make_evaluator
from .reference.dtypes import FINFO
from .reference.family import canonical as canonical_point

SPECIAL_VALUES = ("+0", "-0", "subnormal", "+inf", "-inf", "nan", "huge_logits", "empty")
# Floor per adapter: cases per declared capability value and per special value, and
# clauses and special-value cells its capabilities reach (justified in docs/corpus.md).
FLOOR = {"capabilities": 20, "special": 5, "clauses": 1, "cells": 1}
# Clauses that values rather than options reach: any adapter can be sent such cases.
VALUE_CLAUSES = ("KL-ZERO-1", "KL-ZERO-2", "KL-INVALID-1", "KL-INF-1")


def _weights_form(case: Case) -> str:
    return "sample" if case.sample_weight is not None else "scalar" if case.weight is not None else "none"


def capability_keys(case: Case) -> list[str]:
    """The capability values ``case`` exercises (as ``field=value`` keys)."""
    nd = len(case.shape)
    keys = [f"dtype={case.dtype}", f"reduction={case.reduction}", f"pred_kind={case.pred_kind}",
            f"target_kind={case.target_kind}", f"weights={_weights_form(case)}"]
    if nd >= 1:
        keys.append("class_axis=" + ("last" if case.class_axis % nd == nd - 1 else "other"))
    if nd >= 2:
        keys.append("batch_axis=" + ("first" if case.batch_axis % nd == 0 else "other"))
    if case.dtype_form != "same":
        keys.append(f"input_dtypes={case.dtype_form}")
    if case.target_sent_shape is not None:
        keys.append("target_sent_shape=reshaped")
    sw = case.sample_weight
    if sw is not None:
        if sw.size and np.any(sw == 0):
            keys.append("sample_weight=with_zeros")
        keys.append("sample_weight=" + ("uniform" if sw.size == 0 or np.all(sw == sw.reshape(-1)[0]) else "varying"))
    return keys


def special_keys(case: Case) -> list[str]:
    """The special values ``case`` carries in any of its arrays (as encoded; subnormal in the
    array's own dtype: the coarsest of the case's dtypes when they differ)."""
    arrays = [case.target, case.pred] + ([case.sample_weight] if case.sample_weight is not None else [])
    flat = np.concatenate([a.reshape(-1) for a in arrays])
    tiny = max(FINFO[d][1] for d in (case.dtype, case.input_dtype("target"), case.input_dtype("pred")))
    keys = []
    with np.errstate(invalid="ignore"):
        if np.any((flat == 0) & ~np.signbit(flat)):
            keys.append("+0")
        if np.any((flat == 0) & np.signbit(flat)):
            keys.append("-0")
        if np.any((flat != 0) & (np.abs(flat) < tiny)):
            keys.append("subnormal")
        if np.any(flat == np.inf):
            keys.append("+inf")
        if np.any(flat == -np.inf):
            keys.append("-inf")
        if np.any(np.isnan(flat)):
            keys.append("nan")
        # exp(logit) overflows the dtype: the softmax must subtract the maximum first
        if case.pred_kind == "logits" and np.any(np.isfinite(case.pred) & (np.abs(case.pred) > np.log(FINFO[case.dtype][0]))):
            keys.append("huge_logits")
    if 0 in case.shape:
        keys.append("empty")
    return keys


def _probe(caps, reduction: str, pred_kind: str, target_kind: str, weights: str) -> Case:
    p = np.array([[0.5, 0.5], [0.25, 0.75]])
    enc = {"prob": p, "logprob": np.log(p), "logits": np.log(p)}
    return Case(target=enc[target_kind], pred=enc[pred_kind], dtype="float64", target_kind=target_kind,
                pred_kind=pred_kind, reduction=reduction, weight=0.5 if weights == "scalar" else None,
                sample_weight=np.array([[1.0], [2.0]]) if weights == "sample" else None, grad=False)


def declared(caps) -> dict[str, list[str]]:
    """The keys an adapter with ``caps`` should see exercised: its capability values, the
    special values it can be sent, the clauses its options reach (the clauses
    ``reference.evaluate`` names for a plain probe of each reduction x encoding x weight
    form it declares, plus :data:`VALUE_CLAUSES`), and the cells of SPEC.md §2's table that
    its target and prediction encodings can express (``klconform.cells.expressible``)."""
    keys = [f"dtype={d}" for d in sorted(caps.dtypes)] + [f"reduction={r}" for r in sorted(caps.reductions)]
    keys += [f"pred_kind={k}" for k in sorted(caps.pred_kinds)] + [f"target_kind={k}" for k in sorted(caps.target_kinds)]
    forms = ["none"] + sorted(set(caps.weights) & {"scalar", "sample"})
    keys += [f"weights={w}" for w in forms]
    if caps.max_ndim >= 1:
        keys += ["class_axis=last"] + (["class_axis=other"] if caps.class_axis else [])
    if caps.max_ndim >= 2:
        keys += ["batch_axis=first"] + (["batch_axis=other"] if caps.batch_axis else [])
    if "sample" in forms:
        keys += ["sample_weight=uniform", "sample_weight=varying", "sample_weight=with_zeros"]
    keys += [f"input_dtypes={v}" for v in sorted(getattr(caps, "input_dtypes", ()))]
    if getattr(caps, "reshaped_target", False):
        keys.append("target_sent_shape=reshaped")
    special = [s for s in SPECIAL_VALUES if s != "huge_logits" or "logits" in caps.pred_kinds]
    clauses = set(VALUE_CLAUSES)
    for r in caps.reductions:
        for pk in caps.pred_kinds:
            for tk in caps.target_kinds:
                for w in forms:
                    try:
                        clauses |= set(_clause_ids(_probe(caps, r, pk, tk, w)))
                    except UNDEFINED:
                        pass
    reach = cells_mod.all_cells(sorted(caps.target_kinds), sorted(caps.pred_kinds))
    return {"clauses": sorted(clauses), "capabilities": keys, "special": special, "cells": reach}


def _clause_ids(case: Case, evaluate: Callable | None = None) -> tuple[str, ...]:
    ev = evaluate or make_evaluator()
    res = ev(case, canonical_point(case))
    return () if isinstance(res, BaseException) else tuple(res.clauses)


def count(cases: Iterable[Case], caps, *, evaluate: Callable | None = None) -> dict[str, dict[str, int]]:
    """Per section, how many of ``cases`` (the cases sent to an adapter with ``caps``)
    exercise each :func:`declared` key (0 if none; keys the adapter does not declare are
    not counted: a translated case may show them, the adapter's options cannot)."""
    ev = evaluate or make_evaluator()
    want = declared(caps)
    out: dict[str, dict[str, int]] = {s: dict.fromkeys(keys, 0) for s, keys in want.items()}
    for c in cases:
        for section, keys in (("clauses", _clause_ids(c, ev)), ("capabilities", capability_keys(c)),
                              ("special", special_keys(c)), ("cells", cells_mod.cells_of(c))):
            for k in keys:
                if k in out[section]:
                    out[section][k] += 1
    return {s: dict(sorted(out[s].items())) for s in sorted(out)}   # the order results.json keeps


def below_floor(coverage: dict[str, dict[str, int]], caps, floor: dict[str, int] = FLOOR) -> list[str]:
    """The declared keys of ``caps`` whose count in ``coverage`` is under ``floor``."""
    return [f"{s}: {k} = {coverage.get(s, {}).get(k, 0)} < {floor[s]}"
            for s, keys in declared(caps).items() for k in keys if coverage.get(s, {}).get(k, 0) < floor[s]]


def cells_summary(coverage: dict[str, dict[str, int]]) -> str:
    """One line on the cells of SPEC.md §2's table (klconform/cells.py) a coverage count
    reaches: how many of those the adapter's encodings can express, and the thinnest."""
    counts = coverage.get("cells", {})
    if not counts:
        return "cells: none expressible"
    reached = sum(1 for n in counts.values() if n)
    low = min(counts.items(), key=lambda kv: kv[1])
    return f"cells: {reached} of {len(counts)} expressible reached (thinnest: {low[0]} {low[1]})"
