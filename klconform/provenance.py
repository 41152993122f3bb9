"""Which reference made the verdicts: a digest of the installed reference's sources.

Recorded in ``RunResult.reference`` by the engine and the CLI; a report re-rendered from
an older results.json re-evaluates its expectations with the installed reference and says
so when the digests differ (docs/DESIGN.md, "Results and reports").
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import klconform.reference


@functools.lru_cache(maxsize=1)
def reference_identity() -> dict[str, str]:
    """``{"digest": ...}``: sha256 (16 hex digits) over the reference's Python sources and
    SPEC.md, by name in sorted order -- equal digests, equal expectations."""
    root = Path(klconform.reference.__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted([*root.glob("*.py"), *root.glob("SPEC.md")]):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return {"digest": h.hexdigest()[:16]}
