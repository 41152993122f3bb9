"""Which adapters exist and how to reach them.

Three sources, all producing :class:`klconform.workers.WorkerSpec` objects:

* the entry-point group ``klconform.adapters`` (:data:`ENTRY_POINT_GROUP`): built-in
  adapters are registered in pyproject.toml, and any installed package may add its own
  (``name = "module:Class"``);
* ``--adapter module:Class`` references (command line and pytest), importable from
  ``sys.path`` / ``PYTHONPATH`` -- no installation needed;
* side-interpreter variants ``NAME@ENV``: adapter ``NAME`` (a registered name or a
  ``module:Class`` ref) in a worker under the interpreter given by ``--python ENV=PATH``
  or the environment variable ``KLCONFORM_PYTHON_<ENV upper-cased>`` (e.g.
  ``mxnet.KLDivLoss@mxnet180`` with ``KLCONFORM_PYTHON_MXNET180=.venvs/mxnet180/bin/python``).
  A variant whose interpreter is not configured or not present is a skip with its
  reason, not an error.
"""
from __future__ import annotations

import importlib.metadata
import os
import re
from typing import Iterable, Mapping

from klconform.adapters.base import Adapter, Capabilities

from ._worker_remote import import_class
from .workers import WorkerSpec, is_gateway_spec

ENTRY_POINT_GROUP = "klconform.adapters"
PYTHON_ENV_PREFIX = "KLCONFORM_PYTHON_"
_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class RegistryError(ValueError):
    """A bad adapter name or reference; the message is one line naming the problem."""


# ----------------------------------------------------------------------------- references
def check_ref(ref: str) -> str:
    """``ref`` if it is syntactically ``module:Class``; RegistryError otherwise."""
    if not isinstance(ref, str) or ":" not in ref:
        raise RegistryError(f"adapter reference {ref!r}: expected 'module:Class' (no ':' found)")
    if not _REF.match(ref):
        raise RegistryError(f"adapter reference {ref!r}: expected 'module:Class' with Python identifiers")
    return ref


def load_adapter_class(ref: str) -> type[Adapter]:
    """The Adapter subclass named by ``"module:Class"``, imported in this process.

    The import itself is the worker's loader (:func:`klconform._worker_remote.import_class`,
    one implementation for both sides); this adds the checks and one-line errors.
    Importing an adapter module never imports its framework (adapters/base.py), so this is
    cheap and safe in the controller."""
    module_name, _, class_name = check_ref(ref).partition(":")
    try:
        cls = import_class(ref)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise RegistryError(f"adapter reference {ref!r}: module {module_name!r} not found "
                                f"(is it installed or on PYTHONPATH?)") from None
        raise RegistryError(f"adapter reference {ref!r}: importing {module_name!r} failed: {exc}") from None
    except AttributeError as exc:
        if exc.name == class_name and getattr(exc.obj, "__name__", None) == module_name:
            raise RegistryError(f"adapter reference {ref!r}: module {module_name!r} has no attribute "
                                f"{class_name!r}") from None
        raise RegistryError(f"adapter reference {ref!r}: importing {module_name!r} failed: "
                            f"AttributeError: {exc}") from None
    except BaseException as exc:  # noqa: BLE001 - any import failure (SystemExit too) is a bad reference
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise RegistryError(f"adapter reference {ref!r}: importing {module_name!r} failed: "
                            f"{type(exc).__name__}: {_first_line(exc)}") from None
    if not (isinstance(cls, type) and issubclass(cls, Adapter)):
        raise RegistryError(f"adapter reference {ref!r}: {class_name!r} is not a subclass of "
                            f"klconform.adapters.base.Adapter")
    return cls


def load_adapter(ref: str) -> Adapter:
    """A controller-side instance of ``"module:Class"`` that can describe itself: it is
    constructed without arguments and its ``capabilities()`` returns Capabilities (the
    controller needs both before any worker starts).  RegistryError (one line) otherwise,
    e.g. for the abstract ``klconform.adapters.base:Adapter``."""
    cls = load_adapter_class(ref)
    try:
        adapter = cls()
    except Exception as exc:  # noqa: BLE001 - an adapter's constructor is third-party code
        raise RegistryError(f"adapter {ref!r}: cannot be constructed without arguments "
                            f"({type(exc).__name__}: {_first_line(exc)})") from None
    try:
        caps = adapter.capabilities()
    except Exception as exc:  # noqa: BLE001
        raise AdapterFailed(f"adapter {ref!r}: capabilities() failed "
                            f"({type(exc).__name__}: {_first_line(exc)})") from None
    if not isinstance(caps, Capabilities):
        raise AdapterFailed(f"adapter {ref!r}: capabilities() returned {type(caps).__name__}, not Capabilities")
    return adapter


