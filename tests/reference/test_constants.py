"""The accurate core's precomputed constants (reference/_constants.py) are what mpmath says.

The stored log table and ln 2 split are checked against an independent mpmath evaluation at
130+ bits, so a corrupted or hand-edited constants file cannot go unnoticed."""
import math

import mpmath
import numpy as np

from klconform.reference import _accurate, _constants
from klconform.reference.oracle import constants_source


def test_log_table_is_log1p_of_the_grid_in_double_double():
    n = 1 << _constants.LOG_TABLE_BITS
    assert _accurate._LOGC_HI.shape == _accurate._LOGC_LO.shape == (n + 1,)
    with mpmath.workprec(160):
        for j in range(n + 1):
            exact = mpmath.log(1 + mpmath.mpf(j) / n)
            hi, lo = _accurate._LOGC_HI[j], _accurate._LOGC_LO[j]
            assert hi == float(exact), j                       # hi: nearest float64
            err = abs(mpmath.mpf(hi) + mpmath.mpf(lo) - exact)
            assert err <= mpmath.ldexp(abs(exact), -105) or exact == 0, j


def test_ln2_split():
    a, b, c = _constants.LN2_A, _constants.LN2_B, _constants.LN2_C
    for part in (a, b):                                          # 40 significant bits
        m = math.frexp(part)[0]
        assert math.ldexp(m, 40) == int(math.ldexp(m, 40))
    with mpmath.workprec(200):
        err = abs(mpmath.mpf(a) + mpmath.mpf(b) + mpmath.mpf(c) - mpmath.log(2))
        assert err <= mpmath.ldexp(1, -130)


def test_constants_file_is_what_the_generator_writes():
    with open(_constants.__file__, encoding="utf-8") as fh:
        assert fh.read() == constants_source()


def test_table_is_writable_float64():
    # numba's kernel takes the table as an ordinary (writable, C-contiguous) float64 array
    for t in (_accurate._LOGC_HI, _accurate._LOGC_LO):
        assert t.dtype == np.float64 and t.flags.c_contiguous and t.flags.writeable
