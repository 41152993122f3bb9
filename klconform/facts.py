"""The facts about a (sent) case, its verdict and outcome that known-discrepancy records
match on (vocabulary: klconform/records.py) and that place a verdict in a report area."""
from __future__ import annotations

import re
from typing import Any

import numpy as np

from klconform.reference._quiet import quiet
from .case import Case
from .results import Verdict

_GRAD_PREFIX = re.compile(r"^gradient wrt (\w+):")   # the detail of a gradient verdict (klconform.verdicts)


def case_facts(case: Case) -> dict[str, Any]:
    """The facts about the case alone (JSON types; one pass over its arrays).  A large
    case's JSON form stores them (``Case.to_json``), so reports and record matching place
    its verdicts without generating it."""
    t, q = case.target, case.pred
    with quiet:
        zero_t = bool(np.any(t == 0)) if case.target_kind == "prob" else bool(np.any(t == -np.inf))
        zero_q = (bool(np.any(q == 0)) if case.pred_kind == "prob"
                  else bool(np.any(q == -np.inf)) if case.pred_kind == "logprob" else False)
        neg = ((case.target_kind == "prob" and bool(np.any(t < 0)))
               or (case.pred_kind == "prob" and bool(np.any(q < 0))))
    arrays = [t, q] + ([case.sample_weight] if case.sample_weight is not None else [])
    shape = case.shape
    return {
        "dtype": case.dtype, "target_dtype": case.input_dtype("target"), "pred_dtype": case.input_dtype("pred"),
        "dtype_form": case.dtype_form, "reshaped_target": case.target_sent_shape is not None,
        "other_dtype_inputs": {(False, False): "none", (True, False): "target", (False, True): "pred",
                               (True, True): "both"}[case.target_dtype is not None, case.pred_dtype is not None],
        "reduction": case.reduction, "pred_kind": case.pred_kind,
        "target_kind": case.target_kind, "ndim": len(shape), "size": int(np.prod(shape, dtype=np.int64)),
        "empty": 0 in shape, "broadcast": t.shape != q.shape, "has_zero_target": zero_t,
        "has_zero_pred": zero_q, "has_nonfinite": not all(bool(np.all(np.isfinite(a))) for a in arrays),
        "has_nan": bool(np.any(np.isnan(t)) or np.any(np.isnan(q))), "has_negative": neg,
        "has_weight": case.weight is not None, "has_sample_weight": case.sample_weight is not None,
        "grad": case.grad, "family": case.label.split("/", 1)[0], "label": case.label,
    }


def facts(case: Case, verdict: Verdict | None = None, outcome=None, *, run: str = "",
          version: str | None = None) -> dict[str, Any]:
    """The facts the known-discrepancy matcher tests (vocabulary: klconform/records.py)."""
    return _with_verdict(case_facts(case), verdict, outcome, run=run, version=version)


def facts_of_json(case_json: dict[str, Any], verdict: Verdict | None = None, outcome=None, *, run: str = "",
                  version: str | None = None) -> dict[str, Any]:
    """:func:`facts` of a case given by its JSON form: a large case's stored ``case_facts``
    spare generating it; any other case is decoded."""
    stored = case_json.get("case_facts")
    if stored is None:
        return facts(Case.from_json(case_json), verdict, outcome, run=run, version=version)
    return _with_verdict(dict(stored), verdict, outcome, run=run, version=version)


def _with_verdict(case_level: dict[str, Any], verdict, outcome, *, run: str, version: str | None) -> dict[str, Any]:
    grad_input = None
    if verdict is not None and verdict.cls == "gradient":
        m = _GRAD_PREFIX.match(verdict.detail or "")
        grad_input = m.group(1) if m else None
    case_level.update({
        "explained_by": None if verdict is None else verdict.explained_by, "grad_input": grad_input,
        "returned_dtype": None if outcome is None else outcome.dtype,
        "status": None if outcome is None else outcome.status,
        "error_type": None if outcome is None else outcome.error_type,
        "version": version, "run": run,
    })
    return case_level


# ----------------------------------------------------------------------------- distillation
#: The facts of a distillation case (SPEC.md §12, klconform.distill_harness) records match
#: beside the canonical ones (vocabulary: klconform/records.py).
DISTILL_FIELDS = {
    "divergence": str, "beta": float, "ratio": float, "temperature": float, "temperature_scale": str,
    "masked": bool, "empty_mask": bool, "chunked": bool, "chunks": int, "logits_dtype": str, "vocab": int,
}


def distill_case_facts(case, label: str = "") -> dict[str, Any]:
    """The facts about a :class:`klconform.reference.distill.DistillCase` alone (JSON types):
    its divergence and parameter (``beta`` for ``jsd``, ``ratio`` for ``symmetric``, else
    None), temperature, mask (``masked``: some token ignored; ``empty_mask``: none kept),
    chunks, the logits' dtype, the vocabulary, and the canonical facts that apply to it
    (``label``: the corpus id, ``family`` its first part)."""
    kept = np.asarray(case.kept, dtype=bool)
    param = case.asked_param()
    shape = tuple(case.shape)
    return {
        "divergence": case.divergence, "beta": float(param) if case.divergence == "jsd" else None,
        "ratio": float(param) if case.divergence == "symmetric" else None,
        "temperature": float(case.temperature), "temperature_scale": case.temperature_scale,
        "masked": bool(not kept.all()), "empty_mask": bool(not kept.any()),
        "chunked": case.chunks is not None, "chunks": None if case.chunks is None else int(case.chunks),
        "logits_dtype": case.sent_dtype, "vocab": int(shape[-1]),
        "dtype": case.dtype, "reduction": case.reduction, "ndim": len(shape),
        "size": int(np.prod(shape, dtype=np.int64)), "grad": bool(case.grad),
        "family": label.split("/", 1)[0], "label": label,
    }


def distill_facts(case_level: dict[str, Any], verdict: Verdict | None = None, outcome=None, *, run: str = "",
                  version: str | None = None) -> dict[str, Any]:
    """:func:`facts` of a distillation case given by its :func:`distill_case_facts`."""
    return _with_verdict(dict(case_level), verdict, outcome, run=run, version=version)
