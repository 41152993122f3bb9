"""SPEC-literal second implementation of reference/SPEC.md, run as an adapter over the default gate."""
