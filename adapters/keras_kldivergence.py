"""Keras 3 adapters: ``keras.losses.KLDivergence`` (the loss class) and
``keras.losses.kl_divergence`` (the function), TensorFlow backend.

Keras takes P as ``y_true`` and Q as ``y_pred``, both as probabilities (SPEC.md KL-ARG-2,
``target_kind="prob"``, ``pred_kind="prob"``), with the class axis last.  What the source
computes (keras/src/losses/losses.py, ``kl_divergence``)::

    y_true = clip(y_true, epsilon(), 1); y_pred = clip(y_pred, epsilon(), 1)
    loss   = sum(y_true * log(y_true / y_pred), axis=-1)      # epsilon() = 1e-7

i.e. the family point ``clip_both(1e-7)`` (KL-EPS-CLIP) with the ``distribution`` reduction
(KL-RED-DIST).  The class then applies ``sample_weight`` to those per-distribution losses
(KL-WEIGHT-DIST) and reduces them: ``"none"``/``None`` -> ``distribution``, ``"sum"`` ->
``sum``, ``"sum_over_batch_size"`` (default) and its alias ``"mean"`` -> ``distribution_mean``
(KL-RED-SOBS; the divisor is the number of per-distribution losses, not Σ weights,
KL-WEIGHT-DIVISOR), ``"mean_with_sample_weight"`` -> ``distribution_mean`` divided by Σ
weights (KL-WEIGHT-SUMDIV).  The class casts both inputs to its ``dtype`` (default
``keras.config.floatx()`` = float32) before computing; the function computes in
``y_pred``'s dtype.

Neither Keras nor TensorFlow is imported at module top level: :meth:`setup` does, in the
worker.  Observations: docs/frameworks/keras.md; recorded discrepancies:
klconform/known/keras_KLDivergence.toml and keras_kl_divergence.toml.
"""
from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np

from klconform.adapters.base import Adapter, Capabilities, Outcome, asked_device, input_text, shape_text
from klconform.reference.dtypes import CARRIER
from klconform.reference.family import Point

#: keras.config.epsilon() default; Keras clips P and Q into [EPSILON, 1] (KL-EPS-CLIP).
EPSILON = 1e-7
DOC_CLASS = "https://keras.io/api/losses/probabilistic_losses/#kldivergence-class"
DOC_FUNCTION = "https://keras.io/api/losses/probabilistic_losses/#kldivergence-function"
SOURCE_URL = "https://github.com/keras-team/keras/blob/v3.15.1/keras/src/losses/losses.py#L2058-L2106"
DTYPES = ("float16", "bfloat16", "float32", "float64")
# Canonical reduction -> the Keras 3 ``reduction=`` argument users pass (KL-RED-*).
NATIVE_REDUCTIONS = {"distribution": "none", "sum": "sum", "distribution_mean": "sum_over_batch_size"}


# ---------------------------------------------------------------------------- family points
def clip_point(reduction: str, *, weight_divisor: str = "count") -> Point:
    """The point Keras' source computes: ``clip_both(1e-7)``, weights per distribution."""
    return Point(reduction=reduction, epsilon="clip_both", eps=EPSILON,
                 weight_level="distribution", weight_divisor=weight_divisor)


def formula_point(reduction: str) -> Point:
    """The point the class docs claim: the formula ``y_true * log(y_true / y_pred)`` summed
    over the last axis, no epsilon ("clipped to the [0, 1] range" is the identity on valid
    probabilities), sample weights per distribution."""
    return Point(reduction=reduction, weight_level="distribution")


# ---------------------------------------------------------------------------- case -> call
def class_axis_is_last(case) -> bool:
    """True when ``case``'s class axis is its last axis (Keras reduces over axis -1)."""
    ndim = len(case.shape)
    return ndim > 0 and case.class_axis % ndim == ndim - 1


def keras_sample_weight(case) -> np.ndarray | None:
    """``case.sample_weight`` in Keras' convention: one weight per distribution.

    The canonical weight broadcasts to the loss shape with numpy's trailing alignment, so
    its last axis lines up with the class axis (Keras' last axis, KL-WEIGHT-SHAPE); Keras
    multiplies the per-distribution losses, whose shape lacks that axis.  So the last axis
    is dropped when it has size 1 or the weight is constant along it (KL-WEIGHT-DIST).  A
    weight that varies along the class axis comes back unchanged (and
    :func:`unsupported_reason` refuses the case: Keras cannot express it)."""
    sw = case.sample_weight
    if sw is None or sw.ndim == 0 or sw.shape[-1] == 0:   # no class entries: nothing to drop
        return sw
    first = sw[..., :1]
    if sw.shape[-1] == 1 or np.all((sw == first) | (np.isnan(sw) & np.isnan(first))):
        return sw[..., 0]
    return sw


