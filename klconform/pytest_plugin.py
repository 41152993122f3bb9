"""klconform's pytest plugin: the conformance suite as test items of anyone's pytest run.

Registered under the ``pytest11`` entry point (name ``klconform.pytest_plugin``), so an
installed klconform loads it in every pytest run -- where it costs this module (pytest only)
and adds nothing until a run asks for adapters: ``--klconform-frameworks NAMES|all`` or
``--klconform-adapter MODULE:CLASS`` (or a conftest's :func:`pytest_klconform_defaults`
hook, how this repository enables its own tests/conformance/).  Every option is in
docs/plugin.md.

Items, under one session-level collector ``klconform``:

* ``klconform::<run id>::<area>`` -- one per adapter and report area
  (:data:`klconform.areas.AREAS`): fails on a discrepancy no known record covers
  (:func:`klconform.unexpected.unexpected_findings`), with the verdict class, SPEC clause
  ids, the smallest case and its reproduction blob in the failure and as JUnit properties;
* ``klconform::<run id>::known::<record id>`` -- one per known record of the adapter
  (``Adapter.known_records``): an expected failure (``xfail(strict=True)``) while the
  record is observed, a failure (XPASS strict) once no case shows it any more; skipped
  where the record's ``run``/``version`` conditions exclude the run.

Markers (registered, so ``--strict-markers`` works): ``klconform`` on every item,
``klconform_known`` on record items, ``kl_<run id>`` per adapter and ``kl_area_<area>`` per
area (non-identifier characters become ``_``); ``-k`` matches run ids, areas and record ids.

Each adapter runs once per session (its worker, the corpus, classification, records),
lazily, by the first item that needs it.  Under pytest-xdist the controller hands every
worker one shared directory (:func:`pytest_configure_node`); a result is computed by the
first worker that needs it, under an ``fcntl`` lock released by the OS even if that worker
dies, and read (pickled) by the others; a worker waiting for one adapter computes another
not yet started meanwhile.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import pickle
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import pytest

ALL = "all"
FROZEN = "frozen"
SHARED_DIR_KEY = "klconform_shared_dir"     # xdist workerinput key
DEFAULT_CASES = 1000
DEFAULT_CASE_TIMEOUT = 20.0
DEFAULT_SHRINK_ROUNDS = 4
DEFAULT_MAX_CONSECUTIVE_TIMEOUTS = 5     # klconform.workers.DEFAULT_MAX_CONSECUTIVE_TIMEOUTS (not imported: cheap)
# option dest -> environment variable that is its default (docs/plugin.md)
ENV_DEFAULTS = {
    "klconform_seed": "KLCONFORM_SEED",
    "klconform_cases": "KLCONFORM_CASES",
    "klconform_reference_backend": "KLCONFORM_REFERENCE_BACKEND",
    "klconform_device": "KLCONFORM_DEVICE",
}


# ----------------------------------------------------------------------------- hooks: options
class KLConformHooks:
    """Hook specifications this plugin adds."""

    @pytest.hookspec(firstresult=True)
    def pytest_klconform_defaults(self, config) -> dict[str, Any] | None:
        """Defaults for the ``--klconform-*`` options a run did not give, as ``{dest: value}``
        (e.g. ``{"klconform_frameworks": "all"}``).  Called when collection ends, so a
        conftest.py of a test directory enables klconform only for runs that collect it."""


def pytest_addhooks(pluginmanager):
    pluginmanager.add_hookspecs(KLConformHooks)


def pytest_addoption(parser):
    g = parser.getgroup("klconform", "klconform: KL-divergence conformance (docs/plugin.md)")
    g.addoption("--klconform-frameworks", metavar="NAMES", default=None,
                help="run the conformance items for these adapters: comma-separated registered names "
                     "(torch.kl_div), framework prefixes (torch), module:Class refs or NAME@ENV; 'all' = every "
                     "registered adapter plus NAME@ENV for each configured side interpreter. Without this or "
                     "--klconform-adapter the plugin adds no item.")
    g.addoption("--klconform-adapter", action="append", default=[], metavar="MODULE:CLASS",
                help="also run this adapter (importable module:Class, or module:Class@ENV); repeatable")
    g.addoption("--klconform-python", action="append", default=[], metavar="ENV=PATH",
                help="interpreter for side environment ENV (NAME@ENV runs); repeatable; "
                     "default: environment variable KLCONFORM_PYTHON_<ENV>")
    g.addoption("--klconform-corpus", metavar="FILE", default=None,
                help="replay the cases of this corpus file (klconform.frozen format); 'frozen' = the corpus "
                     "shipped with klconform (the default, unless --klconform-seed/--klconform-cases ask for a drawn one)")
    g.addoption("--klconform-large", metavar="WHICH", default=None,
                help="the large family each adapter also runs (docs/large.md): quick (7 cases of ~10^5 "
                     "elements, the default), all (112 recipes up to 64x131072), none, or a large-corpus FILE")
    g.addoption("--klconform-seed", type=int, default=None, metavar="N",
                help="draw a corpus with this seed instead of replaying the frozen one (default: $KLCONFORM_SEED or 0)")
    g.addoption("--klconform-cases", type=int, default=None, metavar="N",
                help=f"draw a corpus giving each adapter at least N generated cases instead of replaying the frozen one "
                     f"(default: $KLCONFORM_CASES or {DEFAULT_CASES})")
    g.addoption("--klconform-baseline", metavar="DIR", default=None,
                help="also compare each adapter's answers with the behaviour baselines in DIR "
                     "(klconform.baseline.check): one more item per adapter, failing on a change")
    g.addoption("--klconform-reference-backend", choices=("auto", "numba", "numpy"), default=None,
                help="the reference's fast path (default: $KLCONFORM_REFERENCE_BACKEND or auto)")
    g.addoption("--klconform-device", metavar="DEVICE", default=None,
                help="device the adapters run on, cpu or cuda (default: $KLCONFORM_DEVICE or cpu); an adapter "
                     "that cannot compute there (Adapter.devices, or no GPU) is skipped as unavailable")
    g.addoption("--klconform-case-timeout", type=float, default=DEFAULT_CASE_TIMEOUT, metavar="S",
                help=f"seconds one case may take in a worker (default {DEFAULT_CASE_TIMEOUT:g})")
    g.addoption("--klconform-shrink-rounds", type=int, default=DEFAULT_SHRINK_ROUNDS, metavar="N",
                help=f"shrinking rounds per minimal counterexample (default {DEFAULT_SHRINK_ROUNDS})")
    g.addoption("--klconform-max-consecutive-timeouts", type=int, default=DEFAULT_MAX_CONSECUTIVE_TIMEOUTS,
                metavar="N", help=f"circuit breaker: after N cases of an adapter in a row time out, its remaining "
                                  f"cases are not sent but reported as skipped (default "
                                  f"{DEFAULT_MAX_CONSECUTIVE_TIMEOUTS}; 0: never)")


# ----------------------------------------------------------------------------- selection
@dataclasses.dataclass(frozen=True)
class Selection:
    """What a run asked for, options resolved (command line, then defaults hook, then env)."""

    frameworks: str | None
    adapters: tuple[str, ...]
    pythons: tuple[str, ...]
    corpus: str | None
    seed: int
    cases: int
    baseline: str | None
    case_timeout: float
    shrink_rounds: int
    large: str = "quick"
    max_consecutive_timeouts: int = DEFAULT_MAX_CONSECUTIVE_TIMEOUTS

    @property
    def enabled(self) -> bool:
        return bool(self.frameworks) or bool(self.adapters)


class UsageError(Exception):
    """A bad option value: reported as one line (pytest.UsageError)."""


def _value(config, dest: str, defaults: dict[str, Any]):
    given = getattr(config.option, dest, None)
    if given not in (None, []):
        return given
    if dest in defaults:
        return defaults[dest]
    env = ENV_DEFAULTS.get(dest)
    return os.environ.get(env) if env else given


def _int(config, dest: str, defaults, fallback: int) -> int:
    v = _value(config, dest, defaults)
    try:
        return fallback if v in (None, "") else int(v)
    except ValueError:
        raise pytest.UsageError(f"--{dest.replace('_', '-')}: {v!r} is not an integer "
                                f"(from ${ENV_DEFAULTS.get(dest)})") from None


def _option_name(dest: str) -> str:
    """``--klconform-case-timeout`` (and its variable, when it has one) for messages."""
    env = ENV_DEFAULTS.get(dest)
    return f"--{dest.replace('_', '-')}" + (f" (or ${env})" if env else "")


def _number(config, dest: str, defaults, *, integer: bool, low: float, high: float | None = None):
    """A numeric option, finite and in ``[low, high]`` (``low`` excluded for a float: a
    timeout of 0 s is no timeout); pytest.UsageError naming the option otherwise."""
    import math
    v = _value(config, dest, defaults)
    try:
        x = int(v) if integer else float(v)
    except (TypeError, ValueError):
        raise pytest.UsageError(f"{_option_name(dest)}: {v!r} is not {'an integer' if integer else 'a number'}") from None
    bad = (x < low if integer else not (math.isfinite(x) and x > low)) or (high is not None and x > high)
    if bad:
        where = (f"{low}..{high}" if high is not None else f">= {low}") if integer else f"a finite number > {low:g}"
        raise pytest.UsageError(f"{_option_name(dest)}: {v!r} is not {where}")
    return x


DEVICES = ("cpu", "cuda")


def _choice(config, dest: str, defaults, choices: Sequence[str]) -> str | None:
    v = _value(config, dest, defaults)
    if v in (None, ""):
        return None
    if v not in choices:
        raise pytest.UsageError(f"{_option_name(dest)}: {v!r} is not one of {', '.join(choices)}")
    return v


def selection(config, defaults: dict[str, Any] | None = None) -> Selection:
    """The options resolved and their values checked: a bad value is pytest.UsageError,
    one line naming the option (exit 4 before any item runs), never a failure of every item."""
    d = dict(defaults or {})
    unknown = set(d) - {o for o in vars(config.option) if o.startswith("klconform_")}
    if unknown:
        raise pytest.UsageError(f"pytest_klconform_defaults: unknown option(s) {sorted(unknown)}")
    cases = _int(config, "klconform_cases", d, DEFAULT_CASES)
    if not 0 <= cases <= 100_000:
        raise pytest.UsageError(f"--klconform-cases: {cases} is not in 0..100000")
    return Selection(
        frameworks=_value(config, "klconform_frameworks", d),
        adapters=tuple(_value(config, "klconform_adapter", d) or ()),
        pythons=tuple(_value(config, "klconform_python", d) or ()),
        # The gate replays the frozen corpus; a seed or case count asks for a drawn one.
        corpus=_value(config, "klconform_corpus", d) or (
            None if _value(config, "klconform_seed", d) is not None or _value(config, "klconform_cases", d) is not None
            else FROZEN),
        seed=_int(config, "klconform_seed", d, 0), cases=cases,
        large=_value(config, "klconform_large", d) or "quick",
        baseline=_value(config, "klconform_baseline", d),
        case_timeout=_number(config, "klconform_case_timeout", d, integer=False, low=0),
        shrink_rounds=_number(config, "klconform_shrink_rounds", d, integer=True, low=0, high=100),
        max_consecutive_timeouts=_number(config, "klconform_max_consecutive_timeouts", d, integer=True, low=0,
                                         high=1_000_000))


def check_environment_options(config, defaults: dict[str, Any]) -> None:
    """The options whose home is an environment variable (reference backend, device):
    checked before they are applied, one line (pytest.UsageError) when bad."""
    from klconform.reference._accurate import BACKENDS
    backend = _choice(config, "klconform_reference_backend", defaults, BACKENDS)
    if backend == "numba":
        import importlib.util
        if importlib.util.find_spec("numba") is None:
            raise pytest.UsageError(f"{_option_name('klconform_reference_backend')}: numba is not importable here")
    _choice(config, "klconform_device", defaults, DEVICES)


# ----------------------------------------------------------------------------- one adapter's run
class _Cases(dict):
    """digest -> sent Case; a large case (kept as its JSON form, a recipe) is generated
    again the first time it is looked up."""

    large_json: dict = {}

    def __missing__(self, digest):
        from klconform.case import Case
        if digest not in self.large_json:
            raise KeyError(digest)
        case = self[digest] = Case.from_json(self.large_json[digest])
        return case


class AdapterResult:
    """One adapter's run: the AdapterRun, the evaluated cases, the facts per verdict."""

    def __init__(self, run, evaluated, unavailable: str = "", large_cases: dict | None = None):
        self.run, self.evaluated, self.unavailable = run, evaluated, unavailable
        self.cases = _Cases({e.sent.case.digest: e.sent.case for e in evaluated})   # digest -> sent Case
        self.cases.large_json = dict(large_cases or {})

    def facts_and_verdicts(self):
        from klconform.facts import facts
        version = str(self.run.env.get("version", "")) or None
        for e in self.evaluated:
            for v in e.verdicts:
                yield facts(e.sent.case, v, e.outcome, run=self.run.adapter, version=version), v, e


