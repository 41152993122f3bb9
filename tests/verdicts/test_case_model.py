"""The case model's optional fields: each input's own dtype (SPEC.md KL-DTYPE-4) and the
shape the target is sent in (KL-SHAPE-3): validation, normalisation, wire and digest
stability, the frozen format, the worker's fast decoder, and the capability filter."""
import json

import numpy as np
import pytest

from klconform import coverage, frozen
from klconform.adapters.base import Capabilities
from klconform.case import Case, CaseError, ReceivedCase
from klconform.curated import compute_dtype_cases, mixed_dtype_cases, reshaped_target_cases
from klconform.facts import facts
from klconform.reference.dtypes import round_to
from klconform.translate import translate, why_not

P = np.array([[0.1, 0.9], [0.5, 0.5]])
LQ32 = round_to(np.log([[0.3, 0.7], [0.25, 0.75]]), "float32")


def new_cases():
    return mixed_dtype_cases() + compute_dtype_cases() + reshaped_target_cases()


def test_every_frozen_digest_is_unchanged_and_has_no_new_wire_keys():
    """The optional keys join the wire header only when set: all cases frozen before them
    keep their digests (frozen.load recomputes and checks each one)."""
    cases = frozen.load()
    old = [c for c in cases if c.target_dtype is None and c.pred_dtype is None and c.target_sent_shape is None
           and not c.label.startswith("cell/")]
    assert len(old) >= 3727
    assert not any({"target_dtype", "pred_dtype", "target_sent_shape"} & set(c.to_wire()) for c in old)
    with_keys = [c for c in cases if c not in old and not c.label.startswith("cell/")]
    assert with_keys and all(any(k in c.to_wire() for k in ("target_dtype", "pred_dtype", "target_sent_shape"))
                             or c.target_dtype == c.dtype or c.pred_dtype == c.dtype for c in with_keys)


def test_per_side_dtype_validation_names_the_field():
    with pytest.raises(CaseError, match="^pred: values are not exactly representable in float16"):
        Case(target=P, pred=LQ32, dtype="float64", pred_dtype="float16")
    with pytest.raises(CaseError, match="^target_dtype: unknown dtype"):
        Case(target=P, pred=LQ32, target_dtype="float8")
    # float32 values are fine as a float32 input of a float64 case, not as float16 ones
    c = Case(target=P, pred=LQ32, dtype="float64", pred_dtype="float32")
    assert c.input_dtype("pred") == "float32" and c.input_dtype("target") == "float64"


def test_promoted_cast_and_the_default_spelled_out():
    promoted = Case(target=P, pred=LQ32, dtype="float64", pred_dtype="float32")
    cast = Case(target=round_to(P, "float32"), pred=LQ32, dtype="float64", target_dtype="float32", pred_dtype="float32")
    half = Case(target=round_to(P, "float16"), pred=round_to(LQ32, "bfloat16"), dtype="float32",
                target_dtype="float16", pred_dtype="bfloat16")
    assert (promoted.dtype_form, cast.dtype_form, half.dtype_form) == ("promoted", "cast", "promoted")
    assert promoted.promoted and not cast.promoted and half.promoted
    spelled = Case(target=P, pred=LQ32, dtype="float64", target_dtype="float64", pred_dtype="float32")
    assert spelled.target_dtype is None and spelled.digest == promoted.digest
    plain = Case(target=round_to(P, "float32"), pred=LQ32, dtype="float32", target_dtype="float32", pred_dtype="float32")
    assert plain.dtype_form == "same" and plain.digest == Case(target=round_to(P, "float32"), pred=LQ32,
                                                               dtype="float32").digest


def test_sent_shape_validation():
    lq = np.log(P)
    c = Case(target=P, pred=lq, target_sent_shape=(4,))
    assert c.sent_target.shape == (4,) and c.shape == (2, 2)
    with pytest.raises(CaseError, match="^target_sent_shape: \\[3\\] has 3 elements"):
        Case(target=P, pred=lq, target_sent_shape=(3,))
    with pytest.raises(CaseError, match="prediction's shape"):
        Case(target=P[:1], pred=lq, target_sent_shape=(2,))
    with pytest.raises(CaseError, match="own shape"):
        Case(target=P, pred=lq, target_sent_shape=(2, 2))


