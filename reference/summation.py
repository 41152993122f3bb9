"""KL-BOUND-7: the error model of the sums a framework computes (reductions, softmax and
normalisation denominators), in one place for every bound of the reference."""
from __future__ import annotations

import math

from .dtypes import UNIT_ROUNDOFF

#: Sums of more terms than this are modelled as blocked: leaves of at most LEAF terms
#: summed in any order, the leaf sums combined pairwise.  Eigen's tensor reductions (used
#: by TensorFlow and Paddle on CPU) have leaves of 1024 (TensorReduction.h, kLeafSize);
#: numpy's pairwise sum 128; torch's CPU cascade sum and GPU tree reductions less.
LEAF = 1024


def accumulation_units(k: int, dtype: str) -> float:
    """First-order error of a sum of ``k`` terms, in units of ``2u·Σ|term|`` (u: the unit
    roundoff of ``dtype``).  Up to LEAF terms: ``k − 1``, any summation order (KL-BOUND-2).
    Beyond: the blocked sum's ``LEAF − 1 + ⌈log2 ⌈k/LEAF⌉⌉``, accumulated in float32 or
    finer: a float16/bfloat16 accumulator stops adding terms once the partial sum is 2¹¹
    (2⁸) times larger than each, and frameworks accumulate those dtypes in float32."""
    k = int(k)
    if k <= LEAF:
        return float(max(k - 1, 0))
    depth = LEAF - 1 + math.ceil(math.log2(math.ceil(k / LEAF)))
    acc_u = min(UNIT_ROUNDOFF[dtype], UNIT_ROUNDOFF["float32"])
    return depth * acc_u / UNIT_ROUNDOFF[dtype]
