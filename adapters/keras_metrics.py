"""Keras metric adapters: ``keras.metrics.KLDivergence`` (Keras 3) and
``tf_keras.metrics.KLDivergence`` (Keras 2), driven as a training loop drives them: one
metric object, ``update_state(y_true, y_pred, sample_weight)`` once per chunk of the
batch (the case's batch axis 0 split into up to 3 chunks), then ``result()``.

Both are ``MeanMetricWrapper(fn=kl_divergence)``: each update computes the
per-distribution losses with the loss function (``clip_both(1e-7)``, KL-EPS-CLIP, sum over
the last axis) and accumulates ``total += Σ w·KL`` and ``count += Σ w`` (the weights
broadcast to the per-distribution losses; ``w = 1`` without sample weights), and
``result() = total / count``: the **weighted mean** of the per-distribution KLs -- the
divisor is the sum of the sample weights, not the number of distributions
(``Point("distribution_mean", weight_level="distribution", weight_divisor="weight_sum")``,
KL-WEIGHT-SUMDIV).  Chunking does not change that quantity; only rounding differs.
The metric's variables have the metric's dtype (default float32), whatever the inputs'.
Metrics are not differentiated (no gradients).  Records:
klconform/known/keras_metric_KLDivergence.toml, tf_keras_metric_KLDivergence.toml;
notes: docs/frameworks/keras.md.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from klconform.adapters.base import Adapter, Capabilities, Outcome, shape_text
from klconform.adapters.keras_kldivergence import (DTYPES, capture_warnings, import_tensorflow, tf_device,
                                                   keras_sample_weight, tf_tensor, to_f64,
                                                   unsupported_reason)
from klconform.reference.family import Point

DOC_KERAS3 = "https://keras.io/api/metrics/probabilistic_metrics/#kldivergence-class"
DOC_TF_KERAS = "https://www.tensorflow.org/api_docs/python/tf/keras/metrics/KLDivergence"
MAX_CHUNKS = 3


def documented_point(case) -> Point:
    """The docs: the metric is ``y_true * log(y_true / y_pred)`` summed over the last axis,
    averaged by ``Mean`` ("If sample_weight is given, calculates the sum of the weights and
    returns the weighted sum divided by sum of weights")."""
    return Point(reduction=case.reduction, weight_level="distribution",
                 weight_divisor="weight_sum" if case.sample_weight is not None else "count")


def chunks(case) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """(y_true, y_pred, sample_weight) per update_state call: axis 0 of the broadcast shape
    split into up to MAX_CHUNKS parts (one part for 1-D cases, the distribution itself);
    sample weights in Keras' per-distribution convention, broadcast to the batch shape."""
    shape = case.shape
    t = np.broadcast_to(case.sent_values("target"), shape)     # in case.dtype: no mixed inputs
    q = np.broadcast_to(case.sent_values("pred"), shape)
    sw = keras_sample_weight(case)
    if sw is not None:
        sw = np.broadcast_to(sw, shape[:-1])
    if len(shape) < 2 or shape[0] <= 1:
        return [(t, q, sw)]
    parts = np.array_split(np.arange(shape[0]), min(MAX_CHUNKS, shape[0]))
    return [(t[p[0]:p[-1] + 1], q[p[0]:p[-1] + 1], None if sw is None else sw[p[0]:p[-1] + 1]) for p in parts]


class _KerasMetric(Adapter):
    devices = ("cpu", "cuda")
    doc_version = None
    #: set by subclasses
    module_name = ""

    def __init__(self) -> None:
        self._mod = None
        self._tf = None

    def capabilities(self) -> Capabilities:
        return Capabilities(dtypes=frozenset(DTYPES), reductions=frozenset({"distribution_mean"}),
                            pred_kinds=frozenset({"prob"}), target_kinds=frozenset({"prob"}),
                            weights=frozenset({"sample"}), gradients=frozenset(),
                            devices=frozenset({"cpu"}), batch_axis=False, class_axis=False,
                            broadcasting=False,    # y_true and y_pred of one shape, as the loss function takes them
                            min_ndim=1, max_ndim=8, options=("sample_weight", "dtype"))

    def documented(self, case) -> Point:
        return documented_point(case)

    def evaluate(self, case) -> Outcome:
        if self._mod is None:
            self.setup()
        why = unsupported_reason(case, ("distribution_mean",), weights=True)
        if why is not None:
            return Outcome(status="unsupported", error_message=why)
        tf = self._tf
        parts = chunks(case)

        def run() -> Outcome:
            metric = self._mod.metrics.KLDivergence()
            calls = []
            for t, q, w in parts:
                kwargs = {} if w is None else {"sample_weight": tf_tensor(tf, np.ascontiguousarray(w), case.dtype)}
                metric.update_state(tf_tensor(tf, np.ascontiguousarray(t), case.dtype),
                                    tf_tensor(tf, np.ascontiguousarray(q), case.dtype), **kwargs)
                calls.append(f"update_state({shape_text(t, case.dtype)}, {shape_text(q, case.dtype)}"
                             + ("" if w is None else f", sample_weight={shape_text(w, case.dtype)}") + ")")
            out = metric.result()
            native = f"m = {self.module_name}.metrics.KLDivergence(); " + "; ".join(f"m.{c}" for c in calls) + "; m.result()"
            return Outcome(status="ok", value=to_f64(tf, out), dtype=out.dtype.name, shape=tuple(out.shape),
                           native_call=native)
        return capture_warnings(run)


class KerasMetricKLDivergence(_KerasMetric):
    """``keras.metrics.KLDivergence()`` (Keras 3, TensorFlow backend)."""

    name = "keras.metric_KLDivergence"
    api = "keras.metrics.KLDivergence"
    framework = "keras"
    doc_url = DOC_KERAS3
    doc_version = "3.15"
    module_name = "keras"

    def setup(self) -> dict[str, Any]:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        os.environ["KERAS_BACKEND"] = "tensorflow"
        tf = import_tensorflow()
        import keras
        self._mod, self._tf = keras, tf
        return {"framework": "keras", "version": keras.__version__, "backend": keras.backend.backend(),
                "tensorflow": tf.__version__, "floatx": keras.config.floatx(), "device": tf_device()}


class TfKerasMetricKLDivergence(_KerasMetric):
    """``tf_keras.metrics.KLDivergence()`` (Keras 2)."""

    name = "tf_keras.metric_KLDivergence"
    api = "tf_keras.metrics.KLDivergence"
    framework = "tf_keras"
    doc_url = DOC_TF_KERAS
    doc_version = "2.21"
    module_name = "tf_keras"

    def setup(self) -> dict[str, Any]:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
        tf = import_tensorflow()
        import tf_keras
        self._mod, self._tf = tf_keras, tf
        return {"framework": "tf_keras", "version": tf_keras.__version__, "tensorflow": tf.__version__,
                "floatx": tf_keras.backend.floatx(), "device": tf_device()}
