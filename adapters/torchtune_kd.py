"""torchtune's knowledge-distillation losses (torchtune/modules/loss/kd_losses.py, 0.6.1):
``ForwardKLLoss``, ``ReverseKLLoss``, ``SymmetricKLLoss`` and their ``WithChunkedOutputLoss``
variants, as distillation adapters (SPEC.md §12, adapters/distill_base.py).

Native calls::

    ForwardKLLoss(ignore_index=-100)(student_logits, teacher_logits, labels, normalize=True)
    ForwardKLWithChunkedOutputLoss(num_output_chunks=8, ignore_index=-100)(
        list(student.chunk(k, dim=1)), list(teacher.chunk(k, dim=1)), labels)

What 0.6.1 computes (source, read against SPEC.md §12):

* ``ForwardKLLoss``: ``teacher_prob = softmax(teacher, dtype=float32)``,
  ``student_logprob = log_softmax(student, dtype=float32)``, ``x = Σ teacher_prob ·
  student_logprob`` (entries where the *student* logit is ±inf set to 0), then
  ``−Σ x·mask / Σ mask``: the cross-entropy ``H(p, q)``, not ``KL(p‖q)`` (KL-DISTILL-CE).
  Its student gradient is the KL's; its value exceeds the KL by the teacher's entropy.
  ``normalize=False`` returns the masked sum; an all-ignored batch returns 0 (``if sum_masks
  == 0``, KL-DISTILL-EMPTY's ``empty_mean="zero"``).
* ``ReverseKLLoss``: ``Σ q·(log q − log p)``, the reverse KL (entries where either logit is
  ±inf set to 0); the empty-mask guard as above.
* ``SymmetricKLLoss(sym_kd_ratio=r)``: ``r·ForwardKLLoss + (1 − r)·ReverseKLLoss``, hence
  ``r·H(p, q) + (1 − r)·KL(q‖p)``.
* ``*WithChunkedOutputLoss``: the sum over chunks of the unnormalised losses divided by the
  kept tokens (pytorch/torchtune#1865, 0.4.0); torchtune 0.3.1's forward one divided the
  sum of per-chunk means by ``num_output_chunks`` (KL-DISTILL-CHUNK-MEAN). The forward one
  returns 0 for an all-ignored batch, the reverse and symmetric ones 0/0 = NaN.
* No temperature; softmax in float32 whatever the logits' dtype: a float32 result from
  bfloat16/float16 logits (KL-DISTILL-DTYPE's cast form).

torch and torchtune are imported only in :meth:`setup` (side environment ``distill``).
"""
from __future__ import annotations

from typing import Any

from klconform.adapters.distill_base import DistillAdapter, DistillCapabilities, shape_of

DOC_URL = "https://docs.pytorch.org/torchtune/0.6/generated/torchtune.modules.loss.ForwardKLLoss.html"
SOURCE_URL = "https://github.com/pytorch/torchtune/blob/v0.6.1/torchtune/modules/loss/kd_losses.py"
DTYPES = frozenset({"float16", "bfloat16", "float32", "float64"})