def _key(text: str) -> str:
    return re.sub(r"[^\w.-]", "_", text)


def _once(directory: Path | None, key: str, compute: Callable[[], Any], *, blocking: bool = True):
    """``compute()`` once across the xdist workers sharing ``directory`` (None: no sharing).
    The lock is an ``fcntl.flock`` (the OS drops it when its holder dies, so a crashed
    worker never blocks the others); the value is pickled and renamed into place whole.
    With ``blocking=False``: None at once when another worker holds the lock."""
    if directory is None:
        return compute()
    import fcntl
    lock, path = directory / f"{key}.lock", directory / f"{key}.pickle"
    with open(lock, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            return None
        try:
            if path.exists():
                return pickle.loads(path.read_bytes())
            value = compute()
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
            tmp.replace(path)
            return value
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class ConformanceRuns:
    """The session's adapters, corpus and (lazily) each adapter's run."""

    def __init__(self, config, sel: Selection, shared: Path | None):
        from klconform import registry
        from klconform.cli import expand_names
        self.config, self.sel, self.shared = config, sel, shared
        try:
            pythons = registry.parse_python_options(sel.pythons)
            if sel.frameworks in (None, ""):
                names: list[str] | None = []
            elif sel.frameworks.strip() == ALL:
                names = None
            else:
                names = [n.strip() for n in sel.frameworks.split(",") if n.strip()]
            known = registry.builtin_adapters()
            specs = registry.resolve(expand_names(names, known, pythons), extra_refs=sel.adapters,
                                     pythons=pythons, known=known)
            self.specs = {self.run_id(s): s for s in specs}
            # The adapters the run named (as klconform run's exit 3): not those that came
            # with 'all' alone; one of them that cannot start fails its items.
            implicit: set[str] = set()
            if names is None or ALL in names:
                implicit = {self.run_id(s) for s in registry.resolve(expand_names(None, known, pythons),
                                                                     pythons=pythons, known=known)}
            self.named = set(self.specs) - implicit
            self.classes = {rid: registry.load_adapter_class(s.adapter_ref) for rid, s in self.specs.items()}
        except (registry.RegistryError, ValueError) as exc:
            raise pytest.UsageError(f"klconform: {exc}") from None
        self._corpus = None
        self._large = None
        self._memo: dict[str, AdapterResult] = {}
        self._evaluator = None
        self.check_inputs()

    def check_inputs(self) -> None:
        """Read what the options name before any item runs -- the corpus file, the large
        family, each adapter's record files -- so that a mistyped or malformed one is one
        line and pytest's usage exit (4), not the same traceback in every item."""
        from klconform import frozen, records
        if self.corpus_path() is not None:
            try:
                self.corpus()
            except frozen.FrozenCorpusError as exc:
                raise pytest.UsageError(f"--klconform-corpus: {exc}") from None
        self.large_entries()
        for rid in self.specs:
            try:
                self.records(rid)
            except records.KnownError as exc:
                raise pytest.UsageError(f"klconform: {rid}: known records: {str(exc).splitlines()[0]}") from None

    @staticmethod
    def run_id(spec) -> str:
        from klconform import registry
        return getattr(spec, "run_id", None) or registry.load_adapter_class(spec.adapter_ref).name

    @property
    def run_ids(self) -> list[str]:
        return list(self.specs)

    def records(self, run_id: str) -> list:
        from klconform import records
        return records.load_for(self.classes[run_id])

    # --------------------------------------------------------------- corpus
    def corpus_path(self) -> Path | None:
        if not self.sel.corpus:
            return None
        from klconform import frozen
        return frozen.FROZEN_PATH if self.sel.corpus == FROZEN else Path(self.sel.corpus)

    def corpus_description(self) -> str:
        path = self.corpus_path()
        if path is not None:
            from klconform import frozen
            head = frozen.read_header(path)
            return f"corpus {path.name}: {head['cases']} cases, digest {head['digest']}"
        return f"corpus drawn: seed {self.sel.seed}, >= {self.sel.cases} generated cases per adapter + curated"

    def corpus(self) -> list:
        if self._corpus is None:
            path = self.corpus_path()
            if path is not None:
                from klconform import frozen
                self._corpus = frozen.load(path)      # cheap to parse: no sharing needed
            else:
                from klconform.explore import build_corpus
                caps = [cls().capabilities() for cls in self.classes.values()]
                key = f"corpus-{self.sel.seed}-{self.sel.cases}-{_key('-'.join(sorted(self.specs)))}"
                self._corpus = _once(self.shared, key, lambda: build_corpus(self.sel.seed, self.sel.cases, caps))
        return self._corpus

    # --------------------------------------------------------------- runs
    def _compute(self, run_id: str) -> AdapterResult:
        from klconform import engine
        from klconform.evaluator import make_evaluator
        if self._evaluator is None:
            # one reference cache: adapters sent byte-identical cases reuse its answers
            self._evaluator = make_evaluator()
        with _workers_stop_with_the_process():
            opened = engine.open_target(self.specs[run_id], case_timeout=self.sel.case_timeout, batch_size=64,
                                        max_consecutive_timeouts=self.sel.max_consecutive_timeouts)
            if not isinstance(opened, engine.Target):
                return AdapterResult(opened, [], unavailable=f"{opened.status}: {opened.reason}")
            big: dict = {}
            try:
                run, evaluated = engine.run_adapter(opened, self.corpus(), seed=self.sel.seed,
                                                    shrink_rounds=self.sel.shrink_rounds, evaluator=self._evaluator,
                                                    large=self.large_entries(), large_cases=big)
            except engine.AdapterFault as exc:      # the adapter's own bug (documented() raised): its items fail
                run = engine.faulted_run(opened, exc)
                return AdapterResult(run, [], unavailable=f"{run.status}: {run.reason}")
            finally:
                opened.runner.close()
        return AdapterResult(run, evaluated, large_cases=big)

    def large_entries(self) -> list:
        from klconform import large
        if self._large is None:
            try:
                self._large = large.select(self.sel.large)
            except large.LargeCorpusError as exc:
                raise pytest.UsageError(f"--klconform-large: {exc} (expected quick, all, none or a "
                                        f"large-corpus file)") from None
        return self._large

    def result(self, run_id: str) -> AdapterResult:
        """The run of ``run_id``, computed here or read from the xdist worker that did."""
        if self.shared is None:
            if run_id not in self._memo:
                self._memo[run_id] = self._compute(run_id)
            return self._memo[run_id]
        from klconform import engine
        digest = engine.corpus_digest(self.corpus())
        key = lambda rid: f"run-{_key(rid)}-{digest}"   # noqa: E731
        while run_id not in self._memo:
            res = _once(self.shared, key(run_id), lambda: self._compute(run_id), blocking=False)
            if res is not None:
                self._memo[run_id] = res
                break
            for other in self.specs:      # run_id is being computed elsewhere: start another
                if other not in self._memo and not (self.shared / f"{key(other)}.pickle").exists():
                    res = _once(self.shared, key(other), lambda: self._compute(other), blocking=False)
                    if res is not None:
                        self._memo[other] = res
                        break
            else:
                self._memo[run_id] = _once(self.shared, key(run_id), lambda: self._compute(run_id))
        return self._memo[run_id]

    def usable(self, run_id: str, item: pytest.Item | None = None) -> AdapterResult:
        """The run of ``run_id`` for an item: a failure when the adapter could not start or
        compared no case and the run named it (``@ENV`` included; as ``klconform run``'s exit
        3), skipped with the reason when it only came with ``all``.  ``item`` gets a
        user property saying how many cases were compared, or why none was (the terminal
        summary counts them, on the xdist controller too)."""
        from klconform.engine import compared_cases
        res = self.result(run_id)
        n = 0 if res.unavailable else compared_cases(res.run)
        props = item.user_properties if item is not None else []
        if n:
            props.append(("klconform_compared", str(n)))
            from klconform.report.summary import skipped_note
            skipped = skipped_note(res.run)
            if skipped:
                props.append(("klconform_skipped", skipped))
            return res
        why = res.unavailable or (f"compared no case: none of the {len(self.corpus())} corpus case(s) and "
                                  f"{len(self.large_entries())} large case(s) is one it takes")
        props.append(("klconform_not_compared", why))
        if run_id in self.named:
            pytest.fail(f"klconform: {run_id} could not be checked ({why})", pytrace=False)
        pytest.skip(f"{run_id} not checked ({why})")


@contextlib.contextmanager
def _workers_stop_with_the_process():
    """While this process runs adapter workers: SIGINT and SIGTERM first kill them (with
    the processes their adapters started: klconform.workers.abort_all), then do what they
    did before -- pytest's KeyboardInterrupt for SIGINT (the run stops as pytest stops,
    not when the hanging case times out), the default death for SIGTERM.  Only in the main
    thread (where Python delivers signals)."""
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    from klconform import workers
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def stop(signum, frame):
        workers.abort_all()
        _pass_on(signum, frame, previous[signum])

    for sig in previous:
        signal.signal(sig, stop)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        workers.reset_abort()


def _pass_on(signum, frame, handler) -> None:
    """Do what ``handler`` (a signal's disposition before ours) would have done."""
    import signal
    if callable(handler):
        handler(signum, frame)
    elif handler == signal.SIG_DFL:
        signal.signal(signum, signal.SIG_DFL)     # die of it, as without us
        os.kill(os.getpid(), signum)
    # SIG_IGN (or None, a handler set outside Python): nothing


_RUNS = pytest.StashKey[ConformanceRuns | None]()
_SHARED = pytest.StashKey[Path]()
_SIGTERM = pytest.StashKey[Any]()


def runs_for(config) -> ConformanceRuns | None:
    """The session's :class:`ConformanceRuns`, or None when no adapter was asked for."""
    if _RUNS not in config.stash:
        defaults = config.hook.pytest_klconform_defaults(config=config) or {}
        sel = selection(config, defaults)
        if not sel.enabled:
            return None   # not cached: a conftest's defaults may still arrive with collection
        check_environment_options(config, defaults)
        _apply_environment(config, defaults)
        shared = getattr(config, "workerinput", {}).get(SHARED_DIR_KEY)
        config.stash[_RUNS] = ConformanceRuns(config, sel, Path(shared) if shared else None)
    return config.stash[_RUNS]


def _apply_environment(config, defaults) -> None:
    """Options whose home is an environment variable the reference / a worker reads."""
    backend = _value(config, "klconform_reference_backend", defaults)
    if backend:
        os.environ["KLCONFORM_REFERENCE_BACKEND"] = backend
        accurate = sys.modules.get("klconform.reference._accurate")
        if accurate is not None:      # already imported: switch it as its own tests do
            accurate._BACKEND = backend
    device = _value(config, "klconform_device", defaults)
    if device:
        from klconform.adapters.base import DEVICE_ENV
        os.environ[DEVICE_ENV] = device   # read by each worker's setup() (Adapter.devices)


# ----------------------------------------------------------------------------- pytest hooks
def pytest_configure(config):
    if selection(config).enabled:
        # What the command line and environment give is checked now (exit 4 before
        # collection); a conftest's defaults come with collection and are checked then.
        check_environment_options(config, {})
    config.pluginmanager.register(Tally(), "klconform-tally")
    config.addinivalue_line("markers", "klconform: a klconform conformance item")
    config.addinivalue_line("markers", "klconform_known: a klconform known-record item (xfail strict)")
    from klconform.areas import AREAS     # no numpy: cheap in every pytest run
    for area in AREAS:
        config.addinivalue_line("markers", f"kl_area_{area}: klconform items of area {area}")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """xdist controller: every worker gets the same directory for shared results."""
    config = node.config
    if _SHARED not in config.stash:
        config.stash[_SHARED] = Path(tempfile.mkdtemp(prefix="klconform-pytest-"))
        config.stash[_SIGTERM] = _remove_on_sigterm(config.stash[_SHARED])
    node.workerinput[SHARED_DIR_KEY] = str(config.stash[_SHARED])


def _remove_on_sigterm(directory: Path):
    """pytest does not handle SIGTERM: the process dies, pytest_unconfigure never runs.  The
    shared directory is removed first (then the signal does what it did before, which is
    returned for pytest_unconfigure to put back; None outside the main thread)."""
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGTERM)

    def remove(signum, frame):
        shutil.rmtree(directory, ignore_errors=True)
        _pass_on(signum, frame, previous)

    signal.signal(signal.SIGTERM, remove)
    return previous


