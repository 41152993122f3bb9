"""The distillation cases the distillation adapters are asked (SPEC.md §12), built the same
way, bit for bit, in the main interpreter (which judges) and in the side environment
``distill`` (which runs the frameworks): numpy only, from seeds (recipes, not stored arrays).

``recipe(...)`` makes a realistic case: ``B×T`` token positions over a vocabulary of ``V``
(32 000 to 256 000), teacher logits with a Zipf-like spread (a few tokens far above the
rest, as a trained LM's), student logits the teacher's plus noise, both rounded to
``logits_dtype`` (bfloat16/float16), a fraction of the positions ignored (padding at the
end of each sequence, as a right-padded batch has), a temperature.
"""
from __future__ import annotations

import math

import numpy as np

from klconform.reference.distill import DistillCase
from klconform.reference.dtypes import round_to

TEACHER_1 = np.log([[0.25, 0.75]])       # the SPEC's one-token example (KL-DISTILL-JSD-ENDS)
STUDENT_1 = np.log([[0.5, 0.5]])


def _f32(a):
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def recipe(V: int, B: int = 2, T: int = 4, *, logits_dtype: str = "bfloat16", dtype: str = "float32",
           ignored: float = 0.25, tau: float = 1.0, seed: int = 0, **kw) -> DistillCase:
    """A realistic distillation case (module docstring).  ``ignored``: the fraction of each
    sequence's positions, at its end, that are padding."""
    rng = np.random.default_rng([seed, V, B, T])
    ranks = np.arange(1, V + 1, dtype=np.float64)
    base = -1.1 * np.log(ranks)                          # Zipf-like: logit gap log(rank)
    teacher = np.empty((B, T, V))
    student = np.empty((B, T, V))
    for b in range(B):
        for t in range(T):
            perm = rng.permutation(V)
            z = base[perm] * 2.0 + rng.normal(0.0, 0.5, V)
            teacher[b, t] = z
            student[b, t] = z + rng.normal(0.0, 1.0, V)
    mask = np.ones((B, T), dtype=bool)
    pad = int(round(ignored * T))
    if pad:
        mask[:, T - pad:] = False
    return DistillCase(student=round_to(student, logits_dtype), teacher=round_to(teacher, logits_dtype),
                       dtype=dtype, logits_dtype=logits_dtype, mask=mask, temperature=tau, **kw)


def small(seed: int, shape=(2, 4, 6), spread=3.0, **kw) -> DistillCase:
    rng = np.random.default_rng(seed)
    s = _f32(rng.standard_normal(shape) * spread)
    t = _f32(rng.standard_normal(shape) * spread)
    kw.setdefault("dtype", "float32")
    return DistillCase(student=s, teacher=t, **kw)


def one_token(**kw) -> DistillCase:
    kw.setdefault("dtype", "float32")
    return DistillCase(student=_f32(STUDENT_1), teacher=_f32(TEACHER_1), **kw)


UNEVEN_MASK = np.array([[False] * 6 + [True] * 2, [True] * 8])   # chunks of 2 hold 0/2 or 2/2 kept
NONE_KEPT = np.zeros((2, 4), dtype=bool)

# (id, adapter "module:Class", case builder) -- the judging test names the points expected
SCENARIOS: list[tuple[str, str, object]] = []


def scenario(sid: str, ref: str):
    def add(build):
        SCENARIOS.append((sid, ref, build))
        return build
    return add


TT = "klconform.adapters.torchtune_kd:"
TRL = "klconform.adapters.trl_jsd:TrlGeneralizedJSD"

scenario("tt-forward-one-token", TT + "TorchtuneForwardKL")(lambda: one_token())
scenario("tt-forward-masked", TT + "TorchtuneForwardKL")(lambda: small(1, mask=np.array([[1, 0, 1, 1], [0, 1, 1, 1]], bool)))
scenario("tt-forward-sum", TT + "TorchtuneForwardKL")(lambda: small(2, reduction="sum"))
scenario("tt-forward-empty", TT + "TorchtuneForwardKL")(lambda: small(3, mask=NONE_KEPT))
scenario("tt-forward-32000-bf16", TT + "TorchtuneForwardKL")(lambda: recipe(32000, seed=1))
scenario("tt-reverse-masked", TT + "TorchtuneReverseKL")(lambda: small(4, mask=np.array([[1, 1, 0, 1], [1, 1, 1, 0]], bool),
                                                                          divergence="reverse"))
