"""TensorFlow Probability adapter: ``tfd.kl_divergence(tfd.Categorical(P), tfd.Categorical(Q))``.

Native call (KL-ARG-1: the first distribution is P)::

    tfd = tfp.distributions
    tfd.kl_divergence(tfd.Categorical(probs=P | logits=log P),
                      tfd.Categorical(probs=Q | logits=log Q | logits=z))

Probabilities go in as ``probs=``, log-probabilities and logits as ``logits=`` (the
parameter TFP users pass for log-space inputs); the class axis is the last one and the
result is each distribution's KL (``distribution``, KL-RED-DIST).  What TFP 0.25 computes
(tensorflow_probability/python/distributions/categorical.py, ``_kl_categorical_categorical``)::

    a_logits = log(probs_a) if built from probs else logits_a      # likewise b
    a_log_probs = log_softmax(a_logits)
    sum(where(exp(a_log_probs) == 0, 0, a_log_probs - log_softmax(b_logits)) * exp(a_log_probs), -1)

The ``log_softmax`` of both sides **normalises** P and Q (KL-NORM-1): a row that does not sum
to 1 is divided by its sum first (``Point("distribution", normalise=True)``), where the
canonical KL (KL-DEF-1) computes on the values as given.  ``_mul_exp`` makes p = 0 terms
exactly 0 (also for q = 0) with a zero gradient.  Negative probabilities are NaN through
``log``.  Records: klconform/known/tfp_kl_divergence.toml; notes: docs/frameworks/tfp.md.

TensorFlow and TFP are imported only in :meth:`TfpCategoricalKL.setup`, in the side
environment ``tfp`` (``tfp.kl_divergence@tfp``).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from klconform.adapters.base import Adapter, Capabilities, Outcome, input_text
from klconform.adapters.keras_kldivergence import tf_tensor
from klconform.reference.family import Point

DOC_URL = "https://www.tensorflow.org/probability/api_docs/python/tfp/distributions/kl_divergence"
DTYPES = ("float16", "bfloat16", "float32", "float64")
PARAM = {"prob": "probs", "logprob": "logits", "logits": "logits"}


class TfpCategoricalKL(Adapter):
    devices = ("cpu", "cuda")
    """``tfp.distributions.kl_divergence(Categorical(P), Categorical(Q))``."""

    name = "tfp.kl_divergence"
    api = "tfp.distributions.kl_divergence"
    framework = "tensorflow-probability"
    doc_url = DOC_URL
    doc_version = "0.25.0"

    def __init__(self) -> None:
        self._tf = None
        self._tfd = None

    def capabilities(self) -> Capabilities:
        return Capabilities(
            dtypes=frozenset(DTYPES),
            reductions=frozenset({"distribution"}),
            pred_kinds=frozenset(PARAM),
            target_kinds=frozenset({"prob", "logprob"}),
            weights=frozenset(),
            gradients=frozenset({"pred", "target"}),
            devices=frozenset({"cpu"}),
            batch_axis=False,
            class_axis=False,       # the event axis is the last one
            # batch shapes broadcast, but each side is normalised in its own shape, so a class
            # axis of size 1 broadcast to C would normalise to 1 before broadcasting (KL-NORM-1
            # normalises on S): only equal shapes are sent
            broadcasting=False,
            min_ndim=1,
            max_ndim=8,
            options=("probs", "logits"),
        )

    def documented(self, case) -> Point:
        """``kl_divergence`` "Get the KL-divergence KL(distribution_a || distribution_b)"
        of two categorical distributions: ``logits`` are "unnormalized log probabilities"
        and ``probs`` "the probability of each class" -- the parameters define a
        distribution only once normalised, and ``_kl_categorical_categorical`` says so in
        code (``log_softmax`` of both sides).  The documented point is therefore the
        per-distribution KL of normalised inputs (KL-NORM-1), as for torch's Categorical;
        that it differs from the canonical KL on rows not summing to 1 is recorded
        (``tfp-normalises-inputs``)."""
        return Point(reduction=case.reduction, normalise=True)

    def setup(self) -> dict[str, Any]:
        from klconform.adapters.keras_kldivergence import import_tensorflow, tf_device
        tf = import_tensorflow()
        import tensorflow_probability as tfp

        self._tf, self._tfd = tf, tfp.distributions
        return {"framework": "tensorflow-probability", "version": tfp.__version__, "tensorflow": tf.__version__,
                "device": tf_device(), "numpy": np.__version__}

    def unsupported_reason(self, case) -> str | None:
        if case.reduction != "distribution":
            return f"reduction {case.reduction!r}: the KL of two Categoricals is per distribution"
        if case.dtype not in DTYPES:
            return f"dtype {case.dtype!r} not supported"
        if case.weight is not None or case.sample_weight is not None:
            return "no weight arguments"
        if not case.shape or case.class_axis % len(case.shape) != len(case.shape) - 1:
            return "the categories are the last axis"
        if case.held_shape("target") != case.held_shape("pred"):
            return "only equal shapes (each side is normalised in its own shape)"
        return None

    def evaluate(self, case) -> Outcome:
        if self._tf is None:
            self.setup()
        why = self.unsupported_reason(case)
        if why is not None:
            return Outcome(status="unsupported", error_message=why)
        tf, tfd = self._tf, self._tfd
        target = tf.Variable(tf_tensor(tf, case.sent_values("target"), case.dtype))
        pred = tf.Variable(tf_tensor(tf, case.sent_values("pred"), case.dtype))
        tp, pp = PARAM[case.target_kind], PARAM[case.pred_kind]
        native = (f"tfd.kl_divergence(tfd.Categorical({tp}={input_text(case, 'target')}), "
                  f"tfd.Categorical({pp}={input_text(case, 'pred')}))")
        with tf.GradientTape() as tape:
            out = tfd.kl_divergence(tfd.Categorical(**{tp: target}), tfd.Categorical(**{pp: pred}))
        grads: dict[str, np.ndarray] = {}
        grad_dtypes: dict[str, str] = {}
        if case.grad:
            # head gradient of ones == d sum(output) (KL-GRAD-1)
            g_t, g_p = tape.gradient(out, [target, pred], output_gradients=tf.ones_like(out))
            for name, g in (("target", g_t), ("pred", g_p)):
                if g is None:        # not connected: reported as missing, not as zeros
                    continue
                grads[name] = np.asarray(tf.cast(g, tf.float64).numpy(), dtype=np.float64)
                grad_dtypes[name] = g.dtype.name
        return Outcome(status="ok", value=np.asarray(tf.cast(out, tf.float64).numpy(), dtype=np.float64),
                       dtype=out.dtype.name, shape=tuple(out.shape), grads=grads, grad_dtypes=grad_dtypes,
                       native_call=native)