def pytest_unconfigure(config):
    if _SHARED in config.stash:
        shutil.rmtree(config.stash[_SHARED], ignore_errors=True)
        previous = config.stash.get(_SIGTERM, None)
        if previous is not None:
            import signal
            signal.signal(signal.SIGTERM, previous)


def pytest_report_header(config):
    if not selection(config).enabled:
        return None
    return header_lines(runs_for(config))


def header_lines(runs: ConformanceRuns) -> list[str]:
    import importlib.metadata
    lines = []
    for rid, spec in runs.specs.items():
        cls = runs.classes[rid]
        where = f"python {spec.python}" if spec.python else f"python {sys.executable}"
        if getattr(spec, "unavailable", None):
            where = f"not startable here: {spec.unavailable}"
        if spec.python is None and cls.framework and "@" not in rid:
            try:
                version = f"{cls.framework} {importlib.metadata.version(cls.framework)}"
            except importlib.metadata.PackageNotFoundError:
                version = f"{cls.framework} not installed"
        else:
            version = f"{cls.framework} (version from its worker)"
        lines.append(f"klconform adapter {rid}: {cls.api}, {version}, {where}")
    if not runs.specs:
        lines.append("klconform: no adapter selected")
    lines.append(f"klconform: seed {runs.sel.seed}, {runs.corpus_description()}, "
                 f"large family: {runs.sel.large} ({len(runs.large_entries())} cases)")
    lines.append(f"klconform: to compare: {to_compare(runs)} (each adapter takes the cases it can express; "
                 f"the summary says how many it compared)")
    return lines


