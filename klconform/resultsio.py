"""The results file: reading and writing results.json (atomic writes, schema validation,
one-line errors).  The model it stores is :mod:`klconform.results`, kept apart so that the
verdicts and the reports import plain dataclasses without file or jsonschema code.

    write_results(result, path)      # validate against the schema, write atomically
    result = read_results(path)      # ResultsError (one line) when unreadable or invalid
    atomic_write_text(path, text)    # temp file in the same directory + os.replace
    write_set(out, {name: render})   # an output set: every file replaced, or none
    output_target(path)              # what a write to path replaces (the rule of every writer)

The document is ``RunResult.to_json()`` serialised with sorted keys and no NaN literals
(non-finite floats outside arrays become the strings "nan", "inf", "-inf"), so the same
run always produces the same bytes apart from the fields in
:data:`klconform.results.TIMING_FIELDS`.  Schema: klconform/schema/results.schema.json.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import math
import json
import os
import stat
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterable

from .results import TIMING_FIELDS, RunResult
from .wire import NONFINITE, json_float

SCHEMA_PATH = Path(__file__).resolve().parent / "schema" / "results.schema.json"


class ResultsError(ValueError):
    """A results file that cannot be read, parsed or validated; the message is one line
    naming the file and the problem."""


# ----------------------------------------------------------------------------- reading inputs
#: The largest input file klconform reads (corpus, large corpus, results -- after gzip --,
#: baseline, records): 20 times the results of the committed example run (27 MB).
MAX_INPUT_BYTES = 512 * 2**20


class InputRefused(OSError):
    """An input file klconform does not read: not a regular file (a device such as
    /dev/zero, a FIFO, a directory), or larger than MAX_INPUT_BYTES.  ``strerror`` says
    which, ``filename`` names it; readers turn it into their one-line error."""


def open_input(path: str | os.PathLike, *, limit: int = MAX_INPUT_BYTES):
    """``path`` opened for reading (binary) once it is known to be a regular file (symlinks
    followed) of at most ``limit`` bytes; :class:`InputRefused` otherwise.  Opened without
    blocking, so that a FIFO is refused rather than waited on."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = next((k for test, k in _KINDS if test(st.st_mode)), "not a regular file")
            raise InputRefused(errno.EINVAL, f"is {kind}, not a regular file", str(path))
        if st.st_size > limit:
            raise InputRefused(errno.EFBIG, f"is larger than the {limit // 2**20} MiB input limit "
                                            f"({st.st_size} bytes)", str(path))
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_input(path: str | os.PathLike, *, limit: int = MAX_INPUT_BYTES, gzipped: bool = False) -> bytes:
    """The bytes of the input file ``path`` (:func:`open_input`'s rules), at most ``limit``
    of them even if it grows while read; ``gzipped``: decompressed, under the same limit."""
    with open_input(path, limit=limit) as fh:
        data = fh.read(limit + 1)
    if gzipped:
        import gzip
        import io
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
            data = gz.read(limit + 1)
    if len(data) > limit:
        raise InputRefused(errno.EFBIG, f"is larger than the {limit // 2**20} MiB input limit"
                                        + (" once decompressed" if gzipped else ""), str(path))
    return data


@functools.lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The JSON Schema of results.json."""
    return json.loads(SCHEMA_PATH.read_text())


def _plain(x: Any) -> Any:
    """``x`` with tuples as lists, numpy scalars as Python numbers and non-finite floats as
    strings: a structure ``json.dumps(allow_nan=False)`` accepts."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return x
    if isinstance(x, int):
        return int(x)
    if hasattr(x, "item") and not isinstance(x, (bytes, bytearray)):   # numpy scalar
        return _plain(x.item())
    if isinstance(x, float):
        return json_float(x)
    return x


def to_document(result: RunResult, memo: dict | None = None) -> dict[str, Any]:
    """The JSON document of ``result`` (plain types only).  ``memo``: a dict kept across
    calls for the snapshots of one run (results.partial.json after each adapter): a finished
    adapter run's and a case's JSON are made once, not again for every later snapshot."""
    if memo is None:
        return _plain(result.to_json())
    head = {f.name: getattr(result, f.name) for f in dataclasses.fields(result) if f.name not in ("runs", "cases")}
    doc = _plain(head)
    runs = []
    for r in result.runs:
        hit = memo.get(("run", id(r)))
        if hit is None or hit[0] is not r:      # an id can be reused once its object is gone
            hit = memo[("run", id(r))] = (r, _plain(r.to_json()))
        runs.append(hit[1])
    cases = {}
    for digest, cj in result.cases.items():
        c = memo.get(("case", digest))
        if c is None:
            c = memo[("case", digest)] = _plain(cj)
        cases[str(digest)] = c
    doc["runs"], doc["cases"] = runs, cases
    return doc


