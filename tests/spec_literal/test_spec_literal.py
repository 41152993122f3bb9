"""The reference against a second implementation of SPEC.md (``spec_literal.py``), written
from the SPEC text alone.

1. Through the real harness: the SPEC-literal adapter runs in a worker over the whole
   default gate (the frozen corpus and the quick large set) and every verdict must be
   ``match``: a disagreement between the two implementations is a discrepancy verdict.
2. Point-wise: at every family point an adapter documents for a frozen case it takes, and
   at every point a known-discrepancy record names (``explained_by``), the reference's
   value and gradients must lie within its own accuracy claim (KL-BOUND-5: max(2 ulp,
   B_float64/16) of the exact value) of the SPEC-literal ones.

Where the two disagree SPEC decides: the SPEC text is made unambiguous and whichever side
misread it is fixed (a failure names the case digest and the point to start from).
"""
from __future__ import annotations

import collections
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest

from klconform import frozen, large, registry
from klconform.engine import run_conformance
from klconform.reference import UndefinedCase, evaluate
from klconform.reference.family import Point
from klconform.translate import translate_all
from klconform.workers import WorkerSpec
from tests.spec_literal import spec_literal

REF = "tests.spec_literal.adapter:SpecLiteral"


@pytest.fixture(scope="module")
def gate_run():
    """The SPEC-literal adapter over the default gate, in a real worker."""
    cases = frozen.load()
    entries = large.select("quick")
    t0 = time.perf_counter()
    result = run_conformance([WorkerSpec(REF)], cases, large=entries, shrink_rounds=0)
    return result, len(cases), len(entries), time.perf_counter() - t0


def test_spec_literal_adapter_matches_reference_on_the_whole_default_gate(gate_run):
    result, n_cases, n_large, elapsed = gate_run
    (run,) = result.runs
    assert run.status == "ok", f"the SPEC-literal adapter did not run: {run.status} {run.reason}"
    compared = {v.case for v in run.verdicts}
    classes = collections.Counter(v.cls for v in run.verdicts)
    print(f"\nSPEC-literal x reference: {len(compared)} cases compared ({n_cases} frozen, {n_large} quick large "
          f"sent), verdicts {dict(classes)}, {elapsed:.1f} s")
    # every frozen case is expressible for an adapter that declares everything
    assert len(compared) == n_cases + n_large
    bad = [v for v in run.verdicts if v.cls != "match"]
    lines = [f"{v.case} [{v.against}] {v.cls}: {v.detail[:300]} ({', '.join(v.clauses)})" for v in bad[:20]]
    assert not bad, f"{len(bad)} discrepancy verdicts between SPEC-literal and the reference:\n" + "\n".join(lines)


# ----------------------------------------------------------------------------- point-wise
def point_from_name(name: str) -> Point:
    """The family point a ``Point.name`` label names (the inverse of ``Point.name``; an
    epsilon is read back from its ``%g`` form)."""
    reduction, *parts = name.split("+")
    fields: dict = {}
    for part in parts:
        m = re.fullmatch(r"(target_log_eps|clip_both)\((.+)\)", part)
        if m:
            fields.update(epsilon=m.group(1), eps=float(m.group(2)))
        elif part.startswith("weights@"):
            fields["weight_level"] = part[len("weights@"):]
        elif part.startswith("div_"):
            fields["weight_divisor"] = part[len("div_"):]
        elif part.startswith("0*inf="):
            fields["zero_inf"] = part[len("0*inf="):]
        elif part.startswith("negative="):
            fields["negative"] = part[len("negative="):]
        elif part in ("generalised", "normalised", "swapped"):
            fields[{"normalised": "normalise", "swapped": "swap"}.get(part, part)] = True
        elif part.startswith(("target_as_", "pred_as_")):
            side, _, kind = part.partition("_as_")
            fields[side + "_as"] = kind
        else:
            raise ValueError(f"point name {name!r}: unknown part {part!r}")
    point = Point(reduction=reduction, **fields)
    assert point.name == name, (point.name, name)
    return point


def _stratum(case) -> tuple:
    """What a sampled case stands for: its corpus family (label up to the second '/') and its
    encodings (the points themselves carry the reduction)."""
    return ("/".join(case.label.split("/")[:2]), case.target_kind, case.pred_kind)


