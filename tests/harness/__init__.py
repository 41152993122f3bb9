"""Harness tests: workers, registry, the plugin example (real processes, test-double adapters)."""
