"""Distillation cases (SPEC.md §12) in the harness: their wire form, the recipe corpus and
the judge.

A distillation case is a :class:`klconform.reference.distill.DistillCase` (teacher and
student logits, temperature, τ² flag, token mask, divergence and its parameter, chunks).  It
travels as a wire dict of its own kind (``"kind": "distill"``, ``"v": "distill-1"``), which
:meth:`klconform.case.Case.from_wire` hands to :func:`from_wire`; the canonical case wire
(``Case.to_wire``, version 1), the frozen corpus and its digests are untouched.  A
distillation adapter's ``evaluate`` receives the ``DistillCase`` itself
(adapters/distill_base.py).

The corpus is recipes, not arrays (``klconform/data/distill-corpus.jsonl``, one JSON object
a line: ``id``, ``recipe``), built bit for bit by :func:`build` (numpy only), as the large
family is (klconform/large.py).

:func:`judge` gives an outcome's verdicts against ``reference.distill`` with the harness's
verdict classes: ``match``; ``semantic`` with ``explained_by`` the
:attr:`~klconform.reference.distill.DistillPoint.name` of the simplest family point
(KL-DISTILL-FAM) whose value and gradients agree; ``special_value`` / ``precision``;
``gradient``; ``dtype``; ``error``; ``crash`` / ``timeout``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .compare import judged_dtype
from .reference.distill import DistillCase, DistillPoint, canonical, evaluate
from .reference.dtypes import from_bits, round_to, to_bits
from .reference.spec import VERDICT_CLAUSES
from .results import Verdict

WIRE_KIND = "distill"
WIRE_VERSION = "distill-1"
CORPUS = Path(__file__).resolve().parent / "data" / "distill-corpus.jsonl"
_FIELDS = ("dtype", "divergence", "param", "temperature", "temperature_scale", "reduction", "chunks", "grad",
           "logits_dtype")


# ----------------------------------------------------------------------------- wire
def to_wire(case: DistillCase, label: str = "") -> dict[str, Any]:
    """``case`` as plain types: the logits' bytes in the dtype they are sent in (exact,
    DistillCase checks it), the mask as one byte per token, the rest as given."""
    sent = case.sent_dtype
    w: dict[str, Any] = {"kind": WIRE_KIND, "v": WIRE_VERSION, "shape": list(case.shape), "label": label,
                         "student": to_bits(case.student, sent), "teacher": to_bits(case.teacher, sent),
                         "mask": None if case.mask is None else np.asarray(case.mask, dtype=np.uint8).tobytes()}
    w.update({f: getattr(case, f) for f in _FIELDS})
    w["digest"] = digest_of(w)
    return w


def digest_of(w: dict[str, Any]) -> str:
    """16 hex digits of SHA-256 over the wire's fields (the case digest verdicts cite)."""
    h = hashlib.sha256()
    for k in sorted(k for k in w if k not in ("digest", "label")):
        v = w[k]
        h.update(k.encode())
        h.update(bytes(v) if isinstance(v, (bytes, memoryview)) else json.dumps(v, sort_keys=True).encode())
    return h.hexdigest()[:16]


def from_wire(w: dict[str, Any]) -> DistillCase:
    """Inverse of :func:`to_wire` (the worker's side)."""
    if w.get("v") != WIRE_VERSION:
        raise ValueError(f"distillation wire version {w.get('v')!r} is not {WIRE_VERSION}")
    shape = tuple(w["shape"])
    sent = w["logits_dtype"] or w["dtype"]
    mask = None if w["mask"] is None else np.frombuffer(w["mask"], dtype=np.uint8).reshape(shape[:-1]).astype(bool)
    return DistillCase(student=from_bits(w["student"], sent, shape), teacher=from_bits(w["teacher"], sent, shape),
                       mask=mask, **{f: w[f] for f in _FIELDS})


@dataclasses.dataclass(eq=False)
class SentDistill:
    """A distillation case as the workers receive it (``to_wire``) with its digest and label."""

    case: DistillCase
    label: str = ""
    recipe: dict[str, Any] | None = None     # what built it (the corpus's), stored in results

    def to_wire(self) -> dict[str, Any]:
        return to_wire(self.case, self.label)

    @property
    def digest(self) -> str:
        return self.to_wire()["digest"]


