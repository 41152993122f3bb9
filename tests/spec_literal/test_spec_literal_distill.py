"""reference/distill.py against the second implementation of SPEC.md §12
(``spec_literal_distill.py``, written from the clause text alone).

Every divergence, reduction, temperature scale, mask, chunk member and JSD end, on random
float64 logits and on rows with special values: values and both gradients must agree within
the reference's accuracy claim (max(4 ulp, B_float64/16)), and special values exactly.
Where the two disagree SPEC decides.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from klconform.reference import distill as D
from klconform.reference import UndefinedCase
from tests.spec_literal import spec_literal_distill as lit

POINTS = [
    dict(divergence="forward"),
    dict(divergence="reverse"),
    dict(divergence="symmetric", ratio=0.5),
    dict(divergence="symmetric", ratio=1.0),
    dict(divergence="symmetric", ratio=0.0),
    dict(divergence="jsd", beta=0.5),
    dict(divergence="jsd", beta=0.9),
    dict(divergence="jsd", beta=0.0),
    dict(divergence="jsd", beta=1.0),
    dict(divergence="jsd", beta=0.0, jsd_endpoints="kl"),
    dict(divergence="jsd", beta=1.0, jsd_endpoints="kl"),
    dict(divergence="forward", cross_entropy=True),
    dict(divergence="symmetric", ratio=0.4, cross_entropy=True),
    dict(divergence="jsd", beta=0.0, jsd_endpoints="kl", cross_entropy=True),
]
REDUCTIONS = D.REDUCTIONS


def _lit_kw(point: D.DistillPoint, case: D.DistillCase) -> dict:
    return dict(divergence=point.divergence, param=point.ratio if point.divergence == "symmetric" else point.beta,
                cross_entropy=point.cross_entropy,
                jsd_endpoints=point.jsd_endpoints, tau=case.temperature, tau2=point.temperature_scale == "tau2",
                mask=case.mask, reduction=point.reduction, empty_mean=point.empty_mean, chunks=case.chunks,
                chunk_mean=point.chunk_mean)


def _agree(ref, exact, bound, what):
    ref = np.asarray(ref, dtype=np.float64)
    exact64 = np.asarray(exact).astype(np.float64)
    bound = np.broadcast_to(np.asarray(bound, dtype=np.float64), ref.shape)
    assert ref.shape == exact64.shape, what
    same_special = (np.isnan(ref) == np.isnan(exact64)) & (np.isinf(ref) == np.isinf(exact64))
    assert same_special.all(), f"{what}: special values differ\nref {ref}\nlit {exact64}"
    fin = np.isfinite(exact64)
    assert np.array_equal(ref[np.isinf(ref)], exact64[np.isinf(exact64)]), what
    ulp = np.vectorize(math.ulp)(exact64[fin]) if fin.any() else np.zeros(0)
    tol = np.maximum(4 * ulp, bound[fin] / 16)
    err = np.abs(ref[fin] - exact64[fin])
    assert np.all(err <= tol), f"{what}: max err {err.max()} vs tol {tol[np.argmax(err - tol)]}"


def _check(case, point):
    try:
        e = D.evaluate(case, point)
    except UndefinedCase:
        with pytest.raises(lit.Undefined):
            lit.evaluate(case.student, case.teacher, **_lit_kw(point, case))
        return
    value, grads = lit.evaluate(case.student, case.teacher, **_lit_kw(point, case))
    # the accuracy claim is against float64's own bound
    b64 = D.evaluate(D.DistillCase(**{**case.__dict__, "dtype": "float64"}), point)
    _agree(e.value, value, b64.bound, f"value {point.name}")
    for side in ("pred", "target"):
        _agree(e.grads[side], grads[side], b64.grad_bounds[side], f"{side} gradient {point.name}")


@pytest.mark.parametrize("pkw", POINTS, ids=lambda k: "-".join(str(v) for v in k.values()))
def test_every_divergence_and_reduction_agrees(pkw):
    """KL-DISTILL-FWD KL-DISTILL-REV KL-DISTILL-SYM KL-DISTILL-JSD KL-DISTILL-JSD-ENDS
    KL-DISTILL-CE KL-DISTILL-RED KL-DISTILL-TAU2 KL-DISTILL-GRAD, masked and not."""
    rng = np.random.default_rng(len(str(pkw)))
    s = (rng.standard_normal((2, 3, 4)) * 3).astype(np.float32).astype(np.float64)
    t = (rng.standard_normal((2, 3, 4)) * 3).astype(np.float32).astype(np.float64)
    masks = [None, np.array([[1, 0, 1], [0, 1, 1]], bool)]
    for red, mask, tau, scale in itertools.product(REDUCTIONS, masks, (1.0, 0.7, 3.0), ("none", "tau2")):
        case = D.DistillCase(student=s, teacher=t, mask=mask, temperature=tau, reduction=red, dtype="float32")
        _check(case, D.DistillPoint(reduction=red, temperature_scale=scale, **pkw))


def test_empty_means_and_chunk_means_agree():
    """KL-DISTILL-EMPTY KL-DISTILL-CHUNK KL-DISTILL-CHUNK-MEAN KL-DISTILL-MASK."""
    rng = np.random.default_rng(5)
    s = (rng.standard_normal((2, 7, 3)) * 2).astype(np.float32).astype(np.float64)
    t = (rng.standard_normal((2, 7, 3)) * 2).astype(np.float32).astype(np.float64)
    none = np.zeros((2, 7), bool)
    for red, empty in itertools.product(("distribution_mean", "mean", "sum", "batchmean"), ("nan", "zero")):
        _check(D.DistillCase(student=s, teacher=t, mask=none, reduction=red),
               D.DistillPoint("forward", red, empty_mean=empty))
    mask = rng.random((2, 7)) < 0.6
    for k in (1, 2, 3, 4, 7, 9):
        case = D.DistillCase(student=s, teacher=t, mask=mask, chunks=k)
        for div, ce in (("forward", False), ("reverse", False), ("forward", True), ("symmetric", True)):
            _check(case, D.DistillPoint(div, "distribution_mean", chunk_mean=True, cross_entropy=ce))
            _check(case, D.DistillPoint(div, "distribution_mean", cross_entropy=ce))


def test_special_rows_agree():
    """KL-DISTILL-TEMP KL-DISTILL-GRAD: −inf logits (probability 0), NaN and +inf rows,
    all −inf rows, in both inputs, kept or ignored."""
    inf, nan = np.inf, np.nan
    s = np.array([[0.0, -inf, 1.0], [nan, 0.0, 0.0], [0.5, 0.5, inf], [-inf, -inf, -inf], [1.0, 2.0, 3.0],
                  [2.0, -inf, -inf]])
    t = np.array([[0.0, 1.0, -inf], [0.0, 0.0, 0.0], [0.0, 1.0, 2.0], [0.0, 1.0, 2.0], [-inf, 0.0, -inf],
                  [-inf, 3.0, -inf]])
    for pkw, red in itertools.product(POINTS, ("distribution", "sum", "none")):
        for mask in (None, np.array([1, 0, 1, 0, 1, 1], bool)):
            _check(D.DistillCase(student=s, teacher=t, mask=mask, reduction=red), D.DistillPoint(reduction=red, **pkw))


def test_undefined_parameters_agree():
    """KL-DISTILL-TEMP KL-DISTILL-SYM KL-DISTILL-JSD: τ ≤ 0, ratio or β outside [0, 1]."""
    s = np.zeros((1, 2))
    _check(D.DistillCase(student=s, teacher=s, temperature=-1.0), D.DistillPoint("forward", "sum"))
    _check(D.DistillCase(student=s, teacher=s), D.DistillPoint("jsd", "sum", beta=-0.5))
    _check(D.DistillCase(student=s, teacher=s), D.DistillPoint("symmetric", "sum", ratio=2.0))
