"""Report section: what the corpus exercised, per adapter (``runs[].coverage``,
klconform/coverage.py), with the keys under the floor of docs/corpus.md."""
from __future__ import annotations

from html import escape as E

from ..coverage import FLOOR

TITLE = "Corpus coverage"
_UNIT = {"capabilities": "capability value", "special": "special value", "clauses": "clause",
         "cells": "special-value cell (SPEC §2, klconform/cells.py) its encodings can express"}
INTRO = ("Cases sent per SPEC clause, capability value, special value and special-value cell the adapter declares "
         "(docs/corpus.md); the floor is " + ", ".join(f"{n} per {_UNIT.get(s, s)}" for s, n in FLOOR.items()) + ".")


def _rows(model):
    for run in model.result.runs:
        cov = getattr(run, "coverage", None) or {}
        if run.status != "ok" or not cov:
            continue
        cells = []
        for section, counts in cov.items():
            low = min(counts.items(), key=lambda kv: kv[1]) if counts else ("-", 0)
            under = [k for k, n in counts.items() if n < FLOOR.get(section, 0)]
            cells.append((section, len(counts), f"{low[0]} {low[1]}", under))
        yield run.adapter, cells


def markdown_section(model) -> list[str]:
    rows = list(_rows(model))
    if not rows:
        return []
    sections = list(dict.fromkeys(s for _, cells in rows for s, *_ in cells))
    out = [f"## {TITLE}", "", INTRO + " Per section: keys, the thinnest key; adapters with equal counts share a row.", "",
           "| adapter(s) | " + " | ".join(sections) + " | under the floor |", "|---|" + "---|" * (len(sections) + 1)]
    merged: dict[tuple, list[str]] = {}
    for adapter, cells in rows:
        by = {s: (n, low, under) for s, n, low, under in cells}
        key = tuple(f"{by[s][0]}, `{by[s][1]}`" if s in by else "-" for s in sections)
        key += (", ".join(f"`{k}`" for s in sections if s in by for k in by[s][2]) or "-",)
        merged.setdefault(key, []).append(adapter)
    out += [f"| {', '.join(names)} | " + " | ".join(key) + " |" for key, names in merged.items()]
    return out + [""]


def html_section(model) -> str:
    rows = list(_rows(model))
    if not rows:
        return ""
    body = "".join(f"<tr><td>{E(a)}</td><td>{E(s)}</td><td>{n}</td><td><code>{E(low)}</code></td>"
                   f"<td>{E(', '.join(under)) or '-'}</td></tr>" for a, cells in rows for s, n, low, under in cells)
    return (f"<h2>{E(TITLE)}</h2><p>{E(INTRO)}</p><table><tr><th>adapter</th><th>section</th><th>keys</th>"
            f"<th>thinnest</th><th>under the floor</th></tr>{body}</table>")
