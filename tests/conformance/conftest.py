"""Session fixtures of the conformance suite: one worker per adapter, one shared corpus.

The corpus is built once per session from the seed and the Hypothesis profile
(``10 * max_examples`` generated cases per adapter, at least that many for each; ci:
1000) plus the curated cases.  Each adapter's run (its worker is started, every case it
can express sent in batches, classified, matched against its known records) is computed
once per test session; under pytest-xdist the first xdist worker to need an adapter
computes it and the others read its result (a file lock per adapter), so ``-n 2`` costs
no double work.
"""
from __future__ import annotations

import fcntl
import os
import pickle
from pathlib import Path

import pytest

from conformance_area import AdapterResult, cases_per_adapter
from klconform import engine

SEED = int(os.environ.get("KLCONFORM_SEED", "0"))




def _specs(config):
    try:
        from klconform.registry import resolve
    except ImportError as exc:     # the registry is part of the adapters issue
        return None, f"klconform.registry unavailable: {exc}"
    names = config.getoption("--frameworks")
    names = [n.strip() for n in names.split(",")] if names else None
    return resolve(names, extra_refs=config.getoption("--adapter")), ""


def _run_id(spec) -> str:
    return getattr(spec, "run_id", None) or engine.load_adapter(spec.adapter_ref).name


def pytest_generate_tests(metafunc):
    if "adapter_id" not in metafunc.fixturenames:
        return
    specs, why = _specs(metafunc.config)
    ids = [_run_id(s) for s in specs] if specs else []
    if not ids:
        metafunc.parametrize("adapter_id", [pytest.param(None, marks=pytest.mark.skip(reason=why or "no adapters"))],
                             ids=["no-adapter"])
        return
    metafunc.parametrize("adapter_id", ids, scope="session")


@pytest.fixture(scope="session")
def specs(pytestconfig):
    s, why = _specs(pytestconfig)
    if s is None:
        pytest.skip(why)
    return {_run_id(x): x for x in s}


def _shared_dir(tmp_path_factory) -> Path:
    base = tmp_path_factory.getbasetemp()
    d = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "klconform-runs"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _once(directory: Path, key: str, compute):
    """``compute()`` once per test session across xdist workers (file lock + pickle)."""
    lock, path = directory / f"{key}.lock", directory / f"{key}.pickle"
    with open(lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            if path.exists():
                return pickle.loads(path.read_bytes())
            value = compute()
            path.write_bytes(pickle.dumps(value))
            return value
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def corpus(specs, tmp_path_factory):
    caps = [engine.load_adapter(s.adapter_ref).capabilities() for s in specs.values()]
    key = f"corpus-{SEED}-{cases_per_adapter()}-{'-'.join(sorted(specs)).replace('@', '_')}"
    return _once(_shared_dir(tmp_path_factory), key,
                 lambda: engine.build_corpus(SEED, cases_per_adapter(), caps))


_memo: dict[str, AdapterResult] = {}


def _compute(spec, corpus) -> AdapterResult:
    opened = engine.open_target(spec, case_timeout=20.0, batch_size=64)
    if not isinstance(opened, engine.Target):
        return AdapterResult(opened, [], unavailable=f"{opened.status}: {opened.reason}")
    try:
        run, evaluated = engine.run_adapter(opened, corpus, seed=SEED, shrink_rounds=4)
    finally:
        opened.runner.close()
    return AdapterResult(run, evaluated)


@pytest.fixture(scope="session")
def adapter_result(adapter_id, specs, corpus, tmp_path_factory) -> AdapterResult:
    """The run of ``adapter_id`` over the corpus (skips when its framework is unavailable)."""
    if adapter_id not in _memo:
        key = f"{adapter_id.replace('@', '_')}-{engine.corpus_digest(corpus)}"
        _memo[adapter_id] = _once(_shared_dir(tmp_path_factory), key,
                                  lambda: _compute(specs[adapter_id], corpus))
    res = _memo[adapter_id]
    if res.unavailable:
        pytest.skip(f"{adapter_id} unavailable ({res.unavailable})")
    return res
