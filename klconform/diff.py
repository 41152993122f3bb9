"""What changed between two behaviour records of one adapter, in sentences a user reads.

:func:`compare_baselines` takes two :class:`klconform.baseline.Baseline` (the same adapter,
usually two framework versions, on the same corpus) and returns :class:`Change`\\ s, each a
sentence with the cases that show it, grouped by what changed and on which kind of case:

* the observed semantics, from the per-reduction points of the fingerprint ("reduction
  'mean' changed from the mean over all elements to the per-sample sum");
* a status ("new error (ValueError) on empty inputs"), a result dtype ("float64 inputs now
  computed in float32"), a result shape;
* the class of value or gradient entries ("gradient w.r.t. pred became NaN on zero
  targets (p = 0)");
* values or gradients that moved beyond the case's bound (with the verdict's move);
* values that moved *within* the bound: one note, ``is_change`` False -- no change.

The kind of case a group is worded with is what all of its cases have in common (the tags
of klconform.baseline.case_tags).  :func:`diff_sides` pairs the adapters of two files.
"""
from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Any, Iterable

from .baseline import QUANTA, Baseline, version_key

# How many case digests a change lists (the count is always given).
EXAMPLES = 5

REDUCTION_WORDS = {
    "none": "the elementwise terms",
    "distribution": "the per-distribution sum",
    "sum": "the total sum",
    "mean": "the mean over all elements",
    "batchmean": "the sum divided by the batch size",
    "distribution_mean": "the mean of the per-distribution sums",
    "sample_sum": "the per-sample sum",
    "sample_mean": "the per-sample mean",
}
CLASS_WORDS = {"f": "finite", "n": "NaN", "+": "+inf", "-": "-inf"}
# Tags in the order a condition names them, and their words (dtype and reduction tags are
# worded where they are used).
TAG_WORDS = {
    "empty": "empty inputs",
    "zero-target": "zero targets (p = 0)",
    "zero-pred": "zero predictions (q = 0)",
    "nan-input": "NaN inputs",
    "inf-input": "infinite inputs",
    "weighted": "weights",
}


@dataclasses.dataclass
class Change:
    """One difference, worded; ``is_change`` False for a note (e.g. moves within the bound)."""

    adapter: str
    kind: str             # fingerprint | status | dtype | shape | value_class | gradient_class | value | gradient | cases | within_bound | version | no-baseline
    sentence: str
    cases: list[str]      # digests of the cases that show it (all of them)
    is_change: bool = True
    old: str = ""         # e.g. "2.13.0+cpu"
    new: str = ""
    # The runs compared, named with their environment (``torch.kl_div@train``): two runs
    # of one adapter under two interpreters are two headings, never one.
    run: str = ""
    old_run: str = ""

    def line(self) -> str:
        """The sentence with its case count and first examples."""
        if not self.cases:
            return self.sentence
        eg = ", ".join(self.cases[:EXAMPLES]) + (", ..." if len(self.cases) > EXAMPLES else "")
        n = len(self.cases)
        return f"{self.sentence} ({n} case{'s' if n != 1 else ''}: {eg})"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- wording
def condition(tag_sets: list[list[str]], skip: tuple[str, ...] = ()) -> str:
    """What the cases of a group have in common, in words ("float64 cases with empty inputs
    and reduction 'mean'"); '' when nothing sets them apart.  ``skip``: tags the sentence
    already says (the dtype of a dtype change)."""
    common = set(tag_sets[0]).intersection(*map(set, tag_sets[1:])) if tag_sets else set()
    common -= set(skip)
    parts = [TAG_WORDS[t] for t in TAG_WORDS if t in common]
    parts += [f"reduction {t.split('=', 1)[1]!r}" for t in sorted(common) if t.startswith("reduction=")]
    dts = sorted(t for t in common if t.startswith(("float", "bfloat")))
    if not parts and not dts:
        return ""
    return (f"{dts[0]} cases" if dts else "cases") + (f" with {' and '.join(parts)}" if parts else "")