# ----------------------------------------------------------------------------- recipes
def build(recipe: dict[str, Any]) -> DistillCase:
    """A case from its recipe, bit for bit on every numpy.  ``kind``: ``"explicit"`` (the
    logits given as probabilities' logs, one token per row: SPEC's examples), ``"small"``
    (float32 standard normal logits times ``spread`` from ``seed``, of ``shape``) or ``"lm"`` (a
    B×T×V batch: Zipf-like teacher logits, the student's the teacher's plus noise, rounded to
    ``logits_dtype``, the last ``ignored`` fraction of each sequence masked)."""
    r = dict(recipe)
    kind = r.pop("kind")
    if kind == "explicit":
        teacher = np.log(np.asarray(r.pop("teacher_probs"), dtype=np.float64))
        student = np.log(np.asarray(r.pop("student_probs"), dtype=np.float64))
        dt = r.get("logits_dtype") or r.get("dtype", "float32")
        mask = r.pop("mask", None)
        return DistillCase(student=round_to(student, dt), teacher=round_to(teacher, dt),
                           mask=None if mask is None else np.asarray(mask, dtype=bool), **r)
    if kind == "lm":
        B, T, V = r.pop("B"), r.pop("T"), r.pop("V")
        seed, ignored = r.pop("seed"), r.pop("ignored", 0.0)
        dt = r.get("logits_dtype") or r.get("dtype", "float32")
        rng = np.random.default_rng([seed, V, B, T])
        base = -2.2 * np.log(np.arange(1, V + 1, dtype=np.float64))
        teacher = np.empty((B, T, V))
        for b in range(B):
            for t in range(T):
                teacher[b, t] = base[rng.permutation(V)] + rng.normal(0.0, 0.5, V)
        student = teacher + rng.normal(0.0, 1.0, (B, T, V))
        n_ign = int(math.floor(ignored * T))
        mask = np.ones((B, T), dtype=bool)
        if n_ign:
            mask[:, T - n_ign:] = False
        return DistillCase(student=round_to(student, dt), teacher=round_to(teacher, dt),
                           mask=mask if n_ign else None, **r)
    if kind == "small":
        rng = np.random.default_rng(r.pop("seed"))
        shape, spread = tuple(r.pop("shape")), r.pop("spread", 3.0)
        student = (rng.standard_normal(shape) * spread).astype(np.float32).astype(np.float64)
        teacher = (rng.standard_normal(shape) * spread).astype(np.float32).astype(np.float64)
        mask = r.pop("mask", None)
        return DistillCase(student=student, teacher=teacher,
                           mask=None if mask is None else np.asarray(mask, dtype=bool), **r)
    raise ValueError(f"recipe kind {kind!r} is not 'explicit', 'small' or 'lm'")


