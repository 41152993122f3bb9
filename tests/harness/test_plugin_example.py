"""The worked third-party adapter (examples/inhouse_numpy_kl, docs/adapters.md) through the
real registry and a real worker, without installing it."""
from __future__ import annotations

import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from klconform import reference
from klconform import registry
from klconform.case import Case
from klconform.workers import AdapterWorker

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_DIR = ROOT / "examples" / "inhouse_numpy_kl"
REF = "inhouse_numpy_kl.adapter:NumpyKL"


@pytest.fixture
def example_on_path(monkeypatch):
    """As the docs say: the example directory on PYTHONPATH (the worker inherits it) and,
    for the controller's import, on sys.path."""
    monkeypatch.setenv("PYTHONPATH", str(EXAMPLE_DIR))
    monkeypatch.syspath_prepend(str(EXAMPLE_DIR))


def example_cases() -> list[Case]:
    p = np.array([[0.5, 0.25, 0.25, 0.0], [0.125, 0.125, 0.25, 0.5]])   # a zero: KL-ZERO-1
    q = np.array([[0.25, 0.25, 0.25, 0.25], [0.5, 0.125, 0.125, 0.25]])
    return [Case(target=p, pred=np.log(q), reduction=r, label=r)
            for r in ("none", "sum", "mean", "batchmean", "distribution")]


def test_reference_loads_and_runs_through_a_worker(example_on_path):
    cls = registry.load_adapter_class(REF)
    assert cls.name == "inhouse.numpy_kl"
    cases = example_cases()
    caps = cls().capabilities()
    assert all(c.reduction in caps.reductions for c in cases)
    (spec,) = registry.resolve([], extra_refs=[REF], known={})
    with AdapterWorker(spec, case_timeout=10) as worker:
        env = worker.env
        outcomes = worker.run(cases)
    assert env["framework"] == "inhouse-numpy-kl" and env["version"] == "0.1.0"
    for case, out in zip(cases, outcomes):
        expected = reference.evaluate(case, cls().documented(case))
        assert out.status == "ok", out.error_message
        assert out.shape == expected.shape
        np.testing.assert_allclose(out.value, expected.value, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(out.grads["pred"], expected.grads["pred"], rtol=1e-12, atol=1e-15)


def test_without_the_path_the_reference_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("PYTHONPATH", raising=False)
    for name in [m for m in sys.modules if m.split(".")[0] == "inhouse_numpy_kl"]:
        monkeypatch.delitem(sys.modules, name)     # imported by an earlier test
    monkeypatch.setattr(sys, "path", [p for p in sys.path if Path(p or ".").resolve() != EXAMPLE_DIR])
    with pytest.raises(registry.RegistryError, match="module 'inhouse_numpy_kl.adapter' not found"):
        registry.load_adapter_class(REF)


def test_entry_point_in_the_example_pyproject_is_discovered(example_on_path):
    """What ``pip install -e examples/inhouse_numpy_kl`` registers, fed to the registry's
    entry-point parsing as the EntryPoint objects importlib.metadata would yield."""
    table = tomllib.loads((EXAMPLE_DIR / "pyproject.toml").read_text())["project"]["entry-points"]
    assert list(table) == [registry.ENTRY_POINT_GROUP]
    eps = [importlib.metadata.EntryPoint(name=n, value=v, group=registry.ENTRY_POINT_GROUP)
           for n, v in table[registry.ENTRY_POINT_GROUP].items()]
    known = registry.entry_point_refs(eps)
    assert known == {"inhouse.numpy_kl": REF}
    (spec,) = registry.resolve(["inhouse.numpy_kl"], known=known)
    assert spec.run_id == "inhouse.numpy_kl"
    assert registry.load_adapter_class(spec.adapter_ref).name == spec.run_id


def test_docs_give_the_commands_the_example_supports():
    doc = (ROOT / "docs" / "adapters.md").read_text()
    assert "pip install -e examples/inhouse_numpy_kl" in doc
    assert f"--adapter {REF}" in doc
    for ref in set(re.findall(r"--adapter (\S+:\w+)", doc)) - {"module:Class"}:   # the generic form
        assert ref == REF, f"docs/adapters.md names {ref}, the example provides {REF}"
