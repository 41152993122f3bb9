"""Error-free transformations on float64 numpy arrays (double-double building blocks).

numpy has no fused multiply-add, so products use Dekker's TwoProd on Veltkamp splits.
All functions are elementwise and vectorised; they are exact (the returned pair sums to the
exact real result) as long as no intermediate overflows or underflows.  Callers keep their
operands below 2**995 in magnitude (the split multiplies by 2**27 + 1) and well above the
underflow threshold, or account for the absolute error of underflow themselves.

References: T. J. Dekker, "A floating-point technique for extending the available
precision" (1971); S. M. Rump, T. Ogita, S. Oishi, "Accurate floating-point summation
part I: faithful rounding" (SIAM J. Sci. Comput. 31, 2008) for :func:`extract`.
"""
from __future__ import annotations

import numpy as np

_SPLITTER = 134217729.0  # 2**27 + 1: Veltkamp split into two 26-bit halves


def two_sum(a, b):
    """(s, e) with s = fl(a + b) and s + e = a + b exactly (Knuth, any order of |a|, |b|)."""
    s = a + b
    bb = s - a
    e = (a - (s - bb)) + (b - bb)
    return s, e


def fast_two_sum(a, b):
    """(s, e) with s = fl(a + b), s + e = a + b exactly; requires |a| >= |b| (or a == 0)."""
    s = a + b
    e = b - (s - a)
    return s, e


def split(a):
    """(hi, lo) with hi + lo = a, each with at most 26 significant bits (Veltkamp)."""
    c = _SPLITTER * a
    hi = c - (c - a)
    return hi, a - hi


def two_prod(a, b, a_split=None, b_split=None):
    """(p, e) with p = fl(a * b) and p + e = a * b exactly (Dekker); splits may be passed in."""
    ah, al = split(a) if a_split is None else a_split
    bh, bl = split(b) if b_split is None else b_split
    p = a * b
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


def extract(x, sigma):
    """One extraction step of Rump-Ogita-Oishi's AccSum along the last axis.

    ``sigma`` is a power of two per row (shape ``x.shape[:-1] + (1,)``) with
    ``sigma >= 2 * n * max|x|`` for the row's ``n`` entries.  Returns ``(tau, rest)``: the
    high parts ``q = (sigma + x) - sigma`` are multiples of ``2**-53 * sigma`` whose row
    sum ``tau`` is computed exactly in float64 in any order, and ``rest = x - q`` exactly
    with ``|rest| <= 2**-53 * sigma``.
    """
    hi = (sigma + x) - sigma
    return np.sum(hi, axis=-1), x - hi
