#!/usr/bin/env python3
"""Set up klconform's environments and run its main job or its tests (stdlib only).

    python3 bootstrap.py run  [klconform run options]   # the conformance run -> reports/latest/
    python3 bootstrap.py test [pytest options]          # the test suite (Hypothesis profile "ci")
    python3 bootstrap.py env  [NAME ...]                # build side environments into .venvs/NAME
    python3 bootstrap.py lock [NAME ...]                # regenerate requirements/*.lock
    python3 bootstrap.py matrix [klconform run options] # every worker env, every ADAPTER@ENV -> reports/matrix/

Every environment is declared once, in tox.ini: the main one (.venv) by [testenv]'s deps,
each side one (.venvs/NAME, framework versions that cannot share the main interpreter) by
[testenv:worker-NAME]'s deps.  ``lock`` resolves those deps, transitive ones included, into
requirements/NAME.lock (main.lock for the main environment) with hashes; the environments
are built only from the locks (``pip install --require-hashes``) and rebuilt whenever the
lock or the Python that builds them changes.  tox.ini stays the one place that says what an
environment wants (tox, optional, installs the same deps unlocked); the locks say exactly
what that resolved to.  ``test`` and ``run`` build the side environments in DEFAULT_SIDE_ENVS.
"""
from __future__ import annotations

import configparser
import hashlib
import os
import re
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
MAIN_ENV = ROOT / ".venv"
SIDE_ENVS = ROOT / ".venvs"
REQUIREMENTS = ROOT / "requirements"
TOX_INI = ROOT / "tox.ini"
MAIN = "main"   # the main environment's name in lock file names and ``lock`` arguments
# Side environments the default test and run commands use (tox.ini [testenv:worker-NAME]).
DEFAULT_SIDE_ENVS = ("mxnet180",)
# The lock generator, installed (unlocked: it only writes files) into its own environment.
PIP_TOOLS = "pip-tools==7.6.2"
LOCK_TOOL_ENV = SIDE_ENVS / "_pip-tools"
DEPS_DIGEST_RE = re.compile(r"^# deps-sha256: ([0-9a-f]{64})$", re.MULTILINE)


class StaleLock(Exception):
    """A lock that is missing or was generated from other deps than tox.ini's."""


def _python(env: Path) -> Path:
    return env / "bin" / "python"


# ---------------------------------------------------------------- what each environment wants
def _section(name: str) -> str:
    return "testenv" if name == MAIN else f"testenv:worker-{name}"


def env_deps(name: str) -> list[str]:
    """tox.ini's deps lines of environment ``name`` (``main`` or a worker NAME)."""
    ini = configparser.ConfigParser()
    ini.read(TOX_INI)
    section = _section(name)
    if section not in ini:
        raise KeyError(f"no [{section}] in tox.ini")
    return [d.strip() for d in ini[section].get("deps", "").splitlines() if d.strip()]


def worker_env_names() -> list[str]:
    ini = configparser.ConfigParser()
    ini.read(TOX_INI)
    return [s.removeprefix("testenv:worker-") for s in ini.sections() if s.startswith("testenv:worker-")]


def deps_digest(deps: list[str]) -> str:
    """Digest of the deps lines and of every file they include with ``-r`` (relative to
    tox.ini, as tox reads them), so editing requirements/main.in also stales main.lock."""
    h = hashlib.sha256()
    for line in deps:
        h.update(line.encode() + b"\n")
        if line.startswith("-r"):
            h.update((ROOT / line[2:].strip()).read_bytes())
    return h.hexdigest()


def lock_path(name: str) -> Path:
    return REQUIREMENTS / f"{name}.lock"


def check_lock(name: str) -> Path:
    """The lock of ``name``; StaleLock unless it was generated from tox.ini's current deps."""
    path = lock_path(name)
    rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    if not path.is_file():
        raise StaleLock(f"{rel} is missing: run `python3 bootstrap.py lock {name}`")
    m = DEPS_DIGEST_RE.search(path.read_text())
    if m is None or m.group(1) != deps_digest(env_deps(name)):
        raise StaleLock(f"{rel} was not generated from tox.ini [{_section(name)}]'s current deps: "
                        f"run `python3 bootstrap.py lock {name}`")
    return path


# ---------------------------------------------------------------- building environments
def _python_facts() -> str:
    # a venv's interpreter is the one that built it: a new Python means a rebuild
    return f"{sys.implementation.name} {sys.implementation.cache_tag} {tuple(sys.version_info)}"


def _stamp_ok(env: Path, spec: str, name: str = ".klconform-stamp") -> bool:
    """True when ``env`` was built from exactly ``spec``."""
    f = env / name
    return f.is_file() and f.read_text() == hashlib.sha256(spec.encode()).hexdigest()


def _write_stamp(env: Path, spec: str, name: str = ".klconform-stamp") -> None:
    (env / name).write_text(hashlib.sha256(spec.encode()).hexdigest())


