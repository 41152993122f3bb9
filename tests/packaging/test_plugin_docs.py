"""The plugin's options as the docs name them: every ``--klconform-*`` the README and docs
mention is an option of the plugin, and docs/plugin.md documents every option it has."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "docs" / "plugin.md", ROOT / "docs" / "adapters.md",
        ROOT / "examples" / "user_project" / ".github" / "workflows" / "klconform.yml"]
OPTION = re.compile(r"--klconform-[a-z-]*[a-z]")


def plugin_options() -> set[str]:
    """The options pytest's own --help lists in the klconform group (the plugin loaded)."""
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "klconform.pytest_plugin", "--help"],
                         capture_output=True, text=True, cwd=ROOT).stdout
    group = out.split("klconform: KL-divergence conformance", 1)[1].split("\n\n", 1)[0]
    return set(OPTION.findall(group))


def test_docs_name_only_real_options_and_plugin_md_names_them_all():
    options = plugin_options()
    assert {"--klconform-frameworks", "--klconform-adapter", "--klconform-corpus"} <= options
    for doc in DOCS:
        for no, line in enumerate(doc.read_text().splitlines(), 1):
            for opt in OPTION.findall(line):
                assert opt in options, f"{doc.relative_to(ROOT)}:{no}: {opt} is not a plugin option"
    documented = set(OPTION.findall((ROOT / "docs" / "plugin.md").read_text()))
    assert options <= documented, f"undocumented in docs/plugin.md: {sorted(options - documented)}"