def unsupported_reason(case, reductions, *, weights: bool) -> str | None:
    """Why ``case`` cannot be asked of a Keras KL API with these ``reductions``, or None."""
    for dt in (case.dtype, case.input_dtype("target"), case.input_dtype("pred")):
        if dt not in DTYPES:
            return f"dtype {dt!r} is not one of {DTYPES}"
    if case.target_sent_shape is not None:
        return "Keras takes y_true in y_pred's shape: a reshaped target is not expressible"
    if case.reduction not in reductions:
        return f"reduction {case.reduction!r} has no Keras equivalent (have {sorted(reductions)})"
    if case.target_kind != "prob" or case.pred_kind != "prob":
        return (f"Keras takes probabilities for y_true and y_pred, not target_kind="
                f"{case.target_kind!r} / pred_kind={case.pred_kind!r}")
    if not case.shape:
        return "Keras sums over axis -1: a 0-D case has no class axis"
    if not class_axis_is_last(case):
        return f"class_axis {case.class_axis}: Keras always reduces over the last axis"
    if case.weight is not None:
        return "Keras KL losses take no scalar weight option"
    if case.sample_weight is not None and not weights:
        return "this API takes no sample_weight"
    sw = case.sample_weight
    if sw is not None and sw.ndim and sw.shape[-1] != 1 and keras_sample_weight(case) is sw:
        return ("sample_weight varies along the class axis: Keras weights whole distributions "
                "(KL-WEIGHT-DIST), element weights cannot be expressed")
    return None


# ---------------------------------------------------------------------------- TF plumbing
def import_tensorflow():
    """Import TensorFlow quietly (TF_CPP_MIN_LOG_LEVEL=3) on the device the run asked for
    (klconform.adapters.base.asked_device): on cpu the GPUs are hidden (TensorFlow places
    ops on a GPU whenever it sees one); cuda needs a visible GPU.  Returns the module."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    device = asked_device(["cpu"] + (["cuda"] if gpus else []))
    if device == "cpu" and gpus:
        tf.config.set_visible_devices([], "GPU")
    return tf


def tf_device() -> str:
    """The device TensorFlow computes on in this worker (after :func:`import_tensorflow`)."""
    import tensorflow as tf
    return "cuda" if tf.config.get_visible_devices("GPU") else "cpu"


def to_f64(tf, t) -> np.ndarray:
    """A TF tensor as a float64 numpy array (exact widening, bfloat16 included)."""
    return np.asarray(tf.cast(t, tf.float64).numpy(), dtype=np.float64)


def tf_tensor(tf, values: np.ndarray, dtype: str):
    """``values`` (exact in ``dtype``, Case invariant) as a TF tensor of ``dtype``: one copy
    from the numpy dtype that carries ``dtype`` (``Case.sent_values`` already is one), and
    an exact cast for bfloat16, which numpy has not."""
    t = tf.constant(np.asarray(values, dtype=CARRIER[dtype]))
    return t if CARRIER[dtype].name == dtype else tf.cast(t, getattr(tf, dtype))


#: TensorFlow's tensor alignment (EIGEN_MAX_ALIGN_BYTES): DLPack memory that is not
#: aligned to it aborts the process at the first kernel ("Check failed: IsAligned()").
TF_ALIGN = 64


def tf_input(tf, case, side: str):
    """Input ``side`` of ``case`` as a TF tensor of its own dtype.  On the CPU, where the
    worker holds a private map of the received values (``Case.private_view``: the large
    payloads), the tensor shares that memory through DLPack: ``tf.constant`` copies every
    numpy input, ~13 ms per 32 MiB, most of the harness' cost on a 64x131072 case.
    Elsewhere :func:`tf_tensor`'s copy.  No TF kernel here writes its inputs."""
    dtype = case.input_dtype(side)
    view = case.private_view(side)
    if (view is not None and CARRIER[dtype].name == dtype and view.flags.c_contiguous
            and view.ctypes.data % TF_ALIGN == 0 and tf_device() == "cpu"):
        return tf.experimental.dlpack.from_dlpack(view.__dlpack__())
    return tf_tensor(tf, case.sent_values(side), dtype)


