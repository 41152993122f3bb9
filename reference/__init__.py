"""The float64 reference for KL-divergence losses (normative text: reference/SPEC.md)."""
from .family import Point, canonical  # noqa: F401
from ._accurate import kl_divergence, kl_terms  # noqa: F401
from .evaluate import Expected, UndefinedCase, evaluate  # noqa: F401,E402
from .gradients import gradients  # noqa: F401,E402
from .spec import clause_ids  # noqa: F401,E402