def _on(cond: str) -> str:
    return f" on {cond}" if cond else ""


def _status_words(s: str) -> str:
    """'a value', 'error (ValueError)', 'crash (WorkerCrash)'."""
    if s == "ok":
        return "a value"
    status, _, etype = s.partition(":")
    return f"{status} ({etype})" if etype else status


def _class_move(old: str, new: str) -> str:
    """'became NaN' when finite entries changed class, else '+inf entries became finite; ...'."""
    moves = sorted({(a, b) for a, b in zip(old, new) if a != b})
    if len({b for _, b in moves}) == 1 and {a for a, _ in moves} == {"f"}:
        return f"became {CLASS_WORDS[moves[0][1]]}"
    return "; ".join(f"{CLASS_WORDS[a]} entries became {CLASS_WORDS[b]}" for a, b in moves)


def _verdict_words(v: str | None) -> str:
    if not v:
        return "none"
    cls, _, point = v.partition(":")
    return f"{cls} ({point})" if point else cls


# ----------------------------------------------------------------------------- per case
def _digest_moves(old: dict, new: dict) -> tuple[str | None, bool]:
    """(class move or None, moved beyond the bound) of two digest_array digests of the same
    length; a move within max(bound) plus the quantisation is no move."""
    if "cls" in old and "cls" in new:
        if len(old["cls"]) != len(new["cls"]):
            return None, True
        if old["cls"] != new["cls"]:
            return _class_move(old["cls"], new["cls"]), False
        pairs = zip(old["q"], new["q"])
    else:
        if old.get("counts") != new.get("counts") or old.get("n") != new.get("n"):
            return "changed how many entries are finite, NaN or infinite", False
        pairs = [(old.get(k, 0), new.get(k, 0)) for k in ("min", "max")]
    ro, rn = old["b"] / QUANTA, new["b"] / QUANTA
    if "sum" in old and "sum" in new:
        # the sum of n entries each within the bound moves by at most n bounds
        if abs(old["sum"] * ro - new["sum"] * rn) > old["n"] * max(old["b"], new["b"]) + ro / 2 + rn / 2:
            return None, True
    tol = max(old["b"], new["b"]) + ro / 2 + rn / 2
    return None, any(abs(a * ro - b * rn) > tol for a, b in pairs)


def _case_diffs(o: dict, n: dict) -> list[tuple[str, Any]]:
    """The differences of one case as (kind, group key) pairs; ('within_bound', None) when
    only values moved, within the bound."""
    if o["status"] != n["status"]:
        return [("status", (o["status"], n["status"]))]
    if o["status"] != "ok":
        return []
    out: list[tuple[str, Any]] = []
    if o.get("dtype") != n.get("dtype"):
        out.append(("dtype", (o.get("dtype"), n.get("dtype"))))
    if o.get("shape") != n.get("shape"):
        out.append(("shape", (tuple(o.get("shape") or ()), tuple(n.get("shape") or ()))))
        return out
    wobble = False
    verdicts = (o.get("verdict"), n.get("verdict"))
    if "value" in o and "value" in n:
        cls, beyond = _digest_moves(o["value"], n["value"])
        if cls:
            out.append(("value_class", cls))
        elif beyond:
            out.append(("value", verdicts))
        elif o["value"] != n["value"]:
            wobble = True
    for k in sorted(set(o.get("grads", {})) | set(n.get("grads", {}))):
        go, gn = o.get("grads", {}).get(k), n.get("grads", {}).get(k)
        if (go is None) != (gn is None):
            out.append(("gradient_class", (k, "no longer returned" if gn is None else "now returned")))
            continue
        cls, beyond = _digest_moves(go, gn)
        if cls:
            out.append(("gradient_class", (k, cls)))
        elif beyond:
            out.append(("gradient", k))
        elif go != gn:
            wobble = True
    if not out and verdicts[0] != verdicts[1]:
        out.append(("verdict", verdicts))
    if not out and wobble:
        out.append(("within_bound", None))
    return out


