"""torch.distributions.kl_divergence(Categorical, Categorical) against the reference's
normalised point (KL-NORM-1), values and gradients (KL-GRAD-NORM), through a real worker."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from klconform.case import Case
from klconform.reference import evaluate
from klconform.reference.family import Point
from klconform.workers import AdapterUnavailable, run_in_worker

pytestmark = [pytest.mark.framework,
              pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")]
REF = "klconform.adapters.torch_distributions:TorchCategoricalKL"


def run(cases):
    try:
        return list(run_in_worker(REF, cases)[1])
    except AdapterUnavailable as exc:
        pytest.skip(str(exc))


def test_values_and_gradients_are_the_normalised_point():
    """KL-ARG-1 (p first) KL-NORM-1 KL-GRAD-NORM: probs and logits, batch-shaped output."""
    p = np.array([[0.2, 0.3, 0.5], [0.25, 0.25, 0.5]])
    q = np.array([[0.3, 0.3, 0.4], [0.5, 0.25, 0.25]])
    cases = [Case(p, q, pred_kind="prob", reduction="distribution"),
             Case(p, np.log(q) + 1.5, pred_kind="logits", reduction="distribution"),
             Case(np.log(p), q, target_kind="logprob", pred_kind="prob", reduction="distribution")]
    for c, o in zip(cases, run(cases)):
        exp = evaluate(c, Point("distribution", normalise=True))
        assert o.shape == (2,)
        assert np.all(np.abs(o.value - exp.value) <= exp.bound)
        for k in ("pred", "target"):
            assert np.all(np.abs(o.grads[k] - exp.grads[k]) <= exp.grad_bounds[k]), k
    # the probs gradient is the one through the normalisation, not the canonical -p/q
    assert not np.allclose(run(cases[:1])[0].grads["pred"], evaluate(cases[0]).grads["pred"])


def test_negative_probs_are_rejected_unnormalised_ones_normalised():
    """KL-VERDICT-ERROR (record torch-categorical-validate-args-rejects), KL-NORM-1."""
    neg = Case(np.array([[-0.5, 1.5]]), np.array([[0.5, 0.5]]), pred_kind="prob", reduction="distribution")
    big = Case(np.array([[2.0, 1.0]]), np.array([[0.5, 0.5]]), pred_kind="prob", reduction="distribution")
    o_neg, o_big = run([neg, big])
    assert o_neg.status == "error" and o_neg.error_type == "ValueError"
    assert o_big.status == "ok"
    assert o_big.value[0] == pytest.approx((2 / 3) * np.log(4 / 3) + (1 / 3) * np.log(2 / 3), rel=1e-12)
