"""Install instructions install from something that exists: klconform is on no package
index, so no command the docs or a workflow give asks pip for a bare ``klconform`` (a wheel
file, a checkout's path or a variable naming one instead).  The user project's workflow line
itself is run by tests/packaging/test_user_project.py."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MARKDOWN = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "examples").rglob("*.md")]
WORKFLOWS = [*(ROOT / ".github").rglob("*.yml"), *(ROOT / "examples").rglob(".github/**/*.yml")]
# a requirement named klconform, with or without extras, that is not part of a path or a
# variable ("dist/klconform-0.1.0-py3-none-any.whl[xdist]", "${KLCONFORM_WHEEL}[xdist]")
BARE = re.compile(r"(?<![\w/.${}-])klconform(\[[\w,]*\])?(?![\w./-])")


def commands() -> list[tuple[str, int, str]]:
    """Every pip install command of a markdown code block or a workflow ``run:`` line."""
    out = []
    for doc in MARKDOWN:
        fenced = False
        for no, line in enumerate(doc.read_text().splitlines(), 1):
            if line.lstrip().startswith("```"):
                fenced = not fenced
            elif fenced and "pip install" in line:
                out.append((str(doc.relative_to(ROOT)), no, line))
    for wf in WORKFLOWS:
        for no, line in enumerate(wf.read_text().splitlines(), 1):
            if "pip install" in line and line.strip().startswith(("run:", "- run:")):
                out.append((str(wf.relative_to(ROOT)), no, line))
    return out


def test_install_commands_never_ask_an_index_for_klconform():
    found = commands()
    assert any("examples/user_project/.github" in where for where, _, _ in found)   # the user's CI is read
    bad = [f"{where}:{no}: {line.strip()}" for where, no, line in found
           if BARE.search(line.split("#", 1)[0])]
    assert not bad, "pip install of a klconform no index has:\n" + "\n".join(bad)


def test_the_pattern_tells_a_bare_requirement_from_a_path():
    assert BARE.search('pip install . "klconform[xdist]"') and BARE.search("pip install klconform")
    for line in ('pip install . "${KLCONFORM_WHEEL}[xdist]"', 'pip install "dist/klconform-0.1.0-py3-none-any.whl[x]"',
                 'pip install . "/path/to/klconform[xdist]"'):
        assert not BARE.search(line), line
