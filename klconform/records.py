"""Known-discrepancy records: load, validate and match the reviewed TOML files.

The files are data and live apart from this code, in klconform/known/ (shipped as package
data ``known/*.toml``).

Which files an adapter's records come from (:func:`sources_for`): the files its class
names in ``Adapter.known_records`` (paths, relative ones against the adapter's module, or
package resources ``"package:path/in/package.toml"``), so an in-house adapter ships its own
reviewed records and adapters sharing one implementation share one file (torch.kl_div and
torch.KLDivLoss: ``klconform:known/torch.toml``); otherwise
``klconform/known/<adapter name with "." replaced by "_">.toml`` (e.g.
``mxnet_KLDivLoss.toml`` for ``mxnet.KLDivLoss``), if it exists.  A side-interpreter run
``name@env`` reads the files of ``name`` and tells versions apart with the ``version`` /
``run`` conditions; ``run`` also scopes a record of a shared file to one of its adapters.

Each entry::

    [[discrepancy]]
    id = "torch-mean-divides-by-all"      # unique in the file, stable (reports cite it)
    class = "semantic"                    # a verdict class (klconform.results.VERDICT_CLASSES)
    against = "canonical"                 # "canonical" | "documented" | ["canonical", "documented"]
    clauses = ["KL-RED-MEAN"]             # SPEC.md clause ids
    when = "reduction='mean' divides by all elements"   # the condition, in words
    match = { reduction = "mean" }        # machine condition (vocabulary below)
    explained_by = "mean"                 # optional: the family point named (glob) — semantic
    observed = { value = "nan" }          # what the framework computes there (klconform/behaviour.py);
                                          # required unless explained_by says it (semantic)
    citation = "https://..."              # framework doc or upstream issue
    note = "..."                          # optional

``match`` vocabulary — every condition must hold (a list means "any of"; a string with
``*``/``?``/``[`` is a glob; ``{min = a, max = b}`` is an inclusive range for numbers):

=================== =============================================================
field               fact about the (sent) case, verdict and outcome
=================== =============================================================
dtype               case dtype: "float16" | "bfloat16" | "float32" | "float64"
                    (the dtype the result is asked in)
target_dtype        dtype the target is sent in (= dtype unless set, KL-DTYPE-4)
pred_dtype          dtype the prediction is sent in (= dtype unless set)
dtype_form          "same" (both inputs in dtype) | "promoted" (mixed inputs, dtype their
                    promotion) | "cast" (an explicit compute dtype), Case.dtype_form
other_dtype_inputs  the inputs sent in a dtype other than dtype: "none" | "target" |
                    "pred" | "both" (in a promoted case: the narrower input(s))
reshaped_target     the target is sent in another shape (Case.target_sent_shape, KL-SHAPE-3)
reduction           canonical reduction name
pred_kind          "prob" | "logprob" | "logits" (as sent, after translation)
target_kind         "prob" | "logprob"
ndim                number of dimensions of the broadcast shape
size                number of elements of the broadcast shape
empty               the broadcast shape has a 0 side
broadcast           target and pred shapes differ
has_zero_target     some P entry is 0 (a logprob target of -inf counts)
has_zero_pred       some Q entry is 0 (logprob -inf; logits: never)
has_nonfinite       a NaN or +-inf in target, pred or weights
has_nan             a NaN in target or pred
has_negative        a negative P or Q (probability encodings only)
has_weight          a scalar weight is given
has_sample_weight   per-sample weights are given
grad                the case requests gradients
family              the case's value family (first part of its label, e.g. "zero_target")
label               the whole case label (glob)
explained_by        Verdict.explained_by (Point.name of the explaining family member)
grad_input          for gradient verdicts: the input, "pred" | "target"
returned_dtype      Outcome.dtype (dtype the framework returned)
status              Outcome.status ("ok", "error", "crash", "timeout", ...)
error_type          Outcome.error_type (e.g. "RuntimeError")
version             framework version from the worker environment (glob)
run                 adapter run id, e.g. "mxnet.KLDivLoss@mxnet180" (glob)
=================== =============================================================

A distillation case (SPEC.md §12) has the facts of klconform.facts.DISTILL_FIELDS beside
dtype, reduction, ndim, size, grad, family, label and those of its verdict and outcome:
``divergence`` ("forward" | "reverse" | "symmetric" | "jsd"), ``beta`` / ``ratio`` (its
parameter, floats), ``temperature``, ``temperature_scale``, ``masked`` (some token ignored),
``empty_mask`` (none kept), ``chunked``, ``chunks``, ``logits_dtype``, ``vocab``.

A record covers a verdict only when its ``match`` holds *and* the outcome does what its
``observed`` rules say (or, for ``semantic``, is the ``explained_by`` point): a wrong value at
a recorded place is unexpected.  Rules (klconform/behaviour.py): ``value`` / ``grad`` = the
kind of every departing entry ("nan", "+inf", "-inf", "finite", "zero"); ``point`` = a table of
family-point fields the value or gradient agrees with; ``within`` = the largest err/bound
factor; ``dtype`` = the dtype returned; ``error`` = the exception type raised (glob) or
"value".

CI semantics (:func:`check_run`): every non-match verdict must be covered by a record
(else it is *new*), and every record that *applies to the run* must cover at least one
verdict (else it is *unmatched*); both fail.  A record whose ``version`` / ``run``
condition excludes the run (e.g. a 1.8-only record in the 1.9.1 run of a file shared by
``mxnet.KLDivLoss`` and ``mxnet.KLDivLoss@mxnet180``) does not apply (:func:`applies`).
"""
from __future__ import annotations