def load_corpus(path: Path | str = CORPUS) -> list[SentDistill]:
    """The recipe corpus as sendable cases, in file order."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            entry = json.loads(line)
            out.append(SentDistill(build(entry["recipe"]), label=entry["id"], recipe=entry["recipe"]))
    return out


# ----------------------------------------------------------------------------- judge
# The family fields the explanation search changes (KL-DISTILL-FAM), simplest first.
_VARIANTS: tuple[dict[str, Any], ...] = (
    {"cross_entropy": True}, {"empty_mean": "zero"}, {"chunk_mean": True}, {"jsd_endpoints": "kl"},
    {"temperature_scale": "tau2"}, {"temperature_scale": "none"},
)
_FIELD_CLAUSE = {"cross_entropy": "KL-DISTILL-CE", "empty_mean": "KL-DISTILL-EMPTY", "chunk_mean": "KL-DISTILL-CHUNK-MEAN",
                 "jsd_endpoints": "KL-DISTILL-JSD-ENDS", "temperature_scale": "KL-DISTILL-TAU2"}


def agrees(observed, expected, bound, dtype: str, shape=None) -> tuple[bool, str | None, float | None]:
    """KL-BOUND-4 on the expectation rounded to ``dtype``: (ok, class when not, err/bound)."""
    want = round_to(np.asarray(expected, dtype=np.float64), dtype)
    if observed is None:
        return False, "shape", None
    got = np.asarray(observed, dtype=np.float64)
    got_shape = tuple(shape) if shape is not None else got.shape
    if got_shape != want.shape or got.shape != want.shape:
        return False, "shape", None
    b = np.broadcast_to(np.asarray(bound, dtype=np.float64), want.shape)
    fin = np.isfinite(want)
    special_ok = (np.array_equal(np.isnan(got), np.isnan(want))
                  and np.array_equal(got[np.isinf(want)], want[np.isinf(want)]) and bool(np.all(np.isfinite(got[fin]))))
    with np.errstate(divide="ignore", invalid="ignore"):
        err = np.abs(got[fin] - want[fin])
        ratio = np.where(err == 0, 0.0, err / np.where(b[fin] > 0, b[fin], np.finfo(float).tiny))
    worst = float(ratio.max()) if ratio.size else 0.0
    if not special_ok:
        return False, "special_value", worst
    return (True, None, worst) if bool(np.all(err <= b[fin])) else (False, "precision", worst)


def _check(case: DistillCase, outcome, point: DistillPoint, gradients: Iterable[str]):
    e = evaluate(case, point)
    used = judged_dtype(case.dtype, outcome.dtype)
    # a value returned in a coarser dtype than asked (a `dtype` verdict of its own) is judged
    # at that dtype's bound (KL-DISTILL-DTYPE, KL-DISTILL-BOUND with its unit roundoff)
    ev = e if used == case.dtype else evaluate(dataclasses.replace(case, dtype=used, logits_dtype=case.sent_dtype), point)
    ok, cls, eob = agrees(outcome.value, e.value, ev.bound, used, outcome.shape)
    fails = []
    if case.grad and cls != "shape":
        for k in gradients:
            got = (outcome.grads or {}).get(k)
            if got is None:
                fails.append((k, None, None))
                continue
            gok, gcls, geob = agrees(got, e.grads[k], e.grad_bounds[k], (outcome.grad_dtypes or {}).get(k, case.dtype))
            if not gok:
                fails.append((k, gcls, geob))
    return e, (ok, cls, eob), fails


def candidates(case: DistillCase, compared: DistillPoint) -> list[DistillPoint]:
    """The points the explanation search tries: one field changed, then two (KL-DISTILL-FAM)."""
    out: list[DistillPoint] = []
    singles = [dataclasses.replace(compared, **v) for v in _VARIANTS]
    for p in singles + [dataclasses.replace(a, **v) for a in singles for v in _VARIANTS]:
        if p != compared and p not in out:
            out.append(p)
    return out


def judge(case: DistillCase, outcome, *, adapter: str, digest: str, against: str, point: DistillPoint,
          gradients: Iterable[str] = ("pred", "target")) -> list[Verdict]:
    """The verdicts of ``outcome`` against the reference at ``point`` (module docstring)."""
    gradients = tuple(gradients)

    def V(cls, clauses=(), **kw):
        return Verdict(adapter=adapter, case=digest, against=against, cls=cls,
                       clauses=tuple(dict.fromkeys([*clauses, VERDICT_CLAUSES[cls]])), **kw)

    if outcome.status in ("crash", "timeout"):
        return [V(outcome.status, detail=(outcome.error_message or outcome.status)[:300])]
    if outcome.status in ("unsupported", "missing", "import_error", "skipped"):
        return []
    if outcome.status == "error":
        return [V("error", ("KL-DISTILL-CASE",), detail=f"raised {outcome.error_type}: {(outcome.error_message or '')[:200]}")]
    verdicts: list[Verdict] = []
    if outcome.dtype and outcome.dtype != case.dtype:
        verdicts.append(V("dtype", ("KL-DISTILL-DTYPE",), detail=f"value returned as {outcome.dtype} for a {case.dtype} case"))
    e, (ok, cls, eob), fails = _check(case, outcome, point, gradients)
    if ok and not fails:
        return verdicts or [V("match", err_over_bound=eob)]
    judged, judged_fails = point, fails
    if not ok:
        hit = None
        for cand in candidates(case, point):
            try:
                _, (cok, _, _), cfails = _check(case, outcome, cand, gradients)
            except ValueError:            # UndefinedCase: the point asks what the case cannot be
                continue
            if cok and not cfails:
                hit = (cand, cfails)
                break
            if cok and hit is None:
                hit = (cand, cfails)
        if hit is not None:
            judged, judged_fails = hit
            changed = [f for f in _FIELD_CLAUSE if getattr(judged, f) != getattr(point, f)]
            verdicts.append(V("semantic", [_FIELD_CLAUSE[f] for f in changed], explained_by=judged.name,
                              err_over_bound=eob,
                              detail=f"{point.name} gives {_fmt(e.value)}; observed {_fmt(outcome.value)} is {judged.name}"))
        else:
            verdicts.append(V(cls, ("KL-DISTILL-BOUND",) if cls == "precision" else ("KL-DISTILL-RED",),
                              err_over_bound=eob, detail=f"observed {_fmt(outcome.value)}, {point.name} gives {_fmt(e.value)}"))
    for k, gcls, geob in judged_fails:
        verdicts.append(V("gradient", ("KL-DISTILL-GRAD",), err_over_bound=geob,
                          detail=f"gradient wrt {k}: " + ("not returned" if gcls is None else f"{gcls} at {judged.name}")))
    return verdicts


def _fmt(a) -> str:
    if a is None:
        return "nothing"
    a = np.asarray(a, dtype=np.float64)
    return f"{float(a):.6g}" if a.ndim == 0 else f"array{list(a.shape)}"


def documented_point(adapter, case: DistillCase) -> DistillPoint | None:
    """The point the adapter's documentation claims (``documented_distill``) over the case's
    canonical one, or None."""
    try:
        fields = adapter.documented_distill(case)
    except NotImplementedError:
        return None
    return None if fields is None else DistillPoint(**{**canonical(case).to_json(), **fields})


def run_adapter(ref: str, run_id: str, cases: list[SentDistill], python: str | None = None,
                **worker_options) -> tuple[dict[str, Any], list[tuple[SentDistill, Any, list[Verdict]]]]:
    """``cases`` through adapter ``ref`` ("module:Class") in a worker (``python``: a side
    interpreter), each outcome judged against the canonical and the documented point.
    Returns the worker's environment and (case, outcome, verdicts) per case."""
    import importlib
    from .workers import run_in_worker
    module, cls = ref.split(":")
    adapter = getattr(importlib.import_module(module), cls)()
    env, outcomes = run_in_worker(ref, cases, python=python, **worker_options)
    caps = adapter.distill_capabilities()
    out = []
    for sent, outcome in zip(cases, outcomes):
        digest = sent.digest
        vs = judge(sent.case, outcome, adapter=run_id, digest=digest, against="canonical",
                   point=canonical(sent.case), gradients=sorted(caps.gradients))
        doc = documented_point(adapter, sent.case) if outcome.status == "ok" else None
        if doc is not None:
            vs += judge(sent.case, outcome, adapter=run_id, digest=digest, against="documented", point=doc,
                        gradients=sorted(caps.gradients))
        out.append((sent, outcome, vs))
    return env, out


