"""The conformance engine shared by pytest (tests/conformance/) and ``klconform run``.

    result = run_conformance(specs)             # the frozen corpus (klconform.frozen) -> RunResult
    result = run_conformance(specs, cases)      # any canonical cases (exploration, tests)

For each adapter: every canonical case it can express is translated
(:mod:`klconform.translate`), sent in batches to its worker (one round trip per batch;
the next batch runs in the worker while this one is classified), classified against the
canonical and the documented point (:mod:`klconform.verdicts`), matched against the
known-discrepancy records that apply to the run (:mod:`klconform.records`: run id and
framework version, and a case condition some sent case meets), and for every discrepancy class the smallest case showing it is
shrunk further into ``AdapterRun.counterexamples``.  The shrinker is a batched greedy one
(one round trip per step, :func:`shrink`), not Hypothesis' own: a counterexample is
reproduced from its ``blob`` (the sent case itself, :func:`case_from_blob`) and ``seed``.
"""
from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import dataclasses
import json
import sys
import threading
import time
import zlib
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from klconform.reference.family import canonical as canonical_point

from . import records as known_mod
from . import distill_harness, exactmath, wire
from .behaviour import Observation
from .candidates import candidate_points
from .case import Case
from .compare import format_number
from . import coverage as coverage_mod
from . import frozen
from .frozen import corpus_digest  # noqa: F401  (its home: the frozen corpus)
from .reference.dtypes import DTYPES, round_to
from .registry import load_adapter
from .results import AdapterRun, RunResult, Verdict
from .translate import Translated, translate, translate_all
from .annotate import annotate
from .evaluator import make_evaluator
from .facts import facts, facts_of_json
from .provenance import reference_identity
from .verdicts import classify, effective_point, verdict_clause

SCHEMA_VERSION = 1
DISCREPANCY = lambda v: v.cls != "match"   # noqa: E731


# ----------------------------------------------------------------------------- corpus
def case_blob(case: Case) -> str:
    """A self-contained reproduction blob of ``case`` (base64 of zlib'd ``Case.to_json()``)."""
    return json_blob(case.to_json())


def json_blob(case_json: dict[str, Any]) -> str:
    """The :func:`case_blob` of a case given by its JSON form."""
    return base64.b64encode(zlib.compress(json.dumps(case_json, sort_keys=True).encode())).decode()


def case_from_blob(blob: str) -> Case:
    """The case a :func:`case_blob` encodes."""
    return Case.from_json(json.loads(zlib.decompress(base64.b64decode(blob))))


# ----------------------------------------------------------------------------- targets
class InProcessRunner:
    """Runs an adapter in this process (tests and test doubles only: no isolation).
    Exceptions become ``Outcome(status="error")`` as in a worker."""

    def __init__(self, adapter):
        self.adapter = adapter

    def start(self) -> dict[str, Any]:
        return dict(self.adapter.setup())

    def run(self, cases: Sequence[Case]) -> list:
        from klconform.adapters.base import Outcome
        out = []
        for c in cases:
            try:
                out.append(self.adapter.evaluate(Case.from_wire(c.to_wire())))
            except Exception as exc:   # the worker does the same
                out.append(Outcome(status="error", error_type=type(exc).__name__, error_message=str(exc)))
        return out

    def close(self) -> None:
        pass


@dataclasses.dataclass
class Target:
    """One adapter to run: its run id, controller-side instance and a runner (worker)."""

    run_id: str
    adapter: Any
    runner: Any
    env: dict[str, Any] = dataclasses.field(default_factory=dict)


class AdapterFault(Exception):
    """An adapter's interface method (``capabilities()``, ``documented()``) raised in the
    controller: that adapter's run fails (status ``error``, the reason one line), the others go on."""


def _fault(method: str, exc: BaseException) -> AdapterFault:
    lines = str(exc).strip().splitlines()
    return AdapterFault(f"{method} raised {type(exc).__name__}: {lines[0] if lines else '(no message)'}")


