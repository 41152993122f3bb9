"""Keras 2 adapter: ``tf_keras.losses.KLDivergence`` (what ``tf.keras`` is under
``TF_USE_LEGACY_KERAS=1`` with TensorFlow >= 2.16).

Same formula as Keras 3 (clip both inputs into ``[1e-7, 1]``, sum over the last axis:
KL-EPS-CLIP, KL-RED-DIST), but Keras 2's ``Loss.__call__`` keeps the inputs' dtype (no cast
to floatx) and its reductions are ``"auto"``/``"sum_over_batch_size"`` ->
``distribution_mean``, ``"sum"`` -> ``sum``, ``"none"`` -> ``distribution``.  The helpers
(case checks, sample-weight convention, GradientTape evaluation) are shared with the Keras
3 module.  Observations: docs/frameworks/keras.md; recorded discrepancies:
klconform/known/tf_keras_KLDivergence.toml.
"""
from __future__ import annotations

import os
from typing import Any

from klconform.adapters.base import Adapter, Capabilities, Outcome, input_text, shape_text
from klconform.adapters.keras_kldivergence import (capture_warnings, keras_capabilities, evaluate_with_tape, formula_point,
                                         import_tensorflow, keras_sample_weight, tf_device,
                                         unsupported_reason)
from klconform.reference.family import Point

DOC_URL = "https://www.tensorflow.org/api_docs/python/tf/keras/losses/KLDivergence"
# Canonical reduction -> tf_keras reduction= (``"auto"`` means sum_over_batch_size here).
NATIVE_REDUCTIONS = {"distribution": "none", "sum": "sum", "distribution_mean": "sum_over_batch_size"}


class TfKerasKLDivergence(Adapter):
    devices = ("cpu", "cuda")
    """``tf_keras.losses.KLDivergence(reduction=...)(y_true=P, y_pred=Q, sample_weight=W)``."""

    name = "tf_keras.KLDivergence"
    api = "tf_keras.losses.KLDivergence"
    framework = "tf_keras"
    doc_url = DOC_URL
    doc_version = "2.21"
    native_reductions: dict[str, str] = NATIVE_REDUCTIONS

    def __init__(self) -> None:
        self._tf_keras = None
        self._tf = None

    def capabilities(self) -> Capabilities:
        # mixed y_true/y_pred dtypes: LossFunctionWrapper casts y_true to y_pred's dtype
        return keras_capabilities(self.native_reductions, ("reduction", "sample_weight"),
                                  input_dtypes=frozenset({"promoted"}))

    def documented(self, case) -> Point:
        # Same page text as Keras 3's class: the formula, "clipped to the [0, 1] range".
        return formula_point(case.reduction)

    def setup(self) -> dict[str, Any]:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        os.environ["TF_USE_LEGACY_KERAS"] = "1"   # tf.keras -> tf_keras in this worker
        tf = import_tensorflow()
        try:
            import tf_keras
        except ImportError as exc:
            raise ImportError(f"tf_keras is not installed ({exc}); Keras 2 adapter unavailable") from None
        self._tf_keras, self._tf = tf_keras, tf
        return {"framework": "tf_keras", "version": tf_keras.__version__, "tensorflow": tf.__version__,
                "epsilon": float(tf_keras.backend.epsilon()), "floatx": tf_keras.backend.floatx(),
                "device": tf_device()}

    def evaluate(self, case) -> Outcome:
        if self._tf_keras is None:
            self.setup()
        why = unsupported_reason(case, self.native_reductions, weights=True)
        if why is not None:
            return Outcome(status="unsupported", error_message=why)
        reduction = self.native_reductions[case.reduction]
        loss = self._tf_keras.losses.KLDivergence(reduction=reduction)
        sw = keras_sample_weight(case)
        native = (f"tf_keras.losses.KLDivergence(reduction={reduction!r})"
                  f"(y_true={input_text(case, 'target')}, "
                  f"y_pred={input_text(case, 'pred')}"
                  + ("" if sw is None else f", sample_weight={shape_text(sw, case.dtype)}") + ")")
        return capture_warnings(lambda: evaluate_with_tape(
            self._tf, case, lambda t, p, w: loss(t, p, sample_weight=w), native))
