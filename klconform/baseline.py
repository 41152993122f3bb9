"""Behaviour baselines: what one framework version answered on the frozen corpus, as a small
diffable file, so that a framework upgrade shows up as a reviewed change.

One file per adapter and framework version in ``klconform/data/baselines/``, named
``<adapter>@<version>.jsonl`` (the adapter's name without ``@env``: the same version under
another interpreter shares the baseline).  Line 1 is the header, then one line per case
in corpus order (format and field meanings: docs/upgrade-checks.md):

* header: ``schema``, ``adapter``, ``api``, ``framework``, ``version``, ``python``,
  ``platform``, ``corpus_digest``, ``reference`` (digest), ``fingerprint`` (the observed
  template's name and per-reduction points);
* case: ``case`` (digest), ``tags`` (what the case is: dtype, reduction, encodings and
  traits such as ``zero-target`` or ``empty``, so a diff can say which cases moved without
  the corpus), ``status`` (``ok`` or ``error:<type>``...), ``dtype``, ``shape``, ``value``
  and ``grads`` as :func:`digest_array` digests, ``verdict`` (canonical class, and the
  family point of a semantic verdict).

Values are stored quantised to half the case's bound (:func:`case_bound`), and the bound
with them, so a later run that moves a value within the bound is no change
(:func:`klconform.diff.compare_baselines`).

Python API (the pytest option ``--klconform-baseline`` calls it): :func:`check` (a run
against a baselines directory -> list of :class:`klconform.diff.Change`), :func:`update`
(rewrite the baselines of a run: the documented way to accept a change), :func:`read`,
:func:`from_run`.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from . import wire
from .case import Case
from .compare import expected_gradient, expected_value, gradient_dtype, judged_dtype
from .evaluator import ReferenceUndefined, make_evaluator
from .reference.dtypes import UNIT_ROUNDOFF
from .results import AdapterRun, RunResult

SCHEMA_VERSION = 1
BASELINE_DIR = Path(__file__).resolve().parent / "data" / "baselines"
SUFFIX = ".jsonl"
# Arrays up to this many entries are stored entry by entry; larger ones as class counts and
# quantised sum/min/max (a baseline stays a few hundred kB per framework version).
MAX_ENTRIES = 16
# Quantum of a stored value = bound / QUANTA: fine enough that "moved beyond the bound" is
# decided on the stored numbers, coarse enough that the digits are few.
QUANTA = 2
# Bound floor relative to the value, in units of the judged dtype's unit roundoff: a value far
# from the reference (a semantic difference) is still stored to its own precision.
RELATIVE_FLOOR_ULPS = 8


class BaselineError(Exception):
    """A baseline file or results file that cannot be used: one line for the user (exit 2)."""


# ----------------------------------------------------------------------------- digests
def value_classes(a: np.ndarray) -> str:
    """One letter per entry: ``f`` finite, ``n`` NaN, ``+`` +inf, ``-`` -inf."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    out = np.full(a.shape, "f")
    out[np.isnan(a)] = "n"
    out[np.isposinf(a)] = "+"
    out[np.isneginf(a)] = "-"
    return "".join(out.tolist())


def _q(x: float, res: float) -> int:
    return int(round(x / res))