def evaluate_with_tape(tf, case, call: Callable[[Any, Any, Any], Any], native: str,
                       warnings_seen: Callable[[], list[str]] | None = None) -> Outcome:
    """Run ``call(y_true, y_pred, sample_weight)`` on ``case``, under a ``tf.GradientTape`` when
    ``case.grad``.

    Gradients are of Σ(output) (``output_gradients`` of ones, KL-GRAD-1) w.r.t. y_pred
    ("pred") and y_true ("target"); an input TF cannot differentiate (None) is left out."""
    # each input in its own dtype (case.input_dtype, KL-DTYPE-4); sample weights in case.dtype
    y_true, y_pred = tf_input(tf, case, "target"), tf_input(tf, case, "pred")
    sw = keras_sample_weight(case)
    sample_weight = None if sw is None else tf_tensor(tf, sw, case.dtype)
    grads: dict[str, np.ndarray] = {}
    grad_dtypes: dict[str, str] = {}
    if not case.grad:                 # no tape: recording a 10⁷-element call costs ~40% of it
        out = call(y_true, y_pred, sample_weight)
    else:
        with tf.GradientTape(persistent=False) as tape:
            tape.watch(y_true)
            tape.watch(y_pred)
            out = call(y_true, y_pred, sample_weight)
        g_pred, g_true = tape.gradient(out, [y_pred, y_true], output_gradients=tf.ones_like(out))
        for name, g in (("pred", g_pred), ("target", g_true)):
            if g is not None:
                grads[name] = to_f64(tf, g)
                grad_dtypes[name] = g.dtype.name
    return Outcome(status="ok", value=to_f64(tf, out), dtype=out.dtype.name, shape=tuple(out.shape),
                   grads=grads, grad_dtypes=grad_dtypes,
                   warnings=warnings_seen() if warnings_seen else [], native_call=native)


def capture_warnings(fn: Callable[[], Outcome]) -> Outcome:
    """Run ``fn`` and attach the Python warnings it emitted to its Outcome."""
    import warnings
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        outcome = fn()
    outcome.warnings = outcome.warnings + [f"{w.category.__name__}: {w.message}" for w in seen]
    return outcome


# ---------------------------------------------------------------------------- adapters

def keras_capabilities(native_reductions, options, input_dtypes=frozenset()) -> Capabilities:
    """What a Keras KLDivergence loss object can be asked (Keras 3 and tf_keras alike);
    ``input_dtypes``: Capabilities.input_dtypes (mixed input dtypes, a dtype argument)."""
    return Capabilities(
        dtypes=frozenset(DTYPES),
        reductions=frozenset(native_reductions),
        pred_kinds=frozenset({"prob"}),
        target_kinds=frozenset({"prob"}),
        weights=frozenset({"sample"}),
        gradients=frozenset({"pred", "target"}),
        devices=frozenset({"cpu"}),
        batch_axis=False,
        class_axis=False,       # always the last axis
        broadcasting=False,     # LossFunctionWrapper squeezes/expands ranks first
        min_ndim=1,
        max_ndim=8,
        options=tuple(options),
        input_dtypes=frozenset(input_dtypes),
    )

class _Keras3(Adapter):
    devices = ("cpu", "cuda")
    """Shared Keras 3 setup; subclasses define the native call."""

    framework = "keras"
    doc_version = "3.15"

    def __init__(self) -> None:
        self._keras = None
        self._tf = None

    def setup(self) -> dict[str, Any]:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        os.environ["KERAS_BACKEND"] = "tensorflow"
        tf = import_tensorflow()
        import keras
        if keras.backend.backend() != "tensorflow":
            raise RuntimeError(f"Keras backend is {keras.backend.backend()!r}; this adapter drives 'tensorflow' "
                               "(KERAS_BACKEND was set too late: keras was imported before setup())")
        self._keras, self._tf = keras, tf
        return {"framework": "keras", "version": keras.__version__, "backend": "tensorflow",
                "tensorflow": tf.__version__, "epsilon": float(keras.config.epsilon()),
                "floatx": keras.config.floatx(), "numpy": np.__version__, "device": tf_device()}

    def _ready(self) -> None:
        if self._keras is None:
            self.setup()


