"""Exploration: new cases drawn with Hypothesis, beside the frozen corpus the gate runs.

    cases = build_corpus(seed, n, capabilities)     # curated + generated, canonical
    found = explore(specs, seed=seed, examples=n)    # what is new relative to the frozen corpus

The gate (``klconform run``) never draws: it replays :mod:`klconform.frozen`.  Drawing
depends on the Hypothesis version (and, since Hypothesis pools constants from the source
of imported modules, on what was imported), so what exploration finds is reviewed and
merged into the frozen corpus (``klconform corpus add``) rather than re-drawn by CI.
"""
from __future__ import annotations

from typing import Iterable, Sequence

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed

from .case import Case
from .curated import all_curated
from .strategies import cases as cases_strategy
from .strategies import cases_for
from .translate import translate


def draw_examples(strategy, n: int, seed: int) -> list:
    """``n`` examples of ``strategy`` drawn by Hypothesis' generation phase with a fixed
    ``seed`` (no database, no shrinking).  Early examples are Hypothesis' simplest ones,
    later ones are varied.  Reproducible for one Hypothesis version and one set of
    imported modules only -- which is why the gate replays a frozen corpus instead."""
    out: list = []
    if n <= 0:
        return out

    @hypothesis_seed(seed)
    @settings(max_examples=n, database=None, derandomize=False, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck), report_multiple_bugs=False)
    @given(strategy)
    def collect(x):
        out.append(x)

    collect()
    return out[:n]


def dedupe(cases: Iterable[Case]) -> list[Case]:
    """``cases`` without repeats (same digest), first occurrence kept."""
    seen, out = set(), []
    for c in cases:
        if c.digest not in seen:
            seen.add(c.digest)
            out.append(c)
    return out


def _sent_digests(cases: Iterable[Case], caps) -> set[str]:
    """Digests of what an adapter with ``caps`` is sent for ``cases`` (after translation,
    so two canonical cases that become the same sent case count once)."""
    out = set()
    for c in cases:
        t = translate(c, caps)
        if t is not None:
            out.add(t.case.digest)
    return out


# Top-up rounds per adapter before build_corpus gives up (each draws what is still missing
# plus a margin; duplicates and cases another adapter's translation merges are redrawn).
_TOP_UP_ROUNDS = 12


