"""Run in the JAX side environment: the compiled and the op-by-op path of JAX/optax adapters
over the frozen corpus, outcome by outcome (tests/adapters/test_jax.py, test_optax.py).

usage: python jax_equivalence.py [--stride N] module:Class [module:Class ...]
Prints one JSON object per adapter: name, cases, seconds per path, and every case whose
outcome differs (status, value and gradient bits, dtypes, shapes, warnings, error type and
message, native call: everything the worker sends back but the elapsed time).
"""
from __future__ import annotations

import argparse
import importlib
import json
import time


def outcomes(adapter, cases) -> tuple[list[dict], float]:
    from klconform import wire
    from klconform._worker_remote import evaluate_wire

    start = time.perf_counter()
    # the worker's own wrapper: warnings and exceptions become the outcome as in a run
    out = [evaluate_wire(adapter, case, lambda c: c, wire) for case in cases]
    for w in out:
        w.pop("elapsed_s")
    return out, time.perf_counter() - start


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stride", type=int, default=1, help="every Nth sent case (1: all)")
    ap.add_argument("refs", nargs="+")
    args = ap.parse_args(argv)
    from klconform import frozen, translate

    corpus = frozen.load()
    for ref in args.refs:
        module, name = ref.split(":")
        cls = getattr(importlib.import_module(module), name)
        compiled, eager = cls(), cls()
        eager.compiled = False
        compiled.setup()
        eager.setup()
        cases = [t.case for t in translate.translate_all(corpus, compiled.capabilities())][::args.stride]
        got, compiled_s = outcomes(compiled, cases)
        want, eager_s = outcomes(eager, cases)
        differ = [{"label": c.label, "digest": c.digest, "dtype": c.dtype,
                   "fields": sorted(k for k in w if g[k] != w[k])}
                  for c, g, w in zip(cases, got, want) if g != w]
        print(json.dumps({"name": cls.name, "cases": len(cases), "compiled_s": round(compiled_s, 2),
                          "eager_s": round(eager_s, 2), "signatures": len(compiled._executables),
                          "statuses": sorted({g["status"] for g in got}), "differ": differ}), flush=True)


if __name__ == "__main__":
    main()
