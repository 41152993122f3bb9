"""Floating-point warnings off for the reference's arithmetic, cheaply when nested.

The reference computes with ±inf and NaN on purpose (SPEC §2), so numpy's warnings are
noise.  ``np.errstate`` costs two ``seterr`` calls per block (~4 us); the reference enters
such blocks ~35 times per evaluation, 10-15 % of a run's reference time.  ``quiet`` sets
the state once, in the outermost block of a thread (numpy's error state is per thread),
and restores it on the way out."""
from __future__ import annotations

import threading

import numpy as np

_local = threading.local()


class _Quiet:
    """``with quiet:``: like ``np.errstate(all="ignore")``; nested blocks cost a counter."""

    __slots__ = ()

    def __enter__(self) -> None:
        depth = getattr(_local, "depth", 0)
        if depth == 0:
            _local.saved = np.seterr(all="ignore")
        _local.depth = depth + 1

    def __exit__(self, *exc) -> bool:
        _local.depth -= 1
        if _local.depth == 0:
            np.seterr(**_local.saved)
        return False


quiet = _Quiet()