def to_compare(runs: ConformanceRuns) -> str:
    """``2 adapter run(s) × 4047 corpus case(s) + 7 large``, before any adapter runs."""
    path = runs.corpus_path()
    if path is not None:
        from klconform import frozen
        corpus = f"{frozen.read_header(path)['cases']} corpus case(s)"
    else:
        corpus = f"a drawn corpus (>= {runs.sel.cases} generated case(s) per adapter + curated)"
    return f"{len(runs.specs)} adapter run(s) × {corpus} + {len(runs.large_entries())} large"


def pytest_report_collectionfinish(config, start_path, items):
    """A run enabled only by a conftest's defaults (after the header) says the same here."""
    if selection(config).enabled or config.stash.get(_RUNS, None) is None:
        return None
    return header_lines(config.stash[_RUNS])


@pytest.hookimpl(tryfirst=True)   # before -k/-m deselection sees the items
def pytest_collection_modifyitems(session, config, items):
    runs = runs_for(config)
    if runs is None:
        return
    if runs.sel.baseline:
        check_baselines(runs)
    root = Conformance.from_parent(session, name="klconform", nodeid="klconform")
    for rid in runs.run_ids:
        config.addinivalue_line("markers", f"{marker_for(rid)}: klconform items of adapter {rid}")
    ours = root.collect_all()
    items.extend(ours)
    # Reported as collected, so that "collected N items" counts the items that run.
    config.hook.pytest_collectreport(report=pytest.CollectReport(root.nodeid, "passed", None, ours))


