"""klconform adapter for the in-house numpy KL loss (``inhouse_numpy_kl.kernel``).

The module top level imports only klconform's interface (never the framework): the
controller imports this class to read its declarations; ``setup()`` imports the framework
inside the worker process.
"""
from __future__ import annotations

from klconform.adapters.base import Adapter, Capabilities, Outcome
from klconform.reference.family import Point


class NumpyKL(Adapter):
    name = "inhouse.numpy_kl"
    api = "inhouse_numpy_kl.kernel.kl_loss"
    framework = "inhouse-numpy-kl"
    doc_url = "https://example.invalid/inhouse/kl_loss"   # your internal docs page
    doc_version = "0.1.0"

    def capabilities(self) -> Capabilities:
        return Capabilities(
            dtypes=frozenset({"float16", "float32", "float64"}),      # numpy has no bfloat16
            reductions=frozenset({"none", "sum", "mean", "batchmean", "distribution"}),
            pred_kinds=frozenset({"logprob"}),
            target_kinds=frozenset({"prob"}),
            gradients=frozenset({"pred"}),
            broadcasting=True,
            min_ndim=1,
            options=("reduction",),
        )

    def documented(self, case) -> Point:
        # The docs promise the textbook definition with 0 * log 0 = 0 (SPEC.md KL-ZERO-1).
        return Point(reduction=case.reduction)

    def setup(self) -> dict:
        import numpy as np                       # the "framework" import happens here
        from inhouse_numpy_kl import __version__, kernel
        self._np, self._kernel = np, kernel
        return {"framework": self.framework, "version": __version__, "device": "cpu",
                "numpy": np.__version__}

    def evaluate(self, case) -> Outcome:
        np, kernel = self._np, self._kernel
        if case.dtype == "bfloat16" or case.pred_kind != "logprob" or case.target_kind != "prob" \
                or case.weight is not None or case.sample_weight is not None \
                or (case.reduction == "distribution" and case.class_axis not in (-1, len(case.shape) - 1)):
            return Outcome(status="unsupported", error_message="outside NumpyKL's capabilities")
        log_q, p = case.sent_values("pred"), case.sent_values("target")   # in case.dtype, read-only
        out = np.asarray(kernel.kl_loss(log_q, p, case.reduction))
        grads, grad_dtypes = {}, {}
        if case.grad:
            g = kernel.kl_loss_grad(log_q, p, case.reduction)
            grads["pred"], grad_dtypes["pred"] = g.astype(np.float64), str(g.dtype)
        return Outcome(status="ok", value=out.astype(np.float64), dtype=str(out.dtype), shape=out.shape,
                       grads=grads, grad_dtypes=grad_dtypes,
                       native_call=f"kl_loss(log_q, p, reduction={case.reduction!r})")