def build_corpus(seed: int, n: int, capabilities: Sequence = (), *, curated: bool = True) -> list[Case]:
    """The curated cases (when ``curated``), ``n // 4`` cases from the unrestricted
    :func:`klconform.strategies.cases`, then, for each capability set in turn, cases from
    :func:`~klconform.strategies.cases_for` until that adapter is sent at least ``n``
    *distinct* generated cases (counted after translation and de-duplication, as the
    engine sends them).  Deterministic in ``(seed, n, capabilities)`` for one Hypothesis
    version.  An adapter whose capabilities are too narrow for ``n`` distinct cases gets
    what :data:`_TOP_UP_ROUNDS` rounds found."""
    # an adapter that takes no canonical case (a distillation loss, SPEC.md §12: no dtype
    # declared for KL cases) adds nothing to draw for, and must not shift the others' seeds
    capabilities = [c for c in capabilities if c.dtypes]
    corpus = list(all_curated()) if curated else []
    generated = dedupe(draw_examples(cases_strategy(), n // 4 if capabilities else n, seed))
    for i, caps in enumerate(capabilities):
        taken = _sent_digests(corpus, caps)      # the engine sends curated cases first
        have = _sent_digests(generated, caps) - taken
        for attempt in range(_TOP_UP_ROUNDS):
            missing = n - len(have)
            if missing <= 0:
                break
            more = dedupe(draw_examples(cases_for(caps), missing + 8 + missing // 4,
                                        seed * 10000 + 100 * i + attempt + 1))
            known = {c.digest for c in generated}
            more = [c for c in more if c.digest not in known]
            generated += more
            have |= _sent_digests(more, caps) - taken
    return dedupe(corpus + generated)


# The ci size: 10 x the "ci" Hypothesis profile's 100 examples, per adapter.
FREEZE_EXAMPLES = 1000


def freeze(seed: int = 0, n: int = FREEZE_EXAMPLES, adapters: dict[str, object] | None = None) -> tuple[list[Case], str]:
    """The cases of a new frozen corpus: :func:`build_corpus` over the capabilities of
    ``adapters`` (name -> Capabilities; default: every built-in adapter's), and the
    ``made_by`` line its header records."""
    import hypothesis

    from . import registry
    if adapters is None:
        adapters = {name: registry.load_adapter(ref).capabilities()
                    for name, ref in registry.builtin_adapters().items()}
    cases = build_corpus(seed, n, list(adapters.values()))
    made_by = (f"klconform corpus freeze --seed {seed} --examples {n}: klconform.curated.all_curated + "
               f"klconform.explore.build_corpus for {', '.join(adapters)} (hypothesis {hypothesis.__version__})")
    return cases, made_by


def discrepancy_kind(v) -> tuple[str, str, str]:
    """What makes two discrepancy verdicts the same finding: (comparison, class, explaining point)."""
    return (v.against, v.cls, v.explained_by or "")


def _signature(case: Case) -> tuple:
    return (case.dtype, case.reduction, case.target_kind, case.pred_kind)


def frozen_kinds(spec, needed: set[tuple[str, str, str]], frozen_cases: Sequence[Case], *, like: Sequence[Case] = (),
                 evaluator=None, chunk: int = 32, case_timeout: float = 20.0, batch_size: int = 64,
                 **worker_options) -> set[tuple[str, str, str]]:
    """Which of the discrepancy kinds ``needed`` some case of ``frozen_cases`` shows for the
    adapter of ``spec`` (a WorkerSpec).  Frozen cases are sent in chunks of ``chunk``,
    doubling, those like the cases in ``like`` (dtype, reduction and encodings of the new
    cases that showed the kinds) first, and sending stops once every needed kind has been
    seen: proving a kind new takes the whole corpus, an old one usually shows in the first
    chunk.  Raises :class:`FrozenNotReplayed` when the adapter cannot be started again."""
    from .engine import AdapterSession, Target, open_target
    from .translate import translate_all
    if not needed:
        return set()
    target = open_target(spec, case_timeout=case_timeout, batch_size=batch_size, **worker_options)
    if not isinstance(target, Target):
        raise FrozenNotReplayed(f"{target.status}: {target.reason}")
    seen: set[tuple[str, str, str]] = set()
    try:
        session = AdapterSession(target, evaluator=evaluator, batch_size=batch_size)
        near = {_signature(c) for c in like}
        nearer = {s[1:] for s in near}
        sent = sorted(translate_all(frozen_cases, session.caps),
                      key=lambda t: 0 if _signature(t.canonical) in near else 1 if _signature(t.canonical)[1:] in nearer
                      else 2)
        i = 0
        while i < len(sent) and not seen >= needed:
            for e in session.evaluate(sent[i:i + chunk]):
                seen.update(k for k in map(discrepancy_kind, e.verdicts) if k in needed)
            i, chunk = i + chunk, min(2 * chunk, 1024)
    finally:
        target.runner.close()
    return seen


class FrozenNotReplayed(Exception):
    """The frozen corpus could not be replayed for an adapter (it no longer starts)."""


def explore_runs(specs, drawn: Sequence[Case], frozen_cases: Sequence[Case], *, seed: int, jobs: int = 1,
                 run_options: dict | None = None) -> tuple:
    """What exploration runs: the ``drawn`` cases through every adapter of ``specs``
    (:func:`klconform.engine.run_conformance`, counterexamples shrunk), then, per adapter
    that showed a discrepancy, only as much of the frozen corpus as decides whether each
    kind is new (:func:`frozen_kinds`).  Returns the drawn run's :class:`RunResult` and, per
    adapter run, the kinds the frozen corpus showed (None: it could not be replayed, and
    the reason)."""
    import concurrent.futures

    from .engine import run_conformance
    from .evaluator import make_evaluator
    opts = dict(run_options or {})
    worker_options = dict(opts.pop("worker_options", None) or {})
    ev = make_evaluator()
    res = run_conformance(specs, drawn, seed=seed, jobs=jobs, evaluator=ev, worker_options=worker_options, **opts)
    by_canonical = {c.digest: c for c in drawn}
    todo = []
    for spec, run in zip(specs, res.runs):
        found = [v for v in run.verdicts if v.cls != "match"]
        if run.status != "ok" or not found:
            continue
        like = [by_canonical[d] for d in {res.cases[v.case].get("canonical", v.case) for v in found} if d in by_canonical]
        todo.append((run.adapter, spec, {discrepancy_kind(v) for v in found}, like))
    kinds: dict[str, set | str] = {}

    def one(item) -> None:
        name, spec, needed, like = item
        try:
            kinds[name] = frozen_kinds(spec, needed, frozen_cases, like=like, evaluator=ev,
                                       case_timeout=opts.get("case_timeout", 20.0),
                                       batch_size=opts.get("batch_size", 64), **worker_options)
        except FrozenNotReplayed as exc:
            kinds[name] = str(exc)

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(jobs, len(todo) or 1))) as pool:
        for f in [pool.submit(one, item) for item in todo]:
            f.result()
    return res, kinds


def new_findings(result, frozen: dict[str, set]) -> dict[str, list[dict]]:
    """Per adapter run of ``result`` (new cases only): the discrepancy kinds (comparison,
    class, explaining point) that no frozen case showed (``frozen``: per run, the kinds the
    frozen corpus showed, :func:`explore_runs`), each with its count, the smallest case
    showing it (sent and canonical digest) and the record that covers it (None:
    unrecorded); unrecorded kinds first."""
    from .engine import _size_key
    out: dict[str, list[dict]] = {}
    for run in result.runs:
        seen = frozen.get(run.adapter) or set()
        groups: dict[tuple, list] = {}
        for v in run.verdicts:
            if v.cls == "match" or discrepancy_kind(v) in seen:
                continue
            groups.setdefault(discrepancy_kind(v), []).append(v)
        found = []
        for key, vs in groups.items():
            small = min(vs, key=lambda v: _size_key(Case.from_json(result.cases[v.case])))
            found.append({"against": key[0], "cls": key[1], "explained_by": key[2], "count": len(vs),
                          "case": small.case, "canonical": result.cases[small.case].get("canonical", small.case),
                          "known": small.known})
        out[run.adapter] = sorted(found, key=lambda f: (bool(f["known"]), f["against"], f["cls"], f["explained_by"]))
    return out