class KerasKLDivergence(_Keras3):
    """``keras.losses.KLDivergence(reduction=...)(y_true=P, y_pred=Q, sample_weight=W)``,
    constructed as most users do: without the ``dtype`` argument (computes in floatx)."""

    name = "keras.KLDivergence"
    api = "keras.losses.KLDivergence"
    doc_url = DOC_CLASS
    #: canonical -> native reduction names; subclasses choose aliases
    native_reductions: dict[str, str] = NATIVE_REDUCTIONS
    #: pass ``dtype=case.dtype`` to the constructor (the ``dtype`` argument)
    pass_dtype: bool = False
    #: Capabilities.input_dtypes: mixed y_true/y_pred dtypes are a question users ask
    #: (keras-team/keras#19526); Loss.__call__ converts both to the loss dtype
    input_dtypes: frozenset[str] = frozenset({"promoted"})

    def capabilities(self) -> Capabilities:
        return keras_capabilities(self.native_reductions, ("reduction", "sample_weight", "dtype"),
                                  self.input_dtypes)

    def documented(self, case) -> Point:
        return formula_point(case.reduction)

    def _loss(self, case):
        kwargs = {"reduction": self.native_reductions[case.reduction]}
        if self.pass_dtype:
            kwargs["dtype"] = case.dtype
        return self._keras.losses.KLDivergence(**kwargs), kwargs

    def evaluate(self, case) -> Outcome:
        self._ready()
        why = unsupported_reason(case, self.native_reductions, weights=True)
        if why is not None:
            return Outcome(status="unsupported", error_message=why)
        loss, kwargs = self._loss(case)
        args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        sw = keras_sample_weight(case)
        native = (f"keras.losses.KLDivergence({args})(y_true={input_text(case, 'target')}, "
                  f"y_pred={input_text(case, 'pred')}"
                  + ("" if sw is None else f", sample_weight={shape_text(sw, case.dtype)}") + ")")
        return capture_warnings(lambda: evaluate_with_tape(
            self._tf, case, lambda t, p, w: loss(t, p, sample_weight=w), native))


class KerasKLDivergenceDtypeArg(KerasKLDivergence):
    """``keras.losses.KLDivergence(reduction=..., dtype=<case dtype>)``: the ``dtype``
    argument set to the case's dtype, so the loss computes in that dtype.  The inputs are
    sent in their own dtypes (``case.input_dtype``): a ``"cast"`` case asks the loss in a
    dtype other than the inputs' (KL-DTYPE-4), a ``"promoted"`` one in their promotion."""

    name = "keras.KLDivergence_dtype_arg"
    pass_dtype = True
    input_dtypes = frozenset({"promoted", "cast"})


class KerasKLDivergenceMeanWithSampleWeight(KerasKLDivergence):
    """``keras.losses.KLDivergence(reduction="mean_with_sample_weight")``: the
    ``distribution_mean`` sum divided by Σ sample weights (KL-WEIGHT-SUMDIV)."""

    name = "keras.KLDivergence_mean_with_sample_weight"
    native_reductions = {"distribution_mean": "mean_with_sample_weight"}

    def documented(self, case) -> Point:
        divisor = "weight_sum" if case.sample_weight is not None else "count"
        return Point(reduction=case.reduction, weight_level="distribution", weight_divisor=divisor)


class KerasKLDivergenceFn(_Keras3):
    """``keras.losses.kl_divergence(y_true=P, y_pred=Q)``: per-distribution losses."""

    name = "keras.kl_divergence"
    api = "keras.losses.kl_divergence"
    doc_url = DOC_FUNCTION

    def capabilities(self) -> Capabilities:
        return Capabilities(
            dtypes=frozenset(DTYPES),
            reductions=frozenset({"distribution"}),
            pred_kinds=frozenset({"prob"}),
            target_kinds=frozenset({"prob"}),
            weights=frozenset(),
            gradients=frozenset({"pred", "target"}),
            devices=frozenset({"cpu"}),
            batch_axis=False,
            class_axis=False,
            broadcasting=False,
            min_ndim=1,
            max_ndim=8,
            options=(),
            input_dtypes=frozenset({"promoted"}),   # y_true is converted to y_pred's dtype
        )

    def documented(self, case) -> Point:
        # The function's docstring example asserts equality with clip(., 1e-7, 1) applied
        # to both inputs: the docs claim clip_both(1e-7) here (KL-EPS-CLIP).
        return clip_point(case.reduction)

    def evaluate(self, case) -> Outcome:
        self._ready()
        why = unsupported_reason(case, ("distribution",), weights=False)
        if why is not None:
            return Outcome(status="unsupported", error_message=why)
        native = (f"keras.losses.kl_divergence(y_true={input_text(case, 'target')}, "
                  f"y_pred={input_text(case, 'pred')})")
        fn = self._keras.losses.kl_divergence
        return capture_warnings(lambda: evaluate_with_tape(self._tf, case, lambda t, p, w: fn(t, p), native))