import dataclasses
import fnmatch
import importlib.resources
import re
import sys
import tomllib
from pathlib import Path
from typing import Any, Iterable

from . import behaviour
from .facts import DISTILL_FIELDS
from .results import AGAINST, VERDICT_CLASSES

KNOWN_DIR = Path(__file__).resolve().parent / "known"
FIELDS = {
    "dtype": str, "reduction": str, "pred_kind": str, "target_kind": str, "ndim": int,
    "size": int, "empty": bool, "broadcast": bool, "has_zero_target": bool,
    "has_zero_pred": bool, "has_nonfinite": bool, "has_nan": bool, "has_negative": bool,
    "has_weight": bool, "has_sample_weight": bool, "grad": bool, "family": str, "label": str,
    "explained_by": str, "grad_input": str, "returned_dtype": str, "status": str,
    "error_type": str, "version": str, "run": str,
    "target_dtype": str, "pred_dtype": str, "dtype_form": str, "other_dtype_inputs": str, "reshaped_target": bool,
    **DISTILL_FIELDS,      # a distillation case's (klconform.facts.distill_case_facts)
}
ENTRY_KEYS = {"id", "class", "against", "clauses", "when", "match", "explained_by", "observed", "citation", "note"}
REQUIRED = ("id", "class", "against", "clauses", "when", "citation")


class KnownError(ValueError):
    """A malformed known-discrepancy file: the message names file and entry."""


@dataclasses.dataclass(frozen=True)
class Record:
    id: str
    cls: str
    against: tuple[str, ...]
    clauses: tuple[str, ...]
    when: str
    match: dict[str, Any]
    citation: str
    explained_by: str | None = None
    note: str = ""
    source: str = ""          # file the record came from
    observed: dict[str, Any] = dataclasses.field(default_factory=dict)   # klconform/behaviour.py

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["against"], d["clauses"] = list(self.against), list(self.clauses)
        return d


def file_for(adapter_name: str, directory: Path | None = None) -> Path:
    """The TOML file holding ``adapter_name``'s records (``@env`` suffix ignored)."""
    base = adapter_name.split("@", 1)[0]
    return (directory or KNOWN_DIR) / (base.replace(".", "_") + ".toml")


def _check_condition(where: str, key: str, value: Any) -> None:
    if key not in FIELDS:
        raise KnownError(f"{where}: match field {key!r} is not in the vocabulary ({', '.join(sorted(FIELDS))})")
    want = FIELDS[key]
    items = value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, dict):
            if want not in (int, float) or not set(item) <= {"min", "max"} or not item:
                raise KnownError(f"{where}: match.{key}: a range {{min, max}} is only allowed for numbers")
            continue
        ok = isinstance(item, (int, float) if want is float else want) and not (want in (int, float) and isinstance(item, bool))
        if not ok:
            raise KnownError(f"{where}: match.{key} = {item!r} is not a {want.__name__}")


