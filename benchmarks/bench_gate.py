"""What the gate costs: framework time against klconform's own time, per adapter.

Runs ``python -m klconform run`` (the main job) once, as users run it, and reads its
results.json.  Per adapter run it prints:

* **framework**: the sum of the worker's per-case times (decode + ``adapter.evaluate`` +
  packaging, ``outcomes.*.elapsed_s``): what the framework calls cost;
* **run**: the adapter's wall time in the controller (``runs[].elapsed_s``: sending,
  waiting, judging, shrinking counterexamples), and **klconform/framework**, the ratio;

then the run's wall time, the CPU time of the whole process tree (controller + workers),
and the wall time spent outside the adapters' runs (loading the corpus, fingerprints,
writing).  Ratios in one run are what to compare (the machine is shared and noisy).
``--tests`` also times the default test command (``python -m pytest -n auto``), with the
same caveat.

    .venv/bin/python benchmarks/bench_gate.py                      # the main environment's adapters
    .venv/bin/python benchmarks/bench_gate.py --frameworks torch --jobs 1
    .venv/bin/python benchmarks/bench_gate.py --tests
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_gate(frameworks: str | None, jobs: int, large: str) -> tuple[dict, float, float]:
    """(results document, wall s, CPU s of the process tree) of one ``klconform run``."""
    with tempfile.TemporaryDirectory(prefix="bench-gate-") as out:
        cmd = [sys.executable, "-m", "klconform", "run", "--formats", "json", "--out", out, "--quiet",
               "--jobs", str(jobs), "--large", large]
        if frameworks:
            cmd += ["--frameworks", frameworks]
        cpu0, t0 = children_cpu_s(), time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        wall, cpu = time.perf_counter() - t0, children_cpu_s() - cpu0
        if proc.returncode not in (0, 1):
            sys.exit(f"bench_gate: klconform run exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
        doc = json.loads((Path(out) / "results.json").read_text())
    return doc, wall, cpu


def report(doc: dict, wall: float, cpu: float) -> None:
    rows = []
    for r in doc["runs"]:
        if r.get("status") != "ok":
            continue
        fw = sum(o.get("elapsed_s") or 0.0 for o in r["outcomes"].values())
        rows.append((r["adapter"], len(r["outcomes"]), fw, r.get("elapsed_s") or 0.0))
    width = max([len(a) for a, *_ in rows] + [7])
    print(f"{'adapter':<{width}}  {'cases':>6}  {'framework s':>11}  {'run s':>7}  {'klconform/framework':>19}")
    for a, n, fw, run in rows:
        ratio = (run - fw) / fw if fw > 0 else float("inf")
        print(f"{a:<{width}}  {n:>6}  {fw:>11.2f}  {run:>7.2f}  {ratio:>19.1f}")
    fw_sum, run_sum = sum(r[2] for r in rows), sum(r[3] for r in rows)
    print(f"{'all':<{width}}  {sum(r[1] for r in rows):>6}  {fw_sum:>11.2f}  {run_sum:>7.2f}  "
          f"{(run_sum - fw_sum) / fw_sum if fw_sum else float('inf'):>19.1f}")
    print(f"\ngate wall: {wall:.1f} s (results.json elapsed_s {doc.get('elapsed_s') or 0:.1f} s); "
          f"CPU of the process tree: {cpu:.1f} s; {len(rows)} adapter runs")


def time_tests() -> None:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "auto", "-p", "no:cacheprovider"],
                          cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    tail = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
    print(f"test command wall: {wall:.1f} s (exit {proc.returncode}): {tail}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frameworks", default=None, help="as klconform run --frameworks (default: all)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--large", default="quick")
    ap.add_argument("--tests", action="store_true", help="also time the default test command")
    args = ap.parse_args(argv)
    doc, wall, cpu = run_gate(args.frameworks, args.jobs, args.large)
    report(doc, wall, cpu)
    if args.tests:
        time_tests()


if __name__ == "__main__":
    main()