# ----------------------------------------------------------------------------- the engine's run
def is_distill(adapter) -> bool:
    """True for an adapter that answers distillation cases (declares ``distill_capabilities``,
    adapters/distill_base.py): the engine sends it this corpus, not the canonical one."""
    return callable(getattr(adapter, "distill_capabilities", None))


def case_json(sent: SentDistill) -> dict[str, Any]:
    """How results.json stores a distillation case: its recipe and digest (as a large case
    is stored), label, the dtype and reduction asked, and facts (``case_facts``: record matching and reports place its
    verdicts without building it); :func:`case_from_json` builds it back, digest-checked."""
    from .facts import distill_case_facts
    return {"kind": WIRE_KIND, "v": WIRE_VERSION, "recipe": sent.recipe, "digest": sent.digest, "label": sent.label,
            "dtype": sent.case.dtype, "reduction": sent.case.reduction,
            "case_facts": distill_case_facts(sent.case, sent.label)}


def is_case_json(d: Any) -> bool:
    """True for a results.json case entry that is a distillation case (:func:`case_json`)."""
    return isinstance(d, dict) and d.get("kind") == WIRE_KIND


def case_from_json(d: dict[str, Any]) -> SentDistill:
    """The case a :func:`case_json` entry stores; ValueError when its recipe no longer
    builds the bytes its digest names."""
    sent = SentDistill(build(d["recipe"]), label=d.get("label", ""), recipe=d["recipe"])
    if sent.digest != d["digest"]:
        raise ValueError(f"distillation recipe {d.get('label')!r} builds case {sent.digest}, not {d['digest']}")
    return sent


def judged_point(case: DistillCase, point: DistillPoint, verdicts: Iterable[Verdict]) -> DistillPoint:
    """The point the gradients of one comparison were judged at: the one its ``semantic``
    verdict names, else ``point``."""
    named = next((v.explained_by for v in verdicts if v.cls == "semantic" and v.explained_by), None)
    if named is None or named == point.name:
        return point
    return next((c for c in candidates(case, point) if c.name == named), point)


def documented_summary(adapter, cases: Iterable[SentDistill]) -> dict[str, Any]:
    """``AdapterRun.documented`` of a distillation run: the documented DistillPoint per asked
    reduction (the first case's) as ``distill_points``, with the doc URL and version."""
    points: dict[str, dict[str, Any]] = {}
    for sent in cases:
        try:
            doc = documented_point(adapter, sent.case)
        except Exception:   # noqa: BLE001 - documents nothing for this case
            doc = None
        if doc is not None:
            points.setdefault(sent.case.reduction, doc.to_json())
    names = sorted({DistillPoint.from_json(p).name for p in points.values()})
    # "points" holds canonical family points (klconform.reference.Point) in every other run
    return {"points": {}, "distill_points": dict(sorted(points.items())), "name": " / ".join(names), "varies": {},
            "doc": getattr(adapter, "doc_url", ""), "doc_version": getattr(adapter, "doc_version", None)}