def parse_records(data: dict[str, Any], source: str) -> list[Record]:
    """Validate the parsed TOML ``data`` of file ``source`` and return its records."""
    extra = set(data) - {"discrepancy"}
    if extra:
        raise KnownError(f"{source}: unexpected top-level keys {sorted(extra)} (only [[discrepancy]] entries)")
    entries = data.get("discrepancy", [])
    if not isinstance(entries, list):
        raise KnownError(f"{source}: 'discrepancy' must be an array of tables ([[discrepancy]])")
    out, seen = [], set()
    for i, e in enumerate(entries):
        where = f"{source}: entry {i + 1} ({e.get('id', '?')})"
        unknown = set(e) - ENTRY_KEYS
        if unknown:
            raise KnownError(f"{where}: unknown keys {sorted(unknown)}")
        missing = [k for k in REQUIRED if not e.get(k)]
        if missing:
            raise KnownError(f"{where}: missing {', '.join(missing)}")
        if e["id"] in seen:
            raise KnownError(f"{where}: duplicate id")
        seen.add(e["id"])
        if e["class"] not in VERDICT_CLASSES or e["class"] == "match":
            raise KnownError(f"{where}: class {e['class']!r} is not a discrepancy class {VERDICT_CLASSES[1:]}")
        against = e["against"] if isinstance(e["against"], list) else [e["against"]]
        if not against or any(a not in AGAINST for a in against):
            raise KnownError(f"{where}: against {e['against']!r} must be among {AGAINST}")
        clauses = e["clauses"]
        if not isinstance(clauses, list) or not all(isinstance(c, str) and c.startswith("KL-") for c in clauses):
            raise KnownError(f"{where}: clauses must be a list of SPEC ids like 'KL-ZERO-1'")
        match = e.get("match", {})
        if not isinstance(match, dict):
            raise KnownError(f"{where}: match must be a table of conditions")
        for k, v in match.items():
            _check_condition(where, k, v)
        eb = e.get("explained_by")
        if eb is not None and not isinstance(eb, str):
            raise KnownError(f"{where}: explained_by must be a string (a Point.name, globs allowed)")
        observed = {}
        if "observed" in e:
            try:
                observed = behaviour.validate(e["observed"], e["class"])
            except behaviour.BehaviourError as exc:
                raise KnownError(f"{where}: {exc}") from None
        elif ((eb is None and "explained_by" not in match) or e["class"] != "semantic") \
                and e["class"] not in behaviour.SELF_STATED:
            raise KnownError(f"{where}: no 'observed' rule: say what the framework computes there "
                             f"(e.g. observed = {{ value = \"nan\" }}, {{ within = 4 }}, {{ point = {{ zero_inf = \"nan\" }} }}; "
                             f"klconform/behaviour.py), so a wrong value at this place is not covered")
        out.append(Record(id=e["id"], cls=e["class"], against=tuple(against), clauses=tuple(clauses),
                          when=e["when"], match=dict(match), citation=e["citation"], explained_by=eb,
                          note=e.get("note", ""), source=source, observed=observed))
    return out


