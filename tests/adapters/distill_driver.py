"""Runs the distillation adapters on the scenarios of distill_cases.py, in the interpreter
that has the frameworks (the side environment ``distill``), and writes what came back:

    .venvs/distill/bin/python tests/adapters/distill_driver.py OUT_DIR [SCENARIO_ID ...]

OUT_DIR/outcomes.json holds per scenario the status, dtype, shape, error, native call and
environment; OUT_DIR/arrays.npz the value and gradients (keys ``ID__value``, ``ID__pred``,
``ID__target``).  The judging happens in the main interpreter
(tests/adapters/test_distill_adapters.py), against reference.distill.
"""
from __future__ import annotations

import importlib
import json
import os
import sys
import traceback
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(ROOT), str(HERE)]
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

import numpy as np  # noqa: E402

import distill_cases  # noqa: E402
from klconform.adapters.base import DeviceUnavailable  # noqa: E402


def main(argv: list[str]) -> int:
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    wanted = set(argv[1:])
    adapters: dict[str, object] = {}
    envs: dict[str, object] = {}
    meta: dict[str, dict] = {}
    arrays: dict[str, np.ndarray] = {}
    for sid, ref, build in distill_cases.SCENARIOS:
        if wanted and sid not in wanted:
            continue
        if ref not in adapters:
            module, cls = ref.split(":")
            adapter = getattr(importlib.import_module(module), cls)()
            try:
                envs[ref] = adapter.setup()
            except DeviceUnavailable as exc:
                envs[ref] = {"unavailable": str(exc)}
            adapters[ref] = adapter
        if "unavailable" in envs[ref]:
            meta[sid] = {"status": "unavailable", "error_message": envs[ref]["unavailable"]}
            continue
        case = build()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                o = adapters[ref].evaluate_distill(case)
            except Exception as exc:     # noqa: BLE001 - the framework's exception is data
                meta[sid] = {"status": "error", "error_type": type(exc).__name__, "error_message": str(exc),
                             "traceback": traceback.format_exc(limit=3)}
                continue
        meta[sid] = {"status": o.status, "dtype": o.dtype, "shape": list(o.shape or ()),
                     "error_message": o.error_message, "native_call": o.native_call,
                     "grad_dtypes": o.grad_dtypes, "warnings": [str(w.message)[:200] for w in caught],
                     "env": envs[ref]}
        if o.status == "ok":
            arrays[f"{sid}__value"] = np.asarray(o.value, dtype=np.float64)
            for side, g in o.grads.items():
                arrays[f"{sid}__{side}"] = np.asarray(g, dtype=np.float64)
    (out / "outcomes.json").write_text(json.dumps(meta, indent=1, default=str))
    np.savez(out / "arrays.npz", **arrays)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