@pytest.fixture(scope="module")
def family_points():
    """(sent case, point, why) for every point an adapter documents on a frozen case it
    takes, every point of an adapter's committed fingerprint, and every point a committed
    baseline names as explaining a case (``explained_by``): one case per (corpus family,
    encodings, point), chosen deterministically, so every distinct point is
    covered on every kind of case it meets."""
    cases = frozen.load()
    by_caps: dict = {}
    sent_of: dict[str, list] = {}
    for name, ref in sorted(registry.builtin_adapters().items()):
        adapter = registry.load_adapter(ref)
        caps = adapter.capabilities()
        if caps not in by_caps:
            by_caps[caps] = [t.case for t in translate_all(cases, caps)]
        sent_of[name] = (adapter, by_caps[caps])
    chosen: dict[tuple, tuple] = {}

    def offer(case, point, why):
        key = (_stratum(case), point)
        if key not in chosen or case.digest < chosen[key][0].digest:
            chosen[key] = (case, point, why)

    for name, (adapter, sent) in sent_of.items():
        for case in sent:
            offer(case, adapter.documented(case), f"{name} documents it")
    named: set[str] = set()
    digests = {c.digest: c for _, sent in sent_of.values() for c in sent}
    for path in sorted(BASELINES.glob("*.jsonl")):
        lines = path.read_text().splitlines()
        header = json.loads(lines[0])
        adapter_name = header["adapter"]
        fingerprint = [Point.from_json(p) for p in (header.get("fingerprint") or {}).get("points", {}).values()]
        for case in sent_of.get(adapter_name, (None, []))[1]:
            for point in fingerprint:
                if point.reduction == case.reduction:
                    offer(case, point, f"{path.name} fingerprint")
        for line in lines[1:]:
            entry = json.loads(line)
            verdict = entry.get("verdict") or ""
            if ":" in verdict and entry["case"] in digests:
                name = verdict.split(":", 1)[1]
                named.add(name)
                offer(digests[entry["case"]], point_from_name(name), f"{path.name} explained_by")
    return list(chosen.values()), named


BASELINES = Path(__file__).resolve().parents[2] / "klconform" / "data" / "baselines"


def _within(mine: np.ndarray, ref: np.ndarray, bound64: np.ndarray) -> np.ndarray:
    """Entries where the reference is NOT within its claim (KL-BOUND-5) of the exact value:
    max(2 ulp, B_float64/16), plus one float64 ulp for rounding the SPEC-literal value."""
    mine = np.asarray(mine, dtype=np.longdouble)
    ref = np.asarray(ref, dtype=np.float64)
    if mine.shape != ref.shape:
        return np.ones(1, dtype=bool)
    with np.errstate(over="ignore"):
        rounded = mine.astype(np.float64)     # beyond float64's range is its infinity (KL-DTYPE-3)
    fm, fr = np.isfinite(rounded), np.isfinite(ref)
    same_special = (~fm & ~fr) & ((rounded == ref) | (np.isnan(rounded) & np.isnan(ref)))
    ulp = np.spacing(np.abs(np.where(fr, ref, 0.0)))
    tol = np.maximum(2 * ulp, np.broadcast_to(bound64, ref.shape) / 16) + ulp
    with np.errstate(invalid="ignore"):
        close = fm & fr & (np.abs(np.where(fm, mine, 0) - np.where(fr, ref, 0).astype(np.longdouble)) <= tol)
    return ~(close | same_special)


def test_reference_agrees_with_spec_literal_at_every_documented_and_fingerprinted_point(family_points):
    pairs, named = family_points
    t0 = time.perf_counter()
    problems: list[str] = []
    points = collections.Counter()
    seen: set = set()
    for case, point, why in pairs:
        points[point.name] += 1
        # the same values as a float64 case: KL-BOUND-5's claim is stated in float64 terms
        # (the reference evaluates the exact values whatever the dtype, KL-DTYPE-2)
        if case.dtype != "float64" or case.dtype_form != "same":
            case = case.replace(dtype="float64", target_dtype=None, pred_dtype=None)
        if (case.digest, point) in seen:
            continue
        seen.add((case.digest, point))
        try:
            expected = evaluate(case, point)
        except UndefinedCase as exc:
            try:
                spec_literal.evaluate(case, point)
            except spec_literal.Undefined:
                continue
            problems.append(f"{case.digest} {point.name} ({why}): reference undefined ({exc}), SPEC-literal defined")
            continue
        try:
            mine = spec_literal.evaluate(case, point)
        except spec_literal.Undefined as exc:
            problems.append(f"{case.digest} {point.name} ({why}): SPEC-literal undefined ({exc}), reference defined")
            continue
        bounds = expected
        bad = _within(mine.value, expected.value, bounds.bound)
        if bad.any():
            i = int(np.flatnonzero(bad.reshape(-1))[0]) if bad.shape == np.shape(expected.value) else 0
            problems.append(f"{case.digest} {point.name} ({why}, {case!r}): value entry {i}: reference "
                            f"{np.ravel(expected.value)[i] if expected.value.size else '[]'}, SPEC-literal "
                            f"{np.ravel(mine.value.astype(np.float64))[i] if mine.value.size else '[]'}")
        for side in expected.grads:
            bad = _within(mine.grads[side], expected.grads[side], bounds.grad_bounds[side])
            if bad.any():
                i = int(np.flatnonzero(bad.reshape(-1))[0]) if bad.shape == np.shape(expected.grads[side]) else 0
                problems.append(f"{case.digest} {point.name} ({why}, {case!r}): d/d{side} entry {i}: reference "
                                f"{np.ravel(expected.grads[side])[i]}, SPEC-literal "
                                f"{np.ravel(mine.grads[side].astype(np.float64))[i]}")
    print(f"\nreference x SPEC-literal: {len(pairs)} (case, point) pairs sampled, {len(seen)} evaluated as float64 "
          f"cases, {len(points)} distinct points, {time.perf_counter() - t0:.1f} s")
    # every point a baseline names is among those compared
    assert named <= set(points), sorted(named - set(points))
    assert not problems, f"{len(problems)} disagreements:\n" + "\n".join(problems[:30])
