"""Top-level pytest configuration: Hypothesis profiles and the suite's command-line options."""
import os

from hypothesis import HealthCheck, settings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

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


def pytest_addoption(parser):
    group = parser.getgroup("klconform")
    group.addoption("--adapter", action="append", default=[], metavar="MODULE:CLASS",
                    help="add a third-party adapter (repeatable)")
    group.addoption("--frameworks", default=None, metavar="NAMES",
                    help="comma-separated adapter names to run (default: all available)")