class _TorchtuneKD(DistillAdapter):
    framework = "torchtune"
    doc_url = DOC_URL
    doc_version = "0.6.1"
    known_records = ("klconform:known/torchtune.toml",)
    divergence = "forward"
    chunked = False
    cls_name = ""

    def distill_capabilities(self) -> DistillCapabilities:
        return DistillCapabilities(
            divergences=frozenset({self.divergence}),
            # normalize=True / False; the chunked losses always normalise
            reductions=frozenset({"distribution_mean"} if self.chunked else {"distribution_mean", "sum"}),
            dtypes=DTYPES, result_dtype="float32", temperature=False, mask=True, chunks=self.chunked,
            ndims=frozenset({3}) if self.chunked else frozenset({2, 3}),
            options=("ignore_index", "normalize") if not self.chunked else ("num_output_chunks", "ignore_index"),
        )

    def documented_distill(self, case) -> dict[str, Any]:
        """The docstrings: "The Kullback-Leibler divergence loss for valid indexes ... The
        loss is divided over non-ignored targets"; "Symmetric Kullback-Leibler divergence
        ... When set to 1 this loss reduces to forward KL divergence, when set to 0 ... to
        reverse kl divergence".  Nothing about an all-ignored batch."""
        fields: dict[str, Any] = {"divergence": self.divergence, "reduction": case.reduction}
        if self.divergence == "symmetric":
            fields["ratio"] = case.asked_param()
        return fields

    def setup(self) -> dict[str, Any]:
        env = super().setup()
        import torchtune
        from torchtune.modules import loss

        if not hasattr(loss, self.cls_name):     # 0.3.1 has only the forward losses
            raise ImportError(f"torchtune {torchtune.__version__} has no torchtune.modules.loss.{self.cls_name}")
        self._loss = loss
        return {"framework": "torchtune", "version": str(torchtune.__version__), **env}

    def _module(self, case):
        kw: dict[str, Any] = {}
        if self.divergence == "symmetric":
            kw["sym_kd_ratio"] = case.asked_param()
        if self.chunked:
            kw["num_output_chunks"] = int(case.chunks)
        return getattr(self._loss, self.cls_name)(**kw), kw

    def _call(self, student, teacher, labels, case):
        torch = self._torch
        if labels is None:
            # every token kept: labels that are never ignore_index
            labels = torch.zeros(case.shape[:-1], dtype=torch.int64, device=self._device)
        module, kw = self._module(case)
        args = ", ".join(f"{k}={v!r}" for k, v in kw.items())
        lab = f"<int64{list(case.shape[:-1])}>"
        if self.chunked:
            k = int(case.chunks)
            out = module(list(student.chunk(k, dim=1)), list(teacher.chunk(k, dim=1)), labels)
            native = (f"{self.cls_name}({args})(list(student{shape_of(case)}.chunk({k}, dim=1)), "
                      f"list(teacher.chunk({k}, dim=1)), labels{lab})")
        else:
            # normalize=True is the default (and 0.3.1's ForwardKLLoss has no such argument)
            extra = {} if case.reduction == "distribution_mean" else {"normalize": False}
            out = module(student, teacher, labels, **extra)
            more = ", normalize=False" if extra else ""
            native = f"{self.cls_name}({args})(student{shape_of(case)}, teacher, labels{lab}{more})"
        return out, native


class TorchtuneForwardKL(_TorchtuneKD):
    name = "torchtune.ForwardKLLoss"
    api = "torchtune.modules.loss.ForwardKLLoss"
    cls_name = "ForwardKLLoss"


class TorchtuneReverseKL(_TorchtuneKD):
    name = "torchtune.ReverseKLLoss"
    api = "torchtune.modules.loss.ReverseKLLoss"
    cls_name = "ReverseKLLoss"
    divergence = "reverse"


class TorchtuneSymmetricKL(_TorchtuneKD):
    name = "torchtune.SymmetricKLLoss"
    api = "torchtune.modules.loss.SymmetricKLLoss"
    cls_name = "SymmetricKLLoss"
    divergence = "symmetric"


class TorchtuneForwardKLChunked(_TorchtuneKD):
    name = "torchtune.ForwardKLWithChunkedOutputLoss"
    api = "torchtune.modules.loss.ForwardKLWithChunkedOutputLoss"
    cls_name = "ForwardKLWithChunkedOutputLoss"
    chunked = True


class TorchtuneReverseKLChunked(_TorchtuneKD):
    name = "torchtune.ReverseKLWithChunkedOutputLoss"
    api = "torchtune.modules.loss.ReverseKLWithChunkedOutputLoss"
    cls_name = "ReverseKLWithChunkedOutputLoss"
    divergence = "reverse"
    chunked = True


class TorchtuneSymmetricKLChunked(_TorchtuneKD):
    name = "torchtune.SymmetricKLWithChunkedOutputLoss"
    api = "torchtune.modules.loss.SymmetricKLWithChunkedOutputLoss"
    cls_name = "SymmetricKLWithChunkedOutputLoss"
    divergence = "symmetric"
    chunked = True
