"""Floating-point dtypes the suite speaks, independent of any framework.

numpy has no bfloat16, so bfloat16 payloads travel as their raw 16 bits (the top half of
the float32 bit pattern) and are held on the harness side as float64 values that are
exactly representable in bfloat16.
"""
from __future__ import annotations

import numpy as np
from ._quiet import quiet

DTYPES = ("float16", "bfloat16", "float32", "float64")

# Unit roundoff u = 2**-p for a p-bit significand (round to nearest).
UNIT_ROUNDOFF = {
    "float16": 2.0**-11,
    "bfloat16": 2.0**-8,
    "float32": 2.0**-24,
    "float64": 2.0**-53,
}
# Largest finite and smallest positive normal values.
FINFO = {
    "float16": (65504.0, 2.0**-14),
    "bfloat16": (float(np.float32(3.3895313892515355e38)), 2.0**-126),
    "float32": (float(np.finfo(np.float32).max), 2.0**-126),
    "float64": (float(np.finfo(np.float64).max), 2.0**-1022),
}


def check_dtype(name: str) -> str:
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; expected one of {', '.join(DTYPES)}")
    return name


def round_to(values, dtype: str) -> np.ndarray:
    """Round float64 ``values`` once to ``dtype`` (nearest, ties to even, as IEEE rounds:
    a magnitude of at least the largest finite value plus half its ulp becomes ±inf,
    KL-DTYPE-3) and return them as float64.  NaN and ±inf pass unchanged."""
    a = np.asarray(values, dtype=np.float64)
    if dtype == "float64":
        return a.copy()
    if dtype == "bfloat16":
        return _round_bfloat16(a)
    with quiet:
        return a.astype(dtype).astype(np.float64)   # numpy converts float64 with one rounding


def _round_bfloat16(a: np.ndarray) -> np.ndarray:
    """float64 -> bfloat16 (as float64) with one rounding: through float32 a value just
    below a bfloat16 tie can first round onto the tie and then away from its nearest value.
    Scale each value so that its bfloat16 ulp is 1 (below the normal range the ulp is
    2**-133), round to the nearest integer (ties to even), scale back: every step but the
    rounding is exact in float64."""
    out = a.copy()
    fin = np.isfinite(a) & (a != 0)
    if fin.any():
        x = a[fin]
        _, e = np.frexp(x)                                  # x = m * 2**e, 0.5 <= |m| < 1
        ulp = np.maximum(e.astype(np.int64) - 1, -126) - 7  # exponent of x's bfloat16 ulp
        r = np.ldexp(np.rint(np.ldexp(x, -ulp)), ulp)
        out[fin] = np.where(np.abs(r) > FINFO["bfloat16"][0], np.copysign(np.inf, x), r)
    return out


def to_bits(values: np.ndarray, dtype: str) -> bytes:
    """Encode float64 ``values`` as the little-endian bytes of ``dtype`` (rounding to nearest,
    once)."""
    a = np.ascontiguousarray(values, dtype=np.float64)
    if dtype == "bfloat16":
        f32 = _round_bfloat16(a).astype("<f4")     # exact: a bfloat16 value is a float32 one
        bits = f32.view("<u4").astype(np.uint64)
        rounded = bits >> 16      # the 16 dropped bits are 0; NaN stays NaN (quiet bit kept)
        nan = np.isnan(f32)
        rounded = np.where(nan, (bits >> 16) | 0x40, rounded)
        return rounded.astype("<u2").tobytes()
    return a.astype(np.dtype(dtype).newbyteorder("<")).tobytes()


#: The numpy dtype that carries each dtype's values exactly (numpy has no bfloat16: its
#: values, the top halves of float32 bit patterns, are float32 values).
CARRIER = {"float16": np.dtype("float16"), "bfloat16": np.dtype("float32"),
           "float32": np.dtype("float32"), "float64": np.dtype("float64")}


def from_bits_carried(payload, dtype: str, shape) -> np.ndarray:
    """Decode bytes written by :func:`to_bits` into an array of ``CARRIER[dtype]`` of
    ``shape``: a read-only view of ``payload`` (no copy) except for bfloat16 (widened)."""
    if dtype == "bfloat16":
        bits = np.frombuffer(payload, dtype="<u2").astype("<u4") << 16
        return bits.view("<f4").reshape(shape)
    return np.frombuffer(payload, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)


def from_bits(payload: bytes, dtype: str, shape) -> np.ndarray:
    """Decode bytes written by :func:`to_bits` into a float64 array of ``shape``."""
    return from_bits_carried(payload, dtype, shape).astype(np.float64)


def representable(values, dtype: str) -> bool:
    """True when every entry of float64 ``values`` is exactly a ``dtype`` value (NaN counts)."""
    a = np.asarray(values, dtype=np.float64)
    r = round_to(a, dtype)
    return bool(np.all((r == a) | (np.isnan(r) & np.isnan(a))))


def _promotion_table() -> dict[tuple[str, str], str]:
    """Type promotion of two floating dtypes (torch.promote_types / numpy with bfloat16):
    the wider wins; float16 with bfloat16 (neither holds the other) gives float32."""
    rank = {"float16": 1, "bfloat16": 1, "float32": 2, "float64": 3}
    table = {}
    for a in DTYPES:
        for b in DTYPES:
            if a == b:
                table[a, b] = a
            elif rank[a] == rank[b]:          # float16 + bfloat16
                table[a, b] = "float32"
            else:
                table[a, b] = a if rank[a] > rank[b] else b
    return table


#: ``PROMOTION[a, b]``: the dtype a computation on inputs of dtypes ``a`` and ``b`` runs in
#: (SPEC.md KL-DTYPE-4); equal to ``torch.promote_types`` for these four dtypes.
PROMOTION = _promotion_table()


def promote(a: str, b: str) -> str:
    """The promotion of two input dtypes (:data:`PROMOTION`)."""
    return PROMOTION[check_dtype(a), check_dtype(b)]