def dumps(doc: dict[str, Any]) -> str:
    """Canonical serialisation: sorted keys, compact, no NaN literals, trailing newline."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False, ensure_ascii=False) + "\n"


@functools.lru_cache(maxsize=None)
def _fast_validator():
    """The results schema compiled by jsonschema-rs: ~60x faster than the pure-Python
    validator on a 15-run results.json (0.3 s vs 20 s), the bulk of reading one."""
    import jsonschema_rs
    return jsonschema_rs.validator_for(schema())


def validate(doc: Any, *, where: str = "results") -> None:
    """Raise :class:`ResultsError` unless ``doc`` conforms to the results schema."""
    if _fast_validator().is_valid(doc):
        _check_arrays(doc, where)
        return
    # the compiled validator says whether; the reference implementation words why (the
    # same message on every platform and version of the fast one)
    import jsonschema
    validator = jsonschema.Draft202012Validator(schema())
    err = next(iter(sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))), None)
    if err is not None:
        path = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        msg = err.message if len(err.message) <= 160 else err.message[:157] + "..."
        raise ResultsError(f"{where}: does not match the results schema at {path}: {msg}")
    _check_arrays(doc, where)




def _bad_item(data: list) -> Any:
    for x in data:
        if isinstance(x, bool) or not (isinstance(x, (int, float)) or x in NONFINITE):
            return x
    return None


def _check_arrays(doc: dict[str, Any], where: str) -> None:
    """The array items the schema leaves to code (#/$defs/float): numbers or nan/inf/-inf,
    as many as the shape says."""
    for i, run in enumerate(doc.get("runs", [])):
        for digest, o in run.get("outcomes", {}).items():
            for name, slot in [("value", o.get("value")), *(("grads/" + k, v) for k, v in o.get("grads", {}).items())]:
                if slot is None:
                    continue
                n = math.prod(slot["shape"])
                bad = _bad_item(slot["data"])
                if len(slot["data"]) != n or bad is not None:
                    what = f"{len(slot['data'])} items for shape {slot['shape']}" if bad is None else f"item {bad!r}"
                    raise ResultsError(f"{where}: does not match the results schema at runs/{i}/outcomes/{digest}/"
                                       f"{name}/data: {what}")


def _file_mode() -> int:
    """0666 less the process umask (what ``open(path, "w")`` would give)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


class UnsafeOutput(ResultsError):
    """A path klconform will not write: not a regular file or a new path (one line)."""


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"))


def output_target(path: str | os.PathLike) -> Path:
    """The file that writing ``path`` replaces -- the one rule of every writer of klconform
    (output sets, results, corpora, baselines).  A regular file or a new path in an
    existing directory is itself; a symlink is written through: the file it names
    (a dangling link: the path it names) is replaced and the link kept.  Anything else (a
    directory, device node, FIFO, socket, a link loop) is refused: :class:`UnsafeOutput`,
    one line.  Replacing a ``/dev/null`` with a regular file is what this prevents."""
    given = Path(path)
    real = Path(os.path.realpath(given))
    via = f" (the target of symlink {given})" if real != Path(os.path.abspath(given)) else ""
    try:
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        if not real.parent.is_dir():
            raise UnsafeOutput(f"{given}: cannot be written: directory {real.parent} does not exist") from None
        return real
    except OSError as exc:
        raise UnsafeOutput(f"{given}: cannot be written ({exc.strerror or exc})") from None
    if stat.S_ISREG(mode):
        return real
    kind = next((k for test, k in _KINDS if test(mode)), "not a regular file")
    raise UnsafeOutput(f"{real}{via}: is {kind}; klconform writes only regular files or new paths")


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never a
    part: a temp file in the same directory, flushed and fsync'd, then ``os.replace``.
    Where it writes: :func:`output_target` (a symlink written through; a device node,
    FIFO or directory refused with :class:`UnsafeOutput`)."""
    path = output_target(path)
    staged: dict[str, str] = {}
    try:
        stage_text(path.parent, path.name, text, staged)
        os.replace(staged[path.name], path)
        del staged[path.name]
    finally:
        with DEFER.region():
            for tmp in staged.values():   # not replaced (an error, a signal): never left behind
                _unlink(tmp)


def write_results(result: RunResult, path: str | os.PathLike, *, check: bool = True,
                  memo: dict | None = None) -> dict[str, Any]:
    """Validate ``result`` against the schema (unless ``check`` is False: progress snapshots)
    and write it atomically; returns the document.  ``memo``: see :func:`to_document`."""
    doc = to_document(result, memo)
    if check:
        validate(doc, where=f"results for {path}")
    atomic_write_text(path, dumps(doc))
    return doc


class _NonFiniteLiteral(ValueError):
    pass


def _no_literal(name: str):
    raise _NonFiniteLiteral(name)     # NaN / Infinity / -Infinity: Python's json extension, not JSON


def load_document(path: str | os.PathLike) -> dict[str, Any]:
    """The parsed and schema-validated document at ``path``."""
    p = Path(path)
    try:
        # a committed example keeps its results compressed
        text = read_input(p, gzipped=p.suffix == ".gz").decode("utf-8")
    except FileNotFoundError:
        raise ResultsError(f"{p}: no such results file") from None
    except IsADirectoryError:
        raise ResultsError(f"{p}: is a directory, not a results file") from None
    except InputRefused as exc:
        raise ResultsError(f"{p}: {exc.strerror}; not read") from None
    except (OSError, UnicodeDecodeError, EOFError) as exc:   # gzip's BadGzipFile is an OSError
        raise ResultsError(f"{p}: cannot read results file ({type(exc).__name__}: {exc})") from None
    try:
        doc = json.loads(text, parse_constant=_no_literal)
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{p}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except RecursionError:
        raise ResultsError(f"{p}: not a results file (JSON nested too deeply to read)") from None
    except _NonFiniteLiteral as exc:
        raise ResultsError(f"{p}: not valid JSON ({exc} is not a JSON number; a results file writes "
                           f"non-finite numbers as the strings \"nan\", \"inf\", \"-inf\")") from None
    if not isinstance(doc, dict):
        raise ResultsError(f"{p}: not a results file (top level is {type(doc).__name__}, expected an object)")
    version = doc.get("schema_version")
    expected = schema()["properties"]["schema_version"]["const"]
    if version != expected:
        raise ResultsError(f"{p}: schema_version {version!r} is not supported (this klconform reads {expected})")
    validate(doc, where=str(p))
    check_references(doc, where=str(p))
    return doc


def check_references(doc: dict[str, Any], where: str = "results") -> None:
    """Raise :class:`ResultsError` unless every case the runs cite (outcomes, verdicts,
    counterexamples) is in ``cases`` and every case there decodes: the schema checks each
    part, this checks that the parts fit together (a report from a pruned or truncated
    file would otherwise cite cases it cannot show)."""
    from .case import Case
    cases = doc.get("cases", {})
    for i, run in enumerate(doc.get("runs", [])):
        cited = [("outcomes", d) for d in run.get("outcomes", {})]
        cited += [("verdicts", v.get("case")) for v in run.get("verdicts", [])]
        cited += [("counterexamples", ce.get("case")) for ce in run.get("counterexamples", {}).values()]
        for part, digest in cited:
            if digest not in cases:
                raise ResultsError(f"{where}: runs/{i} ({run.get('adapter', '?')}) {part} cite case {digest!r}, "
                                   f"which is not in 'cases' (truncated or edited file?)")
    from . import distill_harness
    from .large import Recipe
    for digest, case in cases.items():
        try:
            if distill_harness.is_case_json(case):
                distill_harness.check_case_json(case)
            elif isinstance(case, dict) and case.get("recipe") is not None:
                Recipe.from_json(case["recipe"])    # a large case: its recipe is checked here, its
            else:                                   # digest when it is generated (klconform.large)
                Case.from_json(case)
        except Exception as exc:  # noqa: BLE001 - any decoding failure is a damaged file
            raise ResultsError(f"{where}: cases/{digest} does not decode ({type(exc).__name__}: "
                               f"{str(exc).splitlines()[0] if str(exc) else ''})") from None


def read_results(path: str | os.PathLike) -> RunResult:
    """The :class:`RunResult` stored at ``path`` (raises :class:`ResultsError`)."""
    doc = load_document(path)
    try:
        return RunResult.from_json(doc)
    except (TypeError, ValueError, KeyError) as exc:
        raise ResultsError(f"{path}: results do not load ({type(exc).__name__}: {exc})") from None


def strip_timing(doc: Any, fields=TIMING_FIELDS) -> Any:
    """A copy of ``doc`` without the timing fields (for determinism comparisons)."""
    import copy
    doc = copy.deepcopy(doc)
    for dotted in fields:
        _drop(doc, dotted.split("."))
    return doc


def _drop(node: Any, parts: list[str]) -> None:
    head, rest = parts[0], parts[1:]
    if head == "*":
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
        for child in list(children):
            if rest:
                _drop(child, rest)
        return
    if not isinstance(node, dict) or head not in node:
        return
    if rest:
        _drop(node[head], rest)
    else:
        del node[head]


# ----------------------------------------------------------------------------- the output set
LOCK_NAME = ".klconform.lock"


class OutputBusy(ResultsError):
    """Another klconform process holds the output directory's lock."""


class OutputLock:
    """An exclusive ``flock`` on ``DIR/.klconform.lock`` for as long as a run writes into
    DIR: two runs into one output directory would interleave their files.  The holder
    removes the file when done; one left by a killed run is harmless (the kernel dropped
    its lock) and is taken over by the next run."""

    def __init__(self, directory: str | os.PathLike):
        self.path = Path(directory) / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> "OutputLock":
        try:
            return self._acquire()
        except KeyboardInterrupt:     # interrupted while taking it: leave no lock file behind
            if self._fd is None and self.path.exists():
                _unlink_if_unlocked(self.path)
            raise

    def _acquire(self) -> "OutputLock":
        import fcntl
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
                os.close(fd)
                raise OutputBusy(f"{self.path.parent}: another klconform run (pid {holder}) is writing there; "
                                 f"wait for it or choose another --out") from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)        # locked a file its holder just removed: lock the new one
        try:        # the holder's pid, for the message of a run that finds it busy; a full disk goes without
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            _unlink(str(self.path))   # while still holding the lock (see __enter__)
            os.close(self._fd)        # releases the lock
            self._fd = None


