"""The docs spell every import of the adapter interface and the reference as an installed
user does: installed, klconform is one package, so ``adapters.base.Adapter`` of this
checkout is ``klconform.adapters.base.Adapter`` (the wheel has no top-level ``adapters`` or
``reference``: tests/packaging/test_user_project.py).  Every dotted ``adapters.``/``reference.``
name in the docs must be spelled under ``klconform.`` and resolve there."""
from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "examples").rglob("*.md")])
# A dotted name of the two packages, with or without the klconform. prefix; not part of a
# path (reference/SPEC.md, docs/adapters.md) nor of a longer dotted name.
NAME = re.compile(r"(?<![\w./-])((?:klconform\.)?(?:adapters|reference)(?:\.[A-Za-z_]\w*)+)")
FILE_SUFFIXES = {"md", "py", "toml", "json", "jsonl", "txt", "html", "lock", "in"}


def spelled_names() -> list[tuple[str, int, str]]:
    out = []
    for doc in DOCS:
        for no, line in enumerate(doc.read_text().splitlines(), 1):
            for name in NAME.findall(line):
                if name.rsplit(".", 1)[1] in FILE_SUFFIXES:
                    continue
                out.append((str(doc.relative_to(ROOT)), no, name))
    return out


def resolves(dotted: str) -> bool:
    """Whether ``dotted`` is an importable module, or an attribute path of one."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


def test_the_docs_name_adapters_and_the_reference_at_all():
    names = {n for _, _, n in spelled_names()}
    assert "klconform.adapters.base.Adapter" in names      # docs/adapters.md: the interface to subclass


@pytest.mark.parametrize("where, line, name", spelled_names(), ids=lambda v: str(v))
def test_each_name_is_spelled_as_installed_and_resolves(where, line, name):
    assert name.startswith("klconform."), (
        f"{where}:{line}: {name!r} is this checkout's spelling; installed it is 'klconform.{name}'")
    assert resolves(name), f"{where}:{line}: {name} does not resolve"