def run_target(target, *, records=(), cases: list[SentDistill] | None = None, case_store: dict | None = None,
               progress=None):
    """The engine's run of a distillation adapter (:func:`is_distill`): ``cases`` (default
    the recipe corpus) through ``target``'s worker, judged against the canonical and the
    documented point, the known ``records`` that apply to the run matched (facts of
    :mod:`klconform.facts`, ``observed`` rules on a
    :class:`klconform.behaviour.DistillObservation`).  Returns the
    :class:`~klconform.results.AdapterRun`; each case's :func:`case_json` goes to
    ``case_store`` (digest -> JSON).  Nothing is shrunk: the recipes are small or realistic
    on purpose."""
    import time
    from . import records as known_mod
    from . import wire
    from .behaviour import DistillObservation
    from .engine import fingerprint
    from .facts import distill_facts
    from .results import AdapterRun

    t0 = time.perf_counter()
    adapter = target.adapter
    cases = load_corpus() if cases is None else list(cases)
    # only what the API can be asked (its DistillCapabilities), as translate does for the canonical corpus
    cases = [c for c in cases if adapter.unsupported_distill(c.case) is None]
    caps = adapter.distill_capabilities()
    grads = sorted(caps.gradients)
    version = str(target.env.get("version", "")) or None
    records = known_mod.applicable(records, run=target.run_id, version=version)
    outcomes = target.runner.run(cases)
    if progress:
        progress(target.run_id, len(cases), len(cases))
    run = AdapterRun(adapter=target.run_id, api=adapter.api, env=dict(target.env), documented_doc=adapter.doc_url,
                     capabilities=adapter.capabilities().to_json(), distill_capabilities=capabilities_json(caps))
    facts_of: list[dict[str, Any]] = []
    for sent, outcome in zip(cases, outcomes):
        digest = sent.digest
        entry = case_json(sent)
        facts_of.append(entry["case_facts"])
        if case_store is not None:
            case_store[digest] = entry
        run.outcomes[digest] = wire.to_json(outcome)
        compared = {"canonical": canonical(sent.case)}
        doc = documented_point(adapter, sent.case) if outcome.status == "ok" else None
        if doc is not None:
            compared["documented"] = doc
        for against, point in compared.items():
            vs = judge(sent.case, outcome, adapter=target.run_id, digest=digest, against=against, point=point,
                       gradients=grads)
            obs = DistillObservation(sent.case, outcome, point, judged_point(sent.case, point, vs))
            for v in vs:
                if v.cls != "match":
                    f = distill_facts(entry["case_facts"], v, outcome, run=target.run_id, version=version)
                    rec = known_mod.find_record(records, v, f, obs)
                    v.known = rec.id if rec else None
            run.verdicts += vs
    possible = [r for r in records if known_mod.can_occur(r, facts_of)]
    run.not_applicable_known = [r.id for r in records if r not in possible]
    seen = {v.known for v in run.verdicts}
    run.unmatched_known = [r.id for r in possible if r.id not in seen]
    run.documented = documented_summary(adapter, cases)
    run.fingerprint = fingerprint(run.verdicts)
    run.elapsed_s = time.perf_counter() - t0
    return run


def capabilities_json(caps) -> dict[str, Any]:
    """``DistillCapabilities`` as JSON (sets sorted): results.json's ``distill_capabilities``."""
    return {k: sorted(v) if isinstance(v, frozenset) else list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(caps).items()}



def check_case_json(d: dict[str, Any]) -> None:
    """ValueError unless ``d`` is a well-formed :func:`case_json` entry (its recipe is
    checked for kind and fields, not built: :func:`case_from_json` builds and digest-checks)."""
    recipe = d.get("recipe")
    if d.get("v") != WIRE_VERSION or not isinstance(recipe, dict):
        raise ValueError(f"distillation case: version {d.get('v')!r} / recipe {type(recipe).__name__}")
    if recipe.get("kind") not in ("explicit", "small", "lm"):
        raise ValueError(f"recipe kind {recipe.get('kind')!r} is not 'explicit', 'small' or 'lm'")
    if not isinstance(d.get("digest"), str) or not isinstance(d.get("case_facts"), dict):
        raise ValueError("distillation case without digest or case_facts")