scenario("tt-reverse-50257-bf16", TT + "TorchtuneReverseKL")(lambda: recipe(50257, seed=2, divergence="reverse",
                                                                             ignored=0.5))
scenario("tt-reverse-empty", TT + "TorchtuneReverseKL")(lambda: small(5, mask=NONE_KEPT, divergence="reverse"))
scenario("tt-symmetric", TT + "TorchtuneSymmetricKL")(lambda: small(6, divergence="symmetric", param=0.5))
scenario("tt-symmetric-0.3-fp16", TT + "TorchtuneSymmetricKL")(
    lambda: recipe(151936, B=1, T=4, logits_dtype="float16", seed=3, divergence="symmetric", param=0.3))
scenario("tt-forward-chunked", TT + "TorchtuneForwardKLChunked")(lambda: small(7, shape=(2, 8, 5), mask=UNEVEN_MASK, chunks=4))
scenario("tt-forward-chunked-128256", TT + "TorchtuneForwardKLChunked")(
    lambda: recipe(128256, B=2, T=4, seed=4, ignored=0.5, chunks=2))
scenario("tt-reverse-chunked", TT + "TorchtuneReverseKLChunked")(
    lambda: small(8, shape=(2, 8, 5), mask=UNEVEN_MASK, chunks=4, divergence="reverse"))
scenario("tt-reverse-chunked-empty", TT + "TorchtuneReverseKLChunked")(
    lambda: small(9, shape=(2, 4, 5), mask=NONE_KEPT, chunks=2, divergence="reverse"))
scenario("tt-symmetric-chunked", TT + "TorchtuneSymmetricKLChunked")(
    lambda: small(10, shape=(2, 8, 5), mask=UNEVEN_MASK, chunks=4, divergence="symmetric", param=0.7))
for _b in (0.0, 1e-3, 0.5, 1 - 1e-3, 1.0):
    scenario(f"trl-jsd-one-token-{_b:g}", TRL)(lambda b=_b: one_token(divergence="jsd", param=b, dtype="float32"))
scenario("trl-jsd-masked-tau2", TRL)(lambda: small(11, mask=np.array([[1, 0, 1, 1], [0, 1, 1, 1]], bool),
                                                   divergence="jsd", param=0.5, temperature=2.0))
scenario("trl-jsd-batchmean-no-labels", TRL)(lambda: small(12, divergence="jsd", param=0.1, reduction="batchmean"))
scenario("trl-jsd-mean-masked", TRL)(lambda: small(13, mask=np.array([[1, 0, 1, 1], [0, 1, 1, 1]], bool),
                                                   divergence="jsd", param=0.9, reduction="mean"))
scenario("trl-jsd-empty", TRL)(lambda: small(14, mask=NONE_KEPT, divergence="jsd", param=0.5))
scenario("trl-forward-256000-bf16", TRL)(
    lambda: recipe(256000, B=1, T=4, seed=5, dtype="bfloat16", divergence="forward", tau=2.0, grad=False))
scenario("trl-jsd-32000-bf16-tau0.5", TRL)(
    lambda: recipe(32000, seed=6, dtype="bfloat16", divergence="jsd", param=0.5, tau=0.5, ignored=0.25))
scenario("trl-reverse-float32-tau4", TRL)(lambda: small(15, divergence="reverse", temperature=4.0))


def by_id() -> dict[str, tuple[str, object]]:
    return {sid: (ref, build) for sid, ref, build in SCENARIOS}


assert len(by_id()) == len(SCENARIOS), "scenario ids are unique"
assert math.isclose(float(np.exp(TEACHER_1).sum()), 1.0)
