"""klconform in a user's CI, for real: the wheel ``python -m build`` makes, installed (not
editable) into a fresh venv without system site-packages by the install line of the
project's own workflow (examples/user_project/.github/workflows/klconform.yml, read from
the file: klconform is on no package index, so that line installs the wheel from a path),
with examples/user_project installed beside it, and pytest run there as that workflow runs it.

The wheel and the venv are built once per source state and kept under
$TMPDIR/klconform-packaging/<digest of the sources> (a second session reuses them); the
venv's dependencies are pinned to the versions this interpreter runs, from pip's local
indexes.  Deselect with ``-m "not packaging"``.
"""
from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
import venv
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ROOT / "examples" / "user_project"
WORKFLOW = PROJECT / ".github" / "workflows" / "klconform.yml"
SOURCES = ("pyproject.toml", "README.md", "klconform", "reference", "adapters")
# klconform's dependencies and the plugin's host, at the versions running here
PINNED = ("numpy", "mpmath", "execnet", "hypothesis", "jsonschema", "pytest", "pytest-xdist")
# the small drawn corpus of these runs: every acme record is observed at this size
CORPUS = ("--klconform-seed", "0", "--klconform-cases", "60")
BROKEN = '''
import dataclasses

from acme_kl.klconform_adapter import AcmeKL


class AcmeKLBroken(AcmeKL):
    """A regression: 'sum' 1% high, and gradients dropped (their records no longer observed)."""
    name = "acme.kl_broken"
    known_records = ("acme_kl:known-discrepancies.toml",)   # the package's file, as a resource

    def capabilities(self):
        return dataclasses.replace(super().capabilities(), gradients=frozenset())

    def evaluate(self, case):
        out = super().evaluate(case)
        if out.status == "ok" and case.reduction == "sum":
            out.value = out.value * 1.01
        return out
'''


def _files(top: Path):
    for p in sorted(top.rglob("*")) if top.is_dir() else [top]:
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".nbc", ".nbi"):
            yield p


def workflow_install() -> tuple[str, str]:
    """The user workflow's install step: its ``run`` line, and the ``env`` variable that
    names the klconform wheel it installs (the test points it at the wheel it built)."""
    text = WORKFLOW.read_text()
    step = re.search(r"^\s*- name: Install[^\n]*\n\s+run: (.+)$", text, re.M)
    wheel = re.search(r"^\s+([A-Z_]+): \S+\.whl\s*$", text, re.M)
    assert step and wheel, f"{WORKFLOW}: no install step, or no wheel variable in env"
    return step.group(1).strip(), wheel.group(1)


def _digest() -> str:
    h = hashlib.sha256()
    for name in SOURCES:
        for p in _files(ROOT / name):
            h.update(str(p.relative_to(ROOT)).encode() + b"\0" + p.read_bytes())
    for p in _files(PROJECT):           # installed by the workflow's line: part of the venv
        h.update(str(p.relative_to(ROOT)).encode() + b"\0" + p.read_bytes())
    for name in PINNED:
        h.update(f"{name}=={importlib.metadata.version(name)}".encode())
    return h.hexdigest()[:16]


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    return subprocess.run([str(c) for c in cmd], **kw)


def _checked(cmd, **kw) -> subprocess.CompletedProcess:
    r = _run(cmd, **kw)
    assert r.returncode == 0, f"{cmd}: exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def _venv(path: Path, packages: list[str]) -> Path:
    venv.EnvBuilder(with_pip=True, clear=True, system_site_packages=False).create(path)
    py = path / "bin" / "python"
    _checked([py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *packages])
    return py