class _Commit:
    """Whether this process is replacing (or has replaced) an output set, and the signals
    held meanwhile.  A signal handler (the command line's) consults ``active``: from the
    moment the replacements start, the new set is going to be complete, so a SIGINT/SIGTERM
    is recorded in ``held`` instead of interrupting the run."""

    def __init__(self):
        self.active = False
        self.held: list[int] = []

    def reset(self) -> None:
        self.active = False
        self.held = []


COMMIT = _Commit()


class _Deferral:
    """Short regions in which a SIGINT/SIGTERM must not unwind the code (a temp file
    created but its name not yet recorded; the clean-up of temp files).  The command
    line's handler consults ``depth``: while it is non-zero the signal is recorded in
    ``pending`` and sent again as the outermost region ends.  A Python-level flag, not a
    signal mask: a mask covers one thread, and the kernel hands a process-directed signal
    to any thread that does not block it, after which Python runs the handler on the main
    thread all the same."""

    def __init__(self):
        self.depth = 0
        self.pending: list[int] = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def region(self):
        with self._lock:
            self.depth += 1
        try:
            yield
        finally:
            with self._lock:
                self.depth -= 1
                resend = self.pending[:1] if self.depth == 0 else []
                if resend:
                    self.pending.clear()
            if resend:
                os.kill(os.getpid(), resend[0])


