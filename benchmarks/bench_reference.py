"""Accuracy and throughput of reference.kl_divergence.

Prints, on a deterministic generated set mixing the regimes of SPEC.md KL-DEF-2, for each
fast path of the reference ("numba": the compiled kernel reference/_kernel.py, where numba
imports; "numpy": the vectorised path):
* max and median error in ulps against the mpmath oracle (reference/oracle.py),
* how many rows the fast path could not prove and handed to the mpmath fallback,
* throughput (elements/s) next to the naive formula ``np.sum(p*np.log(p/q), axis=-1)``
  measured in the same run, and the ratio;
plus the naive formula's own ulp errors on the same set, for contrast, and the latency of
the first call in a fresh process (numba import plus compilation or cache load);
* a large case (64 x 131072, normalised rows, unrelated and near-equal Q): each path's time
  next to torch.nn.functional.kl_div (float32 and float64, forward and forward+backward)
  where torch imports -- the reference should not be slower than a framework call;
* with --main-job: the wall time of ``python -m klconform run`` (two adapters, 200 examples)
  under KLCONFORM_REFERENCE_BACKEND=numpy and =numba.

Usage: python benchmarks/bench_reference.py [--rows N] [--oracle-rows N] [--seed S]
       [--large-rows M] [--large-cols N] [--main-job]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from klconform.reference import _accurate, kl_divergence  # noqa: E402
from klconform.reference._accurate import _fast_rows, _special_rows  # noqa: E402
from klconform.reference.oracle import kl_exact_mpf, ulp_error  # noqa: E402

SIZES = (2, 10, 100, 300, 1000)
REGIMES = ("unrelated", "near-1e-3", "near-1e-6", "near-1e-9", "near-1e-12", "near-1e-15",
           "zeros-in-p", "one-hot", "tiny-1e-300", "subnormal", "mixed-subnormal", "unnormalised")


def _normalised(x):
    return x / np.sum(x, axis=-1, keepdims=True)


def make_group(rng, regime, rows, n):
    """(p, q) of shape (rows, n) for one regime."""
    p = _normalised(rng.random((rows, n)) + 1e-3)
    if regime == "unrelated":
        return p, _normalised(rng.random((rows, n)) + 1e-3)
    if regime.startswith("near-"):
        delta = float(regime[5:])
        return p, _normalised(p * (1 + delta * rng.standard_normal((rows, n))))
    if regime == "zeros-in-p":
        p = p * (rng.random((rows, n)) < 0.5)
        p[:, 0] += 0.1
        return _normalised(p), _normalised(rng.random((rows, n)) + 1e-3)
    if regime == "one-hot":
        p = np.zeros((rows, n))
        p[np.arange(rows), rng.integers(0, n, rows)] = 1.0
        return p, _normalised(rng.random((rows, n)) + 1e-3)
    if regime == "tiny-1e-300":
        q = p * (1 + 1e-8 * rng.standard_normal((rows, n)))
        return p * 1e-300, q * 1e-300
    if regime == "subnormal":
        q = _normalised(rng.random((rows, n)) + 1e-3)
        return p * 2.0 ** -1030, q * 2.0 ** -1030
    if regime == "mixed-subnormal":
        q = _normalised(p * (1 + 1e-6 * rng.standard_normal((rows, n))))
        tiny = rng.random((rows, n)) < 0.2
        return np.where(tiny, p * 1e-310, p), np.where(tiny, q * 3e-311, q)
    if regime == "unnormalised":
        return p * rng.random((rows, 1)) * 10, _normalised(rng.random((rows, n)) + 1e-3) * 3
    raise ValueError(f"unknown regime {regime!r}")


def build_set(seed, total_rows):
    """Groups (regime, p, q) totalling about ``total_rows`` rows of the sizes in SIZES."""
    rng = np.random.default_rng(seed)
    per = max(1, total_rows // (len(REGIMES) * len(SIZES)))
    return [(regime, *make_group(rng, regime, per, n)) for regime in REGIMES for n in SIZES]


def best_time(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def first_call_latency():
    """Seconds for the first kl_divergence call in a fresh interpreter (auto backend)."""
    import subprocess
    code = ("import time; t = time.perf_counter(); from klconform import reference; "
            "reference.kl_divergence([[.2, .8]], [[.3, .7]]); "
            "print(time.perf_counter() - t, reference._accurate.backend())")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                         text=True, check=True).stdout.split()
    return float(out[0]), out[1]


def fallback_rows(backend, groups):
    """Rows the fast path cannot certify (they go to the mpmath fallback)."""
    count = 0
    with np.errstate(all="ignore"):
        for _, p, q in groups:
            if backend == "numba":
                from klconform.reference import _kernel
                ok = _kernel.kl_rows(p, q, None)[1]
            else:
                ok = _fast_rows(p, q, None, _special_rows(p, q, None)[1])[1]
            count += int(np.count_nonzero(~ok))
    return count


def large_case(backends, rows, cols, repeats):
    """Seconds per call of each reference path and of torch's kl_div on one large case."""
    rng = np.random.default_rng(7)
    p = rng.random((rows, cols)) + 1e-3
    p /= p.sum(axis=1, keepdims=True)
    q = rng.random((rows, cols)) + 1e-3
    q /= q.sum(axis=1, keepdims=True)
    qn = p * (1 + 1e-6 * rng.standard_normal((rows, cols)))
    qn /= qn.sum(axis=1, keepdims=True)
    saved = _accurate._BACKEND
    times = {}
    for b in backends:
        _accurate._BACKEND = b
        kl_divergence(p[:1, :8], q[:1, :8])                   # compile / load outside timing
        times[f"reference[{b}] unrelated"] = best_time(lambda: kl_divergence(p, q), repeats)
        times[f"reference[{b}] near-1e-6"] = best_time(lambda: kl_divergence(p, qn), repeats)
    _accurate._BACKEND = saved
    try:
        import torch
    except ImportError:
        return times
    for dt in (torch.float32, torch.float64):
        log_q = torch.tensor(np.log(q), dtype=dt)
        tp = torch.tensor(p, dtype=dt)
        name = str(dt).replace("torch.", "")
        times[f"torch kl_div {name} forward"] = best_time(
            lambda: torch.nn.functional.kl_div(log_q, tp, reduction="sum"), repeats)
        log_q.requires_grad_(True)

        def fwd_bwd():
            log_q.grad = None
            torch.nn.functional.kl_div(log_q, tp, reduction="sum").backward()
        times[f"torch kl_div {name} forward+backward"] = best_time(fwd_bwd, repeats)
    return times


