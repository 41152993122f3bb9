#!/usr/bin/env python3
"""Set up klconform's environments and run its main job or its tests (stdlib only).

    python3 bootstrap.py run  [klconform run options]   # the conformance run -> reports/latest/
    python3 bootstrap.py test [pytest options]          # the test suite (Hypothesis profile "ci")

The main environment (.venv) is built from requirements/main.txt and rebuilt whenever that
file changes.  Side environments for framework versions that cannot share the main
interpreter (tox.ini's [testenv:worker-*] sections) are built on demand into .venvs/NAME
by ``python3 bootstrap.py env NAME``; ``test`` and ``run`` build the ones listed in
``DEFAULT_SIDE_ENVS``.
"""
from __future__ import annotations

import configparser
import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
MAIN_ENV = ROOT / ".venv"
SIDE_ENVS = ROOT / ".venvs"
REQUIREMENTS = ROOT / "requirements" / "main.txt"
# Side environments the default test and run commands use (tox.ini [testenv:worker-NAME]).
DEFAULT_SIDE_ENVS = ("mxnet180",)


def _python(env: Path) -> Path:
    return env / "bin" / "python"


def _stamp_ok(env: Path, spec: str, name: str = ".klconform-stamp") -> bool:
    """True when ``env`` was built from exactly ``spec``."""
    f = env / name
    return f.is_file() and f.read_text() == hashlib.sha256(spec.encode()).hexdigest()


def _write_stamp(env: Path, spec: str, name: str = ".klconform-stamp") -> None:
    (env / name).write_text(hashlib.sha256(spec.encode()).hexdigest())


def _pip(env: Path, args: list[str]) -> None:
    cmd = [str(_python(env)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args]
    subprocess.run(cmd, check=True, cwd=ROOT)


def _build(env: Path, spec: str, pip_args: list[str]) -> bool:
    """(Re)build ``env`` from scratch unless it was built from ``spec``; True if it was rebuilt."""
    if _stamp_ok(env, spec) and _python(env).exists():
        return False
    print(f"bootstrap: building {env.relative_to(ROOT)} ...", flush=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(env)
    _pip(env, pip_args)
    _write_stamp(env, spec)
    return True


def main_env() -> Path:
    """The main environment; the project itself is re-installed (no deps) when pyproject changes,
    since its entry points (the built-in adapters) live there."""
    rebuilt = _build(MAIN_ENV, REQUIREMENTS.read_text(), ["-r", str(REQUIREMENTS)])
    project = (ROOT / "pyproject.toml").read_text()
    if rebuilt or not _stamp_ok(MAIN_ENV, project, ".klconform-project-stamp"):
        _pip(MAIN_ENV, ["--no-deps", "-e", str(ROOT)])
        _write_stamp(MAIN_ENV, project, ".klconform-project-stamp")
    return _python(MAIN_ENV)


def side_env(name: str) -> Path:
    """Build tox.ini's [testenv:worker-NAME] deps into .venvs/NAME (no tox needed)."""
    ini = configparser.ConfigParser()
    ini.read(ROOT / "tox.ini")
    section = f"testenv:worker-{name}"
    if section not in ini:
        sys.exit(f"bootstrap: no [{section}] in tox.ini")
    deps = [d.strip() for d in ini[section].get("deps", "").splitlines() if d.strip()]
    env = SIDE_ENVS / name
    _build(env, "\n".join(deps), deps)
    return _python(env)


def _exec(argv: list[str]) -> "NoReturn":  # noqa: F821
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for name in DEFAULT_SIDE_ENVS:
        env.setdefault(f"KLCONFORM_PYTHON_{name.upper()}", str(_python(SIDE_ENVS / name)))
    sys.stdout.flush()
    os.chdir(ROOT)
    os.execve(argv[0], argv, env)


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in ("run", "test", "env"):
        sys.exit(__doc__)
    cmd, rest = argv[0], argv[1:]
    if cmd == "env":
        for name in rest or DEFAULT_SIDE_ENVS:
            print(side_env(name))
        return
    py = main_env()
    for name in DEFAULT_SIDE_ENVS:
        try:
            side_env(name)
        except subprocess.CalledProcessError as exc:  # a side env costs only its own adapters
            print(f"bootstrap: side environment {name} failed to build ({exc}); its adapters will be skipped",
                  file=sys.stderr)
    if cmd == "run":
        _exec([str(py), "-m", "klconform", "run", *rest])
    _exec([str(py), "-m", "pytest", "--hypothesis-profile=ci", "-p", "no:cacheprovider", *rest])


if __name__ == "__main__":
    main(sys.argv[1:])