def digest_array(a, bound: float) -> dict[str, Any]:
    """Compact, diffable digest of an array under a scalar ``bound`` (> 0).

    ``{"cls": "ffn", "q": [..], "b": bound}`` entry by entry (``q`` = finite entries in units
    of bound/QUANTA, in order), or for more than MAX_ENTRIES entries
    ``{"n": size, "counts": {cls: k}, "sum"/"min"/"max": quantised, "b": bound}``."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = float(f"{bound:.3g}")
    res = b / QUANTA
    fin = a[np.isfinite(a)]
    if a.size <= MAX_ENTRIES:
        return {"cls": value_classes(a), "q": [_q(x, res) for x in fin.tolist()], "b": b}
    classes = value_classes(a)
    d: dict[str, Any] = {"n": int(a.size), "counts": {c: classes.count(c) for c in "fn+-" if c in classes}, "b": b}
    if fin.size:
        # the sum of n entries each within b moves by at most n*b: compared with that bound
        d.update(sum=_q(float(fin.sum()), res), min=_q(float(fin.min()), res), max=_q(float(fin.max()), res))
    return d


def case_bound(bound, observed, dtype: str) -> float:
    """The scalar bound a case's stored values are quantised to: the largest finite entry of
    the reference's bound (in the dtype the result is judged in), floored at
    RELATIVE_FLOOR_ULPS units of that dtype's roundoff of the largest observed magnitude,
    and at the smallest normal float64 (so it is never 0)."""
    b = np.asarray(bound, dtype=np.float64).reshape(-1)
    b = b[np.isfinite(b)]
    o = np.asarray(observed if observed is not None else [], dtype=np.float64).reshape(-1)
    o = o[np.isfinite(o)]
    floor = RELATIVE_FLOOR_ULPS * UNIT_ROUNDOFF.get(dtype, UNIT_ROUNDOFF["float64"]) * (float(np.abs(o).max()) if o.size else 0.0)
    return max(float(b.max()) if b.size else 0.0, floor, 2.2250738585072014e-308)


def case_tags(case: Case) -> list[str]:
    """What a case is, in the words a diff uses to say which cases changed."""
    tags = [case.dtype, f"reduction={case.reduction}", f"target={case.target_kind}", f"pred={case.pred_kind}"]
    t = np.asarray(case.target, dtype=np.float64)
    p = np.asarray(case.pred, dtype=np.float64)
    zero = (t == 0) if case.target_kind == "prob" else np.isneginf(t)
    if zero.any():
        tags.append("zero-target")
    if case.pred_kind == "prob" and (p == 0).any() or case.pred_kind == "logprob" and np.isneginf(p).any():
        tags.append("zero-pred")
    if 0 in case.shape:
        tags.append("empty")
    log_zero_p = np.isneginf(p) if case.pred_kind == "logprob" else np.zeros(p.shape, bool)
    if np.isnan(t).any() or np.isnan(p).any():
        tags.append("nan-input")
    if np.isinf(t[~zero]).any() or np.isinf(p[~log_zero_p]).any():
        tags.append("inf-input")
    if case.weight is not None or case.sample_weight is not None:
        tags.append("weighted")
    if case.grad:
        tags.append("grad")
    return tags


def _status(o) -> str:
    if o.status == "ok":
        return "ok"
    return f"{o.status}:{o.error_type}" if o.error_type else o.status


def case_entry(case: Case, outcome, verdict, evaluate) -> dict[str, Any]:
    """One case's line of a baseline."""
    entry: dict[str, Any] = {"case": case.digest, "tags": case_tags(case), "status": _status(outcome)}
    if verdict is not None:
        entry["verdict"] = verdict.cls + (f":{verdict.explained_by}" if verdict.explained_by else "")
    if outcome.status != "ok":
        return entry
    used = judged_dtype(case.dtype, outcome.dtype)
    try:
        exp = evaluate(case, None)
    except ReferenceUndefined:
        exp = None
    entry["dtype"] = outcome.dtype
    entry["shape"] = list(outcome.shape) if outcome.shape is not None else None
    if outcome.value is not None:
        bound = expected_value(exp, case.dtype, used)[1] if exp is not None else []
        entry["value"] = digest_array(outcome.value, case_bound(bound, outcome.value, used))
    grads = {}
    for k, g in sorted((outcome.grads or {}).items()):
        if g is None:
            continue
        gdt = (outcome.grad_dtypes or {}).get(k)
        # the bound the verdicts judge this gradient by: a gradient computed in a coarser
        # dtype than the case's moves by that dtype's rounding (another CPU, another kernel)
        expected = expected_gradient(exp, k, case, used, gdt) if exp is not None else None
        gb = [] if expected is None else expected[1]
        grads[k] = digest_array(g, case_bound(gb, g, gradient_dtype(used, gdt)))
    if grads:
        entry["grads"] = grads
    return entry


# ----------------------------------------------------------------------------- files
class Baseline:
    """A header and the case entries (digest -> entry, in corpus order)."""

    def __init__(self, header: dict[str, Any], cases: dict[str, dict[str, Any]]):
        self.header = header
        self.cases = cases

    @property
    def adapter(self) -> str:
        return self.header["adapter"]

    @property
    def version(self) -> str:
        return str(self.header["version"])

    @property
    def label(self) -> str:
        """E.g. ``torch.kl_div 2.13.0+cpu``."""
        return f"{self.adapter} {self.version}"

    def file_name(self) -> str:
        return file_name(self.adapter, self.version)

    def dumps(self) -> str:
        lines = [json.dumps(self.header, sort_keys=True, separators=(",", ":"), allow_nan=False)]
        lines += [json.dumps(e, sort_keys=True, separators=(",", ":"), allow_nan=False) for e in self.cases.values()]
        return "\n".join(lines) + "\n"


def adapter_name(run_id: str) -> str:
    """The adapter's name without its ``@env`` (baselines are per adapter and version)."""
    return run_id.partition("@")[0]


# What an adapter's name may be to name a baseline file: it comes from the results file
# (any text), and a "/" or ".." in it would name a file elsewhere.
_FILE_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+\-\[\]]{0,199}")