# ----------------------------------------------------------------------------- what was compared
class Tally:
    """What the klconform items that ran compared, read from their reports' user
    properties (so the xdist controller, which runs no item, knows it too); registered per
    session by :func:`pytest_configure`."""

    def __init__(self):
        self.items = 0
        self.compared: dict[str, int] = {}       # run id -> cases compared
        self.not_compared: dict[str, str] = {}   # run id -> why none
        self.skipped: dict[str, str] = {}        # run id -> cases its circuit breaker did not send

    def pytest_runtest_logreport(self, report):
        if report.when != "call":
            return
        props = dict((p[0], p[1]) for p in report.user_properties)
        rid = props.get("klconform_adapter")
        if rid is None:
            return
        self.items += 1
        if "klconform_compared" in props:
            self.compared[rid] = int(props["klconform_compared"])
        if "klconform_skipped" in props:
            self.skipped[rid] = props["klconform_skipped"]
        elif "klconform_not_compared" in props:
            self.not_compared.setdefault(rid, props["klconform_not_compared"])

    def pytest_sessionfinish(self, session):
        """A run whose klconform items compared nothing at all (every adapter skipped as
        unavailable, or none took a case) does not pass."""
        if self.items and not self.compared and session.exitstatus == pytest.ExitCode.OK \
                and not hasattr(session.config, "workerinput"):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter):
        if not self.items:
            return
        missed = "; ".join(f"{rid} ({why})" for rid, why in self.not_compared.items() if rid not in self.compared)
        terminalreporter.section("klconform", sep="-", red=not self.compared)
        if self.compared:
            from klconform.cli import adapters_by_cases
            terminalreporter.write_line(f"klconform: compared {adapters_by_cases(sorted(self.compared.items()))}"
                                        + (f"; not compared: {missed}" if missed else ""))
            for rid, note in sorted(self.skipped.items()):
                terminalreporter.write_line(f"klconform: {rid}: {note} (not sent)")
        else:
            terminalreporter.write_line(f"klconform: nothing compared: {missed or 'no adapter ran'}; the run "
                                        f"fails (exit status {int(pytest.ExitCode.TESTS_FAILED)})", red=True)