def _pip(env: Path, args: list[str]) -> None:
    cmd = [str(_python(env)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args]
    subprocess.run(cmd, check=True, cwd=ROOT)


def _build(env: Path, lock: Path) -> bool:
    """(Re)build ``env`` from scratch unless it was built from ``lock`` by this Python;
    True if it was rebuilt."""
    spec = lock.read_text() + "\n" + _python_facts()
    if _stamp_ok(env, spec) and _python(env).exists():
        return False
    print(f"bootstrap: building {env.relative_to(ROOT)} from {lock.relative_to(ROOT)} ...", flush=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(env)
    _pip(env, ["--require-hashes", "-r", str(lock)])
    _write_stamp(env, spec)
    return True


def main_env() -> Path:
    """The main environment; the project itself is re-installed (no deps) when pyproject changes,
    since its entry points (the built-in adapters) live there."""
    rebuilt = _build(MAIN_ENV, check_lock(MAIN))
    project = (ROOT / "pyproject.toml").read_text()
    if rebuilt or not _stamp_ok(MAIN_ENV, project, ".klconform-project-stamp"):
        _pip(MAIN_ENV, ["--no-deps", "-e", str(ROOT)])
        _write_stamp(MAIN_ENV, project, ".klconform-project-stamp")
    return _python(MAIN_ENV)


def side_env(name: str) -> Path:
    """Build the lock of tox.ini's [testenv:worker-NAME] into .venvs/NAME (no tox needed)."""
    env = SIDE_ENVS / name
    _build(env, check_lock(name))
    return _python(env)


# ---------------------------------------------------------------- locks
def lock(names: list[str]) -> None:
    """Resolve each environment's tox.ini deps into requirements/NAME.lock with hashes, for
    this Python (CPython 3.11) on this platform, from the indexes pip is configured with."""
    tool = LOCK_TOOL_ENV / "bin" / "pip-compile"
    if not tool.exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(LOCK_TOOL_ENV)
        _pip(LOCK_TOOL_ENV, [PIP_TOOLS])
    for name in names:
        deps = env_deps(name)
        # pip-compile reads a file; -r lines in it resolve relative to it, i.e. to tox.ini's dir
        source = ROOT / f"tox.ini:{_section(name)}"
        out = lock_path(name)
        try:
            source.write_text("\n".join(deps) + "\n")
            subprocess.run([str(tool), "--quiet", "--generate-hashes", "--allow-unsafe", "--strip-extras",
                            "--no-header", "--no-emit-index-url", "--no-emit-find-links",
                            "--rebuild", "-o", str(out), source.name], check=True, cwd=ROOT)
        finally:
            source.unlink(missing_ok=True)
        header = (f"# Generated by `python3 bootstrap.py lock {name}` ({PIP_TOOLS}) from tox.ini "
                  f"[{_section(name)}], for CPython {sys.version_info.major}.{sys.version_info.minor} "
                  f"on {sys.platform}: do not edit.\n"
                  f"# deps-sha256: {deps_digest(deps)}\n")
        out.write_text(header + out.read_text())
        print(out.relative_to(ROOT))


# ---------------------------------------------------------------- commands
def _exec(argv: list[str]) -> "NoReturn":  # noqa: F821
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for name in DEFAULT_SIDE_ENVS:
        env.setdefault(f"KLCONFORM_PYTHON_{name.upper()}", str(_python(SIDE_ENVS / name)))
    sys.stdout.flush()
    env.setdefault("KLCONFORM_CALLER_CWD", os.getcwd())   # cli.py resolves a relative --out against it
    os.chdir(ROOT)
    os.execve(argv[0], argv, env)


def matrix(rest: list[str]) -> "NoReturn":  # noqa: F821
    """The upgrade matrix: build every [testenv:worker-*] environment (a failed one costs only
    its own adapters), then one `klconform run` of every adapter plus each ADAPTER@ENV whose
    ENV starts with the adapter's framework (cli.expand_names) into reports/matrix/, whose
    report has the "Versions side by side" section (docs/upgrade-checks.md)."""
    py = main_env()
    for name in worker_env_names():
        try:
            os.environ.setdefault(f"KLCONFORM_PYTHON_{name.upper()}", str(side_env(name)))
        except (subprocess.CalledProcessError, StaleLock) as exc:
            print(f"bootstrap: side environment {name} failed to build ({exc}); its adapters will be skipped",
                  file=sys.stderr)
    out = [] if "--out" in rest else ["--out", str(ROOT / "reports" / "matrix")]
    _exec([str(py), "-m", "klconform", "run", *out, *rest])


def main(argv: list[str]) -> None:
    if argv and argv[0] == "matrix":
        try:
            matrix(argv[1:])
        except StaleLock as exc:
            sys.exit(f"bootstrap: {exc.args[0]}")
    if not argv or argv[0] not in ("run", "test", "env", "lock"):
        sys.exit(__doc__)
    cmd, rest = argv[0], argv[1:]
    try:
        if cmd == "lock":
            lock(rest or [MAIN, *worker_env_names()])
            return
        if cmd == "env":
            for name in rest or DEFAULT_SIDE_ENVS:
                print(side_env(name))
            return
        py = main_env()
    except (StaleLock, KeyError) as exc:
        sys.exit(f"bootstrap: {exc.args[0]}")
    for name in DEFAULT_SIDE_ENVS:
        try:
            side_env(name)
        except (subprocess.CalledProcessError, StaleLock) as exc:  # a side env costs only its own adapters
            print(f"bootstrap: side environment {name} failed to build ({exc}); its adapters will be skipped",
                  file=sys.stderr)
    if cmd == "run":
        _exec([str(py), "-m", "klconform", "run", *rest])
    _exec([str(py), "-m", "pytest", "--hypothesis-profile=ci", "-p", "no:cacheprovider", *_parallel(rest), *rest])


def _parallel(rest: list[str]) -> list[str]:
    """``-n auto`` (pytest-xdist, one test process per CPU: the suite's 5-minute budget on
    two cores) unless the caller chose: ``-n``/``--numprocesses``/``--dist``, or
    ``-p no:xdist``."""
    chosen = any(a in ("-n", "--numprocesses", "--dist") or a.startswith(("-n", "--numprocesses=", "--dist="))
                 for a in rest) or "no:xdist" in rest
    return [] if chosen else ["-n", "auto"]


if __name__ == "__main__":
    main(sys.argv[1:])
