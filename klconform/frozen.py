"""The frozen corpus: the gate's cases, a committed file (format: docs/corpus.md).

    cases = load()              # klconform/data/frozen-corpus.jsonl, validated
    dump(cases, path, made_by="...")

JSON Lines: a header line (``format``, ``version``, ``made_by``, ``cases``, ``digest``),
then one canonical :class:`~klconform.case.Case` per line, fields by name, values as the
shortest decimal that rounds back to the exact ``dtype`` value (non-finite values as
``"nan"``/``"inf"``/``"-inf"``).  Each line records its case digest and the header the
digest of the whole corpus, so :func:`load` proves that it rebuilt the very bytes that
were frozen: every adapter is sent ``Case.to_wire()`` of exactly these cases, whatever
Hypothesis version is installed (this module imports no Hypothesis).
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .case import Case, CaseError
from .reference.dtypes import from_bits, round_to, to_bits

FORMAT = "klconform-corpus"
FORMAT_VERSION = 1
FROZEN_PATH = Path(__file__).resolve().parent / "data" / "frozen-corpus.jsonl"
_CASE_FIELDS = ("digest", "label", "dtype", "target_kind", "pred_kind", "reduction", "class_axis",
                "batch_axis", "weight", "grad", "target", "pred", "sample_weight")
# Written only when set (after the fields above), so every line without them is unchanged:
# the dtype each input is sent in, and the shape the target is sent in (docs/corpus.md).
_OPTIONAL_FIELDS = ("target_dtype", "pred_dtype", "target_sent_shape")


class FrozenCorpusError(ValueError):
    """A corpus file that cannot be used: the message starts with ``file:line``."""


def corpus_digest(cases: Sequence[Case]) -> str:
    """Hash over the case digests, in order (the corpus' identity in results files)."""
    return digests_digest(c.digest for c in cases)


def digests_digest(digests: Iterable[str]) -> str:
    """SHA-256 over case digests, in order, 16 hex digits (also the large corpus' identity)."""
    h = hashlib.sha256()
    for d in digests:
        h.update(d.encode())
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------- values
def _canonical_nan_bits(dtype: str) -> bytes:
    return to_bits(np.array([np.nan]), dtype)


def _number(x: float, dtype: str, nan_bits: bytes) -> float | str:
    """``x`` (exact in ``dtype``) as the shortest decimal that rounds back to it through
    float64 then ``dtype`` (the path :func:`_value` takes), or a string for non-finite
    values (a NaN whose bits in ``dtype`` are not the canonical quiet NaN's keeps them:
    ``"nan:0x7e01"``, so the bytes sent stay the same)."""
    if math.isnan(x):
        bits = to_bits(np.array([x]), dtype)
        return "nan" if bits == nan_bits else "nan:0x" + bits[::-1].hex()
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if dtype != "float64":
        for digits in range(1, 18):
            y = float(f"{x:.{digits}g}")
            if round_to(y, dtype) == x and math.copysign(1, y) == math.copysign(1, x):
                return y
    return x          # float64: repr is already the shortest round trip


def _value(v: Any, dtype: str) -> float:
    if isinstance(v, str):
        if v.startswith("nan:0x"):
            return float(from_bits(bytes.fromhex(v[6:])[::-1], dtype, ())[()])
        if v in ("nan", "inf", "-inf"):
            return float(v)
        raise ValueError(f"unknown value {v!r} (a number, 'nan', 'nan:0x..', 'inf' or '-inf')")
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"value {v!r} is not a number")
    return float(v)


def _array_json(a: np.ndarray, dtype: str) -> dict[str, Any]:
    nan_bits = _canonical_nan_bits(dtype)
    return {"shape": list(a.shape), "values": [_number(float(x), dtype, nan_bits) for x in a.reshape(-1)]}