def main_job_times(backends):
    """Wall seconds of the main job (torch.kl_div and keras.KLDivergence, 200 examples) per
    reference path: does the compiled kernel matter to a run?"""
    import subprocess
    import tempfile
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = {}
    for b in backends:
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ, KLCONFORM_REFERENCE_BACKEND=b, TF_CPP_MIN_LOG_LEVEL="3")
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "klconform", "run", "--frameworks",
                            "torch.kl_div,keras.KLDivergence", "--examples", "200", "--out", tmp,
                            "--quiet"], cwd=root, env=env, capture_output=True)
            out[b] = time.perf_counter() - t0
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2000, help="rows in the generated set")
    ap.add_argument("--oracle-rows", type=int, default=2000,
                    help="rows checked against the oracle (a deterministic subsample)")
    ap.add_argument("--repeats", type=int, default=5, help="timing repeats (best is kept)")
    ap.add_argument("--seed", type=int, default=20240611)
    ap.add_argument("--large-rows", type=int, default=64)
    ap.add_argument("--large-cols", type=int, default=131072)
    ap.add_argument("--main-job", action="store_true",
                    help="also time the main job under each reference path (about a minute)")
    args = ap.parse_args(argv)

    latency, auto = first_call_latency()
    print(f"first call in a fresh process: {latency:.2f} s (backend {auto})")
    groups = build_set(args.seed, args.rows)
    n_rows = sum(p.shape[0] for _, p, _ in groups)
    n_elem = sum(p.size for _, p, _ in groups)
    print(f"set: {n_rows} rows, {n_elem} elements, sizes {SIZES}, {len(REGIMES)} regimes, "
          f"seed {args.seed}")
    backends = ["numpy"] + (["numba"] if _accurate._kernel_module() is not None else [])
    saved = _accurate._BACKEND

    # Throughput: every path and the naive formula on the same arrays in the same run.
    with np.errstate(all="ignore"):
        t_naive = sum(best_time(lambda: np.sum(p * np.log(p / q), axis=-1), args.repeats)
                      for _, p, q in groups)
        times = {}
        for b in backends:
            _accurate._BACKEND = b
            kl_divergence(groups[0][1], groups[0][2])          # compile / load outside timing
            times[b] = sum(best_time(lambda: kl_divergence(p, q), args.repeats)
                           for _, p, q in groups)
    print(f"throughput: naive {n_elem / t_naive:.3e} elem/s")
    for b in backends:
        print(f"throughput: reference[{b}] {n_elem / times[b]:.3e} elem/s, "
              f"ratio to naive {t_naive / times[b]:.3f}")
    for b in backends:
        print(f"mpmath fallback [{b}]: {fallback_rows(b, groups)} of {n_rows} rows")

    large = large_case(backends, args.large_rows, args.large_cols, min(args.repeats, 3))
    slowest_torch = max((v for k, v in large.items() if k.startswith("torch")), default=None)
    print(f"large case {args.large_rows} x {args.large_cols}:")
    for k, v in large.items():
        ratio = f", {v / slowest_torch:.2f}x the slowest torch call" if slowest_torch else ""
        print(f"  {k}: {v * 1e3:.1f} ms{ratio}")
    if args.main_job:
        jobs = main_job_times(backends)
        print("main job wall time: " + ", ".join(f"{b} {t:.1f} s" for b, t in jobs.items())
              + (f", numba/numpy {jobs['numba'] / jobs['numpy']:.3f}" if "numba" in jobs else ""))

    # Accuracy against the oracle on a deterministic subsample (every group represented).
    rng = np.random.default_rng(args.seed + 1)
    per_group = max(1, args.oracle_rows // len(groups))
    errs = {b: [] for b in backends + ["naive"]}
    worst = {b: {} for b in backends}
    t0 = time.perf_counter()
    for regime, p, q in groups:
        idx = rng.choice(p.shape[0], size=min(per_group, p.shape[0]), replace=False)
        ps, qs = p[idx], q[idx]
        exact = kl_exact_mpf(ps, qs)
        with np.errstate(all="ignore"):
            naive = np.sum(ps * np.log(ps / qs), axis=-1)
        errs["naive"] += [ulp_error(g, e) for g, e in zip(naive, exact)]
        for b in backends:
            _accurate._BACKEND = b
            e_b = [ulp_error(g, e) for g, e in zip(kl_divergence(ps, qs), exact)]
            errs[b] += e_b
            worst[b][regime] = max([worst[b].get(regime, 0.0)] + e_b)
    _accurate._BACKEND = saved
    print(f"accuracy vs oracle on {len(errs['naive'])} rows "
          f"({time.perf_counter() - t0:.1f} s):")
    for b in backends + ["naive"]:
        e = np.array(errs[b])
        print(f"  {b if b == 'naive' else 'reference[' + b + ']'}: max {e.max():.3g} ulp, "
              f"median {np.median(e):.3g} ulp")
    for b in backends:
        print(f"reference[{b}] max ulp by regime: "
              + ", ".join(f"{k} {v:.2f}" for k, v in worst[b].items()))
    return 0 if all(max(errs[b]) <= 2.0 for b in backends) else 1


if __name__ == "__main__":
    sys.exit(main())