def faulted_run(target_or_spec, exc: Exception) -> AdapterRun:
    """The run of an adapter that failed in the controller (:class:`AdapterFault`, or a
    RegistryError from loading it): status ``error`` with the one-line reason."""
    adapter = getattr(target_or_spec, "adapter", None)
    run_id = getattr(target_or_spec, "run_id", None) or getattr(adapter, "name", "") or target_or_spec.adapter_ref
    return AdapterRun(adapter=run_id, api=getattr(adapter, "api", ""), env=dict(getattr(target_or_spec, "env", {}) or {}),
                      status="error", reason=str(exc), documented_doc=getattr(adapter, "doc_url", ""))


def open_target(spec, *, case_timeout: float = 20.0, batch_size: int = 64, **worker_options) -> Target | AdapterRun:
    """Start the worker of ``spec`` (a :class:`klconform.workers.WorkerSpec`); an adapter
    that cannot start, or cannot even describe itself (an exception in its constructor or
    ``capabilities()``: status ``error``), comes back as an :class:`AdapterRun` with its
    status and reason."""
    from .registry import RegistryError
    from .workers import AdapterUnavailable, AdapterWorker
    try:
        adapter = load_adapter(spec.adapter_ref)
    except RegistryError as exc:
        return faulted_run(spec, exc)
    run_id = getattr(spec, "run_id", None) or adapter.name
    worker = AdapterWorker(spec, case_timeout=case_timeout, batch_size=batch_size, **worker_options)
    try:
        env = worker.start()
    except AdapterUnavailable as exc:
        worker.close()
        return AdapterRun(adapter=run_id, api=adapter.api, env={}, status=getattr(exc, "status", "missing"),
                          reason=str(getattr(exc, "reason", exc)), documented_doc=adapter.doc_url,
                          capabilities=adapter.capabilities().to_json())
    return Target(run_id=run_id, adapter=adapter, runner=worker, env=dict(env or {}))


# ----------------------------------------------------------------------------- one adapter
@dataclasses.dataclass
class Evaluated:
    """One sent case with its outcome and verdicts (both comparisons).  ``shrunk`` marks
    cases the shrinker made (not part of the corpus)."""

    sent: Translated
    outcome: Any
    verdicts: list[Verdict]
    shrunk: bool = False