def check_baselines(runs: ConformanceRuns) -> None:
    """``--klconform-baseline DIR`` usable before any item runs: every baseline file there
    reads, and those of the selected adapters were made on this run's corpus (when it is a
    file; a drawn corpus is checked by the items).  pytest.UsageError, one line, otherwise."""
    from klconform import baseline, engine
    try:
        files = baseline.read_directory(runs.sel.baseline)
        if runs.corpus_path() is not None:
            digest = engine.corpus_digest(runs.corpus())
            names = {baseline.adapter_name(rid) for rid in runs.run_ids}
            for b in files:
                if b.adapter in names and b.header.get("corpus_digest") != digest:
                    raise baseline.BaselineError(
                        f"stale baseline {b.file_name()}: corpus digest {b.header.get('corpus_digest')} differs "
                        f"from this run's {digest} (use the corpus it was made on, or regenerate it)")
    except baseline.BaselineError as exc:
        raise pytest.UsageError(f"--klconform-baseline: {exc}") from None


def marker_for(run_id: str) -> str:
    return "kl_" + re.sub(r"\W", "_", run_id)


@pytest.fixture(scope="session")
def klconform_runs(pytestconfig) -> ConformanceRuns:
    """The session's :class:`ConformanceRuns` (skips when the run asked for no adapter)."""
    runs = runs_for(pytestconfig)
    if runs is None:
        pytest.skip("klconform: no adapter selected (--klconform-frameworks / --klconform-adapter)")
    return runs


