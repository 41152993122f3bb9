"""The large family's costs, one adapter per child process, figures as ratios within one run:

* **raw**: the framework's own call on tensors built beforehand (what a user's training
  step pays), via the adapter's ``raw_call`` hook below (torch and Keras);
* **direct**: ``adapter.evaluate(case)`` in-process (builds the tensors from the case's
  float64 arrays, converts the result back);
* **harness**: the same case through an :class:`klconform.workers.AdapterWorker` (wire
  encoding, execnet round trip, decoding), per case, the case already generated;
* **reference**: ``reference.evaluate`` of the case at the canonical point (controller side);
* **generate**: :func:`klconform.large.generate` (the recipe to the digest-checked case).

Best of ``--repeats`` each (the machine is shared).  Defaults: 64×131072 float32,
probabilities against log-probabilities, batchmean.

    .venv/bin/python benchmarks/bench_large.py [--adapters torch.kl_div,keras.KLDivergence] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def raw_call(adapter, case):
    """A zero-argument callable running the framework's call on prebuilt inputs."""
    name = adapter.name
    if name.startswith("torch."):
        import torch
        x = torch.tensor(case.pred, dtype=getattr(torch, case.dtype))
        y = torch.tensor(case.target, dtype=getattr(torch, case.dtype))
        return lambda: float(torch.nn.functional.kl_div(x, y, reduction=case.reduction))
    if name.startswith("keras."):
        import keras
        import numpy as np
        import tensorflow as tf
        y = tf.constant(case.target.astype(np.float32))
        p = tf.constant(np.exp(case.pred).astype(np.float32)) if case.pred_kind == "logprob" else \
            tf.constant(case.pred.astype(np.float32))
        loss = keras.losses.KLDivergence(reduction="sum_over_batch_size")
        return lambda: float(loss(y, p))
    if name.startswith("scipy."):
        import numpy as np
        from scipy import stats
        return lambda: float(np.sum(stats.entropy(case.target.T, case.pred.T)))
    return None


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def measure(name: str, recipe_json: dict, repeats: int) -> dict:
    from klconform import large
    from klconform.reference.evaluate import evaluate
    from klconform.reference.family import canonical
    from klconform.registry import builtin_adapters, load_adapter
    from klconform.workers import AdapterWorker, WorkerSpec

    recipe = large.Recipe.from_json(recipe_json)
    gen = best(lambda: large.generate(recipe), 1)
    case = large.generate(recipe)
    ref = builtin_adapters()[name]
    adapter = load_adapter(ref)
    adapter.setup()
    out = {"adapter": name, "case": recipe.label, "generate_s": gen}
    raw = raw_call(adapter, case)
    out["raw_s"] = best(raw, repeats) if raw else None
    out["direct_s"] = best(lambda: adapter.evaluate(case), repeats)
    with AdapterWorker(WorkerSpec(ref), batch_size=1, case_timeout=120) as worker:
        worker.run([case])       # warm-up (first call: framework kernels, allocations)
        out["harness_s"] = best(lambda: worker.run([case]), repeats)
    out["reference_s"] = best(lambda: evaluate(case, canonical(case)), repeats)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--adapters", default="torch.kl_div,keras.KLDivergence,scipy.entropy")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--classes", type=int, default=131072)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        name, recipe = json.loads(args.child)
        print(json.dumps(measure(name, recipe, args.repeats)))
        return 0
    from klconform.large import Recipe
    from klconform.registry import builtin_adapters, load_adapter
    rows = []
    for name in args.adapters.split(","):
        caps = load_adapter(builtin_adapters()[name]).capabilities()
        pred = "logprob" if "logprob" in caps.pred_kinds else "prob"
        reduction = next(r for r in ("batchmean", "distribution_mean", "mean", "sum", "distribution")
                         if r in caps.reductions)
        recipe = Recipe(seed=1, batch=args.batch, classes=args.classes, dtype=args.dtype, pred_kind=pred,
                        reduction=reduction).to_json()
        proc = subprocess.run([sys.executable, __file__, "--repeats", str(args.repeats),
                               "--child", json.dumps([name, recipe])], capture_output=True, text=True)
        if proc.returncode:
            print(f"{name}: failed: {proc.stderr.strip().splitlines()[-1:]}")
            continue
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"{'adapter':22} {'case':52} {'raw':>8} {'direct':>8} {'harness':>8} {'h/raw':>6} {'h/dir':>6} "
          f"{'ref':>8} {'ref/raw':>7} {'gen':>6}   (seconds, best of {args.repeats})")
    for r in rows:
        raw = r["raw_s"]
        print(f"{r['adapter']:22} {r['case']:52} {raw or float('nan'):8.3f} {r['direct_s']:8.3f} {r['harness_s']:8.3f} "
              f"{(r['harness_s'] / raw) if raw else float('nan'):6.2f} {r['harness_s'] / r['direct_s']:6.2f} "
              f"{r['reference_s']:8.3f} {(r['reference_s'] / raw) if raw else float('nan'):7.1f} {r['generate_s']:6.2f}")
    slowest = max((r["raw_s"] or r["direct_s"]) for r in rows) if rows else None
    if slowest:
        print(f"slowest framework call {slowest:.3f} s; reference {rows[0]['reference_s']:.3f} s "
              f"({rows[0]['reference_s'] / slowest:.1f}x the slowest)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
