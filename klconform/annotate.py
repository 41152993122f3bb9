"""What a report needs of an adapter run beyond its verdicts, filled in by the engine
(:func:`klconform.engine.run_conformance`): the documented semantics per asked reduction,
the known records the verdicts cite, the inferred fingerprint -- so that a report needs
nothing but the results.
"""
from __future__ import annotations

import collections
from pathlib import Path
from typing import Any, Mapping, Sequence

from .case import Case
from .fingerprint import infer_fingerprint, template_from_points
from .results import AdapterRun

# Worker facts that change every run without meaning anything: kept out of the results
# (two runs with the same seed and versions give the same results.json).
VOLATILE_ENV = ("pid",)
_ROOT = Path(__file__).resolve().parent.parent


def documented_summary(adapter, cases: Sequence[Case]) -> dict[str, Any]:
    """The adapter's documented points, one per asked reduction (the most common when
    they vary), with the doc URL and version: ``AdapterRun.documented``."""
    by_red: dict[str, collections.Counter] = {}
    for c in cases:
        try:
            pt = adapter.documented(c)
        except Exception:   # the adapter documents nothing for this case: data, not a bug of ours
            continue
        by_red.setdefault(c.reduction, collections.Counter())[pt] += 1
    points = {r: max(cnt.items(), key=lambda kv: (kv[1], kv[0].name))[0] for r, cnt in sorted(by_red.items())}
    varies = {r: sorted(p.name for p in cnt) for r, cnt in sorted(by_red.items()) if len(cnt) > 1}
    return {"points": {r: p.to_json() for r, p in points.items()},
            "name": template_from_points(points).name if points else "",
            "varies": varies, "doc": getattr(adapter, "doc_url", ""),
            "doc_version": getattr(adapter, "doc_version", None)}


def known_records(records: Sequence) -> dict[str, dict[str, Any]]:
    """``records`` (:class:`klconform.records.Record`) as JSON ({id: record}), their source
    paths relative to the project (the file name alone outside it)."""
    out = {}
    for rec in records:
        d = rec.to_json()
        src = d.get("source") or ""
        try:
            d["source"] = str(Path(src).resolve().relative_to(_ROOT))
        except ValueError:
            d["source"] = Path(src).name
        out[rec.id] = d
    return out


def annotate(run: AdapterRun, adapter, all_cases: Mapping[str, dict], records: Sequence,
             evaluate=None) -> None:
    """Fill the report fields of ``run``: documented summary, known records (``records``:
    those loaded for its adapter), fingerprint; drop volatile worker facts.  ``evaluate``:
    the run's :class:`~klconform.evaluator.ReferenceCache`, shared with the verdicts and
    the other adapters' fingerprints (most templates are the same points on the same cases)."""
    for key in VOLATILE_ENV:
        run.env.pop(key, None)
    if run.status != "ok":
        return
    if run.distill_capabilities:     # a distillation run (klconform.distill_harness) documents itself
        run.known_records = known_records(records)
        return
    # the documented summary (like the fingerprint) is read from the small cases: a large
    # one's JSON is a recipe, 10⁷ values to generate per look, and adds only size
    cases = [Case.from_json(all_cases[d]) for d in sorted(run.outcomes)
             if d in all_cases and all_cases[d].get("recipe") is None]
    run.documented = documented_summary(adapter, cases)
    run.known_records = known_records(records)
    fp = dict(run.fingerprint or {})
    fp.update(infer_fingerprint(all_cases, run.outcomes, documented=run.documented,
                                cache=evaluate))
    run.fingerprint = fp
