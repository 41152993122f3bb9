"""README's table of supported frameworks and APIs stays true to the adapter registry."""
from __future__ import annotations

import configparser
import re
from pathlib import Path

from klconform import registry

ROOT = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^\| (?P<name>[\w.]+)(?: \(`@(?P<env>\w+)`\))? \| (?P<api>[^|]+?) \| (?P<computes>[^|]+) \|$")


def table_rows() -> list[re.Match]:
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index("| adapter | API | computes (family point, SPEC.md) |")
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        m = ROW.match(line)
        assert m, f"README.md:{lines.index(line) + 1}: not an adapter row: {line!r}"
        rows.append(m)
    return rows


def test_the_table_lists_every_registered_adapter_once():
    names = [m["name"] for m in table_rows()]
    assert len(names) >= 20 and len(names) == len(set(names)), names
    assert set(names) == set(registry.builtin_adapters()), set(names) ^ set(registry.builtin_adapters())


def test_each_row_names_the_adapters_api_and_an_existing_side_environment():
    refs = registry.builtin_adapters()
    ini = configparser.ConfigParser()
    ini.read(ROOT / "tox.ini")
    for m in table_rows():
        cls = registry.load_adapter_class(refs[m["name"]])
        api = m["api"].strip()
        assert api.split("(")[0].strip() in cls.api or cls.api.split("(")[0] in api, (m["name"], api, cls.api)
        if m["env"]:
            assert f"testenv:worker-{m['env']}" in ini, f"{m['name']}: no [testenv:worker-{m['env']}] in tox.ini"
