"""The float64 reference for KL-divergence losses (normative text: reference/SPEC.md)."""
from .family import Point, canonical  # noqa: F401