def _sentence(kind: str, key: Any, cond: str, case_dtype: str | None) -> str:
    if kind == "status":
        old, new = key
        if old == "ok":
            return f"new {_status_words(new)}{_on(cond)} (was a value)"
        if new == "ok":
            return f"{_status_words(old)} gone{_on(cond)}: now returns a value"
        return f"{_status_words(old)} became {_status_words(new)}{_on(cond)}"
    if kind == "dtype":
        old, new = key
        if case_dtype and old == case_dtype and new != case_dtype:
            return f"{case_dtype} inputs now computed in {new}{_on(cond)} (result dtype was {old})"
        return f"result dtype changed from {old} to {new}{_on(cond)}"
    if kind == "shape":
        return f"result shape changed from {list(key[0])} to {list(key[1])}{_on(cond)}"
    if kind == "value_class":
        return f"values {key}{_on(cond)}" if key.startswith(("became", "changed")) else f"{key} in the values{_on(cond)}"
    if kind == "gradient_class":
        k, move = key
        zero = "zero-target " if "zero targets" in cond else ""
        if move.startswith(("became", "changed", "no longer", "now")):
            return f"{zero}gradient w.r.t. {k} {move}{_on(cond)}"
        return f"{move} in the {zero}gradient w.r.t. {k}{_on(cond)}"
    if kind == "value":
        old, new = key
        move = f" (verdict {_verdict_words(old)} -> {_verdict_words(new)})" if old != new else ""
        return f"values moved beyond the bound{_on(cond)}{move}"
    if kind == "gradient":
        return f"gradient w.r.t. {key} moved beyond its bound{_on(cond)}"
    if kind == "verdict":
        return f"verdict changed from {_verdict_words(key[0])} to {_verdict_words(key[1])}{_on(cond)}"
    if kind == "within_bound":
        return f"values moved within the bound{_on(cond)} (no change)"
    raise ValueError(kind)


# ----------------------------------------------------------------------------- fingerprint
def fingerprint_changes(old: Baseline, new: Baseline) -> list[str]:
    """Sentences for the per-reduction points of the observed fingerprint that differ."""
    po = (old.header.get("fingerprint") or {}).get("points") or {}
    pn = (new.header.get("fingerprint") or {}).get("points") or {}
    out = []
    field_moves: dict[tuple, list[str]] = defaultdict(list)
    for asked in sorted(set(po) & set(pn)):
        a, b = po[asked], pn[asked]
        if a.get("reduction") != b.get("reduction"):
            out.append(f"reduction {asked!r} changed from {REDUCTION_WORDS.get(a.get('reduction'), a.get('reduction'))} "
                       f"to {REDUCTION_WORDS.get(b.get('reduction'), b.get('reduction'))}")
        for f in sorted((set(a) | set(b)) - {"reduction", "eps"}):
            va, vb = a.get(f), b.get(f)
            if f == "epsilon":
                va, vb = f"{va}({a.get('eps', 0):g})" if va != "none" else va, f"{vb}({b.get('eps', 0):g})" if vb != "none" else vb
            if va != vb:
                field_moves[(f, str(va), str(vb))].append(asked)
    for (f, va, vb), reds in sorted(field_moves.items()):
        where = "" if set(reds) == set(po) & set(pn) else f" for reduction {', '.join(map(repr, reds))}"
        out.append(f"{f.replace('_', ' ')} changed from {va} to {vb}{where}")
    return out


