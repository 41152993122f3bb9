"""Curated edge cases that run every time, beside the generated corpus.

Each *question* is a pair of probability arrays (P = target, Q = prediction) plus where
the class and batch axes are; :func:`curated_cases` expands every question over the
reductions, encodings and dtypes given, so each adapter finds the ones it can take.
The seed documents' examples (/work/shared/seeds/, cited by file) are among them; their
claims are checked by the verdicts, not trusted.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .case import REDUCTIONS, Case
from .reference.dtypes import FINFO, promote, round_to
from .strategies import encode

_D1 = [0.2, 0.5, 0.2, 0.1]        # seeds/000, seeds/001 (MXNet tutorial): dist_1
_D2 = [0.3, 0.4, 0.1, 0.2]        # dist_2
_D3 = [0.1, 0.1, 0.1, 0.7]        # dist_3
_D4 = [0.0, 0.9, 0.0, 0.1]        # dist_4: zero target entries ("the result is nan")
# seeds/001: logits "favorably chosen" so that softmax(output) == dist_1
_TUTORIAL_LOGITS = [0.39056206, 1.3068528, 0.39056206, -0.30258512]


@dataclasses.dataclass(frozen=True)
class Question:
    """One curated question: P and Q as probabilities (or Q as logits when ``pred_logits``)."""

    name: str
    target: object
    pred: object
    class_axis: int = -1
    batch_axis: int = 0
    pred_logits: bool = False
    source: str = ""      # seed document or reason
    # Extra target encodings asked in every dtype (besides the ones curated_cases is given):
    # for questions about how a framework reads log-probability targets.
    target_kinds: tuple[str, ...] = ()


def _softmax(x, axis):
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _uniform(shape, seed):
    # deterministic stand-in for the seeds' torch.distributions.Uniform(0, 10) samples
    return np.random.RandomState(seed).uniform(0.0, 10.0, size=shape)


def questions() -> list[Question]:
    """The curated questions, in a fixed order."""
    a1, a2 = _uniform((5, 2), 1), _uniform((5, 2), 2)
    b1, b2 = _uniform((4, 3, 4), 3), _uniform((4, 3, 4), 4)
    r1, r2 = _uniform((3, 5), 5), _uniform((3, 5), 6)
    tiny64 = FINFO["float64"][1]
    return [
        # a hand-checked value: KL([.2,.5,.2,.1] || [.3,.4,.1,.2]) = 0.0997934720914666
        Question("hand_checked_example", [_D1], [_D2], source="hand-checked value"),
        # MXNet tutorial: kl_divergence(dist_a, dist_b) computes KL(dist_b || dist_a)
        Question("seed_mxnet_d2_vs_d1", [_D2], [_D1], source="seeds/001"),
        Question("seed_mxnet_d3_vs_d1", [_D3], [_D1], source="seeds/001"),
        Question("seed_mxnet_d1_vs_d1", [_D1], [_D1], source="seeds/001 (KL with itself is 0)"),
        Question("seed_mxnet_logits_d2", [_D2], [_TUTORIAL_LOGITS], pred_logits=True,
                 source="seeds/001 from_logits=False"),
        Question("seed_mxnet_d1_vs_d4", [_D1], [_D4], source="seeds/001 (claims nan)"),
        Question("seed_mxnet_d4_vs_d1", [_D4], [_D1], source="seeds/001 (zero target)"),
        # torch blog: softmax over axis 0 of (5, 2) and (4, 3, 4) tensors (class axis 0)
        Question("seed_torch_axis0_2d", _softmax(a2, 0), _softmax(a1, 0), class_axis=0, batch_axis=1,
                 source="seeds/002"),
        Question("seed_torch_axis0_3d", _softmax(b2, 0), _softmax(b1, 0), class_axis=0, batch_axis=1,
                 source="seeds/002"),
        # medium post: sum(p*log(p/q), dim=1).mean() vs kl_div(q.log(), p, 'batchmean')
        Question("seed_medium_rows", _softmax(r2, 1), _softmax(r1, 1), source="seeds/003"),
        Question("equal", [_D1, _D3], [_D1, _D3], source="KL(P||P) = 0 exactly"),
        Question("one_hot_q_zero", [[0.0, 1.0, 0.0]], [[0.5, 0.0, 0.5]], source="p>0, q=0: +inf"),
        Question("both_zero", [[0.0, 0.5, 0.5]], [[0.0, 0.5, 0.5]], source="0*log(0/0) = 0"),
        Question("one_hot_target", [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]], [_D1, _D3]),
        # first-order difference below float32's resolution: a float32 down-cast makes it 0
        Question("near_equal_unnormalised", [[1.0]], [[1.0 + 2.0 ** -30]], source="p = 1, q = 1 + 2**-30"),
        Question("near_equal_1e-15", [[0.25, 0.75]], [[0.25 * (1 + 4e-15), 0.75 - 0.25 * 4e-15]],
                 source="near-equal pair"),
        Question("subnormal_pred", [[0.5, 0.5, 0.0]], [[0.5, 0.5 - 5e-324, 5e-324]], source="subnormal"),
        Question("tiny_target", [[1e-300, 1.0 - 1e-300]], [[0.5, 0.5]]),
        Question("tiny_normal", [[tiny64, 1.0]], [[tiny64 * 4, 1.0]]),
        Question("scalar_0d", 0.25, 0.5, source="0-D input"),
        Question("vector_1d", _D2, _D1, source="1-D input"),
        Question("single_1x1", [[1.0]], [[1.0]]),
        Question("empty_batch", np.zeros((0, 4)), np.zeros((0, 4)), source="empty batch"),
        Question("empty_classes", np.zeros((2, 0)), np.zeros((2, 0)), source="empty class axis"),
        Question("broadcast_target_row", [_D2], [_D1, _D3, _D2], source="target (1,4) vs pred (3,4)"),
        Question("unnormalised", [[2.0, 1.0, 1.0]], [[0.5, 0.5, 3.0]], source="no implicit normalisation"),
        Question("nan_target", [[np.nan, 0.5, 0.5]], [_D1[:3]]),
        Question("negative_pred", [[0.5, 0.5]], [[-0.5, 1.5]]),
        Question("inf_target", [[np.inf, 0.5]], [[0.5, 0.5]]),
        Question("large_logits", [[0.5, 0.5, 0.0]], [[1000.0, -1000.0, 0.0]], pred_logits=True),
        # spread 80000 > 65504: z - max(z) overflows float16 although the KL (~40000) does not
        Question("huge_logits_f16", [[0.5, 0.5]], [[40000.0, -40000.0]], pred_logits=True),
        # 1-D: each term is its own per-sample output, so a NaN logit's row effect is visible
        Question("nan_logit_1d", [0.25, 0.75], [np.nan, -3.5], pred_logits=True,
                 source="KL-INPUT-LOGITS: a NaN logit makes its whole row NaN"),
        Question("tiny_target_2e-17", [[2.0 ** -17, 0.5]], [[0.5, 0.5]],
                 source="float16: 1/p overflows in a backward of log(p)"),
        Question("inf_logit", [[0.5, 0.5]], [[np.inf, 0.0]], pred_logits=True),
        # rare behaviours the generated corpus shows only by chance: asked every run so that
        # their known records are always observed (docs/frameworks/torch.md)
        Question("broadcast_pred_row", [[0.25, 0.75], [0.5, 0.5], [0.125, 0.875]], [[0.5, 0.5]],
                 source="pred (1,C) vs target (N,C): torch batchmean divides by input.size(0) = 1"),
        Question("broadcast_pred_vector", [[0.2, 0.3, 0.5], [0.625, 0.25, 0.125]], [0.25, 0.25, 0.5],
                 source="pred (C,) vs target (N,C), C != N: torch batchmean divides by C"),
        Question("large_target_log_q_11", [[60000.0]], [[float(np.exp(11.0))]],
                 source="p log p and p log q overflow float16 separately, their difference does not"),
        Question("inf_target_q_one", [[np.inf, 0.5]], [[1.0, 0.5]], source="p = +inf, log q = 0: inf * 0"),
        Question("subnormal_target", [[2.0 ** -149, 1.0]], [[0.5, 0.5]],
                 source="float32's smallest subnormal as a target entry"),
        Question("subnormal_exp_log_target", [[2.0 ** -130, 1.0]], [[1.0, 1.0]], target_kinds=("logprob",),
                 source="log P = -90: exp(log P) is subnormal in bfloat16 and float32"),
        Question("batch4d", _softmax(_uniform((2, 2, 3, 3), 7), -1), _softmax(_uniform((2, 2, 3, 3), 8), -1)),
    ]


def _expressible(q_target: np.ndarray, reduction: str) -> bool:
    ndim = q_target.ndim
    if reduction in ("batchmean", "sample_sum", "sample_mean", "distribution") and ndim == 0:
        return False
    return True


def curated_cases(*, reductions=REDUCTIONS, dtypes=("float32", "float64"),
                  pred_kinds=("logprob",), target_kinds=("prob",)) -> list[Case]:
    """Every curated question for every reduction, dtype and encoding given (logits
    questions only as ``pred_kind="logits"``), labelled ``curated/<question>``; values are
    rounded into each dtype (a value beyond a dtype's range rounds to +-inf, and that
    case is sent as such: it is part of the question in that dtype)."""
    out: list[Case] = []
    for q in questions():
        P = np.asarray(q.target, dtype=np.float64)
        Q = np.asarray(q.pred, dtype=np.float64)
        for dtype in dtypes:
            for red in reductions:
                if not _expressible(P, red):
                    continue
                ikinds = ("logits",) if q.pred_logits else pred_kinds
                tkinds = tuple(dict.fromkeys((*target_kinds, *q.target_kinds)))
                for ik in ikinds:
                    for tk in tkinds:
                        pred = round_to(Q, dtype) if q.pred_logits else encode(round_to(Q, dtype), ik, dtype)
                        out.append(Case(
                            target=encode(round_to(P, dtype), tk, dtype), pred=pred, dtype=dtype,
                            target_kind=tk, pred_kind=ik, reduction=red,
                            class_axis=q.class_axis if P.ndim else -1,
                            batch_axis=q.batch_axis if P.ndim > 1 else 0,
                            label=f"curated/{q.name}"))
    return out


def weighted_curated_cases(dtypes=("float32", "float64")) -> list[Case]:
    """The seed examples with a scalar weight and with per-sample weights (one zero)."""
    P = np.array([_D2, _D3, _D4])
    Q = np.array([_D1, _D1, _D1])
    out = []
    for dtype in dtypes:
        for red in ("sum", "mean", "batchmean", "sample_mean", "sample_sum", "distribution_mean"):
            base = dict(target=round_to(P, dtype), pred=encode(round_to(Q, dtype), "logprob", dtype),
                        dtype=dtype, target_kind="prob", pred_kind="logprob", reduction=red)
            out.append(Case(**base, weight=float(round_to(0.3, dtype)), label="curated/weighted_scalar"))
            out.append(Case(**base, sample_weight=round_to([[1.0], [0.0], [2.5]], dtype),
                            label="curated/weighted_sample"))
    return out


# tf_keras.losses.KLDivergence docstring (tf_keras/src/losses.py, 2.21.0): the printed example
_KERAS_DOC_TRUE = [[0.0, 1.0], [0.0, 0.0]]
_KERAS_DOC_PRED = [[0.6, 0.4], [0.4, 0.6]]


def keras_doc_example_cases(dtypes=("float32", "float64")) -> list[Case]:
    """The four calls of the tf_keras ``KLDivergence`` docstring example, y_true and y_pred
    as probabilities: the default reduction ("sum_over_batch_size" = distribution_mean),
    again with sample_weight=[0.8, 0.2] (one weight per row: shape (2, 1) here), SUM (sum)
    and NONE (distribution).  float32 is what the docstring ran (floatx)."""
    out = []
    for dtype in dtypes:
        base = dict(target=round_to(_KERAS_DOC_TRUE, dtype), pred=round_to(_KERAS_DOC_PRED, dtype), dtype=dtype,
                    target_kind="prob", pred_kind="prob")
        for red in ("distribution_mean", "sum", "distribution"):
            out.append(Case(**base, reduction=red, label="curated/tf_keras_doc_example"))
        out.append(Case(**base, reduction="distribution_mean", sample_weight=round_to([[0.8], [0.2]], dtype),
                        label="curated/tf_keras_doc_example_weighted"))
    return out


# Inputs in different dtypes (SPEC.md KL-DTYPE-4): (target dtype, pred dtype) pairs whose
# result is asked in their promotion (float32+float64 both ways, float16+bfloat16 both ways,
# and the half dtypes with float32/float64), and explicit compute dtypes (inputs -> dtype):
# coarser (float32 inputs, float16/bfloat16 result; float64 -> float32) and finer than the
# inputs (float32 -> float64, float16 -> float32), one of them with mixed inputs.
MIXED_INPUT_DTYPES = (("float32", "float64"), ("float64", "float32"), ("float16", "bfloat16"),
                      ("bfloat16", "float16"), ("float16", "float32"), ("float32", "float16"),
                      ("float16", "float64"), ("float64", "float16"))
COMPUTE_DTYPES = ((("float32", "float32"), "float64"), (("float32", "float32"), "float16"),
                  (("float32", "float32"), "bfloat16"), (("float64", "float64"), "float32"),
                  (("float16", "float16"), "float32"), (("float32", "float64"), "float16"))
_MIXED_QUESTIONS = ("hand_checked_example", "seed_mxnet_d4_vs_d1", "one_hot_target", "broadcast_target_row")
_MIXED_REDUCTIONS = ("none", "sum", "mean", "batchmean", "distribution", "distribution_mean", "sample_sum")


def mixed_dtype_cases() -> list[Case]:
    """Curated questions with the target and the prediction in different dtypes, the result
    asked in their promotion (``Case.dtype_form == "promoted"``), Q as log-probabilities,
    in every reduction an adapter declares; labelled ``curated/mixed_dtypes_<question>``."""
    qs = {q.name: q for q in questions()}
    out = []
    for name in _MIXED_QUESTIONS:
        q = qs[name]
        P, Q = np.asarray(q.target, dtype=np.float64), np.asarray(q.pred, dtype=np.float64)
        for tdt, pdt in MIXED_INPUT_DTYPES:
            for red in _MIXED_REDUCTIONS:
                out.append(Case(target=round_to(P, tdt), pred=encode(round_to(Q, pdt), "logprob", pdt),
                                dtype=promote(tdt, pdt), target_dtype=tdt, pred_dtype=pdt, pred_kind="logprob",
                                reduction=red, label=f"curated/mixed_dtypes_{name}"))
    return out


def compute_dtype_cases() -> list[Case]:
    """The Keras ``KLDivergence(dtype=...)`` question: inputs in one dtype, the loss asked in
    another (``Case.dtype_form == "cast"``), P and Q as probabilities, in the Keras
    reductions; labelled ``curated/compute_dtype_<question>``."""
    qs = {q.name: q for q in questions()}
    out = []
    for name in ("hand_checked_example", "seed_mxnet_d4_vs_d1", "seed_medium_rows"):
        q = qs[name]
        P, Q = np.asarray(q.target, dtype=np.float64), np.asarray(q.pred, dtype=np.float64)
        for (tdt, pdt), dtype in COMPUTE_DTYPES:
            for red in ("distribution", "sum", "distribution_mean"):
                out.append(Case(target=round_to(P, tdt), pred=round_to(Q, pdt), dtype=dtype, target_dtype=tdt,
                                pred_dtype=pdt, target_kind="prob", pred_kind="prob", reduction=red,
                                label=f"curated/compute_dtype_{name}"))
    return out


# (pred shape, shape the target is sent in): the same element count (SPEC.md KL-SHAPE-3).
# (2, 3)/(6,), (3, 4)/(4, 3), (2, 3)/(3, 2), (2, 2, 3)/(12,), (2, 6)/(3, 4) do not broadcast;
# (1, 6)/(6,) broadcasts to the pred's shape (the same entries); (2, 1, 3)/(1, 2, 3) broadcasts
# to (2, 2, 3): a framework that broadcasts instead of reshaping computes another question.
RESHAPED_TARGETS = (((2, 3), (6,)), ((3, 4), (4, 3)), ((2, 3), (3, 2)), ((2, 2, 3), (12,)),
                    ((2, 6), (3, 4)), ((1, 6), (6,)), ((2, 1, 3), (1, 2, 3)))


def reshaped_target_cases(dtypes=("float16", "float32", "float64")) -> list[Case]:
    """A target sent in another shape with the prediction's element count (MXNet's "arbitrary
    shape as long as they have the same number of elements"): P and Q normalised along the
    last axis of the pred's shape, Q as log-probabilities and as logits, reduction
    ``sample_sum``; labelled ``curated/reshaped_target``."""
    out = []
    for i, (shape, sent) in enumerate(RESHAPED_TARGETS):
        P = _softmax(_uniform(shape, 20 + i), -1)
        Q = _softmax(_uniform(shape, 40 + i), -1)
        for dtype in dtypes:
            for kind in ("logprob", "logits"):
                out.append(Case(target=round_to(P, dtype), pred=encode(round_to(Q, dtype), kind, dtype),
                                dtype=dtype, pred_kind=kind, reduction="sample_sum", target_sent_shape=sent,
                                label="curated/reshaped_target"))
    return out


def all_curated() -> list[Case]:
    """The curated set that runs every time: every question in every dtype with Q as
    log-probabilities, again in float64 with Q and P given as probabilities / P as
    log-probabilities, the weighted seed examples in every dtype, the tf_keras
    docstring's example calls, and the questions of inputs in other dtypes and of a
    reshaped target (KL-DTYPE-4, KL-SHAPE-3)."""
    dts = ("float16", "bfloat16", "float32", "float64")
    return (curated_cases(dtypes=dts)
            + curated_cases(dtypes=("float64",), pred_kinds=("prob",), target_kinds=("prob", "logprob"))
            + weighted_curated_cases(dtypes=dts)
            + keras_doc_example_cases()
            + mixed_dtype_cases() + compute_dtype_cases() + reshaped_target_cases())
