"""README's table of supported frameworks and APIs stays true to the adapter registry: names,
APIs and side environments, the framework versions the locks pin, the native options the
adapter declares and the devices it can be asked for."""
from __future__ import annotations

import configparser
import re
from pathlib import Path

from klconform import registry

ROOT = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^\| (?P<name>[\w.]+)(?: \(`@(?P<env>\w+)`\))? \| (?P<api>[^|]+?) \| (?P<versions>[^|]+?) \| "
                 r"(?P<options>[^|]+?) \| (?P<devices>[^|]+?) \| (?P<computes>[^|]+) \|$")
HEADER = "| adapter | API | versions | options | devices | computes (family point, SPEC.md) |"
VERSION = re.compile(r"^(?P<version>[\w.+]+)(?: \(`@(?P<env>\w+)`\))?$")


def table_rows() -> list[re.Match]:
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index(HEADER)
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


def _pins(env: str) -> dict[str, str]:
    """``{distribution: version}`` of requirements/<env>.lock (names normalised)."""
    pins = {}
    for line in (ROOT / "requirements" / f"{env}.lock").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line)
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def test_versions_are_the_ones_the_locks_pin():
    """The first version is the one of the adapter's own environment (main, or its @ENV);
    further ``VERSION (@ENV)`` entries are other versions the matrix runs."""
    refs = registry.builtin_adapters()
    for m in table_rows():
        dist = registry.load_adapter_class(refs[m["name"]]).framework.lower().replace("_", "-")
        entries = [VERSION.match(v.strip()) for v in m["versions"].split(";")]
        assert all(entries), (m["name"], m["versions"])
        assert entries[0]["env"] is None, f"{m['name']}: the first version is the adapter's own environment's"
        for e in entries:
            env = e["env"] or m["env"] or "main"
            assert _pins(env).get(dist) == e["version"], (m["name"], env, dist, e["version"])


def test_options_and_devices_are_the_adapters_declarations():
    refs = registry.builtin_adapters()
    for m in table_rows():
        cls = registry.load_adapter_class(refs[m["name"]])
        options = re.findall(r"`([^`]+)`", m["options"])
        assert options == list(cls().capabilities().options) and (options or m["options"].strip() == "—"), m["name"]
        assert [d.strip() for d in m["devices"].split(",")] == list(cls.devices), m["name"]
