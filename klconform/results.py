"""The results model: what a conformance run found, framework-free.

The engine (klconform/engine.py) fills these; reports (klconform/report/) read only these.
Why two modules, this one and :mod:`klconform.resultsio`: this is the model only --
dataclasses and vocabularies, standard library only, imported by verdicts, records and
every report; ``resultsio`` is the results *file* (schema validation with jsonschema,
canonical JSON, atomic replacement), needed only where files are read or written (the
CLI and tests).  The model never touches a file; the file module never decides a verdict.
``RunResult.to_json()`` is the body of results.json (schema:
klconform/schema/results.schema.json).  Fields documented as *timing* are the only ones
allowed to differ between two runs with the same seed and framework versions.
"""
from __future__ import annotations

import dataclasses
from typing import Any

# Verdict classes (SPEC.md §Verdicts). "match" is the absence of a discrepancy.
VERDICT_CLASSES = (
    "match",          # within the reference's per-case bound             KL-VERDICT-MATCH
    "precision",      # finite, beyond the bound, explained by no other point
    "semantic",       # matches another point of the reference family (named)
    "special_value",  # NaN / +-inf / finite differ from the reference
    "shape",          # returned shape differs
    "dtype",          # returned dtype differs (e.g. a silent down-cast)
    "gradient",       # a gradient differs beyond its bound
    "error",          # raised where the spec defines a value, or the reverse
    "crash",          # the worker died (signal)
    "timeout",        # the worker hung past the per-case timeout
    "nondeterministic",  # the same case twice in one worker gave different results
)
# Comparison targets: the canonical definition and the adapter's documented semantics.
AGAINST = ("canonical", "documented")


@dataclasses.dataclass
class Verdict:
    adapter: str                  # adapter run id, e.g. "torch.kl_div" or "mxnet.KLDivLoss@mxnet180"
    case: str                     # Case.digest
    against: str                  # "canonical" | "documented"
    cls: str                      # one of VERDICT_CLASSES
    clauses: tuple[str, ...]      # SPEC.md clause ids that this verdict rests on
    detail: str = ""              # one line: expected vs observed, in words
    explained_by: str | None = None    # Point.name of the family member that matches (semantic)
    err_over_bound: float | None = None  # max |observed - expected| / bound (finite entries)
    known: str | None = None      # id of the known-discrepancy record that covers it

    def to_json(self) -> dict[str, Any]:
        # every field is a scalar or the clauses tuple: a shallow copy (dataclasses.asdict's
        # deep copy was a quarter of writing a results file)
        d = {name: getattr(self, name) for name in _VERDICT_FIELDS}
        d["clauses"] = list(self.clauses)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Verdict":
        d = dict(d)
        d["clauses"] = tuple(d["clauses"])
        return cls(**d)


_VERDICT_FIELDS = tuple(f.name for f in dataclasses.fields(Verdict))


@dataclasses.dataclass
class AdapterRun:
    """One adapter in one worker environment, and everything it answered."""

    adapter: str                       # run id: adapter name, plus "@env" for side interpreters
    api: str                           # e.g. "torch.nn.functional.kl_div"
    env: dict[str, Any]                # framework, version, python, numpy, platform, device
    status: str = "ok"                 # "ok" | "missing" | "import_error" (then outcomes are empty)
    reason: str = ""                   # why it is not "ok"
    documented_doc: str = ""           # doc URL behind the documented semantics
    capabilities: dict[str, Any] = dataclasses.field(default_factory=dict)
    outcomes: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # digest -> klconform.wire.to_json(outcome)
    verdicts: list[Verdict] = dataclasses.field(default_factory=list)
    counterexamples: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # cls -> {case, blob, seed}
    unmatched_known: list[str] = dataclasses.field(default_factory=list)  # known records that no case showed
    fingerprint: dict[str, Any] = dataclasses.field(default_factory=dict)  # observed point + evidence
    elapsed_s: float | None = None     # timing
    # Additive (reports): the documented semantics summarised per asked reduction
    # ({"points": {reduction: Point.to_json()}, "name": ..., "doc_version": ...}) and the
    # known-discrepancy records the verdicts cite ({id: Record.to_json()}), so that a
    # report needs nothing but results.json.
    documented: dict[str, Any] = dataclasses.field(default_factory=dict)
    known_records: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    # Additive: known records whose case condition no case sent could meet
    # (klconform.records.can_occur): neither observed nor required.
    not_applicable_known: list[str] = dataclasses.field(default_factory=list)
    # Additive: how many sent cases exercise each SPEC clause, capability value and special
    # value (klconform.coverage.count).
    coverage: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Additive: the large family (klconform.large), one entry per large case sent: digest,
    # label, elements, seconds (framework call), repeat, err_over_bound.
    large: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    # Additive, a distillation adapter's run only (SPEC.md §12, klconform.distill_harness):
    # its DistillCapabilities as JSON; its cases are the distillation corpus's.
    distill_capabilities: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["verdicts"] = [v.to_json() for v in self.verdicts]
        d["unmatched_known"] = list(self.unmatched_known)
        if not self.distill_capabilities:
            del d["distill_capabilities"]      # every other run's JSON as before
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "AdapterRun":
        d = dict(d)
        d["verdicts"] = [Verdict.from_json(v) for v in d.get("verdicts", [])]
        return cls(**d)


@dataclasses.dataclass
class RunResult:
    """A whole conformance run (the body of results.json)."""

    schema_version: int
    seed: int
    hypothesis: dict[str, Any]         # profile name, max_examples, derandomize, ...
    corpus_digest: str                 # hash over the digests of all cases, in order
    cases: dict[str, dict[str, Any]]   # digest -> Case.to_json()
    runs: list[AdapterRun]
    command: str = ""                  # how to reproduce this run exactly
    started_at: str | None = None      # timing
    elapsed_s: float | None = None     # timing
    # Additive: False while a run is in progress (results.partial.json), True when finished.
    complete: bool = True
    # Additive: the reference the verdicts were made with ({"digest": ...},
    # klconform.provenance); a report re-evaluating expectations compares it with its own.
    reference: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["runs"] = [r.to_json() for r in self.runs]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "RunResult":
        d = dict(d)
        d["runs"] = [AdapterRun.from_json(r) for r in d.get("runs", [])]
        return cls(**d)


# Fields that may differ between two runs with the same seed and framework versions
# (dotted paths into results.json; "*" matches any key or list index).
TIMING_FIELDS = (
    "started_at",
    "elapsed_s",
    "runs.*.elapsed_s",
    "runs.*.outcomes.*.elapsed_s",
)
