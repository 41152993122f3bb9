"""Session fixtures of the conformance suite: one worker per adapter, one shared corpus.

The corpus is built once per session from the seed and the Hypothesis profile
(``10 * max_examples`` generated cases per adapter, at least that many for each; ci:
1000) plus the curated cases.  Each adapter's run (its worker is started, every case it
can express sent in batches, classified, matched against its known records) is computed
once per test session; under pytest-xdist the first xdist worker to need an adapter
computes it and the others read its result (a file lock per adapter), so ``-n 2`` costs
no double work; a worker that finds the adapter it needs being computed by another one
computes a not-yet-started adapter meanwhile, so two workers run two adapters at once.

Side-interpreter variants (:data:`SIDE_VARIANTS`, e.g. MXNet 1.8.0 beside 1.9.1) run by
default next to the registered adapters; without their interpreter
(``KLCONFORM_PYTHON_<ENV>``, set by bootstrap.py) they are skipped with the reason.
"""
from __future__ import annotations

import fcntl
import os
import pickle
from pathlib import Path

import pytest

from conformance_area import AdapterResult, cases_per_adapter
from klconform import engine, registry
from klconform.evaluator import make_evaluator

SEED = int(os.environ.get("KLCONFORM_SEED", "0"))
# Run by default beside the registered adapters (tox.ini [testenv:worker-*] interpreters).
SIDE_VARIANTS = ("mxnet.KLDivLoss@mxnet180",)


def _specs(config):
    names = config.getoption("--frameworks")
    names = [n.strip() for n in names.split(",")] if names else None
    specs = registry.resolve(names, extra_refs=config.getoption("--adapter"))
    if names is None:
        have = {_run_id(s) for s in specs}
        specs += [s for s in registry.resolve(SIDE_VARIANTS) if _run_id(s) not in have]
    return specs


def _run_id(spec) -> str:
    return getattr(spec, "run_id", None) or registry.load_adapter(spec.adapter_ref).name


def pytest_generate_tests(metafunc):
    if "adapter_id" not in metafunc.fixturenames:
        return
    ids = [_run_id(s) for s in _specs(metafunc.config)]
    if not ids:
        metafunc.parametrize("adapter_id", [pytest.param(None, marks=pytest.mark.skip(reason="no adapters"))],
                             ids=["no-adapter"])
        return
    metafunc.parametrize("adapter_id", ids, scope="session")


@pytest.fixture(scope="session")
def specs(pytestconfig):
    return {_run_id(x): x for x in _specs(pytestconfig)}


def _shared_dir(tmp_path_factory) -> Path:
    base = tmp_path_factory.getbasetemp()
    d = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "klconform-runs"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _once(directory: Path, key: str, compute, *, blocking: bool = True):
    """``compute()`` once per test session across xdist workers (file lock + pickle).
    With ``blocking=False``: None at once when another worker holds the lock."""
    lock, path = directory / f"{key}.lock", directory / f"{key}.pickle"
    with open(lock, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            return None
        try:
            if path.exists():
                return pickle.loads(path.read_bytes())
            value = compute()
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(pickle.dumps(value))
            tmp.replace(path)
            return value
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def corpus(specs, tmp_path_factory):
    caps = [registry.load_adapter(s.adapter_ref).capabilities() for s in specs.values()]
    key = f"corpus-{SEED}-{cases_per_adapter()}-{'-'.join(sorted(specs)).replace('@', '_')}"
    return _once(_shared_dir(tmp_path_factory), key,
                 lambda: engine.build_corpus(SEED, cases_per_adapter(), caps))


_memo: dict[str, AdapterResult] = {}
# One reference cache for the session: adapters sent byte-identical cases (torch.kl_div and
# torch.KLDivLoss, the Keras classes, MXNet 1.9.1 and 1.8.0) reuse the reference's answers.
_EVALUATOR = make_evaluator()


def _compute(spec, corpus) -> AdapterResult:
    opened = engine.open_target(spec, case_timeout=20.0, batch_size=64)
    if not isinstance(opened, engine.Target):
        return AdapterResult(opened, [], unavailable=f"{opened.status}: {opened.reason}")
    try:
        run, evaluated = engine.run_adapter(opened, corpus, seed=SEED, shrink_rounds=4, evaluator=_EVALUATOR)
    finally:
        opened.runner.close()
    return AdapterResult(run, evaluated)


def _result(adapter_id: str, specs, corpus, directory: Path) -> AdapterResult:
    """The run of ``adapter_id``, computed here or read from the worker that computed it.
    While another xdist worker computes it, compute a not-yet-started adapter meanwhile."""
    digest = engine.corpus_digest(corpus)
    key = lambda rid: f"{rid.replace('@', '_')}-{digest}"   # noqa: E731
    while adapter_id not in _memo:
        res = _once(directory, key(adapter_id), lambda: _compute(specs[adapter_id], corpus), blocking=False)
        if res is not None:
            _memo[adapter_id] = res
            break
        for other in specs:
            if other not in _memo and not (directory / f"{key(other)}.pickle").exists():
                res = _once(directory, key(other), lambda: _compute(specs[other], corpus), blocking=False)
                if res is not None:
                    _memo[other] = res
                    break
        else:   # nothing left to steal: wait for the worker computing adapter_id
            _memo[adapter_id] = _once(directory, key(adapter_id), lambda: _compute(specs[adapter_id], corpus))
    return _memo[adapter_id]


@pytest.fixture(scope="session")
def adapter_result(adapter_id, specs, corpus, tmp_path_factory) -> AdapterResult:
    """The run of ``adapter_id`` over the corpus (skips when its framework is unavailable)."""
    res = _result(adapter_id, specs, corpus, _shared_dir(tmp_path_factory))
    if res.unavailable:
        pytest.skip(f"{adapter_id} unavailable ({res.unavailable})")
    return res