DEFER = _Deferral()


def caused_by_interrupt(exc: BaseException) -> bool:
    """Whether ``exc`` is a KeyboardInterrupt or was caused by one: Python wraps an
    interrupt that lands while a class is created ("RuntimeError: Error calling
    __set_name__", its cause the interrupt), and libraries re-raise others as their own."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


# Test hook: seconds to sleep between two files while staging and while replacing, so
# that a test can signal a run in the middle of writing its outputs.
WRITE_DELAY_ENV = "KLCONFORM_TEST_WRITE_DELAY_S"


@dataclasses.dataclass
class WrittenSet:
    """What :func:`write_set` did: files ``written``, files ``removed`` (of the previous
    set, not part of this one), one-line ``problems``, and the signals ``held`` back while
    the files were replaced (the set is complete; the caller decides what they mean)."""

    written: list[Path]
    problems: list[str]
    removed: list[Path] = dataclasses.field(default_factory=list)
    held: list[int] = dataclasses.field(default_factory=list)


def _test_delay() -> None:
    delay = os.environ.get(WRITE_DELAY_ENV)
    if delay:
        import time
        time.sleep(float(delay))


def _unlink_if_unlocked(path: Path) -> None:
    """Remove a lock file that no process holds (ours, half-taken when interrupted)."""
    import fcntl
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        _unlink(str(path))
    except OSError:
        pass
    finally:
        os.close(fd)


def write_set(out: str | os.PathLike, renders: dict[str, Any], *, remove: Iterable[str] = (),
              stop_requested: Callable[[], bool] | None = None) -> WrittenSet:
    """Write the files ``{name: render}`` of one output set into directory ``out`` as one
    transaction: all of them replaced, or none.

    1. Every name is checked (:func:`output_target`: a regular file, a new path, or a
       symlink written through to the file it names; a directory, device node, FIFO or
       socket refuses the set), then every file is rendered, then each is written to a
       fsync'd temp file beside its target, and a hard link to each previous file is kept
       beside it.  A failure in any of these (a renderer's error, a full disk) or a stop
       asked for (``stop_requested()`` true: KeyboardInterrupt) leaves the previous set
       byte-identical and reports every problem found.
    2. With SIGINT/SIGTERM held back, each target is replaced (one ``os.replace``) and the
       files named in ``remove`` that are not part of this set (other formats of an
       earlier run) are moved aside.  Should one step fail, the steps done are undone
       from the kept links: the previous set comes back.  A signal that arrives meanwhile
       is held until the set is complete and returned in ``held`` (also kept in
       :data:`COMMIT`).

    ``render`` is a text, or a callable returning it.  ``written`` lists the files only
    when the whole set was replaced; temp files and kept links never outlive the call."""
    import signal
    out = Path(out)
    staged: dict[str, str] = {}      # name -> temp file holding its new text
    kept: dict[str, str] = {}        # name -> hard link to its previous file (for undoing)
    result = WrittenSet([], [])
    problems = result.problems
    if stop_requested is not None and stop_requested():
        raise KeyboardInterrupt           # asked before anything was staged
    targets: dict[str, Path] = {}
    for name in renders:
        try:
            targets[name] = output_target(out / name)
        except UnsafeOutput as exc:
            problems.append(f"{exc}; not replaced")
    removals = [n for n in dict.fromkeys(remove) if n not in renders and os.path.lexists(out / n)]
    for name in removals:
        if (out / name).is_dir() and not (out / name).is_symlink():
            problems.append(f"{out / name}: is a directory, not removed")
    if problems:
        return _nothing_replaced(result)
    try:
        texts: dict[str, str] = {}
        for name, render in renders.items():
            try:
                texts[name] = render() if callable(render) else render
            except Exception as exc:  # noqa: BLE001 - reported; the set is then not replaced
                if caused_by_interrupt(exc) or (stop_requested is not None and stop_requested()):
                    raise KeyboardInterrupt from exc     # a signal Python wrapped: not a renderer bug
                if isinstance(exc, ResultsError):       # an invalid document: its one line says why
                    problems.append(f"{targets[name]}: not rendered ({exc})")
                else:
                    log = log_internal_error(exc)
                    problems.append(f"{targets[name]}: not rendered ({type(exc).__name__}; details in {log})")
        if problems:
            return _nothing_replaced(result)
        for name, text in texts.items():
            try:
                stage_text(targets[name].parent, name, text, staged)
                if targets[name].exists():
                    _keep_link(targets[name], name, kept)
            except OSError as exc:
                problems.append(f"{targets[name]}: not written ({exc.strerror or exc})")
                return _nothing_replaced(result)
            _test_delay()
        hold = {signal.SIGINT, signal.SIGTERM}
        main = threading.current_thread() is threading.main_thread()
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, hold) if main else None
        try:
            if stop_requested is not None and stop_requested():
                raise KeyboardInterrupt
            COMMIT.active = True
            done: list[tuple[str, str]] = []       # ("replaced" | "removed", name), in order
            step = ""
            try:
                for name in list(staged):
                    step = f"{targets[name]}: not replaced"
                    os.replace(staged[name], targets[name])
                    del staged[name]
                    done.append(("replaced", name))
                    _test_delay()
                for name in removals:
                    step = f"{out / name}: not part of this set, not removed"
                    aside = _aside_name(out, name)
                    os.rename(out / name, aside)
                    kept[f"removed:{name}"] = aside
                    done.append(("removed", name))
            except OSError as exc:
                lost = _undo(done, targets, kept, out)
                problems.append(f"{step} ({exc.strerror or exc})")
                if lost:
                    problems.append(f"the previous {', '.join(lost)} could not be restored")
                    return result
                return _nothing_replaced(result)
            result.written = [out / name for name in renders]     # as named (a symlink: the link)
            result.removed = [out / name for name in removals]
        finally:
            if blocked is not None:
                # Signals that came while blocked are taken here, not delivered on unblocking:
                # once replacing has started, the set is completed and the caller told.
                if COMMIT.active:
                    for sig in sorted(signal.sigpending() & hold):
                        if signal.sigtimedwait([sig], 0) is not None:
                            COMMIT.held.append(sig)
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    finally:
        with DEFER.region():
            for tmp in [*staged.values(), *kept.values()]:
                _unlink(tmp)
        result.held = list(COMMIT.held)
    return result


def _nothing_replaced(result: WrittenSet) -> WrittenSet:
    """``result`` of a set that was not replaced: the previous set stays, say so once."""
    result.written, result.removed = [], []
    result.problems[-1] += "; the previous files are left as they were (nothing replaced)"
    return result


def _aside_name(directory: Path, name: str) -> str:
    """A new, unused path ``.NAME.*.old.tmp`` in ``directory`` (for a previous file kept
    until the set is complete)."""
    import secrets
    while True:
        path = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.old.tmp")
        if not os.path.lexists(path):
            return path


def _keep_link(target: Path, name: str, kept: dict[str, str]) -> None:
    """A hard link to ``target``'s previous file beside it, entered in ``kept[name]``:
    what undoing the set restores.  A filesystem without hard links keeps none (that file
    cannot be restored should a later replacement fail, which needs a failing rename in a
    directory just proven writable)."""
    with DEFER.region():
        while True:
            aside = _aside_name(target.parent, name)
            try:
                os.link(target, aside)
            except FileExistsError:
                continue
            except OSError:
                return
            kept[name] = aside
            return


def _undo(done: list[tuple[str, str]], targets: dict[str, Path], kept: dict[str, str], out: Path) -> list[str]:
    """Reverse the replacements and removals ``done`` (last first) from the links in
    ``kept``; the files that could not be restored (none: the previous set is back)."""
    lost = []
    for what, name in reversed(done):
        try:
            if what == "removed":
                os.rename(kept.pop(f"removed:{name}"), out / name)
            elif name in kept:
                os.replace(kept.pop(name), targets[name])
            else:
                os.unlink(targets[name])        # it did not exist before
        except (OSError, KeyError):
            lost.append(str(targets.get(name, out / name)))
    return lost


def stage_text(directory: Path, name: str, text: str, staged: dict[str, str]) -> str:
    """``text`` in a new, fsync'd temp file ``.NAME.*.tmp`` in ``directory``, entered in
    ``staged[name]`` the moment it exists; its path.  The caller removes what ``staged``
    still holds when it is done (or fails, or is interrupted): the file is created in a
    :data:`DEFER` region, so no signal can come between creating it and recording its
    name (a signal there left a temp file behind, seen once in 400 stressed runs)."""
    with DEFER.region():
        fd, staged[name] = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
        f = os.fdopen(fd, "w", encoding="utf-8")
    try:
        with f:
            os.fchmod(fd, _file_mode())   # mkstemp makes 0600; reports are ordinary files
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:             # e.g. a full disk: a part-written file is not staged
        _unlink(staged[name])
        del staged[name]
        raise
    return staged[name]


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# Where the details of an internal error go (the command prints this path, one line).
INTERNAL_LOG: list[Path] = []


def log_internal_error(exc: BaseException) -> Path:
    """Append ``exc``'s traceback to this process's internal-error log (a temp file, made
    on first use) and return its path: the command line prints one line and this path."""
    import traceback
    if not INTERNAL_LOG:
        fd, path = tempfile.mkstemp(prefix="klconform-error-", suffix=".log")
        os.close(fd)
        INTERNAL_LOG.append(Path(path))
    with open(INTERNAL_LOG[0], "a", encoding="utf-8") as f:
        f.write("".join(traceback.format_exception(exc)))
    return INTERNAL_LOG[0]