def _array(d: Any, dtype: str, name: str) -> np.ndarray:
    if not isinstance(d, dict) or set(d) != {"shape", "values"}:
        raise ValueError(f"{name}: expected {{\"shape\": [...], \"values\": [...]}}")
    shape = tuple(d["shape"])
    if not all(isinstance(s, int) and s >= 0 for s in shape) or not isinstance(d["values"], list):
        raise ValueError(f"{name}: bad shape or values")
    flat = np.array([_value(v, dtype) for v in d["values"]], dtype=np.float64)
    if flat.size != math.prod(shape):
        raise ValueError(f"{name}: {flat.size} values for shape {list(shape)}")
    return round_to(flat, dtype).reshape(shape)


# ----------------------------------------------------------------------------- cases
def case_to_line(case: Case) -> str:
    """One case as its canonical, human-reviewable JSON line (no trailing newline)."""
    dt = case.dtype
    tdt, pdt = case.input_dtype("target"), case.input_dtype("pred")
    d = {"digest": case.digest, "label": case.label, "dtype": dt, "target_kind": case.target_kind,
         "pred_kind": case.pred_kind, "reduction": case.reduction, "class_axis": case.class_axis,
         "batch_axis": case.batch_axis,
         "weight": None if case.weight is None else _number(case.weight, "float64", _canonical_nan_bits("float64")),
         "grad": case.grad, "target": _array_json(case.target, tdt), "pred": _array_json(case.pred, pdt),
         "sample_weight": None if case.sample_weight is None else _array_json(case.sample_weight, dt)}
    for name in _OPTIONAL_FIELDS:
        value = getattr(case, name)
        if value is not None:
            d[name] = list(value) if name == "target_sent_shape" else value
    return json.dumps(d, allow_nan=False, separators=(",", ":"))


def case_from_line(text: str) -> Case:
    """The case of one line (ValueError/CaseError naming what is wrong)."""
    d = json.loads(text)
    if not isinstance(d, dict) or not set(_CASE_FIELDS) <= set(d) <= set(_CASE_FIELDS + _OPTIONAL_FIELDS):
        raise ValueError(f"expected exactly the fields {', '.join(_CASE_FIELDS)} "
                         f"(and optionally {', '.join(_OPTIONAL_FIELDS)})")
    dt = d["dtype"]
    tdt, pdt, sent = d.get("target_dtype"), d.get("pred_dtype"), d.get("target_sent_shape")
    for name, value in (("dtype", dt), ("target_dtype", tdt), ("pred_dtype", pdt)):
        if not isinstance(value, str) and not (name != "dtype" and value is None):
            raise ValueError(f"{name}: not a string")
    if sent is not None and not isinstance(sent, list):
        raise ValueError("target_sent_shape: not a list")
    case = Case(target=_array(d["target"], tdt or dt, "target"), pred=_array(d["pred"], pdt or dt, "pred"), dtype=dt,
                target_kind=d["target_kind"], pred_kind=d["pred_kind"], reduction=d["reduction"],
                class_axis=d["class_axis"], batch_axis=d["batch_axis"],
                weight=None if d["weight"] is None else _value(d["weight"], "float64"),
                sample_weight=None if d["sample_weight"] is None else _array(d["sample_weight"], dt, "sample_weight"),
                grad=d["grad"], label=d["label"], target_dtype=tdt, pred_dtype=pdt,
                target_sent_shape=None if sent is None else tuple(sent))
    if case.digest != d["digest"]:
        raise ValueError(f"recorded digest {d['digest']} but the content's digest is {case.digest}")
    return case


def header(cases: Sequence[Case], made_by: str) -> dict[str, Any]:
    return {"format": FORMAT, "version": FORMAT_VERSION, "made_by": made_by, "cases": len(cases),
            "digest": corpus_digest(cases)}


def dumps(cases: Sequence[Case], made_by: str) -> str:
    """The file text for ``cases`` (in the order given; duplicates refused)."""
    if len({c.digest for c in cases}) != len(cases):
        raise ValueError("dumps: duplicate cases (dedupe by digest first)")
    lines = [json.dumps(header(cases, made_by), separators=(",", ":"))] + [case_to_line(c) for c in cases]
    return "\n".join(lines) + "\n"


