"""Hypothesis profiles of this repository's test suite (property tests of the reference, the
strategies and the harness).

    ci        deterministic, no database: what `python3 bootstrap.py test` uses
    dev       the default
    thorough  2000 examples per property

Chosen with Hypothesis' own option ``--hypothesis-profile NAME``; without it the environment
variable HYPOTHESIS_PROFILE, else ``dev``.  The conformance items do not depend on the
profile: their corpus is the frozen one (tests/conformance/conftest.py).
"""
import os

from hypothesis import HealthCheck, settings

# ci: deterministic and self-contained, so a red CI run reproduces from its log.
settings.register_profile(
    "ci", derandomize=True, database=None, print_blob=True, deadline=None,
    max_examples=100, suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=50, deadline=None, print_blob=True)
settings.register_profile(
    "thorough", max_examples=2000, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