class AdapterSession:
    """Sends cases to one target in batches and classifies the outcomes.

    Only the known records that apply to this run (:func:`klconform.records.applicable`:
    its run id and framework version) are matched."""

    def __init__(self, target: Target, *, evaluator=None, batch_size: int = 64,
                 records: Sequence[known_mod.Record] = ()):
        self.target = target
        try:
            self.caps = target.adapter.capabilities()
        except Exception as exc:  # noqa: BLE001 - the adapter's own bug: its run fails, not ours
            raise _fault("capabilities()", exc) from None
        self.ev = make_evaluator(evaluator)
        self.batch_size = batch_size
        self.version = str(target.env.get("version", "")) or None
        self.all_records = list(records)
        self.records = known_mod.applicable(records, run=target.run_id, version=self.version)

    def run_cases(self, cases: Sequence[Case]) -> list:
        out = []
        for i in range(0, len(cases), self.batch_size):
            out += self.target.runner.run(list(cases[i:i + self.batch_size]))
        return out

    def verdicts_for(self, case: Case, outcome) -> list[Verdict]:
        try:
            doc = self.target.adapter.documented(case)
        except Exception as exc:  # noqa: BLE001 - the adapter's own bug: its run fails, not ours
            raise _fault("documented()", exc) from None
        documented = effective_point(doc, case)
        canonical = canonical_point(case)
        grads = tuple(self.caps.gradients)
        vs = classify(case, outcome, adapter=self.target.run_id, against="canonical",
                      point=canonical, documented=documented, gradients=grads, evaluate=self.ev)
        if documented == canonical:   # the same comparison: same verdicts, other label
            vs += [dataclasses.replace(v, against="documented") for v in vs]
        else:
            vs += classify(case, outcome, adapter=self.target.run_id, against="documented",
                           point=documented, documented=documented, gradients=grads, evaluate=self.ev)
        points = {"canonical": canonical, "documented": documented or canonical}
        for v in vs:
            if v.cls != "match":
                obs = self.observation(case, outcome, vs, v.against, points[v.against], documented)
                rec = known_mod.find_record(self.records, v, self.facts(case, v, outcome), obs)
                v.known = rec.id if rec else None
        return vs

    def observation(self, case, outcome, verdicts, against: str, compared, documented) -> Observation:
        """What a record's ``observed`` rules look at for a verdict of comparison ``against``:
        its gradients were judged at the point a ``semantic`` verdict of that comparison named,
        else at the compared point (klconform.verdicts.classify)."""
        judged = compared
        named = next((v.explained_by for v in verdicts
                      if v.against == against and v.cls == "semantic" and v.explained_by), None)
        if named is not None:
            judged = next((p for p in candidate_points(case, compared, documented) if p.name == named), compared)
        return Observation(case, outcome, compared, judged, self.ev)

    def facts(self, case, verdict, outcome) -> dict[str, Any]:
        return facts(case, verdict, outcome, run=self.target.run_id, version=self.version)

    def classify_all(self, sent: Sequence[Translated], outcomes: Sequence, *, shrunk: bool = False) -> list[Evaluated]:
        return [Evaluated(t, o, self.verdicts_for(t.case, o), shrunk) for t, o in zip(sent, outcomes)]

    def evaluate(self, sent: Sequence[Translated], *, shrunk: bool = False) -> list[Evaluated]:
        """Send ``sent`` (in batches) and classify the outcomes."""
        return self.classify_all(sent, self.run_cases([t.case for t in sent]), shrunk=shrunk)

    def evaluate_pipelined(self, sent: Sequence[Translated],
                           progress: Callable[[int], None] | None = None) -> list[Evaluated]:
        """Like :meth:`evaluate`, one batch per round trip, but the next batch is in the
        worker (another process) while this one is classified here: the framework and
        the reference run at the same time."""
        batches = [list(sent[i:i + self.batch_size]) for i in range(0, len(sent), self.batch_size)]
        out: list[Evaluated] = []
        if not batches:
            return out
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(self.target.runner.run, [t.case for t in batches[0]])
            for i, batch in enumerate(batches):
                outcomes = pending.result()
                if i + 1 < len(batches):
                    pending = pool.submit(self.target.runner.run, [t.case for t in batches[i + 1]])
                out += self.classify_all(batch, outcomes)
                if progress:
                    progress(len(out))
        return out


def _classes(verdicts: Iterable[Verdict]) -> set[tuple[str, str]]:
    """The (comparison, class) pairs of the discrepancies among ``verdicts``."""
    return {(v.against, v.cls) for v in verdicts if v.cls != "match"}


def _size_key(case: Case) -> tuple:
    return (int(np.prod(case.shape)) if case.shape else 1, len(case.shape), DTYPES[::-1].index(case.dtype)
            if case.dtype in DTYPES else 0, case.sample_weight is not None, case.weight is not None, case.digest)


# A counterexample stands for its verdict only where the case shows the defect: a wrong
# divisor is invisible on an empty batch (0 = 0 / anything), a NaN cannot tell divisors apart.
_SHOWN_BY_VALUES = ("semantic", "precision", "special_value", "gradient")


def showing_rank(case: Case, verdict: Verdict, outcome=None) -> int:
    """How well ``case`` shows the defect ``verdict`` stands for, lower is better: 0 by
    numbers; 1 only by NaN (a semantic verdict on an all-NaN value, a gradient verdict on
    special entries only: evidence for no divisor or formula); 2 not at all (no term: an
    empty broadcast shape, where every reduction gives 0 or NaN).  Classes not about values
    (shape, dtype, error, crash, ...) rank 0.  Counterexamples are the smallest case of the
    best rank (:func:`run_adapter`, :func:`shrink`, the pytest plugin's smallest new case)."""
    if verdict.cls not in _SHOWN_BY_VALUES:
        return 0
    try:
        size = int(np.prod(np.broadcast_shapes(case.target.shape, case.pred.shape)))
    except ValueError:
        size = int(np.prod(case.shape))
    if size == 0:
        return 2
    if verdict.cls == "gradient" and ": special_value:" in (verdict.detail or ""):
        return 1
    value = getattr(outcome, "value", None)
    if verdict.cls == "semantic" and value is not None:
        v = np.asarray(value, dtype=np.float64)
        if v.size and np.all(np.isnan(v)):
            return 1
    return 0