def load_file(path: Path) -> list[Record]:
    """Records of one TOML file; a missing file has none."""
    from .resultsio import read_input
    path = Path(path)
    if not path.exists():
        return []
    try:
        data = tomllib.loads(read_input(path).decode("utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise KnownError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise KnownError(f"{path.name}: not valid TOML ({exc})") from None
    return parse_records(data, path.name)


def load(adapter_name: str, directory: Path | None = None) -> list[Record]:
    """Records for ``adapter_name`` (its file; none if there is no file)."""
    return load_file(file_for(adapter_name, directory))


_RESOURCE = re.compile(r"^([A-Za-z_][\w.]*):(.+)$")


def sources_for(adapter) -> list[Path]:
    """The record files of ``adapter`` (an Adapter class or instance): its
    ``known_records`` entries resolved to paths, or ``[file_for(adapter.name)]``."""
    cls = adapter if isinstance(adapter, type) else type(adapter)
    entries = getattr(cls, "known_records", ()) or ()
    if isinstance(entries, (str, Path)):
        entries = (entries,)
    if not entries:
        return [file_for(cls.name)]
    out = []
    for entry in entries:
        m = _RESOURCE.match(entry) if isinstance(entry, str) else None
        if m:
            try:
                out.append(Path(str(importlib.resources.files(m.group(1)).joinpath(m.group(2)))))
            except (ModuleNotFoundError, TypeError) as exc:
                raise KnownError(f"{cls.__name__}.known_records: {entry!r}: package {m.group(1)!r} "
                                 f"not importable ({exc})") from None
            continue
        path = Path(entry)
        if not path.is_absolute():
            module = sys.modules.get(cls.__module__)
            base = Path(module.__file__).parent if module and getattr(module, "__file__", None) else Path.cwd()
            path = base / path
        out.append(path)
    return out


def load_for(adapter, directory: Path | None = None) -> list[Record]:
    """Records for ``adapter`` (class or instance) from :func:`sources_for`; with
    ``directory`` (tests) the file of its name in that directory instead.  A file its
    class names must exist (a missing one is a broken promise, not "no records"), and
    ids must be unique across its files."""
    cls = adapter if isinstance(adapter, type) else type(adapter)
    if directory is not None:
        return load(cls.name, directory)
    paths = sources_for(cls)
    declared = bool(getattr(cls, "known_records", ()))
    out: list[Record] = []
    seen: dict[str, str] = {}
    for path in paths:
        if declared and not path.is_file():
            raise KnownError(f"{cls.__name__}.known_records: {path} does not exist")
        for rec in load_file(path):
            if rec.id in seen:
                raise KnownError(f"{path.name}: record {rec.id!r} also in {seen[rec.id]} "
                                 f"(ids are unique across {cls.name}'s files)")
            seen[rec.id] = path.name
            out.append(rec)
    return out


def load_all(directory: Path | None = None) -> dict[str, list[Record]]:
    """Every file in ``directory``: file stem -> records (validates them all)."""
    d = directory or KNOWN_DIR
    return {p.stem: load_file(p) for p in sorted(d.glob("*.toml"))}


# ----------------------------------------------------------------------------- matching
def _value_matches(cond: Any, fact: Any) -> bool:
    if isinstance(cond, list):
        return any(_value_matches(c, fact) for c in cond)
    if isinstance(cond, dict):
        if fact is None:
            return False
        return cond.get("min", fact) <= fact <= cond.get("max", fact)
    if isinstance(cond, str):
        if fact is None:
            return False
        return fnmatch.fnmatchcase(str(fact), cond) if any(ch in cond for ch in "*?[") else str(fact) == cond
    return cond == fact


def record_matches(record: Record, verdict, facts: dict[str, Any], observation=None) -> bool:
    """True when ``record`` covers ``verdict`` given the ``facts`` of its case/outcome
    (:func:`klconform.verdicts.facts`) and, for a record with ``observed`` rules, the
    ``observation`` (:class:`klconform.behaviour.Observation`) does what they say: without
    an observation such a record covers nothing."""
    if verdict.cls != record.cls or verdict.against not in record.against:
        return False
    if record.explained_by is not None and not _value_matches(record.explained_by, verdict.explained_by):
        return False
    if not all(_value_matches(cond, facts.get(k)) for k, cond in record.match.items()):
        return False
    if record.observed:
        return observation is not None and behaviour.holds(record.observed, verdict, observation)
    return True


# Conditions that depend only on the run (not on a case): they decide whether a record applies.
RUN_FIELDS = ("version", "run")


def applies(record: Record, *, run: str, version: str | None) -> bool:
    """True when ``record``'s run-level conditions (:data:`RUN_FIELDS`) hold for run id
    ``run`` at framework ``version``: only such records can match, and only they must."""
    facts = {"run": run, "version": version}
    return all(_value_matches(record.match[k], facts[k]) for k in RUN_FIELDS if k in record.match)


def applicable(records: Iterable[Record], *, run: str, version: str | None) -> list[Record]:
    """The records of ``records`` that :func:`applies` to the run (file order kept)."""
    return [r for r in records if applies(r, run=run, version=version)]


# Facts of the sent case alone (klconform.facts): whether a record's condition *can* hold
# in a corpus depends on these; the rest (verdict, outcome, run) is only known once run.
CASE_FIELDS = ("dtype", "reduction", "pred_kind", "target_kind", "ndim", "size", "empty", "broadcast",
               "has_zero_target", "has_zero_pred", "has_nonfinite", "has_nan", "has_negative", "has_weight",
               "has_sample_weight", "grad", "family", "label", "target_dtype", "pred_dtype", "dtype_form",
               "other_dtype_inputs", "reshaped_target") + tuple(DISTILL_FIELDS)


def can_occur(record: Record, case_facts: Iterable[dict[str, Any]]) -> bool:
    """True when some case of ``case_facts`` (the facts of the cases sent) meets every
    case-level condition of ``record``.  A record that cannot occur in the corpus run
    (``--dtypes float64`` and a float16 record, a ``--corpus`` file without such cases)
    is *not applicable*: it is neither required to be observed nor a failure."""
    conds = [(k, c) for k, c in record.match.items() if k in CASE_FIELDS]
    return any(all(_value_matches(c, f.get(k)) for k, c in conds) for f in case_facts)


def find_record(records: Iterable[Record], verdict, facts: dict[str, Any], observation=None) -> Record | None:
    """The first record (file order) that covers ``verdict``, or None."""
    for r in records:
        if record_matches(r, verdict, facts, observation):
            return r
    return None