# ----------------------------------------------------------------------------- compare
def compare_baselines(old: Baseline, new: Baseline) -> list[Change]:
    """Every change from ``old`` to ``new`` (notes last)."""
    adapter = new.adapter
    vo, vn = old.version, new.version
    runs = dict(run=run_name(new), old_run=run_name(old))
    changes = [Change(adapter, "fingerprint", s, [], old=vo, new=vn, **runs) for s in fingerprint_changes(old, new)]
    groups: dict[tuple, list[str]] = defaultdict(list)
    for digest, o in old.cases.items():
        n = new.cases.get(digest)
        if n is None:
            groups[("cases", "gone")].append(digest)
            continue
        for kind, key in _case_diffs(o, n):
            groups[(kind, key)].append(digest)
    for digest in new.cases:
        if digest not in old.cases:
            groups[("cases", "new")].append(digest)
    order = ["status", "dtype", "shape", "value_class", "gradient_class", "value", "gradient", "verdict", "cases", "within_bound"]
    for (kind, key), digests in sorted(groups.items(), key=lambda kv: (order.index(kv[0][0]), str(kv[0][1]))):
        tags = [(new.cases.get(d) or old.cases[d]).get("tags", []) for d in digests]
        dts = {t[0] for t in tags if t}
        cond = condition(tags, skip=tuple(dts) if kind == "dtype" else ())
        if kind == "cases":
            sentence = ("cases no longer answered" if key == "gone" else "cases newly answered") + _on(cond)
        else:
            sentence = _sentence(kind, key, cond, dts.pop() if len(dts) == 1 else None)
        # digest order: the same examples whether the baselines come from a run or a file
        changes.append(Change(adapter, kind, sentence, sorted(digests), is_change=kind != "within_bound",
                              old=vo, new=vn, **runs))
    return changes


def run_name(b: Baseline) -> str:
    """The run a baseline was made from, with its environment (``torch.kl_div@train``)."""
    return str(b.header.get("run_id") or b.adapter)


def cases_in_common(old: Baseline, new: Baseline) -> int:
    """How many cases both answered: what comparing them checks."""
    return len(set(old.cases) & set(new.cases))


def pair_baselines(old: Iterable[Baseline], new: Iterable[Baseline]) -> list[tuple[Baseline, Baseline]]:
    """Pairs of the same adapter, in NEW's order: every run id present on both sides first
    (``torch.kl_div@train`` with ``torch.kl_div@train``), then the runs left by adapter name."""
    old, new = list(old), list(new)
    match: dict[int, Baseline] = {}
    used: set[int] = set()
    for same in (lambda a, b: run_name(a) == run_name(b), lambda a, b: a.adapter == b.adapter):
        for b in new:
            if id(b) in match:
                continue
            a = next((a for a in old if id(a) not in used and same(a, b)), None)
            if a is not None:
                used.add(id(a))
                match[id(b)] = a
    return [(match[id(b)], b) for b in new if id(b) in match]


def version_steps(baselines: Iterable[Baseline], aliases: dict[str, str] | None = None
                  ) -> list[tuple[Baseline, Baseline]]:
    """Consecutive versions of each adapter (oldest first), e.g. MXNet 1.8.0 -> 1.9.1 ->
    2.0.0b1.  ``aliases`` maps an adapter name to the one it is the earlier version of
    (``tf_keras.KLDivergence`` -> ``keras.KLDivergence``: the Keras-2 -> Keras-3 upgrade);
    an aliased adapter comes first whatever its version number."""
    aliases = aliases or {}
    by: dict[str, list[tuple[int, tuple, Baseline]]] = defaultdict(list)
    for b in baselines:
        name = aliases.get(b.adapter, b.adapter)
        by[name].append((0 if b.adapter in aliases else 1, version_key(b.version), b))
    steps = []
    for name in sorted(by):
        seq = [b for _, _, b in sorted(by[name], key=lambda t: (t[0], t[1]))]
        steps += list(zip(seq, seq[1:]))
    return steps


def render_text(changes: list[Change]) -> str:
    """Plain-text listing, one block per adapter and version step."""
    lines: list[str] = []
    last = None
    for c in changes:
        run = c.run or c.adapter
        head = (run, c.old_run, c.old, c.new)
        if head != last:
            if c.old_run and c.old_run != run:
                step = f" ({c.old_run} {c.old} -> {run} {c.new})"
            else:
                step = f" {c.old} -> {c.new}" if c.old or c.new else ""
            lines.append(f"{run}{step}:")
            last = head
        lines.append(f"  {'-' if c.is_change else '='} {c.line()}")
    return "\n".join(lines)