def dump(cases: Sequence[Case], path: str | Path, *, made_by: str) -> Path:
    """Write ``cases`` to ``path`` in the frozen format (replacing it whole, atomically);
    a symlink is written through to its file, a device node, FIFO or directory refused
    (:func:`klconform.resultsio.output_target`, UnsafeOutput)."""
    from .resultsio import atomic_write_text
    path = Path(path)
    atomic_write_text(path, dumps(cases, made_by))
    return path


def read_header(path: str | Path | None = None) -> dict[str, Any]:
    """The header of a corpus file (validated as :func:`load` does)."""
    from .resultsio import open_input
    path = Path(path) if path is not None else FROZEN_PATH
    try:
        with open_input(path) as f:
            first = f.readline(1 << 16).decode("utf-8")    # a header is one short line
    except (OSError, UnicodeDecodeError) as exc:
        raise FrozenCorpusError(f"{path}: cannot read the corpus ({getattr(exc, 'strerror', None) or exc})") from None
    return _check_header(path, first)


def _check_header(path: Path, first: str) -> dict[str, Any]:
    try:
        head = json.loads(first)
    except (ValueError, RecursionError):
        head = None
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise FrozenCorpusError(f"{path}:1: not a klconform corpus (no {FORMAT!r} header line)")
    if head.get("version") != FORMAT_VERSION:
        raise FrozenCorpusError(f"{path}:1: corpus format version {head.get('version')!r}; "
                                f"this klconform reads version {FORMAT_VERSION}")
    if not isinstance(head.get("cases"), int) or not isinstance(head.get("digest"), str):
        raise FrozenCorpusError(f"{path}:1: header lacks 'cases' or 'digest'")
    return head


def load(path: str | Path | None = None) -> list[Case]:
    """The cases of a corpus file (default :data:`FROZEN_PATH`), in file order, after
    checking the header, every line and both digests; :class:`FrozenCorpusError`
    (``file:line: what``) otherwise."""
    from .resultsio import read_input
    path = Path(path) if path is not None else FROZEN_PATH
    try:
        text = read_input(path).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FrozenCorpusError(f"{path}: cannot read the corpus ({getattr(exc, 'strerror', None) or exc})") from None
    lines = text.splitlines()
    if not lines:
        raise FrozenCorpusError(f"{path}:1: empty file (expected a header line)")
    head = _check_header(path, lines[0])
    cases: list[Case] = []
    seen: set[str] = set()
    for no, line in enumerate(lines[1:], 2):
        if not line.strip():
            raise FrozenCorpusError(f"{path}:{no}: empty line")
        try:
            case = case_from_line(line)
        except (ValueError, CaseError, TypeError, KeyError, RecursionError) as exc:
            raise FrozenCorpusError(f"{path}:{no}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        if case.digest in seen:
            raise FrozenCorpusError(f"{path}:{no}: duplicate case {case.digest}")
        seen.add(case.digest)
        cases.append(case)
    if len(cases) != head["cases"]:
        raise FrozenCorpusError(f"{path}:1: header says {head['cases']} cases, the file has {len(cases)}")
    if corpus_digest(cases) != head["digest"]:
        raise FrozenCorpusError(f"{path}:1: header digest {head['digest']} but the cases' digest is "
                                f"{corpus_digest(cases)}")
    return cases


def merge(base: Sequence[Case], more: Iterable[Case]) -> list[Case]:
    """``base`` in its order, then the cases of ``more`` it lacks (by digest), sorted by
    digest: the same result whatever order ``more`` comes in, and a git diff of appended
    lines."""
    have = {c.digest for c in base}
    new = {c.digest: c for c in more if c.digest not in have}
    return list(base) + [new[d] for d in sorted(new)]
