"""TRL's generalised Jensen-Shannon distillation loss, ``GKDTrainer.generalized_jsd_loss``
(trl/experimental/gkd/gkd_trainer.py, TRL 1.16.0), as a distillation adapter (SPEC.md §12,
adapters/distill_base.py).

Native call (a static method; no trainer is built)::

    GKDTrainer.generalized_jsd_loss(student_logits, teacher_logits, labels=None, beta=0.5,
                                    temperature=1.0, reduction="batchmean")

What it computes (source, read against SPEC.md §12):

* ``student_logits / temperature``, ``teacher_logits / temperature``, ``log_softmax`` of both
  in the logits' dtype (no τ² scale);
* ``beta == 0``: ``F.kl_div(student_log_probs, teacher_log_probs, log_target=True)``, the
  forward KL; ``beta == 1``: the reverse KL; otherwise the mixture in log space,
  ``logsumexp([student_log_probs + log1p(-beta), teacher_log_probs + log(beta)])``, and
  ``beta·KL(p‖m) + (1 − beta)·KL(q‖m)`` elementwise — so its ends are the
  ``jsd_endpoints="kl"`` member (KL-DISTILL-JSD-ENDS): 0.130812 at beta = 0 against 0.000131
  at beta = 1e-3 on the SPEC's one-token example (the branches came with
  huggingface/trl#3043; the discontinuity: modelscope/ms-swift#10078).  The GKD docs
  say so ("When beta is 0.0, the loss is the KL divergence. When beta is 1.0, the loss is the
  Inverse KL Divergence");
* ``labels``: ``jsd[labels != -100]`` keeps the elementwise terms of kept tokens;
  ``reduction="batchmean"`` divides their sum by ``mask.sum().clamp_min(1)`` (the kept tokens:
  the token mean, 0 when none is kept), and without labels by ``jsd.size(0)`` (the batch
  size B of ``(B, T, V)``: a per-sequence sum, KL-DISTILL-RED's ``batchmean``);
  ``"mean"`` is ``jsd.mean()`` over the kept tokens' elementwise terms (÷ K·V; NaN when none
  is kept); ``"sum"``; ``"none"`` the elementwise terms (without labels: of shape S).

A case asking ``forward`` or ``reverse`` is called with ``beta=0`` / ``beta=1``, as the docs
describe them.  torch and TRL are imported only in :meth:`setup` (side environment
``distill``; ``trl.experimental`` warns on import unless ``TRL_EXPERIMENTAL_SILENCE=1``).
"""
from __future__ import annotations

import os
from typing import Any

from klconform.adapters.distill_base import DistillAdapter, DistillCapabilities, shape_of

DOC_URL = "https://huggingface.co/docs/trl/main/en/gkd_trainer"
SOURCE_URL = "https://github.com/huggingface/trl/blob/v1.16.0/trl/experimental/gkd/gkd_trainer.py"
DTYPES = frozenset({"float16", "bfloat16", "float32", "float64"})
REDUCTIONS = {"distribution_mean": "batchmean", "batchmean": "batchmean", "sum": "sum", "mean": "mean",
              "none": "none"}


class TrlGeneralizedJSD(DistillAdapter):
    name = "trl.generalized_jsd_loss"
    api = "trl.experimental.gkd.GKDTrainer.generalized_jsd_loss"
    framework = "trl"
    doc_url = DOC_URL
    doc_version = "1.16.0"
    known_records = ("klconform:known/trl.toml",)

    def distill_capabilities(self) -> DistillCapabilities:
        return DistillCapabilities(
            divergences=frozenset({"jsd", "forward", "reverse"}), reductions=frozenset(REDUCTIONS),
            dtypes=DTYPES, result_dtype=None, temperature=True, mask=True, chunks=False,
            ndims=frozenset({2, 3}), options=("beta", "temperature", "reduction", "labels"),
        )

    def unsupported_distill(self, case) -> str | None:
        why = super().unsupported_distill(case)
        if why:
            return why
        masked = case.mask is not None
        if case.reduction == "batchmean" and masked:
            return "batchmean with labels divides by the kept tokens (the token mean), not by the batch size"
        if case.reduction == "none" and masked:
            return "reduction='none' with labels returns the kept tokens' terms compacted (jsd[mask])"
        return None

    def documented_distill(self, case) -> dict[str, Any]:
        """GKDConfig: "beta: Interpolation coefficient between 0.0 and 1.0 of the Generalized
        Jensen-Shannon Divergence loss. When beta is 0.0, the loss is the KL divergence. When
        beta is 1.0, the loss is the Inverse KL Divergence." (the endpoint member); the
        docstring: labels "with -100 for padding tokens to ignore", "Softmax temperature",
        reduction default 'batchmean'.  Nothing about an all-ignored batch."""
        if case.divergence == "jsd":
            return {"divergence": "jsd", "beta": case.asked_param(), "jsd_endpoints": "kl",
                    "reduction": case.reduction}
        return {"divergence": case.divergence, "reduction": case.reduction}

    def setup(self) -> dict[str, Any]:
        env = super().setup()
        os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
        import trl
        from trl.experimental.gkd import GKDTrainer

        self._jsd = GKDTrainer.generalized_jsd_loss
        return {"framework": "trl", "version": str(trl.__version__), **env}

    def _call(self, student, teacher, labels, case):
        torch = self._torch
        if labels is None and case.reduction == "distribution_mean":
            labels = torch.zeros(case.shape[:-1], dtype=torch.int64, device=self._device)   # all kept
        beta = {"forward": 0.0, "reverse": 1.0}.get(case.divergence, case.asked_param())
        reduction = REDUCTIONS[case.reduction]
        out = self._jsd(student, teacher, labels=labels, beta=beta, temperature=case.temperature,
                        reduction=reduction)
        lab = "None" if labels is None else f"<int64{list(case.shape[:-1])}>"
        native = (f"GKDTrainer.generalized_jsd_loss(student{shape_of(case)}, teacher, labels={lab}, beta={beta!r}, "
                  f"temperature={case.temperature!r}, reduction={reduction!r})")
        return out, native
