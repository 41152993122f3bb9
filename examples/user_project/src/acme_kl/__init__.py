"""Acme's in-house KL-divergence loss."""
__version__ = "1.4.0"
