"""The reference against a second implementation of SPEC.md (``spec_literal.py``), written
from the SPEC text alone.

1. Through the real harness: the SPEC-literal adapter runs in a worker over the whole
   default gate (the frozen corpus and the quick large set) and every verdict must be
   ``match``: a disagreement between the two implementations is a discrepancy verdict.
2. Point-wise: at every family point an adapter documents for a frozen case it takes, and
   at every point a known-discrepancy record names (``explained_by``), the reference's
   value and gradients must lie within its own accuracy claim (KL-BOUND-5: max(2 ulp,
   B_float64/16) of the exact value) of the SPEC-literal ones.

Where the two disagree SPEC decides: /work/notes-style reports name the case, the point and
the clause (see tests/spec_literal/README.md).
"""
from __future__ import annotations

import collections
import time

import numpy as np
import pytest

from klconform import frozen, large
from klconform.engine import run_conformance
from klconform.workers import WorkerSpec

REF = "tests.spec_literal.adapter:SpecLiteral"


@pytest.fixture(scope="module")
def gate_run():
    """The SPEC-literal adapter over the default gate, in a real worker."""
    cases = frozen.load()
    entries = large.select("quick")
    t0 = time.perf_counter()
    result = run_conformance([WorkerSpec(REF)], cases, large=entries, shrink_rounds=0)
    return result, len(cases), len(entries), time.perf_counter() - t0


def test_spec_literal_adapter_matches_reference_on_the_whole_default_gate(gate_run):
    result, n_cases, n_large, elapsed = gate_run
    (run,) = result.runs
    assert run.status == "ok", f"the SPEC-literal adapter did not run: {run.status} {run.reason}"
    compared = {v.case for v in run.verdicts}
    classes = collections.Counter(v.cls for v in run.verdicts)
    print(f"\nSPEC-literal x reference: {len(compared)} cases compared ({n_cases} frozen, {n_large} quick large "
          f"sent), verdicts {dict(classes)}, {elapsed:.1f} s")
    # every frozen case is expressible for an adapter that declares everything
    assert len(compared) == n_cases + n_large
    bad = [v for v in run.verdicts if v.cls != "match"]
    lines = [f"{v.case} [{v.against}] {v.cls}: {v.detail[:300]} ({', '.join(v.clauses)})" for v in bad[:20]]
    assert not bad, f"{len(bad)} discrepancy verdicts between SPEC-literal and the reference:\n" + "\n".join(lines)
