"""The results file: reading and writing results.json (atomic writes, schema validation,
one-line errors).  The model it stores is :mod:`klconform.results`, kept apart so that the
verdicts and the reports import plain dataclasses without file or jsonschema code.

    write_results(result, path)      # validate against the schema, write atomically
    result = read_results(path)      # ResultsError (one line) when unreadable or invalid
    atomic_write_text(path, text)    # temp file in the same directory + os.replace

The document is ``RunResult.to_json()`` serialised with sorted keys and no NaN literals
(non-finite floats outside arrays become the strings "nan", "inf", "-inf"), so the same
run always produces the same bytes apart from the fields in
:data:`klconform.results.TIMING_FIELDS`.  Schema: klconform/schema/results.schema.json.
"""
from __future__ import annotations

import functools
import math
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .results import TIMING_FIELDS, RunResult
from .wire import NONFINITE, json_float

SCHEMA_PATH = Path(__file__).resolve().parent / "schema" / "results.schema.json"


class ResultsError(ValueError):
    """A results file that cannot be read, parsed or validated; the message is one line
    naming the file and the problem."""


@functools.lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The JSON Schema of results.json."""
    return json.loads(SCHEMA_PATH.read_text())


def _plain(x: Any) -> Any:
    """``x`` with tuples as lists, numpy scalars as Python numbers and non-finite floats as
    strings: a structure ``json.dumps(allow_nan=False)`` accepts."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return x
    if isinstance(x, int):
        return int(x)
    if hasattr(x, "item") and not isinstance(x, (bytes, bytearray)):   # numpy scalar
        return _plain(x.item())
    if isinstance(x, float):
        return json_float(x)
    return x


def to_document(result: RunResult) -> dict[str, Any]:
    """The JSON document of ``result`` (plain types only)."""
    return _plain(result.to_json())


def dumps(doc: dict[str, Any]) -> str:
    """Canonical serialisation: sorted keys, compact, no NaN literals, trailing newline."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False, ensure_ascii=False) + "\n"


def validate(doc: Any, *, where: str = "results") -> None:
    """Raise :class:`ResultsError` unless ``doc`` conforms to the results schema."""
    import jsonschema
    validator = jsonschema.Draft202012Validator(schema())
    err = next(iter(sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))), None)
    if err is not None:
        path = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        msg = err.message if len(err.message) <= 160 else err.message[:157] + "..."
        raise ResultsError(f"{where}: does not match the results schema at {path}: {msg}")
    _check_arrays(doc, where)




def _bad_item(data: list) -> Any:
    for x in data:
        if isinstance(x, bool) or not (isinstance(x, (int, float)) or x in NONFINITE):
            return x
    return None


def _check_arrays(doc: dict[str, Any], where: str) -> None:
    """The array items the schema leaves to code (#/$defs/float): numbers or nan/inf/-inf,
    as many as the shape says."""
    for i, run in enumerate(doc.get("runs", [])):
        for digest, o in run.get("outcomes", {}).items():
            for name, slot in [("value", o.get("value")), *(("grads/" + k, v) for k, v in o.get("grads", {}).items())]:
                if slot is None:
                    continue
                n = math.prod(slot["shape"])
                bad = _bad_item(slot["data"])
                if len(slot["data"]) != n or bad is not None:
                    what = f"{len(slot['data'])} items for shape {slot['shape']}" if bad is None else f"item {bad!r}"
                    raise ResultsError(f"{where}: does not match the results schema at runs/{i}/outcomes/{digest}/"
                                       f"{name}/data: {what}")


def _file_mode() -> int:
    """0666 less the process umask (what ``open(path, "w")`` would give)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never a
    part: a temp file in the same directory, flushed and fsync'd, then ``os.replace``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _file_mode())   # mkstemp makes 0600; reports are ordinary files
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_results(result: RunResult, path: str | os.PathLike, *, check: bool = True) -> dict[str, Any]:
    """Validate ``result`` against the schema (unless ``check`` is False: progress snapshots)
    and write it atomically; returns the document."""
    doc = to_document(result)
    if check:
        validate(doc, where=f"results for {path}")
    atomic_write_text(path, dumps(doc))
    return doc


def load_document(path: str | os.PathLike) -> dict[str, Any]:
    """The parsed and schema-validated document at ``path``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultsError(f"{p}: no such results file") from None
    except IsADirectoryError:
        raise ResultsError(f"{p}: is a directory, not a results file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{p}: cannot read results file ({type(exc).__name__}: {exc})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{p}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if not isinstance(doc, dict):
        raise ResultsError(f"{p}: not a results file (top level is {type(doc).__name__}, expected an object)")
    version = doc.get("schema_version")
    expected = schema()["properties"]["schema_version"]["const"]
    if version != expected:
        raise ResultsError(f"{p}: schema_version {version!r} is not supported (this klconform reads {expected})")
    validate(doc, where=str(p))
    return doc


def read_results(path: str | os.PathLike) -> RunResult:
    """The :class:`RunResult` stored at ``path`` (raises :class:`ResultsError`)."""
    doc = load_document(path)
    try:
        return RunResult.from_json(doc)
    except (TypeError, ValueError, KeyError) as exc:
        raise ResultsError(f"{path}: results do not load ({type(exc).__name__}: {exc})") from None


def strip_timing(doc: Any, fields=TIMING_FIELDS) -> Any:
    """A copy of ``doc`` without the timing fields (for determinism comparisons)."""
    import copy
    doc = copy.deepcopy(doc)
    for dotted in fields:
        _drop(doc, dotted.split("."))
    return doc


def _drop(node: Any, parts: list[str]) -> None:
    head, rest = parts[0], parts[1:]
    if head == "*":
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
        for child in list(children):
            if rest:
                _drop(child, rest)
        return
    if not isinstance(node, dict) or head not in node:
        return
    if rest:
        _drop(node[head], rest)
    else:
        del node[head]