@pytest.mark.parametrize("case", new_cases()[::23], ids=repr)
def test_wire_json_frozen_and_fast_decoder_round_trips(case):
    from klconform._worker_remote import case_decoder
    from klconform.reference.dtypes import from_bits_carried
    wire = case.to_wire()
    assert len(wire["target"]) == case.target.size * np.dtype(
        "float16" if case.input_dtype("target") == "bfloat16" else case.input_dtype("target")).itemsize
    for back in (Case.from_wire(wire), Case.from_json(json.loads(json.dumps(case.to_json()))),
                 frozen.case_from_line(frozen.case_to_line(case)), case_decoder(ReceivedCase, from_bits_carried)(wire)):
        assert back.digest == case.digest
        assert (back.target_dtype, back.pred_dtype, back.target_sent_shape) == \
            (case.target_dtype, case.pred_dtype, case.target_sent_shape)
        assert np.array_equal(back.target, case.target, equal_nan=True)
        assert np.array_equal(back.pred, case.pred, equal_nan=True)
        for side, held in (("target", case.sent_target), ("pred", case.pred)):
            sent = back.sent_values(side)      # what an adapter builds its tensors from
            assert sent.shape == held.shape and np.array_equal(sent, held, equal_nan=True)
            assert sent.dtype == np.dtype({"bfloat16": "float32"}.get(case.input_dtype(side), case.input_dtype(side)))


def test_new_cases_are_sent_only_to_adapters_declaring_them():
    """Capabilities.input_dtypes / reshaped_target default to nothing: such cases are
    inexpressible for an adapter that was not updated."""
    plain = Capabilities(dtypes=frozenset({"float16", "bfloat16", "float32", "float64"}),
                         reductions=frozenset({"sum", "sample_sum", "distribution"}), broadcasting=True,
                         pred_kinds=frozenset({"logprob", "prob", "logits"}), gradients=frozenset({"pred", "target"}))
    promoted = mixed_dtype_cases()[1]
    cast = compute_dtype_cases()[1]
    reshaped = reshaped_target_cases()[0]
    assert "promoted" in why_not(promoted.replace(reduction="sum"), plain)
    assert "cast" in why_not(cast.replace(reduction="sum"), plain)
    assert "another shape" in why_not(reshaped, plain)
    both = Capabilities(**{**plain.__dict__, "input_dtypes": frozenset({"promoted", "cast"}),
                           "reshaped_target": True})
    assert translate(promoted.replace(reduction="sum"), both).case.digest == promoted.replace(reduction="sum").digest
    assert translate(reshaped, both) is not None
    # a re-encoded prediction is rounded into its own dtype, not the result's
    caps = Capabilities(**{**both.__dict__, "pred_kinds": frozenset({"prob"})})
    t = translate(promoted.replace(reduction="sum"), caps)
    assert t.case.pred_kind == "prob" and "rounded to " + promoted.input_dtype("pred") in t.conversions[0].how


def test_coverage_and_record_facts_name_the_new_forms():
    promoted, cast, reshaped = mixed_dtype_cases()[1], compute_dtype_cases()[0], reshaped_target_cases()[0]
    assert "input_dtypes=promoted" in coverage.capability_keys(promoted)
    assert "input_dtypes=cast" in coverage.capability_keys(cast)
    assert "target_sent_shape=reshaped" in coverage.capability_keys(reshaped)
    f = facts(promoted)
    assert (f["dtype_form"], f["target_dtype"], f["pred_dtype"], f["other_dtype_inputs"]) == \
        ("promoted", "float32", "float64", "target")
    assert facts(reshaped)["reshaped_target"] is True and facts(reshaped)["dtype_form"] == "same"
    caps = Capabilities(input_dtypes=frozenset({"promoted"}), reshaped_target=True)
    assert {"input_dtypes=promoted", "target_sent_shape=reshaped"} <= set(coverage.declared(caps)["capabilities"])
