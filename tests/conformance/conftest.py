"""This repository's conformance suite: klconform's pytest plugin (klconform/pytest_plugin.py,
docs/plugin.md) with this repository's defaults, for runs that collect this folder.

Defaults (command-line ``--klconform-*`` options override them): every registered adapter
plus ``NAME@ENV`` for each side interpreter configured (tox.ini [testenv:worker-*];
bootstrap.py sets ``KLCONFORM_PYTHON_<ENV>``), on the frozen corpus
(klconform/data/frozen-corpus.jsonl): the plugin's items check each adapter per area and
each known record.  The modules here add what this repository promises about its corpus:
that every adapter receives enough cases and everything it declares.
"""
from __future__ import annotations

import pytest

from klconform.pytest_plugin import runs_for


def pytest_klconform_defaults(config):
    return {"klconform_frameworks": "all", "klconform_corpus": "frozen"}


def pytest_generate_tests(metafunc):
    if "adapter_id" not in metafunc.fixturenames:
        return
    runs = runs_for(metafunc.config)
    ids = runs.run_ids if runs is not None else []
    if not ids:
        metafunc.parametrize("adapter_id", [pytest.param(None, marks=pytest.mark.skip(reason="no adapters"))],
                             ids=["no-adapter"])
        return
    metafunc.parametrize("adapter_id", ids, scope="session")


@pytest.fixture(scope="session")
def adapter_result(adapter_id, klconform_runs):
    """The plugin's run of ``adapter_id`` (computed once per session, shared under xdist;
    skipped when its framework is unavailable)."""
    return klconform_runs.usable(adapter_id)
