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


def new_findings(result, frozen_digests: set[str]) -> dict[str, list[dict]]:
    """Per adapter run: the discrepancy kinds (comparison, class, explaining point) that no
    case of the frozen corpus (canonical digests ``frozen_digests``) showed, each with its
    count, the smallest case showing it (sent and canonical digest) and the record that
    covers it (None: unrecorded); unrecorded kinds first."""
    from .engine import _size_key
    out: dict[str, list[dict]] = {}
    for run in result.runs:
        groups: dict[tuple, list] = {}
        seen_frozen: set[tuple] = set()
        for v in run.verdicts:
            if v.cls == "match":
                continue
            key = (v.against, v.cls, v.explained_by or "")
            canon = result.cases[v.case].get("canonical", v.case)
            if canon in frozen_digests:
                seen_frozen.add(key)
            else:
                groups.setdefault(key, []).append(v)
        found = []
        for key, vs in groups.items():
            if key in seen_frozen:
                continue
            small = min(vs, key=lambda v: _size_key(Case.from_json(result.cases[v.case])))
            found.append({"against": key[0], "cls": key[1], "explained_by": key[2], "count": len(vs),
                          "case": small.case, "canonical": result.cases[small.case].get("canonical", small.case),
                          "known": small.known})
        out[run.adapter] = sorted(found, key=lambda f: (bool(f["known"]), f["against"], f["cls"], f["explained_by"]))
    return out
