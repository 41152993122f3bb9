"""Keras 2 adapter: the function ``tf_keras.losses.kl_divergence(y_true, y_pred)`` (beside
the class ``tf_keras.losses.KLDivergence``, adapters/tf_keras_kldivergence.py).

Source (tf_keras/src/losses.py, ``kl_divergence``)::

    y_pred = tf.convert_to_tensor(y_pred); y_true = tf.cast(y_true, y_pred.dtype)
    y_true = backend.clip(y_true, backend.epsilon(), 1)
    y_pred = backend.clip(y_pred, backend.epsilon(), 1)
    return tf.reduce_sum(y_true * tf.math.log(y_true / y_pred), axis=-1)

i.e. ``clip_both(1e-7)`` with the ``distribution`` reduction (KL-EPS-CLIP, KL-RED-DIST),
computed in y_pred's dtype, no weights.  Its docstring example asserts equality with the
clipped formula, so the documented point is the clip point too.  Records:
klconform/known/tf_keras_kl_divergence.toml; notes: docs/frameworks/keras.md.
"""
from __future__ import annotations

import os
from typing import Any

from klconform.adapters.base import Adapter, Capabilities, Outcome, input_text
from klconform.adapters.keras_kldivergence import (DTYPES, capture_warnings, clip_point, evaluate_with_tape,
                                                   import_tensorflow, tf_device, unsupported_reason)
from klconform.reference.family import Point

DOC_URL = "https://www.tensorflow.org/api_docs/python/tf/keras/losses/KLD"


class TfKerasKLDivergenceFn(Adapter):
    devices = ("cpu", "cuda")
    """``tf_keras.losses.kl_divergence(y_true=P, y_pred=Q)``: per-distribution losses."""

    name = "tf_keras.kl_divergence"
    api = "tf_keras.losses.kl_divergence"
    framework = "tf_keras"
    doc_url = DOC_URL
    doc_version = "2.21"

    def __init__(self) -> None:
        self._tf_keras = None
        self._tf = None

    def capabilities(self) -> Capabilities:
        return Capabilities(dtypes=frozenset(DTYPES), reductions=frozenset({"distribution"}),
                            pred_kinds=frozenset({"prob"}), target_kinds=frozenset({"prob"}),
                            weights=frozenset(), gradients=frozenset({"pred", "target"}),
                            devices=frozenset({"cpu"}), batch_axis=False, class_axis=False,
                            broadcasting=False, min_ndim=1, max_ndim=8, options=())

    def documented(self, case) -> Point:
        # The docstring's usage example asserts loss == sum(y_true * log(y_true / y_pred))
        # after clipping both into [1e-7, 1]: clip_both(1e-7) (KL-EPS-CLIP).
        return clip_point(case.reduction)

    def setup(self) -> dict[str, Any]:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
        tf = import_tensorflow()
        import tf_keras
        self._tf_keras, self._tf = tf_keras, tf
        return {"framework": "tf_keras", "version": tf_keras.__version__, "tensorflow": tf.__version__,
                "epsilon": float(tf_keras.backend.epsilon()), "device": tf_device()}

    def evaluate(self, case) -> Outcome:
        if self._tf_keras is None:
            self.setup()
        why = unsupported_reason(case, ("distribution",), weights=False)
        if why is not None:
            return Outcome(status="unsupported", error_message=why)
        native = (f"tf_keras.losses.kl_divergence(y_true={input_text(case, 'target')}, "
                  f"y_pred={input_text(case, 'pred')})")
        fn = self._tf_keras.losses.kl_divergence
        return capture_warnings(lambda: evaluate_with_tape(self._tf, case, lambda t, p, w: fn(t, p), native))