class AdapterFailed(RegistryError):
    """An adapter that loads but fails in an interface method (``capabilities()``): its
    own bug, which costs that adapter's run (status ``error``), not the command."""


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else "(no message)"


# ----------------------------------------------------------------------------- entry points
def entry_point_refs(entry_points: Iterable) -> dict[str, str]:
    """``{name: "module:Class"}`` from entry-point objects (anything with ``.name`` and
    ``.value``); a malformed value is a RegistryError naming the entry point."""
    refs: dict[str, str] = {}
    for ep in entry_points:
        try:
            refs[ep.name] = check_ref(ep.value.strip())
        except RegistryError as exc:
            raise RegistryError(f"entry point {ep.name!r} in group {ENTRY_POINT_GROUP!r}: {exc}") from None
    return refs


def builtin_adapters() -> dict[str, str]:
    """Registered adapters: ``{name: "module:Class"}`` from the ``klconform.adapters``
    entry-point group of every installed distribution (klconform's own included)."""
    return dict(sorted(entry_point_refs(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)).items()))


# ----------------------------------------------------------------------------- interpreters
def parse_python_options(options: Iterable[str]) -> dict[str, str]:
    """``["mxnet180=/path/python", ...]`` (``--python ENV=PATH``) as ``{env: path}``."""
    mapping: dict[str, str] = {}
    for opt in options:
        env, sep, path = opt.partition("=")
        if not sep or not env.strip() or not path.strip():
            raise RegistryError(f"--python {opt!r}: expected ENV=PATH")
        mapping[env.strip()] = path.strip()
    return mapping


def interpreter_for(env: str, pythons: Mapping[str, str] | None = None) -> tuple[str | None, str | None]:
    """``(path, None)`` for side environment ``env``, or ``(None, reason)`` when it is not
    configured or the interpreter is not there."""
    variable = PYTHON_ENV_PREFIX + re.sub(r"\W", "_", env).upper()
    path = (pythons or {}).get(env) or os.environ.get(variable)
    if not path:
        return None, f"interpreter for @{env} not configured (set {variable} or pass --python {env}=PATH)"
    if is_gateway_spec(path):
        return path, None     # an execnet gateway spec (ssh=host//python=...): checked when it starts
    path = os.path.expanduser(path)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        return None, f"interpreter for @{env} not found: {path}"
    return os.path.abspath(path), None


# ----------------------------------------------------------------------------- resolve
def _base_ref(name: str, known: Mapping[str, str]) -> str:
    if name in known:
        return known[name]
    if ":" in name:
        load_adapter_class(name)    # a clear error now rather than in a worker
        return name
    raise RegistryError(f"unknown adapter {name!r}; registered: {', '.join(known) or '(none)'}; "
                        f"or give a 'module:Class' reference")


def spec_for(name: str, known: Mapping[str, str], pythons: Mapping[str, str] | None = None) -> WorkerSpec:
    """The WorkerSpec of one adapter name, ``module:Class`` reference, or ``X@ENV`` variant."""
    base, at, env = name.partition("@")
    if at and not env:
        raise RegistryError(f"adapter {name!r}: expected NAME@ENV, the environment name is empty")
    ref = _base_ref(base, known)
    if not at:
        return WorkerSpec(ref, run_id=base if base in known else None)
    python, why = interpreter_for(env, pythons)
    return WorkerSpec(ref, python=python, run_id=f"{_run_name(base, ref)}@{env}", unavailable=why)


def _run_name(base: str, ref: str) -> str:
    if ":" not in base:
        return base
    return getattr(load_adapter_class(ref), "name", "") or base


def resolve(names: Iterable[str] | None, extra_refs: Iterable[str] = (), *,
            pythons: Mapping[str, str] | Iterable[str] | None = None,
            known: Mapping[str, str] | None = None) -> list[WorkerSpec]:
    """WorkerSpecs to run.

    ``names``: registered names, ``module:Class`` refs or ``X@ENV`` variants; None means
    every registered adapter.  ``extra_refs``: ``--adapter`` values (``module:Class`` or
    ``module:Class@ENV``), appended.  ``pythons``: ``{env: path}`` or ``["env=path", ...]``
    (``--python``).  ``known`` replaces the entry-point lookup (tests).  Duplicates
    (same run id) are dropped, first one kept.
    """
    known = builtin_adapters() if known is None else dict(known)
    if pythons is not None and not isinstance(pythons, Mapping):
        pythons = parse_python_options(pythons)
    wanted = list(known) if names is None else [n.strip() for n in names if n.strip()]
    specs: list[WorkerSpec] = []
    seen: set[str] = set()
    for name in [*wanted, *extra_refs]:
        spec = spec_for(name, known, pythons)
        key = spec.run_id or spec.adapter_ref
        if key not in seen:
            seen.add(key)
            specs.append(spec)
    return specs