@pytest.fixture(scope="session")
def installed() -> dict:
    """{"wheel": path, "python": the user venv's interpreter}, built once per source state."""
    cache = Path(tempfile.gettempdir()) / "klconform-packaging"
    cache.mkdir(exist_ok=True)
    home = cache / _digest()
    with open(cache / "lock", "a") as lock:      # one builder at a time (xdist workers, sessions)
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = home / "done"
        if not done.exists():
            shutil.rmtree(home, ignore_errors=True)
            src = home / "src"
            src.mkdir(parents=True)
            for name in SOURCES:
                s = ROOT / name
                if s.is_dir():   # symlinks kept: klconform/reference -> ../reference, as in the repo
                    shutil.copytree(s, src / name, symlinks=True,
                                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.nbc", "*.nbi"))
                else:
                    shutil.copy2(s, src / name)
            builder = cache / "build-venv" / "bin" / "python"
            if not builder.exists():
                _venv(cache / "build-venv", ["build"])
            _checked([builder, "-m", "build", "--outdir", home / "dist", src])
            (wheel,) = (home / "dist").glob("klconform-*.whl")
            pins = [f"{n}=={importlib.metadata.version(n)}" for n in PINNED]
            _venv(home / "venv", pins)       # klconform's dependencies, at the versions running here
            # then the workflow's own install line, in a copy of the user's repository,
            # with the venv's pip first on PATH and the wheel variable naming the built wheel
            line, variable = workflow_install()
            checkout = home / "user_project"
            shutil.copytree(PROJECT, checkout, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
            env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PIP_REQUIRE"))}
            env.update(PATH=f"{home / 'venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
                       PIP_DISABLE_PIP_VERSION_CHECK="1", **{variable: str(wheel)})
            _checked(["bash", "-e", "-c", line], cwd=checkout, env=env)
            done.write_text(wheel.name)
    return {"wheel": home / "dist" / done.read_text(), "python": home / "venv" / "bin" / "python"}


@pytest.fixture
def project(tmp_path) -> Path:
    """A temporary copy of the user's repository (what CI checks out)."""
    dst = tmp_path / "user_project"
    shutil.copytree(PROJECT, dst, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    return dst


def _pytest(installed, project: Path, *args, env=None) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("KLCONFORM_", "PYTEST_", "PYTHON"))}
    e.update(TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
    return _run([installed["python"], "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=project, env=e)


def test_wheel_holds_only_the_klconform_package_and_its_data(installed):
    names = zipfile.ZipFile(installed["wheel"]).namelist()
    assert {n.split("/")[0] for n in names} == {"klconform", installed["wheel"].name.split("-py3")[0] + ".dist-info"}
    for data in ("klconform/reference/SPEC.md", "klconform/schema/results.schema.json", "klconform/claims.toml",
                 "klconform/known/torch.toml", "klconform/data/frozen-corpus.jsonl", "klconform/pytest_plugin.py"):
        assert data in names, data
    eps = zipfile.ZipFile(installed["wheel"]).read(
        next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert "[pytest11]" in eps and "klconform.pytest_plugin = klconform.pytest_plugin" in eps
    # the console script is the same process entry as `python -m klconform` (its signal edges)
    assert "klconform = klconform.__main__:entry" in eps
    script = installed["python"].parent / "klconform"
    assert "usage: klconform" in _checked([script, "--help"], cwd=tempfile.gettempdir()).stdout
    probe = ("import importlib.util as u, klconform, klconform.reference as r; "
             "print(u.find_spec('reference'), u.find_spec('adapters'), klconform.__file__, r.__file__)")
    out = _checked([installed["python"], "-c", probe], cwd=tempfile.gettempdir()).stdout.split()
    assert out[:2] == ["None", "None"]
    assert "site-packages" in out[2] and "site-packages" in out[3]       # not this checkout


def test_the_workflow_installs_klconform_from_the_wheel_not_from_an_index(installed):
    line, variable = workflow_install()
    # no bare requirement 'klconform' / 'klconform[...]' that pip would look up on an index
    assert not re.search(r"(?<![\w/.${}-])klconform(\[[\w,]*\])?(?![\w.-])", line), line
    assert "${" + variable + "}" in line or "$" + variable in line, line
    probe = "import importlib.metadata as m; print(m.distribution('klconform').read_text('direct_url.json'))"
    where = _checked([installed["python"], "-c", probe], cwd=tempfile.gettempdir()).stdout
    assert installed["wheel"].name in where and '"editable"' not in where, where       # the wheel, as a file
    acme = _checked([installed["python"], "-m", "pip", "show", "acme-kl"], cwd=tempfile.gettempdir()).stdout
    assert "Version: 1.4.0" in acme


def test_an_unrelated_pytest_run_gets_no_klconform_items(installed, project):
    r = _pytest(installed, project, "-q")
    assert r.returncode == 0 and "1 passed" in r.stdout, r.stdout
    assert "klconform" not in r.stdout
    helptext = _pytest(installed, project, "--help").stdout
    assert "--klconform-frameworks" in helptext and "--klconform-baseline" in helptext


def test_the_projects_ci_run_passes_with_its_known_records_as_xfail(installed, project, tmp_path):
    xml = tmp_path / "junit.xml"
    r = _pytest(installed, project, "-n", "2", "--strict-markers", "-rxX", "--klconform-frameworks", "acme.kl",
                *CORPUS, f"--junitxml={xml}")
    assert r.returncode == 0, r.stdout[-4000:]
    assert "klconform adapter acme.kl: acme_kl.loss.kl_loss, acme-kl 1.4.0" in r.stdout
    assert "klconform: seed 0, corpus drawn" in r.stdout
    assert "7 passed, 3 xfailed" in r.stdout      # 6 areas + the project's own test; 3 records
    cases = {c.get("name"): c for c in ET.parse(xml).iter("testcase")}
    assert {"values", "gradients", "known[acme-mean-divides-by-rows]"} <= set(cases)
    rec = cases["known[acme-mean-divides-by-rows]"]
    props = {p.get("name"): p.get("value") for p in rec.iter("property")}
    assert props["klconform_adapter"] == "acme.kl" and props["klconform_record"] == "acme-mean-divides-by-rows"
    assert int(props["klconform_observed"]) > 0 and rec.find("skipped") is not None   # xfail
    # selection by marker and by name
    r = _pytest(installed, project, "--strict-markers", "--klconform-frameworks", "acme.kl", *CORPUS,
                "-m", "kl_acme_kl and kl_area_values", "-q")
    assert r.returncode == 0 and "1 passed" in r.stdout, r.stdout[-2000:]
    r = _pytest(installed, project, "--klconform-frameworks", "acme.kl", *CORPUS, "-k", "acme-mean", "-q")
    assert r.returncode == 0 and "2 xfailed" in r.stdout and "1 passed" not in r.stdout, r.stdout[-2000:]


def test_a_regression_fails_with_its_details(installed, project, tmp_path):
    (project / "acme_kl_broken.py").write_text(BROKEN)
    xml = tmp_path / "junit.xml"
    r = _pytest(installed, project, "-rfxX", "--klconform-adapter", "acme_kl_broken:AcmeKLBroken", *CORPUS,
                f"--junitxml={xml}", env={"PYTHONPATH": str(project)})
    assert r.returncode == 1, r.stdout[-4000:]
    out = r.stdout
    assert "FAILED klconform::acme.kl_broken::values" in out
    assert "NEW " in out and "reproduce: klconform.engine.case_from_blob(" in out
    assert "XPASS(strict)" in out and "known[acme-mean-gradients-by-rows]" in out
    cases = {c.get("name"): c for c in ET.parse(xml).iter("testcase")}
    values = cases["values"]
    props = {p.get("name"): p.get("value") for p in values.iter("property")}
    assert values.find("failure") is not None
    cls = props["klconform_classes"].split()[0]
    assert props[f"klconform_{cls}_clauses"].startswith("KL-") and props[f"klconform_{cls}_blob"]
    assert cases["known[acme-mean-gradients-by-rows]"].find("failure") is not None   # strict XPASS
    assert cases["known[acme-mean-divides-by-rows]"].find("skipped") is not None     # still observed: xfail
