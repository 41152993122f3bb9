"""The strategies generate what their docstrings promise."""
import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from klconform.adapters.base import Capabilities
from klconform import strategies as S
from klconform.reference.dtypes import DTYPES, FINFO, UNIT_ROUNDOFF, representable
from klconform.translate import translate

dtype_st = st.sampled_from(DTYPES)


@given(S.shapes())
def test_shapes_within_limits(shape):
    assert 0 <= len(shape) <= 4
    assert all(0 <= s <= S.MAX_SIDE for s in shape)
    assert math.prod(shape) <= S.MAX_SIZE


@given(S.shapes(min_ndim=1).flatmap(lambda s: st.tuples(st.just(s), S.broadcast_partner(s))))
def test_broadcast_partner_broadcasts_to_shape(pair):
    shape, partner = pair
    assert np.broadcast_shapes(shape, partner) == shape
    if len(partner):
        assert partner[-1] == shape[-1]     # the class axis is kept whole


@given(dtype_st.flatmap(lambda d: st.tuples(st.just(d), S.probabilities((3, 4), d))))
def test_normalised_probabilities_sum_to_one_within_rounding(arg):
    dtype, p = arg
    assert representable(p, dtype) and (p >= 0).all()
    assert np.allclose(p.sum(-1), 1.0, atol=8 * UNIT_ROUNDOFF[dtype])


@given(dtype_st.flatmap(lambda d: st.tuples(st.just(d), S.probabilities((2, 3), d, zeros=False))))
def test_no_zeros_unless_asked(arg):
    dtype, p = arg
    assert (p > 0).all()


@given(st.sampled_from([(3,), (2, 4), (2, 2, 3)]).flatmap(lambda s: S.one_hot(s, "float32")))
def test_one_hot_has_one_one_per_slice(p):
    assert ((p == 0) | (p == 1)).all() and (p.sum(-1) == 1).all()


@given(dtype_st.flatmap(lambda d: st.tuples(st.just(d), S.tiny_values(d))))
def test_tiny_values_are_tiny_positive_and_exact(arg):
    dtype, v = arg
    ceiling = max(FINFO[dtype][1] * 16, 1e-300 if dtype == "float64" else 0.0)
    assert 0 < v <= ceiling and representable(v, dtype)


@given(dtype_st.flatmap(lambda d: st.tuples(st.just(d), S.probabilities((2, 3), d)
                                            .flatmap(lambda p: st.tuples(st.just(p), S.near(p, d))))))
def test_near_is_close_and_exact(arg):
    dtype, (p, q) = arg
    assert representable(q, dtype)
    assert np.all(np.abs(q - p) <= 1e-3 * np.abs(p) + 8 * UNIT_ROUNDOFF[dtype] * np.abs(p))


@given(S.probabilities((2, 3), "float32").flatmap(lambda p: S.with_invalid_entries(p, "float32")))
def test_invalid_entries_are_present(p):
    assert (~np.isfinite(p) | (p < 0)).any()


@given(S.cases())
def test_cases_are_valid_and_labelled(case):
    assert case.label.split("/")[0] in S.FAMILIES
    for a in (case.target, case.pred):
        assert representable(a, case.dtype)
    if case.sample_weight is not None:
        np.broadcast_shapes(case.sample_weight.shape, case.shape)
    if case.label.startswith("large_logits"):
        assert case.pred_kind == "logits"


NARROW = Capabilities(dtypes=frozenset({"float16", "float32"}), reductions=frozenset({"sum", "none"}),
                      pred_kinds=frozenset({"prob"}), target_kinds=frozenset({"prob"}),
                      weights=frozenset({"sample"}), gradients=frozenset({"pred"}), min_ndim=1, max_ndim=3)


@given(S.cases_for(NARROW))
def test_cases_for_stays_inside_capabilities(case):
    assert case.dtype in NARROW.dtypes and case.reduction in NARROW.reductions
    assert case.pred_kind == "prob" and case.target_kind == "prob" and case.weight is None
    assert 1 <= len(case.shape) <= 3 and case.target.shape == case.pred.shape
    assert case.class_axis == -1 and case.batch_axis == 0
    t = translate(case, NARROW)
    assert t is not None and not t.conversions


def test_every_family_is_drawn():
    from klconform.explore import draw_examples
    seen = {c.label.split("/")[0] for c in draw_examples(S.cases(), 400, 3)}
    assert seen == set(S.FAMILIES)


# ----------------------------------------------------------------- families mean their names
def _builtin_capabilities():
    import inspect
    from klconform.adapters import keras_kldivergence, mxnet_kldivloss, tf_keras_kldivergence, torch_kl_div
    out = []
    for mod in (keras_kldivergence, mxnet_kldivloss, tf_keras_kldivergence, torch_kl_div):
        for _, cls in inspect.getmembers(mod, inspect.isclass):
            if cls.__module__ == mod.__name__ and getattr(cls, "name", None):
                out.append(cls().capabilities())
    return out


@given(S.cases(pred_kinds=("prob", "logprob"), families=("plain", "large_logits")))
def test_no_logits_input_means_no_large_logits_relabelled_plain(case):
    """An adapter without a logits input never gets ±1e4 'large logits' sent as
    probabilities under the label 'plain'."""
    assert case.label.split("/")[0] == "plain"
    assert S.family_problem(case) is None, (S.family_problem(case), case.pred)


def test_every_generated_case_satisfies_its_family():
    from klconform.explore import build_corpus
    corpus = build_corpus(0, 40, _builtin_capabilities(), curated=False)
    families = {c.label.split("/")[0] for c in corpus}
    assert {"plain", "large_logits", "invalid"} <= families
    bad = [(c.label, c.dtype, c.pred_kind, S.family_problem(c)) for c in corpus if S.family_problem(c)]
    assert not bad, bad[:5]


def test_every_frozen_case_satisfies_its_family():
    import pytest
    from klconform import frozen
    if not frozen.FROZEN_PATH.exists():
        pytest.skip(f"no frozen corpus at {frozen.FROZEN_PATH}")
    bad = [(c.label, c.dtype, c.pred_kind, S.family_problem(c)) for c in frozen.load() if S.family_problem(c)]
    assert not bad, f"{len(bad)} frozen cases break their family (regenerate the frozen corpus): {bad[:3]}"
