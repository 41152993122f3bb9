"""Every test of tests/faults (and tests/plugin, which imports these fixtures) keeps what
it causes in the temp directory -- internal-error logs above all, which a test that checks
the internal-error path does cause -- in a directory of its own under pytest's base temp
(removed with it), never in the shared one: in this process (``tempfile.tempdir``,
``resultsio.INTERNAL_LOG``) and in the klconform processes it starts (``$TMPDIR``).  A
directory per module covers what its module-scoped fixtures (a results file made once) run."""
from __future__ import annotations

import os
import tempfile

import pytest

from klconform import resultsio


@pytest.fixture(scope="module", autouse=True)
def module_temp_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("module-tmp")
    saved = os.environ.get("TMPDIR"), tempfile.tempdir, resultsio.INTERNAL_LOG
    os.environ["TMPDIR"], tempfile.tempdir, resultsio.INTERNAL_LOG = str(d), str(d), []
    yield d
    if saved[0] is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = saved[0]
    tempfile.tempdir, resultsio.INTERNAL_LOG = saved[1], saved[2]


@pytest.fixture(autouse=True)
def private_temp_dir(tmp_path_factory, monkeypatch):
    d = tmp_path_factory.mktemp("tmp")
    monkeypatch.setenv("TMPDIR", str(d))
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    monkeypatch.setattr(resultsio, "INTERNAL_LOG", [])
    return d
