"""Every test of tests/faults (and tests/plugin, which imports this fixture) keeps what it
causes in the temp directory -- internal-error logs above all, which a test that checks
the internal-error path does cause -- in a directory of its own under pytest's base temp
(removed with it), never in the shared one: in this process (``tempfile.tempdir``,
``resultsio.INTERNAL_LOG``) and in the klconform processes it starts (``$TMPDIR``)."""
from __future__ import annotations

import tempfile

import pytest

from klconform import resultsio


@pytest.fixture(autouse=True)
def private_temp_dir(tmp_path_factory, monkeypatch):
    d = tmp_path_factory.mktemp("tmp")
    monkeypatch.setenv("TMPDIR", str(d))
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    monkeypatch.setattr(resultsio, "INTERNAL_LOG", [])
    return d
