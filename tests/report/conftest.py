"""Fixtures for the report tests: recorded runs of test-double adapters with known semantics.

The doubles run in-process through the real engine (klconform.engine.run_conformance with
InProcessRunner targets) on a small deterministic corpus, and are annotated exactly as the
engine annotates every run (documented summary, known records, inferred fingerprint).
"""
from __future__ import annotations

import pytest

from klconform import engine, explore
from klconform.curated import all_curated

from tests.report import doubles


def small_corpus(seed: int = 7, n: int = 6):
    """Curated float32/float64 cases for four reductions, plus a few generated ones."""
    keep = ("batchmean", "sum", "mean", "sample_mean")
    cur = [c for c in all_curated() if c.dtype in ("float32", "float64") and c.reduction in keep]
    gen = [c for c in explore.build_corpus(seed, n, curated=False) if c.reduction in keep]
    return explore.dedupe(cur + gen)


def run_doubles(classes, cases, seed: int = 7):
    """A RunResult of the doubles ``classes`` on ``cases`` (annotated by the engine)."""
    targets = []
    for cls in classes:
        a = cls()
        targets.append(engine.Target(a.name, a, engine.InProcessRunner(a), env=a.setup()))
    res = engine.run_conformance([], cases, seed=seed, targets=targets, shrink_rounds=1,
                                 command="python -m klconform run --seed 7")
    res.complete = True
    return res


@pytest.fixture(scope="session")
def corpus():
    return small_corpus()


@pytest.fixture(scope="session")
def recorded(corpus):
    """Canonical, MXNet-like (target eps) and swapped+sum doubles on the small corpus."""
    return run_doubles([doubles.PointAdapter, doubles.TargetEps, doubles.SwappedSum], corpus)