def file_name(adapter: str, version: str) -> str:
    """``NAME@VERSION.jsonl``; BaselineError when the adapter's name cannot be a file name
    (the version's other characters become ``_``)."""
    name = adapter_name(adapter)
    if not _FILE_SAFE_NAME.fullmatch(name) or ".." in name:
        raise BaselineError(f"adapter name {name!r} cannot name a baseline file (letters, digits and "
                            f"._+-[] only, not starting with '.', no '..')")
    return f"{name}@{re.sub(r'[^A-Za-z0-9._+-]', '_', str(version))}{SUFFIX}"


def _header(result: RunResult, run: AdapterRun) -> dict[str, Any]:
    env = run.env or {}
    observed = (run.fingerprint or {}).get("observed") or {}
    return {
        "schema": SCHEMA_VERSION, "kind": "klconform-baseline",
        "adapter": adapter_name(run.adapter), "run_id": run.adapter, "api": run.api,
        "framework": env.get("framework", ""), "version": str(env.get("version", "")),
        "python": env.get("python_version", ""), "platform": env.get("platform", ""),
        "corpus_digest": result.corpus_digest, "reference": (result.reference or {}).get("digest", ""),
        "fingerprint": {"name": observed.get("name", ""), "points": observed.get("points", {}),
                        "status": (run.fingerprint or {}).get("status", "")},
    }


def from_run(result: RunResult, run: AdapterRun) -> Baseline:
    """The baseline of one adapter run of ``result``."""
    return from_result(result, [run])[0]


def from_result(result: RunResult, runs: Sequence[AdapterRun] | None = None) -> list[Baseline]:
    """One baseline per adapter run that ran (status ok), of ``runs`` (default all).  Cases
    are taken in corpus order and each is decoded once for all runs (a large case is
    generated once, klconform.large), its reference answer computed once."""
    evaluate = make_evaluator()
    runs = [r for r in (result.runs if runs is None else runs) if r.status == "ok"]
    canonical = [{v.case: v for v in r.verdicts if v.against == "canonical"} for r in runs]
    entries: list[dict[str, dict[str, Any]]] = [{} for _ in runs]
    for digest in result.cases:                       # corpus order
        answered = [i for i, r in enumerate(runs) if digest in r.outcomes]
        if not answered:
            continue
        case = Case.from_json(result.cases[digest])
        for i in answered:
            entries[i][digest] = case_entry(case, wire.from_json(runs[i].outcomes[digest]),
                                            canonical[i].get(digest), evaluate)
    return [Baseline(_header(result, r), e) for r, e in zip(runs, entries)]


def read(path: str | Path) -> Baseline:
    """A baseline file; BaselineError (one line) when it is not one of this schema."""
    from .resultsio import InputRefused, read_input
    path = Path(path)
    try:
        lines = read_input(path).decode("utf-8").splitlines()
        rows = [json.loads(line) for line in lines if line.strip()]
    except InputRefused as exc:
        raise BaselineError(f"{path}: {exc.strerror}; not read") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise BaselineError(f"{path}: not a readable baseline file ({type(exc).__name__}: {exc})") from None
    if not rows or not isinstance(rows[0], dict) or rows[0].get("kind") != "klconform-baseline":
        raise BaselineError(f"{path}: not a klconform baseline file (no baseline header on line 1)")
    header = rows[0]
    if header.get("schema") != SCHEMA_VERSION:
        raise BaselineError(f"{path}: baseline schema version {header.get('schema')!r}, this klconform reads "
                            f"{SCHEMA_VERSION}: regenerate it with `klconform baseline update RESULTS`")
    missing = [k for k in ("adapter", "version", "corpus_digest") if k not in header]
    bad = [i for i, r in enumerate(rows[1:], 2) if not isinstance(r, dict) or "case" not in r or "status" not in r]
    if missing or bad:
        raise BaselineError(f"{path}: malformed baseline ({'header lacks ' + ', '.join(missing) if missing else f'line {bad[0]}'})")
    return Baseline(header, {r["case"]: r for r in rows[1:]})


def read_directory(directory: str | Path) -> list[Baseline]:
    directory = Path(directory)
    if not directory.is_dir():
        raise BaselineError(f"baselines directory {str(directory)!r} does not exist")
    return [read(p) for p in sorted(directory.glob("*" + SUFFIX))]


