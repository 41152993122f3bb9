"""Adapter discovery: references, the entry-point group, side-interpreter variants."""
from __future__ import annotations

import importlib.metadata
import os
import sys
import tomllib
from pathlib import Path

import pytest

from klconform.adapters.base import Adapter
from klconform import registry
from klconform.registry import RegistryError, load_adapter_class, resolve
from klconform.workers import AdapterUnavailable, AdapterWorker, WorkerSpec

from . import misbehaving
from .misbehaving import REF

ROOT = Path(__file__).resolve().parents[2]
KNOWN = {"double.good": REF + "GoodKL", "double.raise": REF + "RaisingKL"}


def pyproject_adapters() -> dict[str, str]:
    """The built-in registrations as written in pyproject.toml (the oracle for discovery)."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return data["project"]["entry-points"][registry.ENTRY_POINT_GROUP]


# ----------------------------------------------------------------------------- references
def test_load_adapter_class_returns_the_adapter_class():
    cls = load_adapter_class(REF + "GoodKL")
    # pytest imports this package as "harness", the ref names "tests.harness": compare by name
    assert (cls.__module__, cls.__qualname__) == ("tests.harness.misbehaving", "GoodKL")
    assert issubclass(cls, Adapter) and cls.name == misbehaving.GoodKL.name


@pytest.mark.parametrize("ref, words", [
    ("tests.harness.misbehaving.GoodKL", "no ':' found"),
    ("tests.harness.misbehaving:", "Python identifiers"),
    ("not a module:X", "Python identifiers"),
    ("klconform_no_such_module.sub:X", "module 'klconform_no_such_module.sub' not found"),
    (REF + "NoSuchClass", "has no attribute 'NoSuchClass'"),
    (REF + "NotAnAdapter", "not a subclass of klconform.adapters.base.Adapter"),
    (REF + "BROKEN_FLAG_ENV", "not a subclass"),
])
def test_bad_references_give_one_line_errors(ref, words):
    with pytest.raises(RegistryError) as info:
        load_adapter_class(ref)
    assert words in str(info.value) and "\n" not in str(info.value)


# ----------------------------------------------------------------------------- entry points
def test_builtin_adapters_are_the_pyproject_registrations():
    found = registry.builtin_adapters()
    for name, ref in pyproject_adapters().items():
        assert found[name] == ref


def test_entry_point_objects_are_parsed_and_malformed_values_named():
    eps = [importlib.metadata.EntryPoint(name="x.good", value=REF + "GoodKL", group=registry.ENTRY_POINT_GROUP)]
    assert registry.entry_point_refs(eps) == {"x.good": REF + "GoodKL"}
    bad = [importlib.metadata.EntryPoint(name="x.bad", value="pkg.module", group=registry.ENTRY_POINT_GROUP)]
    with pytest.raises(RegistryError, match="entry point 'x.bad'.*no ':' found"):
        registry.entry_point_refs(bad)


# ----------------------------------------------------------------------------- resolve
def test_resolve_all_registered_and_selected_names():
    all_specs = resolve(None, known=KNOWN)
    assert [(s.adapter_ref, s.run_id, s.python) for s in all_specs] == [
        (REF + "GoodKL", "double.good", None), (REF + "RaisingKL", "double.raise", None)]
    assert [s.run_id for s in resolve(["double.raise"], known=KNOWN)] == ["double.raise"]


def test_resolve_appends_extra_refs_and_drops_duplicates():
    specs = resolve(["double.good", "double.good"], extra_refs=[REF + "HangingKL"], known=KNOWN)
    assert [s.adapter_ref for s in specs] == [REF + "GoodKL", REF + "HangingKL"]
    assert specs[1].run_id is None          # the adapter's own name is used


def test_resolve_unknown_name_lists_the_registered_ones():
    with pytest.raises(RegistryError, match="unknown adapter 'nope'; registered: double.good, double.raise"):
        resolve(["nope"], known=KNOWN)
    with pytest.raises(RegistryError, match="not found"):
        resolve(None, extra_refs=["klconform_no_such_module:X"], known=KNOWN)


def test_variant_interpreter_from_environment_variable(monkeypatch):
    monkeypatch.setenv("KLCONFORM_PYTHON_SIDE_ENV", sys.executable)
    (spec,) = resolve(["double.good@side-env"], known=KNOWN)
    assert spec == WorkerSpec(REF + "GoodKL", python=os.path.abspath(sys.executable),
                              run_id="double.good@side-env")


def test_variant_interpreter_from_python_option_beats_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("KLCONFORM_PYTHON_SIDE", "/nonexistent/python")
    (spec,) = resolve([], extra_refs=[REF + "GoodKL@side"], known=KNOWN,
                      pythons=[f"side={sys.executable}"])
    assert spec.python == os.path.abspath(sys.executable) and spec.unavailable is None
    assert spec.run_id == "double.good@side"


def test_variant_without_interpreter_is_a_skip_with_reason(monkeypatch):
    monkeypatch.delenv("KLCONFORM_PYTHON_NOWHERE", raising=False)
    (spec,) = resolve(["double.good@nowhere"], known=KNOWN)
    assert spec.unavailable == ("interpreter for @nowhere not configured "
                                "(set KLCONFORM_PYTHON_NOWHERE or pass --python nowhere=PATH)")
    with pytest.raises(AdapterUnavailable) as info:
        AdapterWorker(spec).start()
    assert info.value.status == "missing"
    (spec,) = resolve(["double.good@gone"], known=KNOWN, pythons={"gone": "/nonexistent/bin/python"})
    assert spec.unavailable == "interpreter for @gone not found: /nonexistent/bin/python"


@pytest.mark.parametrize("opt", ["side", "=path", "side="])
def test_bad_python_option(opt):
    with pytest.raises(RegistryError, match="expected ENV=PATH"):
        registry.parse_python_options([opt])


def test_empty_environment_name_is_an_error():
    with pytest.raises(RegistryError, match="environment name is empty"):
        resolve(["double.good@"], known=KNOWN)


def test_every_registered_builtin_names_an_adapter_when_its_module_exists():
    # modules still being written are skipped; present ones must load as Adapter classes
    for name, ref in pyproject_adapters().items():
        module = ref.partition(":")[0]
        if not (ROOT / (module.replace(".", "/") + ".py")).exists():
            continue
        cls = load_adapter_class(ref)
        assert issubclass(cls, Adapter) and cls.name == name