# ----------------------------------------------------------------------------- nodes
class Conformance(pytest.Collector):
    """The ``klconform`` collector: one :class:`AdapterNode` per run id."""

    def collect(self):
        runs = runs_for(self.config)
        return [AdapterNode.from_parent(self, name=rid) for rid in runs.run_ids]

    def collect_all(self) -> list[pytest.Item]:
        out = []
        for node in self.collect():
            out += node.collect()
        return out


class AdapterNode(pytest.Collector):
    def collect(self):
        from klconform import records
        from klconform.areas import AREAS
        runs = runs_for(self.config)
        rid = self.name
        items: list[pytest.Item] = []
        for area in AREAS:
            it = AreaItem.from_parent(self, name=area, run_id=rid, area=area)
            it.add_marker(f"kl_area_{area}")
            items.append(it)
        try:
            recs = runs.records(rid)
        except records.KnownError as exc:
            items.append(RecordFileItem.from_parent(self, name="known-records", run_id=rid, error=str(exc)))
            recs = []
        for rec in recs:
            it = RecordItem.from_parent(self, name=f"known[{rec.id}]", run_id=rid, record=rec)
            it.add_marker("klconform_known")
            it.add_marker(pytest.mark.xfail(
                strict=True, raises=KnownDiscrepancyObserved,
                reason=f"known discrepancy {rec.id} ({rec.cls}; {', '.join(rec.clauses)}); "
                       f"an XPASS means no case shows it any more: behaviour changed, review the record"))
            items.append(it)
        if runs.sel.baseline:
            items.append(BaselineItem.from_parent(self, name="baseline", run_id=rid))
        for it in items:
            it.add_marker("klconform")
            it.add_marker(marker_for(rid))
        return items


class ConformanceFailure(Exception):
    """An item's finding: shown as its text, without a Python traceback."""


class KnownDiscrepancyObserved(Exception):
    """A known record still observed: the expected failure of its strict-xfail item."""


class _Item(pytest.Item):
    def __init__(self, *, run_id: str, **kw):
        super().__init__(**kw)
        self.run_id = run_id
        self.user_properties.append(("klconform_adapter", run_id))

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, (ConformanceFailure, KnownDiscrepancyObserved)):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return "klconform", None, f"klconform {self.run_id} {self.name}"


class AreaItem(_Item):
    """No discrepancy of ``area`` outside the adapter's known records."""

    def __init__(self, *, area: str, **kw):
        super().__init__(**kw)
        self.area = area
        self.user_properties.append(("klconform_area", area))

    def runtest(self):
        from klconform.unexpected import unexpected_findings
        runs = runs_for(self.config)
        res = runs.usable(self.run_id, self)
        lines = unexpected_findings(res.run, area=self.area, cases=res.cases)
        self.user_properties.append(("klconform_unexpected", str(len(lines))))
        if lines:
            raise ConformanceFailure(explain_findings(self, res, lines))