def version_key(version: str) -> tuple:
    """Order of framework versions: release numbers numerically, pre-releases before the
    release (2.0.0b1 and MXNet's own spelling 2.0.0beta1 < 2.0.0), local parts (+cpu) ignored."""
    v = str(version).split("+", 1)[0]
    m = re.match(r"^(\d+(?:\.\d+)*)(?:\.?(alpha|beta|a|b|rc)(\d+))?(?:\.?post(\d+))?", v)
    if not m:
        return ((), 0, 0, 0, v)
    nums = tuple(int(x) for x in m.group(1).split("."))
    nums = nums + (0,) * (4 - len(nums))
    pre = {"a": -3, "alpha": -3, "b": -2, "beta": -2, "rc": -1}.get(m.group(2) or "", 0)
    return (nums, pre, int(m.group(3) or 0), int(m.group(4) or 0), v)


def baseline_for(baselines: Iterable[Baseline], adapter: str, version: str) -> Baseline | None:
    """The baseline a run of ``adapter`` at ``version`` is checked against: the same version,
    else the newest older one (an upgrade), else the oldest newer one (a downgrade)."""
    mine = [b for b in baselines if b.adapter == adapter_name(adapter)]
    same = [b for b in mine if b.version == str(version)]
    if same:
        return same[0]
    key = version_key(version)
    older = sorted((b for b in mine if version_key(b.version) < key), key=lambda b: version_key(b.version))
    if older:
        return older[-1]
    newer = sorted(mine, key=lambda b: version_key(b.version))
    return newer[0] if newer else None


def check_compatible(old: Baseline, new: Baseline) -> None:
    """BaselineError when two baselines were not made on the same corpus."""
    if old.header.get("corpus_digest") != new.header.get("corpus_digest"):
        raise BaselineError(
            f"stale baseline {old.file_name()}: corpus digest {old.header.get('corpus_digest')} differs from the "
            f"results' {new.header.get('corpus_digest')} (run on the frozen corpus, or regenerate the baselines)")


def check(result: RunResult, directory: str | Path = BASELINE_DIR) -> list:
    """Every change of ``result`` against the baselines in ``directory``
    (:class:`klconform.diff.Change`; those with ``is_change`` False are notes: values that
    moved within the bound, a version without a baseline of its own).  BaselineError for a
    stale or unreadable baseline."""
    return check_counted(result, directory)[0]


def check_counted(result: RunResult, directory: str | Path = BASELINE_DIR) -> tuple[list, list[tuple[str, int]]]:
    """:func:`check`, and what it compared: ``(run id, cases in common)`` per run of
    ``result`` that has a baseline (an empty list: nothing was compared)."""
    from .diff import Change, cases_in_common, compare_baselines
    baselines = read_directory(directory)
    changes: list[Change] = []
    compared: list[tuple[str, int]] = []
    for new in from_result(result):
        run = new.header.get("run_id") or new.adapter
        old = baseline_for(baselines, new.adapter, new.version)
        if old is None:
            changes.append(Change(new.adapter, "no-baseline", f"{run} {new.version}: no baseline yet "
                                  f"(`klconform baseline update` records one)", [], is_change=True, run=run))
            continue
        check_compatible(old, new)
        compared.append((run, cases_in_common(old, new)))
        if old.version != new.version:
            changes.append(Change(new.adapter, "version", f"{run}: no baseline for {new.version}; "
                                  f"compared with {old.version}", [], is_change=False, old=old.version,
                                  new=new.version, run=run, old_run=str(old.header.get("run_id") or old.adapter)))
        changes += compare_baselines(old, new)
    return changes, compared


def update(result: RunResult, directory: str | Path = BASELINE_DIR) -> list[Path]:
    """Write (replace) the baseline of every adapter run of ``result`` into ``directory``;
    the files written.  The git diff of those files is the review of the accepted change.
    The files are replaced together or not at all (:func:`klconform.resultsio.write_set`:
    a symlinked baseline is written through, a device node or directory in a file's place
    refuses the update); BaselineError (one line) names what was refused."""
    from .resultsio import write_set
    directory = Path(directory)
    runs = [r for r in result.runs if r.status == "ok"]
    for r in runs:                # every name checked before any work
        file_name(r.adapter, str((r.env or {}).get("version", "")))
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BaselineError(f"{directory}: cannot create the baselines directory ({exc.strerror or exc})") from None
    files = {b.file_name(): b.dumps() for b in from_result(result, runs)}
    done = write_set(directory, files)
    if done.problems:
        raise BaselineError("; ".join(done.problems))
    return done.written


def load_side(path: str | Path) -> list[Baseline]:
    """A results.json (its adapter runs as baselines) or a baseline file, for ``klconform diff``."""
    path = Path(path)
    if not path.exists():
        raise BaselineError(f"{path}: no such file")
    if path.suffix == SUFFIX:
        return [read(path)]
    from .resultsio import ResultsError, read_results
    try:
        return from_result(read_results(path))
    except ResultsError as exc:
        raise BaselineError(str(exc).splitlines()[0]) from None
