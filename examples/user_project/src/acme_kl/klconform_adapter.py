"""klconform adapter for acme_kl.loss.kl_loss.  Module top level imports only klconform's
adapter interface; ``setup()`` imports the loss inside klconform's worker process."""
from __future__ import annotations

from klconform.adapters.base import Adapter, Capabilities, Outcome
from klconform.reference.family import Point

# acme's names -> klconform's canonical reductions (klconform.case.REDUCTIONS)
REDUCTIONS = {"none": "none", "sum": "sum", "mean": "mean", "distribution": "distribution"}


class AcmeKL(Adapter):
    name = "acme.kl"
    api = "acme_kl.loss.kl_loss"
    framework = "acme-kl"                      # the distribution that carries the version
    doc_url = "https://wiki.acme.invalid/ml/kl_loss"
    doc_version = "1.4"
    # Reviewed discrepancies, shipped with the package (relative to this module).
    known_records = ("known-discrepancies.toml",)

    def capabilities(self) -> Capabilities:
        return Capabilities(
            dtypes=frozenset({"float32", "float64"}),
            reductions=frozenset(REDUCTIONS.values()),
            pred_kinds=frozenset({"logprob"}),
            target_kinds=frozenset({"prob"}),
            gradients=frozenset({"pred"}),
            broadcasting=True,
            min_ndim=1,
            options=("reduction",),
        )

    def documented(self, case) -> Point:
        return Point(reduction=case.reduction)  # the wiki promises the textbook definition

    def setup(self) -> dict:
        import numpy as np

        from acme_kl import __version__, loss
        self._np, self._loss = np, loss
        return {"framework": self.framework, "version": __version__, "device": "cpu", "numpy": np.__version__}

    def evaluate(self, case) -> Outcome:
        np = self._np
        if case.class_axis not in (-1, len(case.shape) - 1) and case.reduction == "distribution":
            return Outcome(status="unsupported", error_message="acme's distribution sums the last axis")
        log_q, p = case.sent_values("pred"), case.sent_values("target")   # in case.dtype, read-only
        out = np.asarray(self._loss.kl_loss(log_q, p, case.reduction))
        grads, grad_dtypes = {}, {}
        if case.grad:
            g = self._loss.kl_loss_grad(log_q, p, case.reduction)
            grads["pred"], grad_dtypes["pred"] = g.astype(np.float64), str(g.dtype)
        return Outcome(status="ok", value=out.astype(np.float64), dtype=str(out.dtype), shape=out.shape,
                       grads=grads, grad_dtypes=grad_dtypes,
                       native_call=f"kl_loss(log_q, p, reduction={case.reduction!r})")
