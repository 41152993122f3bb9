"""translate: conversions are recorded, values exact in the dtype, inexpressible cases refused."""
import numpy as np

from klconform.adapters.base import Capabilities
from klconform.case import Case
from klconform.reference.dtypes import representable
from klconform.translate import translate, why_not

PROB_ONLY = Capabilities(dtypes=frozenset({"float32", "float64"}), reductions=frozenset({"sum", "batchmean"}),
                         pred_kinds=frozenset({"prob"}), target_kinds=frozenset({"prob"}))
LOGPROB = Capabilities(dtypes=frozenset({"float32"}), reductions=frozenset({"sum"}),
                       pred_kinds=frozenset({"logprob"}), target_kinds=frozenset({"prob", "logprob"}))


def _case(**kw):
    base = dict(target=np.array([[0.25, 0.75]]), pred=np.log(np.array([[0.5, 0.5]])), dtype="float64",
                pred_kind="logprob", reduction="sum")
    base.update(kw)
    return Case(**base)


def test_logprob_to_prob_is_exp_rounded_and_recorded():
    t = translate(_case(), PROB_ONLY)
    assert t.case.pred_kind == "prob"
    np.testing.assert_allclose(t.case.pred, [[0.5, 0.5]], rtol=1e-15)
    assert any(c.what == "pred" and "exp" in c.how for c in t.conversions)
    assert t.to_json()["canonical"] == t.canonical.digest


def test_prob_to_logprob_rounds_into_dtype():
    c = Case(target=np.array([[0.25, 0.75]]), pred=np.array([[0.1, 0.9]], dtype=np.float32).astype(float),
             dtype="float32", pred_kind="prob", reduction="sum")
    t = translate(c, LOGPROB)
    assert t.case.pred_kind == "logprob" and representable(t.case.pred, "float32")


def test_unchanged_when_expressible():
    c = _case(pred_kind="prob", pred=np.array([[0.5, 0.5]]), grad=False)
    t = translate(c, PROB_ONLY)
    assert t.case is c and t.conversions == ()


def test_inexpressible_cases_are_refused_with_a_reason():
    assert translate(_case(reduction="mean"), PROB_ONLY) is None
    assert "reduction" in why_not(_case(reduction="mean"), PROB_ONLY)
    assert "dtype" in why_not(_case(dtype="float64"), LOGPROB)


def test_broadcast_and_axes_rewritten_for_plain_apis():
    c = Case(target=np.array([[0.5, 0.5]]), pred=np.log(np.array([[0.5, 0.5], [0.25, 0.75]])),
             reduction="batchmean", dtype="float64")
    t = translate(c, PROB_ONLY)
    assert t.case.target.shape == t.case.pred.shape == (2, 2)
    c2 = Case(target=np.full((2, 3), 0.5), pred=np.full((2, 3), 0.25), pred_kind="prob",
              reduction="batchmean", class_axis=0, batch_axis=1)
    t2 = translate(c2, PROB_ONLY)
    assert t2.case.target.shape == (3, 2) and t2.case.class_axis == -1 and t2.case.batch_axis == 0
