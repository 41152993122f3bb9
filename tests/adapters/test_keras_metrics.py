"""keras.metrics.KLDivergence / tf_keras.metrics.KLDivergence: several update_state calls
then result() is the weighted mean Σ w·KL / Σ w of the clipped per-distribution KLs
(KL-WEIGHT-SUMDIV, KL-EPS-CLIP), and chunking does not move it beyond the bound."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from klconform.adapters.keras_metrics import chunks
from klconform.case import Case
from klconform.reference import evaluate
from klconform.reference.dtypes import UNIT_ROUNDOFF
from klconform.reference.family import Point
from klconform.workers import AdapterUnavailable, run_in_worker

pytestmark = [pytest.mark.framework,
              pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="tensorflow is not installed")]
REFS = ["klconform.adapters.keras_metrics:KerasMetricKLDivergence",
        "klconform.adapters.keras_metrics:TfKerasMetricKLDivergence"]
rng = np.random.default_rng(5)
P = rng.dirichlet(np.ones(4), 7)
Q = rng.dirichlet(np.ones(4), 7)
W = np.array([[1.0], [2.0], [0.5], [3.0], [1.0], [0.25], [4.0]])


def _case(sw=None, n=7):
    return Case(P[:n], Q[:n], pred_kind="prob", reduction="distribution_mean",
                sample_weight=None if sw is None else sw[:n], grad=False)


def test_chunks_split_the_batch_into_three_updates():
    parts = chunks(_case(W))
    assert [t.shape[0] for t, _, _ in parts] == [3, 2, 2]
    assert all(w.shape == (t.shape[0],) for t, _, w in parts)
    assert len(chunks(_case(n=1))) == 1


@pytest.mark.parametrize("ref", REFS)
def test_result_is_the_weighted_mean_with_the_weight_sum_divisor(ref):
    """KL-WEIGHT-SUMDIV KL-WEIGHT-DIST: chunked updates give Σ w KL / Σ w (float32 state)."""
    cases = [_case(), _case(W), _case(W, n=1)]
    try:
        outs = list(run_in_worker(ref, cases)[1])
    except AdapterUnavailable as exc:
        pytest.skip(str(exc))
    for c, o in zip(cases, outs):
        pt = Point("distribution_mean", epsilon="clip_both", eps=1e-7, weight_level="distribution",
                   weight_divisor="weight_sum" if c.sample_weight is not None else "count")
        exp = evaluate(c, pt)
        assert o.dtype == "float32"
        # the metric computes in float32: its bound, with the chunks' extra additions (x3)
        bound = 3 * exp.bound * UNIT_ROUNDOFF["float32"] / UNIT_ROUNDOFF["float64"]
        assert abs(float(o.value) - float(exp.value)) <= bound, (o.value, exp.value)
    # the divisor is Σ w, not the number of distributions (KL-RED-SOBS would give another value)
    count = evaluate(cases[1], Point("distribution_mean", epsilon="clip_both", eps=1e-7, weight_level="distribution"))
    assert abs(float(outs[1].value) - float(count.value)) > 1e-3
