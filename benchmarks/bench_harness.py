"""Per-case cost through the harness vs the adapter's evaluate called directly.

For each adapter, in one child process per adapter (frameworks must not share a process):

* **direct**: ``adapter.setup()`` then ``adapter.evaluate(case)`` in a loop, in that process;
* **harness**: the same cases through an :class:`klconform.workers.AdapterWorker`
  (``Case.to_wire`` -> one pickled execnet message per batch -> decode -> evaluate ->
  ``Outcome.to_wire`` -> pickled back -> ``Outcome.from_wire``), batches of ``--batch``
  cases, called once per batch (as klconform.engine does today: columns "harness");
  and once for all cases ("1-run": the controller encodes the next batch while the worker computes one).

The two are measured alternately ``--repeats`` times in the same run; the best time of
each is reported (the machine is shared: the minimum is the least-disturbed estimate) with
the ratio harness/direct; also CPU time per case (direct: this process; harness: this
process + the worker, from /proc), which other load on the machine does not inflate.  Worker start-up (framework import) is excluded: it is paid once
per run, not per case.

    .venv/bin/python benchmarks/bench_harness.py                    # every registered adapter + example
    .venv/bin/python benchmarks/bench_harness.py --adapters torch.kl_div --cases 1024 --shape 8,10
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_DIR = ROOT / "examples" / "inhouse_numpy_kl"
EXAMPLE_REF = "inhouse_numpy_kl.adapter:NumpyKL"
sys.path[:0] = [str(ROOT), str(EXAMPLE_DIR)]

REDUCTION_PREFERENCE = ("batchmean", "sample_mean", "distribution_mean", "sum", "mean", "distribution", "none")
PRED_PREFERENCE = ("logprob", "prob", "logits")


def make_cases(adapter, n: int, shape: tuple[int, ...], dtype: str, seed: int = 0) -> list:
    """``n`` random valid cases the adapter declares it can take (one reduction/encoding)."""
    import numpy as np

    from klconform.case import Case
    from klconform.reference.dtypes import round_to

    caps = adapter.capabilities()
    reduction = next(r for r in REDUCTION_PREFERENCE if r in caps.reductions)
    pred_kind = next(k for k in PRED_PREFERENCE if k in caps.pred_kinds)
    dtype = dtype if dtype in caps.dtypes else sorted(caps.dtypes)[-1]
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        p = round_to(rng.dirichlet(np.ones(shape[-1]), size=shape[:-1]), dtype)
        q = rng.dirichlet(np.ones(shape[-1]), size=shape[:-1])
        pred = {"prob": q, "logprob": np.log(q), "logits": rng.normal(size=shape)}[pred_kind]
        cases.append(Case(target=p, pred=round_to(pred, dtype), dtype=dtype, pred_kind=pred_kind,
                          reduction=reduction, grad=bool(caps.gradients), label=f"bench{i}"))
    return cases


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux /proc; 0.0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_one(ref: str, n: int, shape: tuple[int, ...], dtype: str, batch: int, repeats: int) -> dict:
    """Both measurements for one adapter, in this process (run in a child per adapter)."""
    from klconform.registry import load_adapter
    from klconform.workers import AdapterWorker, WorkerSpec

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy
    if "bool" not in numpy.__dict__:
        numpy.bool = bool                     # MXNet 1.x, as in the worker
    adapter = load_adapter(ref)
    cases = make_cases(adapter, n, shape, dtype)
    env = adapter.setup()
    worker = AdapterWorker(WorkerSpec(ref), batch_size=batch)
    worker.start()
    direct_s, harness_s, direct_cpu, harness_cpu, single_s = [], [], [], [], []
    statuses_direct, statuses_harness = set(), set()
    try:
        for c in cases[: min(16, n)]:        # warm-up both paths (lazy kernels, caches)
            adapter.evaluate(c)
        worker.run(cases[: min(16, n)])
        for _ in range(repeats):
            t, cpu = time.perf_counter(), time.process_time()
            out = [adapter.evaluate(c) for c in cases]
            direct_s.append(time.perf_counter() - t)
            direct_cpu.append(time.process_time() - cpu)
            statuses_direct |= {o.status for o in out}
            t, cpu, wcpu = time.perf_counter(), time.process_time(), process_cpu_s(worker.pid)
            out = []
            for i in range(0, n, batch):      # as the engine calls it: one run() per batch
                out += worker.run(cases[i:i + batch])
            harness_s.append(time.perf_counter() - t)
            harness_cpu.append(time.process_time() - cpu + process_cpu_s(worker.pid) - wcpu)
            statuses_harness |= {o.status for o in out}
            t = time.perf_counter()
            out = worker.run(cases)           # one run() for all: next batch encoded while one runs
            single_s.append(time.perf_counter() - t)
            statuses_harness |= {o.status for o in out}
        restarts = worker.restarts
    finally:
        worker.close()
    c0 = cases[0]
    return {
        "adapter": adapter.name, "ref": ref, "framework": env.get("framework"), "version": str(env.get("version")),
        "cases": n, "batch": batch, "case": f"{c0.dtype} {list(c0.shape)} {c0.pred_kind} {c0.reduction} "
                                            f"grad={c0.grad}",
        "direct_us": 1e6 * min(direct_s) / n, "harness_us": 1e6 * min(harness_s) / n,
        "ratio": min(harness_s) / min(direct_s),
        "harness_single_run_us": 1e6 * min(single_s) / n, "single_run_ratio": min(single_s) / min(direct_s),
        # CPU seconds (controller + worker) per case: insensitive to other load on the machine
        "direct_cpu_us": 1e6 * min(direct_cpu) / n, "harness_cpu_us": 1e6 * min(harness_cpu) / n,
        "cpu_ratio": min(harness_cpu) / min(direct_cpu), "restarts": restarts,
        "statuses": sorted(statuses_direct | statuses_harness),
        "repeats": repeats,
    }


def default_refs() -> list[str]:
    from klconform.registry import builtin_adapters
    return [*builtin_adapters().values(), EXAMPLE_REF]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--adapters", default=None,
                    help="comma-separated registered names or module:Class refs (default: all + example)")
    ap.add_argument("--cases", type=int, default=512)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--shape", default="8,10", help="case shape, class axis last (default 8,10)")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)   # child mode: one adapter ref
    args = ap.parse_args(argv)
    shape = tuple(int(x) for x in args.shape.split(","))
    if args.one:
        print(json.dumps(measure_one(args.one, args.cases, shape, args.dtype, args.batch, args.repeats)))
        return 0
    from klconform.registry import builtin_adapters
    known = builtin_adapters()
    refs = default_refs() if not args.adapters else [known.get(a, a) for a in args.adapters.split(",")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(EXAMPLE_DIR), os.environ.get("PYTHONPATH")])))
    results = []
    print(f"{'adapter':22} {'framework':22} {'direct':>8} {'harness':>8} {'ratio':>6} "
          f"{'cpu dir':>8} {'cpu har':>8} {'cpu r':>6} {'1-run':>8} {'ratio':>6}  case   (us per case; best of {args.repeats})")
    for ref in refs:
        cmd = [sys.executable, __file__, "--one", ref, "--cases", str(args.cases), "--batch", str(args.batch),
               "--repeats", str(args.repeats), "--shape", args.shape, "--dtype", args.dtype]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["?"])[-1]
            print(f"{ref:24} skipped: {last}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(r)
        print(f"{r['adapter']:22} {r['framework'] + ' ' + r['version']:22} {r['direct_us']:8.1f} "
              f"{r['harness_us']:8.1f} {r['ratio']:6.2f} {r['direct_cpu_us']:8.1f} {r['harness_cpu_us']:8.1f} "
              f"{r['cpu_ratio']:6.2f} {r['harness_single_run_us']:8.1f} {r['single_run_ratio']:6.2f}  {r['case']} statuses={','.join(r['statuses'])}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