def _rank(e: "Evaluated", key: tuple[str, str]) -> int:
    v = next(v for v in e.verdicts if (v.against, v.cls) == key)
    return showing_rank(e.sent.case, v, e.outcome)


# ----------------------------------------------------------------------------- shrinking
_SIMPLE_PROBS = (0.5, 0.25, 1.0, 0.0, 0.125)


def shrink_candidates(case: Case, caps) -> list[Case]:
    """Simpler variants of ``case`` that ``caps`` can still take, simplest change first:
    drop weights, drop gradients, fewer elements along an axis, fewer dimensions, a
    coarser-grained value per entry, float64.  Invalid variants are skipped."""
    out: list[Case] = []

    def add(**kw):
        try:
            c = case.replace(**kw)
        except Exception:
            return
        if translate(c, caps) is not None and translate(c, caps).case.digest == c.digest:
            out.append(c)

    if case.sample_weight is not None:
        add(sample_weight=None)
    if case.weight is not None:
        add(weight=None)
    t, p = case.target, case.pred
    if t.shape == p.shape and t.ndim >= 1:
        for ax in range(t.ndim):
            n = t.shape[ax]
            for keep in ({n // 2, n - 1, 1} - {0, n}) if n > 1 else ():
                sl = [slice(None)] * t.ndim
                sl[ax] = slice(0, keep)
                sw = case.sample_weight
                if sw is not None and sw.ndim == t.ndim and sw.shape[ax] == n:
                    sw = sw[tuple(sl)]
                add(target=t[tuple(sl)], pred=p[tuple(sl)], sample_weight=sw)
            if n == 1 and t.ndim >= 2 and case.sample_weight is None:   # drop a size-1 axis
                nd = t.ndim
                c_ax, b_ax = case.class_axis % nd, case.batch_axis % nd
                if ax not in (c_ax, b_ax):
                    new_c = (c_ax - (1 if ax < c_ax else 0)) - (nd - 1)
                    new_b = b_ax - (1 if ax < b_ax else 0)
                    add(target=np.squeeze(t, ax), pred=np.squeeze(p, ax), class_axis=new_c, batch_axis=new_b)
    for name in ("target", "pred"):
        arr = getattr(case, name)
        kind = case.target_kind if name == "target" else case.pred_kind
        flat = arr.reshape(-1)
        for i in range(min(flat.size, 8)):
            for v in _SIMPLE_PROBS:
                # log exact and rounded once (klconform.exactmath): the same shrunk case on every numpy
                enc = float(round_to(v, case.dtype) if kind == "prob" else exactmath.log(np.array([v]), case.dtype)[0])
                if flat[i] == enc or (np.isnan(flat[i]) and np.isnan(enc)):
                    break
                new = flat.copy()
                new[i] = enc
                add(**{name: new.reshape(arr.shape)})
                break
    if case.dtype != "float64":
        add(dtype="float64")
    if case.grad:
        add(grad=False)
    return out


# Seconds of shrinking per adapter (all classes together): a framework that hangs or
# crashes on a class of inputs must not make a run take minutes per class.
DEFAULT_SHRINK_BUDGET = 60.0
# Crashes and hangs cost a fresh worker or a whole case timeout per candidate: they are
# shrunk by at most this many candidates, sent one at a time, in one round.
_FAILURE_CLASSES = ("crash", "timeout")
_FAILURE_CANDIDATES = 2


def shrink(session: AdapterSession, ev: Evaluated, key: tuple[str, str], *, max_rounds: int = 8,
           max_candidates: int = 24, deadline: float | None = None) -> tuple[Evaluated, int, str]:
    """Greedy shrink of ``ev`` keeping the discrepancy ``key`` = (against, class): each
    round sends the candidates of :func:`shrink_candidates` in one batch and keeps the
    first that still shows ``key``.  No round starts after ``deadline``
    (``time.perf_counter()``); a crash or timeout is shrunk by at most
    ``_FAILURE_CANDIDATES`` candidates, one per round trip, in one round.  Returns the
    smallest found, the rounds used and why it stopped: "done" (no smaller variant shows
    the class, or the rounds ran out) or "budget"."""
    cur, rounds = ev, 0
    failure = key[1] in _FAILURE_CLASSES
    for r in range(1, (1 if failure else max_rounds) + 1):
        if deadline is not None and time.perf_counter() >= deadline:
            return cur, rounds, "budget"
        rounds = r
        cands = shrink_candidates(cur.sent.case, session.caps)[:_FAILURE_CANDIDATES if failure else max_candidates]
        if not cands:
            break
        sent = [Translated(case=c, canonical=cur.sent.canonical, conversions=cur.sent.conversions) for c in cands]
        batches = [[t] for t in sent] if failure else [sent]
        nxt = None
        for i, batch in enumerate(batches):
            if i and deadline is not None and time.perf_counter() >= deadline:
                return cur, rounds, "budget"
            # a smaller case counts only if it shows the defect as well as the current one
            nxt = next((e for e in session.evaluate(batch, shrunk=True)
                        if key in _classes(e.verdicts) and _rank(e, key) <= _rank(cur, key)), None)
            if nxt is not None:
                break
        if nxt is None:
            break
        cur = nxt
    return cur, rounds, "done"


# ----------------------------------------------------------------------------- large cases
@dataclasses.dataclass
class LargeEvaluated:
    """What a large case leaves behind once its arrays are dropped."""

    digest: str
    case_json: dict[str, Any]
    facts: dict[str, Any]
    classes: set[tuple[str, str]]
    verdicts: list[Verdict]
    elements: int


def _same_outcome(a, b) -> str | None:
    """None when two outcomes are bit-identical (timing aside), else what differs."""
    wa, wb = wire.to_wire(a), wire.to_wire(b)
    for key in ("status", "dtype", "shape", "error_type"):
        if wa[key] != wb[key]:
            return f"{key}: {wa[key]} then {wb[key]}"
    for name, x, y in [("value", wa["value"], wb["value"])] + [
            (f"gradient wrt {k}", wa["grads"].get(k), wb["grads"].get(k)) for k in sorted(set(wa["grads"]) | set(wb["grads"]))]:
        if x != y:
            if x is None or y is None or x["shape"] != y["shape"]:
                return f"{name}: present/shape differs"
            xa, ya = (np.frombuffer(v["data"], dtype="<f8") for v in (x, y))
            diff = np.flatnonzero(xa.view("<u8") != ya.view("<u8"))
            i = int(diff[0])
            return (f"{name}: {diff.size} of {xa.size} entries differ, e.g. entry {i}: "
                    f"{format_number(xa[i])} then {format_number(ya[i])} ({abs(xa[i] - ya[i]):.3g} apart)")
    return None


def run_large(session: AdapterSession, entries: Sequence, run: AdapterRun) -> list[LargeEvaluated]:
    """The large family (:mod:`klconform.large`) through ``session``: each entry (recipe,
    digest) is generated and digest-checked here, one at a time, sent twice in one batch
    (the same worker evaluates it twice in a row: a different result is a
    ``nondeterministic`` verdict, KL-VERDICT-NONDETERMINISTIC), classified, and dropped;
    ``run`` gets its outcome, verdicts and a summary line (``run.large``).  A case the
    adapter could take only after converting its encoding is skipped: the converted
    values would have no recipe."""
    from . import large as large_mod
    out: list[LargeEvaluated] = []
    for entry in entries:
        if not large_mod.expressible(entry[0], session.caps):
            continue
        case = large_mod.check(entry)
        t = translate(case, session.caps)
        if t is None or t.conversions:
            continue
        first, second = session.run_cases([case, case])
        # the explanation search tries the points that explained the small cases first
        # (ReferenceCache.hints): the frozen corpus runs before the large cases
        verdicts = session.verdicts_for(case, first)
        differs = _same_outcome(first, second)      # status, dtype, shape, error type, every bit
        if differs:
            vclause = verdict_clause("nondeterministic")
            for against in ("canonical", "documented"):
                verdicts.append(Verdict(adapter=run.adapter, case=case.digest, against=against, cls="nondeterministic",
                                        clauses=(vclause,), detail=f"the same case twice: {differs}"[:300]))
            for v in verdicts[-2:]:
                obs = Observation(case, first, canonical_point(case), canonical_point(case), session.ev)
                rec = known_mod.find_record(session.records, v, session.facts(case, v, first), obs)
                v.known = rec.id if rec else None
        judged = [v for v in verdicts if v.against == "canonical" and v.cls != "nondeterministic"]
        errs = [v.err_over_bound for v in judged if v.err_over_bound is not None]
        run.outcomes[case.digest] = wire.to_json(first)
        run.verdicts += verdicts
        run.large.append({"digest": case.digest, "label": case.label, "elements": int(case.target.size),
                          "seconds": None if first.elapsed_s is None else round(first.elapsed_s, 4),
                          "repeat": "differs" if differs else "identical",
                          "err_over_bound": max(errs) if errs else None,
                          "verdicts": sorted({v.cls for v in judged})})
        case_json = case.to_json()           # holds the value facts: one pass over the arrays
        out.append(LargeEvaluated(case.digest, case_json, facts_of_json(case_json), _classes(verdicts), verdicts,
                                  int(case.target.size)))
    return out


# ----------------------------------------------------------------------------- run
def run_adapter(target: Target, canonical_cases: Sequence[Case], *, seed: int = 0,
                records: Sequence[known_mod.Record] | None = None, evaluator=None,
                batch_size: int = 64, shrink_rounds: int = 6, shrink_budget: float = DEFAULT_SHRINK_BUDGET,
                progress: Callable[[str, int, int], None] | None = None, large: Sequence = (),
                large_cases: dict[str, dict[str, Any]] | None = None) -> tuple[AdapterRun, list[Evaluated]]:
    """Run ``canonical_cases`` (those ``target`` can express) through ``target``; returns
    the :class:`AdapterRun` and the evaluated cases (sent case, outcome, verdicts).
    Counterexamples are shrunk for at most ``shrink_budget`` seconds in all.  ``large``:
    entries of the large family (:func:`run_large`; not shrunk, and not among the
    evaluated cases returned: their JSON form goes to ``large_cases``, digest -> JSON)."""
    t0 = time.perf_counter()
    adapter = target.adapter
    if records is None:
        records = known_mod.load_for(adapter)
    if distill_harness.is_distill(adapter):     # SPEC.md §12: the distillation corpus, not these cases
        return distill_harness.run_target(target, records=records, case_store=large_cases, progress=progress), []
    session = AdapterSession(target, evaluator=evaluator, batch_size=batch_size, records=records)
    sent = translate_all(canonical_cases, session.caps)
    evaluated = session.evaluate_pipelined(
        sent, progress=(lambda done: progress(target.run_id, done, len(sent))) if progress else None)
    run = AdapterRun(adapter=target.run_id, api=adapter.api, env=dict(target.env),
                     documented_doc=adapter.doc_url, capabilities=session.caps.to_json())
    for e in evaluated:
        run.outcomes[e.sent.case.digest] = wire.to_json(e.outcome)
        run.verdicts += e.verdicts
    big = run_large(session, large, run)
    if large_cases is not None:
        large_cases.update((b.digest, b.case_json) for b in big)
    # minimal counterexamples: per discrepancy class, the smallest case that shows the
    # defect best (showing_rank), shrunk further
    firsts: dict[str, tuple[tuple[str, str], Evaluated]] = {}
    ranks: dict[str, int] = {}
    for e in sorted(evaluated, key=lambda e: _size_key(e.sent.case)):
        for against, cls in sorted(_classes(e.verdicts), key=lambda k: k[0] != "canonical"):
            r = _rank(e, (against, cls))
            if cls not in firsts or r < ranks[cls]:
                firsts[cls], ranks[cls] = ((against, cls), e), r
    for b in sorted(big, key=lambda b: (b.elements, b.digest)):      # classes only large cases show
        for against, cls in sorted(b.classes, key=lambda k: k[0] != "canonical"):
            if cls in firsts or cls in run.counterexamples:
                continue
            v = next(v for v in b.verdicts if (v.against, v.cls) == (against, cls))
            run.counterexamples[cls] = {
                "case": b.digest, "canonical": b.digest, "found_as": b.digest, "shrink_rounds": 0, "seed": seed,
                "shrink": {"stopped": "large case: not shrunk", "budget_s": shrink_budget, "spent_s": 0.0},
                "blob": json_blob(b.case_json),
                "verdict": v.to_json()}
    extra: list[Evaluated] = []
    shrink_start = time.perf_counter()
    deadline = shrink_start + shrink_budget
    for cls, (key, e) in sorted(firsts.items()):
        small, rounds, stopped = (shrink(session, e, key, max_rounds=shrink_rounds, deadline=deadline)
                                  if shrink_rounds else (e, 0, "done"))
        if small is not e:
            extra.append(small)
            run.outcomes[small.sent.case.digest] = wire.to_json(small.outcome)
        v = next(v for v in small.verdicts if (v.against, v.cls) == key)
        run.counterexamples[cls] = {
            "case": small.sent.case.digest, "canonical": e.sent.canonical.digest,
            "found_as": e.sent.case.digest, "shrink_rounds": rounds, "seed": seed,
            "shrink": {"stopped": stopped, "budget_s": shrink_budget,
                       "spent_s": round(time.perf_counter() - shrink_start, 3)},
            "blob": case_blob(small.sent.case), "verdict": v.to_json(),
        }
    # strict: every record that applies to this run (run id, version) and can occur in the
    # cases sent must be observed; one that cannot occur is not applicable
    case_facts = [facts(t.case) for t in sent] + [b.facts for b in big]
    possible = [r for r in session.records if known_mod.can_occur(r, case_facts)]
    run.not_applicable_known = [r.id for r in session.records if r not in possible]
    hits: dict[str, int] = {r.id: 0 for r in possible}
    for v in run.verdicts:
        if v.known in hits:
            hits[v.known] += 1
    run.unmatched_known = [rid for rid, n in hits.items() if n == 0]
    run.fingerprint = fingerprint(run.verdicts)
    run.coverage = coverage_mod.count([t.case for t in sent], session.caps, evaluate=session.ev)
    run.elapsed_s = time.perf_counter() - t0
    return run, evaluated + extra


def compared_cases(run: AdapterRun) -> int:
    """How many cases ``run`` compared with the reference: the corpus and large cases it
    was sent (one outcome each), not the cases its shrinker made (a counterexample whose
    case is not the one it was found as) nor those its circuit breaker did not send
    (``skipped``).  0 for a run that did not start."""
    if run.status != "ok":
        return 0
    shrunk = {ce.get("case") for ce in (run.counterexamples or {}).values()
              if ce.get("case") != ce.get("found_as")}
    skipped = {d for d, o in run.outcomes.items() if o.get("status") == "skipped"}   # never sent
    return len(set(run.outcomes) - shrunk - skipped)


def fingerprint(verdicts: Iterable[Verdict]) -> dict[str, Any]:
    """What the canonical comparisons suggest the adapter computes: counts of verdict
    classes and of the family points named by semantic verdicts (the reports refine it)."""
    classes: dict[str, int] = {}
    points: dict[str, int] = {}
    for v in verdicts:
        if v.against != "canonical":
            continue
        classes[v.cls] = classes.get(v.cls, 0) + 1
        if v.explained_by:
            points[v.explained_by] = points.get(v.explained_by, 0) + 1
    best = max(points.items(), key=lambda kv: kv[1])[0] if points else None
    return {"verdict_counts": classes, "explained_by_counts": points, "most_common_point": best}


def run_conformance(specs, cases: Sequence[Case] | None = None, *, seed: int = 0, max_examples: int = 1000,
                    case_timeout: float = 20.0, batch_size: int = 64, shrink_rounds: int = 6,
                    shrink_budget: float = DEFAULT_SHRINK_BUDGET, known_dir=None, targets: Sequence[Target] = (), evaluator=None,
                    hypothesis_settings: dict[str, Any] | None = None, command: str = "",
                    progress: Callable[[str, int, int], None] | None = None, jobs: int = 1,
                    worker_options: dict[str, Any] | None = None,
                    on_run: Callable[[int, AdapterRun, dict], None] | None = None,
                    large: Sequence = ()) -> RunResult:
    """Run every adapter of ``specs`` (WorkerSpecs; after already opened ``targets``) on
    ``cases`` (default: the frozen corpus, :func:`klconform.frozen.load`) and return the
    :class:`RunResult`, each run annotated for the reports (:func:`klconform.annotate.annotate`:
    documented points, cited records, fingerprint), runs in the order given.

    ``jobs`` adapters run at once, each in its own thread driving its own worker process:
    the frameworks compute in their processes while this one classifies (the reference
    and verdicts hold the GIL, so more threads than cores gain nothing).  ``on_run(i, run, cases)``
    is called as each adapter finishes (any order), with the JSON form of every case its
    outcomes cite (digest -> JSON: shrunk and large cases are not in ``cases``).  ``max_examples`` only labels results
    of cases drawn elsewhere.  ``large``: large-family entries (:func:`klconform.large.read`)
    each adapter also runs (:func:`run_large`)."""
    t0 = time.perf_counter()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if cases is None:
        cases = frozen.load()
    items: list[Any] = list(targets) + list(specs)
    ev = make_evaluator(evaluator)
    runs: list[AdapterRun | None] = [None] * len(items)
    all_cases: dict[str, dict[str, Any]] = {c.digest: c.to_json() for c in cases}
    lock = threading.Lock()

    def one(i: int, item) -> None:
        t = item if isinstance(item, Target) else open_target(
            item, case_timeout=case_timeout, batch_size=batch_size, **(worker_options or {}))
        cited: dict[str, dict[str, Any]] = {}
        try:
            if isinstance(t, AdapterRun):
                run = t
            else:
                records = known_mod.load_for(t.adapter, known_dir)
                big: dict[str, dict[str, Any]] = {}
                try:
                    run, evaluated = run_adapter(t, cases, seed=seed, records=records, evaluator=ev,
                                                 batch_size=batch_size, shrink_rounds=shrink_rounds,
                                                 shrink_budget=shrink_budget, progress=progress,
                                                 large=large, large_cases=big)
                except AdapterFault as exc:
                    run, evaluated = faulted_run(t, exc), []
                with lock:      # annotate reads the cases other threads add to
                    for e in evaluated:
                        all_cases.setdefault(e.sent.case.digest, e.sent.to_json())
                    for digest, j in big.items():
                        all_cases.setdefault(digest, j)
                    annotate(run, t.adapter, all_cases, records, evaluate=ev)
                    cited = {d: all_cases[d] for d in run.outcomes if d in all_cases}
        finally:
            if isinstance(t, Target):
                t.runner.close()
        runs[i] = run
        if on_run:
            on_run(i, run, cited)

    try:
        if jobs <= 1 or len(items) <= 1:
            for i, item in enumerate(items):
                one(i, item)
        else:
            with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
                futures = [pool.submit(one, i, item) for i, item in enumerate(items)]
                try:
                    for f in concurrent.futures.as_completed(futures):
                        f.result()      # the first failure propagates (the others are waited for)
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
    finally:
        workers = sys.modules.get(__package__ + ".workers")     # none started: nothing kept
        if workers is not None:
            workers.release_payload_files()
    return RunResult(schema_version=SCHEMA_VERSION, seed=seed,
                     hypothesis=dict(hypothesis_settings or {"max_examples": max_examples, "seed": seed}),
                     corpus_digest=corpus_digest(cases), cases=all_cases, runs=[r for r in runs if r is not None],
                     command=command, started_at=started, elapsed_s=time.perf_counter() - t0,
                     reference=dict(reference_identity()))
