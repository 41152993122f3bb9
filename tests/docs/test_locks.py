"""The locks bootstrap.py builds from say exactly what tox.ini's deps resolved to.

No network and no resolution here: a lock is checked against the deps digest it was
generated from (``bootstrap.check_lock``), and its lines against what ``pip install
--require-hashes`` accepts.  The fix for every failure is ``python3 bootstrap.py lock``.
"""
from __future__ import annotations

import re

import pytest

import bootstrap

ENVS = [bootstrap.MAIN, *bootstrap.worker_env_names()]
PIN_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+) \\$")


def pins(text: str) -> dict[str, str]:
    return {m.group(1).lower().replace("_", "-"): m.group(2)
            for m in map(PIN_RE.match, text.splitlines()) if m}


def test_every_tox_environment_has_a_side_env_lock():
    assert bootstrap.DEFAULT_SIDE_ENVS and set(bootstrap.DEFAULT_SIDE_ENVS) <= set(ENVS)


@pytest.mark.parametrize("name", ENVS)
def test_lock_is_generated_from_current_deps(name):
    bootstrap.check_lock(name)   # raises StaleLock naming the command to run


@pytest.mark.parametrize("name", ENVS)
def test_every_requirement_is_pinned_with_a_hash(name):
    text = bootstrap.lock_path(name).read_text()
    requirement_lines = [line for line in text.splitlines() if line and not line[0].isspace()
                         and not line.startswith("#")]
    assert requirement_lines and all(PIN_RE.match(line) for line in requirement_lines), requirement_lines
    # each pin is followed by at least one hash line
    blocks = re.split(r"\n(?=\S)", text)
    unhashed = [b.split()[0] for b in blocks if PIN_RE.match(b.splitlines()[0]) and "--hash=sha256:" not in b]
    assert not unhashed, unhashed


@pytest.mark.parametrize("name", ENVS)
def test_lock_keeps_every_direct_pin(name):
    """The resolver may add packages, never move a human pin."""
    locked = pins(bootstrap.lock_path(name).read_text())
    direct = []
    for line in bootstrap.env_deps(name):
        if line.startswith("-r"):
            direct += (bootstrap.ROOT / line[2:].strip()).read_text().splitlines()
        else:
            direct.append(line)
    wanted = {}
    for line in direct:
        line = line.split("#")[0].strip()
        if "==" in line:
            pkg, ver = line.split("==")
            wanted[pkg.strip().lower().replace("_", "-")] = ver.strip()
    assert wanted, direct
    assert {k: locked.get(k) for k in wanted} == wanted


def test_main_lock_has_the_cpu_torch():
    # PyPI's plain torch==2.13.0 is the CUDA build (and pulls nvidia-* wheels)
    locked = pins(bootstrap.lock_path(bootstrap.MAIN).read_text())
    assert locked["torch"].endswith("+cpu")
    assert not [p for p in locked if p.startswith("nvidia-")]


def test_stale_lock_is_refused(tmp_path, monkeypatch):
    lock = tmp_path / "main.lock"
    lock.write_text("# deps-sha256: " + "0" * 64 + "\n")
    monkeypatch.setattr(bootstrap, "lock_path", lambda name: lock)
    with pytest.raises(bootstrap.StaleLock, match="bootstrap.py lock main"):
        bootstrap.check_lock(bootstrap.MAIN)


def test_environment_stamp_changes_with_the_python(monkeypatch):
    facts = bootstrap._python_facts()
    assert str(tuple(bootstrap.sys.version_info)) in facts and bootstrap.sys.implementation.name in facts
