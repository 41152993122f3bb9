"""JAX/optax adapters on the frozen corpus: the compiled path (one executable per signature,
``_Jax.compiled = True``, the default) against the op-by-op path (``jax.vjp`` traced per
case, ``compiled = False``) -- wall seconds and peak resident memory, one fresh side-
environment process per adapter and path, the two paths of an adapter back to back.

    .venv/bin/python benchmarks/bench_jax.py                          # all six
    .venv/bin/python benchmarks/bench_jax.py --adapters jax.rel_entr --stride 4

Needs the side environment ``jax`` (``python3 bootstrap.py env jax``; KLCONFORM_PYTHON_JAX
names another interpreter).  "setup" is the framework import (paid once per run); "cases"
is evaluate over every sent case, through the worker's own wrapper (warnings, errors).
Figures: docs/frameworks/jax.md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ADAPTERS = {
    "jax.rel_entr": "klconform.adapters.jax_special:JaxRelEntr",
    "jax.kl_div": "klconform.adapters.jax_special:JaxKLDiv",
    "optax.kl_divergence": "klconform.adapters.optax_losses:OptaxKLDivergence",
    "optax.kl_divergence_with_log_targets": "klconform.adapters.optax_losses:OptaxKLDivergenceLogTargets",
    "optax.generalized_kl_divergence": "klconform.adapters.optax_losses:OptaxGeneralizedKLDivergence",
    "optax.convex_kl_divergence": "klconform.adapters.optax_losses:OptaxConvexKLDivergence",
}

CHILD = r"""
import importlib, json, resource, sys, time
from klconform import frozen, translate, wire
from klconform._worker_remote import evaluate_wire
ref, compiled, stride = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3])
module, name = ref.split(":")
adapter = getattr(importlib.import_module(module), name)()
adapter.compiled = compiled
cases = [t.case for t in translate.translate_all(frozen.load(), adapter.capabilities())][::stride]
t0 = time.perf_counter()
adapter.setup()
t1 = time.perf_counter()
for case in cases:
    evaluate_wire(adapter, case, lambda c: c, wire)
t2 = time.perf_counter()
print(json.dumps({"cases": len(cases), "setup_s": t1 - t0, "cases_s": t2 - t1,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(python: str, ref: str, compiled: bool, stride: int) -> dict:
    from klconform.workers import package_path_dir
    env = dict(os.environ, PYTHONPATH=package_path_dir(), JAX_PLATFORMS="cpu")
    out = subprocess.run([python, "-c", CHILD, ref, "1" if compiled else "0", str(stride)],
                         capture_output=True, text=True, env=env, cwd="/")
    if out.returncode != 0:
        raise SystemExit(f"{ref}: the child failed: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--adapters", default=",".join(ADAPTERS), help="comma-separated names (default: all six)")
    ap.add_argument("--stride", type=int, default=1, help="every Nth sent case (default 1: the whole corpus)")
    ap.add_argument("--python", default=os.environ.get("KLCONFORM_PYTHON_JAX", str(ROOT / ".venvs/jax/bin/python")))
    args = ap.parse_args(argv)
    names = [n for n in args.adapters.split(",") if n]
    unknown = [n for n in names if n not in ADAPTERS]
    if unknown:
        print(f"bench_jax: unknown adapter(s) {', '.join(unknown)} (known: {', '.join(ADAPTERS)})", file=sys.stderr)
        return 2
    if not os.path.exists(args.python):
        print(f"bench_jax: no JAX side interpreter at {args.python} (python3 bootstrap.py env jax)", file=sys.stderr)
        return 3
    print(f"{'adapter':38} {'cases':>5} {'eager s':>8} {'compiled s':>10} {'speed-up':>8} "
          f"{'eager MB':>8} {'compiled MB':>11} {'setup s':>7}")
    for name in names:
        eager = measure(args.python, ADAPTERS[name], False, args.stride)
        fast = measure(args.python, ADAPTERS[name], True, args.stride)
        print(f"{name:38} {fast['cases']:5d} {eager['cases_s']:8.1f} {fast['cases_s']:10.1f} "
              f"{eager['cases_s'] / fast['cases_s']:7.1f}x {eager['peak_rss_mb']:8.0f} "
              f"{fast['peak_rss_mb']:11.0f} {fast['setup_s']:7.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
