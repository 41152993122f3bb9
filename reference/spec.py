"""Machine-readable view of reference/SPEC.md: the clause ids, in document order, and the
numbered sections that hold them."""
from __future__ import annotations

import functools
import pathlib
import re

SPEC_PATH = pathlib.Path(__file__).with_name("SPEC.md")
# A clause starts a line with its bold id, e.g. "**KL-ZERO-1**".
CLAUSE_RE = re.compile(r"^\*\*(KL-[A-Z0-9]+(?:-[A-Z0-9]+)+)\*\*", re.MULTILINE)
# A numbered section heading, e.g. "## 2. Zeros and special values".
SECTION_RE = re.compile(r"^## (\d+)\. (.+?)\s*$", re.MULTILINE)

# Verdict class (SPEC.md §10) -> the clause that defines it.
VERDICT_CLAUSES = {
    "match": "KL-VERDICT-MATCH",
    "precision": "KL-VERDICT-PRECISION",
    "semantic": "KL-VERDICT-SEMANTIC",
    "special_value": "KL-VERDICT-SPECIAL",
    "shape": "KL-VERDICT-SHAPE",
    "dtype": "KL-VERDICT-DTYPE",
    "gradient": "KL-VERDICT-GRADIENT",
    "error": "KL-VERDICT-ERROR",
    "crash": "KL-VERDICT-CRASH",
    "timeout": "KL-VERDICT-TIMEOUT",
    "nondeterministic": "KL-VERDICT-NONDETERMINISTIC",
}


def parse_clause_ids(text: str) -> tuple[str, ...]:
    """The clause ids defined in ``text`` (SPEC.md syntax), in order; raises on duplicates."""
    ids = CLAUSE_RE.findall(text)
    seen: set[str] = set()
    dups = sorted({i for i in ids if i in seen or seen.add(i)})
    if dups:
        raise ValueError(f"SPEC.md defines clause ids more than once: {', '.join(dups)}")
    return tuple(ids)


@functools.lru_cache(maxsize=1)
def clause_ids() -> tuple[str, ...]:
    """Every clause id defined in reference/SPEC.md, in document order."""
    return parse_clause_ids(SPEC_PATH.read_text(encoding="utf-8"))


def parse_sections(text: str) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    """``(number, title, clause ids)`` for each numbered section of ``text`` (SPEC.md
    syntax), in order; a clause belongs to the section heading above it."""
    heads = list(SECTION_RE.finditer(text))
    out = []
    for i, m in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        out.append((m.group(1), m.group(2), parse_clause_ids(text[m.end():end])))
    return tuple(out)


@functools.lru_cache(maxsize=1)
def clause_sections() -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    """The numbered sections of reference/SPEC.md with their clause ids, in order."""
    return parse_sections(SPEC_PATH.read_text(encoding="utf-8"))


def clause_text(clause_id: str) -> str:
    """The text of one clause (up to the next clause or heading), for reports."""
    text = SPEC_PATH.read_text(encoding="utf-8")
    m = re.search(rf"^\*\*{re.escape(clause_id)}\*\*\n(.*?)(?=^\*\*KL-|^#|\Z)", text,
                  re.MULTILINE | re.DOTALL)
    if m is None:
        raise KeyError(f"no clause {clause_id!r} in SPEC.md")
    return " ".join(m.group(1).split())
