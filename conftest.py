"""This repository's pytest configuration: klconform's own pytest plugin, loaded whether or
not the installed package's ``pytest11`` entry point is (an editable install made before
the entry point existed); it adds items only where tests/conformance/conftest.py asks."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

pytest_plugins = ("klconform.pytest_plugin",)