def _new_verdicts_in_area(res: AdapterResult, area: str):
    from klconform.areas import area_of
    from klconform.facts import facts
    from klconform.unexpected import unrecorded
    return [v for v in unrecorded(res.run) if area_of(v, facts(res.cases[v.case], v)) == area]


def _outcome_of(res: AdapterResult, digest: str):
    from klconform import wire
    d = res.run.outcomes.get(digest)
    return wire.from_json(d) if d else None


def explain_findings(item: AreaItem, res: AdapterResult, lines: list[str]) -> str:
    """The failure text of an area item, and its JUnit properties: per verdict class the
    SPEC clauses, the smallest new case and the blob that reproduces it."""
    import numpy as np

    from klconform import engine
    out = [f"klconform: {item.run_id}, area {item.area}: {len(lines)} unexpected finding(s)", *lines]
    by_cls: dict[str, list] = {}
    for v in _new_verdicts_in_area(res, item.area):
        by_cls.setdefault(v.cls, []).append(v)
    for cls, vs in sorted(by_cls.items()):
        smallest = min(vs, key=lambda v: (engine.showing_rank(res.cases[v.case], v, _outcome_of(res, v.case)),
                                          int(np.prod(res.cases[v.case].shape) or 0), v.case))
        clauses = list(smallest.clauses)
        case = res.cases[smallest.case]
        blob = engine.case_blob(case)
        out += ["", f"[{cls}] {len(vs)} verdict(s); SPEC clauses (smallest case): {', '.join(clauses)}",
                f"  smallest new case {case.digest} ({case.label}; {case.dtype}, reduction={case.reduction}, "
                f"shape={list(case.shape)}), vs {smallest.against}: {smallest.detail}"]
        ce = res.run.counterexamples.get(cls)
        if ce and not ce["verdict"].get("known"):
            out.append(f"  minimal counterexample of the class (shrunk {ce['shrink_rounds']} rounds): case {ce['case']}")
            blob = ce["blob"]
        out += [f"  reproduce: klconform.engine.case_from_blob({blob!r})"]
        item.user_properties += [(f"klconform_{cls}_clauses", " ".join(clauses)),
                                 (f"klconform_{cls}_case", case.digest),
                                 (f"klconform_{cls}_blob", blob)]
    item.user_properties.append(("klconform_classes", " ".join(sorted(by_cls))))
    return "\n".join(out)


class RecordItem(_Item):
    """A known record: observed = the expected failure of a strict xfail."""

    def __init__(self, *, record, **kw):
        super().__init__(**kw)
        self.record = record
        self.user_properties += [("klconform_record", record.id), ("klconform_record_file", record.source)]

    def runtest(self):
        from klconform import records
        res = runs_for(self.config).usable(self.run_id, self)
        version = str(res.run.env.get("version", "")) or None
        if not records.applies(self.record, run=self.run_id, version=version):
            pytest.skip(f"record {self.record.id} does not apply to {self.run_id} {version or ''}".rstrip())
        if self.record.id in (res.run.not_applicable_known or []):
            pytest.skip(f"record {self.record.id}: no case this run sent to {self.run_id} can meet its condition")
        hits = [v for v in res.run.verdicts if v.known == self.record.id]
        self.user_properties.append(("klconform_observed", str(len(hits))))
        if hits:
            raise KnownDiscrepancyObserved(
                f"{self.record.id} observed in {len(hits)} verdict(s), e.g. case {hits[0].case}: {hits[0].detail[:160]}")


class RecordFileItem(_Item):
    """An adapter whose record files do not load: fails with the one-line reason."""

    def __init__(self, *, error: str, **kw):
        super().__init__(**kw)
        self.error = error

    def runtest(self):
        raise ConformanceFailure(f"klconform: {self.run_id}: {self.error}")


class BaselineItem(_Item):
    """The adapter's answers against the behaviour baselines of ``--klconform-baseline``."""

    def runtest(self):
        from klconform import baseline, engine
        from klconform.results import RunResult
        runs = runs_for(self.config)
        res = runs.usable(self.run_id, self)
        cases = {e.sent.case.digest: e.sent.to_json() for e in res.evaluated}
        result = RunResult(schema_version=engine.SCHEMA_VERSION, seed=runs.sel.seed, hypothesis={},
                           corpus_digest=engine.corpus_digest(runs.corpus()), cases=cases, runs=[res.run])
        try:
            found = baseline.check(result, runs.sel.baseline)
        except baseline.BaselineError as exc:       # e.g. stale against a drawn corpus
            raise ConformanceFailure(f"klconform: {self.run_id}: --klconform-baseline: {exc}") from None
        # notes (is_change False: values moved within the bound, an older version's
        # baseline used) are no change: they are listed with a failure, never one alone
        changes = [c for c in found if c.is_change]
        self.user_properties.append(("klconform_baseline_changes", str(len(changes))))
        if changes:
            raise ConformanceFailure("\n".join([f"klconform: {self.run_id}: {len(changes)} change(s) against "
                                                f"the baselines in {runs.sel.baseline}",
                                                *(c.line() for c in [*changes, *(c for c in found if not c.is_change)][:50])]))
