"""Isolated adapter workers: one execnet worker process per adapter, optionally under
another Python interpreter.

Why processes: frameworks crash each other (paddle after tensorflow segfaults), need
incompatible numpy versions (MXNet 1.x < 2 <= JAX), and an upgrade check runs two
versions of one framework side by side.  execnet (the engine under pytest-xdist) does the
process and interpreter plumbing; :mod:`klconform._worker_remote` is the worker side.

Failure handling (the run always goes on):

* the framework is not installed -> :class:`AdapterUnavailable` ``status="missing"``;
* the adapter or framework fails to import/set up, crashes or hangs while doing so ->
  :class:`AdapterUnavailable` ``status="import_error"``;
* a case crashes the worker (signal, exit) -> that case's :class:`Outcome` is
  ``status="crash"`` with the signal or exit status; a case runs past ``case_timeout`` ->
  ``status="timeout"`` and the worker is killed.  Either way a fresh worker takes over and
  the rest of the cases continue.

Cases travel in batches: one pickled message per ``batch_size`` cases, one batch in flight
(a second queued batch could block the controller on a full pipe while a hung worker holds
the GIL).  Outcomes come back as pickled lists at the end of each batch and every 50 ms in
between.  Which case is running, and since when, the worker writes to a 16-byte shared
*progress record* before each case: that attributes a crash or a hang to its case and
times each case, without execnet's per-message cost per case (measured ~40 us of
framing and wake-ups, the largest part of the overhead).  Cases the dead worker had
finished but not yet sent are evaluated again by the fresh worker.
"""
from __future__ import annotations

import collections
import dataclasses
import itertools
import os
import pickle
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import execnet

from . import wire as wire_codec
from .adapters.base import DEVICE_ENV, Outcome

from ._worker_remote import TOKEN_ENV, ProgressRecord, kill_strays

PACKAGE_DIR = Path(__file__).resolve().parent

# Runs in the worker: its only job is to make the klconform package importable there (the
# worker interpreter need not have klconform installed) and hand over to the worker module.
# It receives the package's directory (a local worker), or the package's sources (a remote
# gateway: ssh=, socket=), which it writes to a temporary directory.  The package is
# imported from its directory by name, with nothing added to sys.path: not the package's
# parent (for an installed klconform, the controller's whole site-packages, whose numpy/torch
# would shadow the worker's own environment's, --python train=...), and no temporary
# directory of a symlink either (one the controller must remove, which a killed controller
# left behind).
_BOOTSTRAP = """
import sys
root = channel.receive()
if "files" in root:
    import atexit, os, shutil, tempfile
    d = tempfile.mkdtemp(prefix="klconform-worker-")
    atexit.register(shutil.rmtree, d, True)
    for rel, data in root["files"].items():
        path = os.path.join(d, *rel.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(data)
    package = os.path.join(d, "klconform")
else:
    package = root["package"]
if "klconform" not in sys.modules:
    import importlib.util, os
    spec = importlib.util.spec_from_file_location("klconform", os.path.join(package, "__init__.py"),
                                                  submodule_search_locations=[package])
    module = importlib.util.module_from_spec(spec)
    sys.modules["klconform"] = module
    spec.loader.exec_module(module)
from klconform._worker_remote import serve
serve(channel)
"""
_package_path_dir: str | None = None


def package_path_dir() -> str:
    """A directory whose only entry is ``klconform`` (a symlink to this package): what a
    script run by another interpreter puts on its PYTHONPATH to import this klconform and
    nothing else of the controller's environment (tests of side interpreters).  Made once
    per process, removed at its exit.  Workers do not need it (_BOOTSTRAP)."""
    global _package_path_dir
    if _package_path_dir is None or not os.path.isdir(_package_path_dir):
        import atexit
        import shutil
        d = tempfile.mkdtemp(prefix="klconform-path-")
        os.symlink(PACKAGE_DIR, os.path.join(d, "klconform"))
        atexit.register(shutil.rmtree, d, True)
        _package_path_dir = d
    return _package_path_dir


def package_sources() -> dict[str, bytes]:
    """``{"klconform/...py": bytes}``: every Python source of the package (its reference
    and adapters included), what a remote worker writes out and imports."""
    files = {}
    for root, dirs, names in os.walk(PACKAGE_DIR, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for n in sorted(names):
            if n.endswith(".py"):
                full = os.path.join(root, n)
                files["klconform/" + os.path.relpath(full, PACKAGE_DIR).replace(os.sep, "/")] = Path(full).read_bytes()
    return files


def is_gateway_spec(python: str) -> bool:
    """True for an execnet gateway spec (``ssh=host//python=...``, ``popen//python=...``,
    ``socket=...``) rather than an interpreter path."""
    return "//" in python or python.startswith(("ssh=", "socket=", "popen", "vagrant_ssh="))


def _is_remote(spec: str) -> bool:
    return spec.startswith(("ssh=", "socket=", "vagrant_ssh="))


def gateway_paths(spec: str) -> list[str]:
    """The entries of ``//env:PYTHONPATH=...`` in a gateway spec, for the worker's sys.path.
    execnet sets a spec's ``env:`` variables in the already running interpreter, too late
    for Python to read PYTHONPATH at start-up: without this, an adapter module on the
    worker host's PYTHONPATH (``ssh=gpu//python=...//env:PYTHONPATH=/srv/acme``) was not
    found (seen with a real sshd)."""
    try:
        value = execnet.XSpec(spec).env.get("PYTHONPATH", "")
    except Exception:  # noqa: BLE001 - a bad spec fails when the gateway is made
        return []
    return [p for p in value.split(":") if p]

class StartLog:
    """Where a local worker's file descriptor 2 points from its first instruction until the
    worker captures fd 2 itself (``StderrCapture``, before its hello): an anonymous file (a
    memfd, nothing on disk) the worker opens as ``/proc/<controller pid>/fd/<n>``.

    execnet's popen gateway lets the child inherit the controller's fd 2, so a worker killed
    while execnet was still bootstrapping it (an interrupted run) printed a Python traceback
    on the user's terminal: execnet's BrokenPipeError, or ``SyntaxError`` at ``<string>``
    line 0 when its bootstrap line never came (found by tests/faults/test_interrupts.py's
    stress test).  The interpreter is started through ``/bin/sh`` that points fd 2 here and
    ``exec``s it (same pid, same parent).  What a worker printed there before dying is the
    last line of a start failure's reason (:meth:`last_line`)."""

    def __init__(self):
        self.fd: int | None = None
        if hasattr(os, "memfd_create") and os.path.isdir(f"/proc/{os.getpid()}/fd") and os.path.exists("/bin/sh"):
            try:
                self.fd = os.memfd_create("klconform-worker-start")   # close-on-exec
            except OSError:
                self.fd = None

    def wrap(self, python: str, token: str | None = None) -> str:
        """The popen gateway's ``python=`` value: ``python`` started with fd 2 on this log
        and ``TOKEN_ENV=token`` in its environment from its first instruction (``python``
        itself without /bin/sh; the worker then sets the token itself)."""
        if "//" in python or not os.path.exists("/bin/sh") or (self.fd is None and not token):
            return python
        import shlex
        script = f'{TOKEN_ENV}={shlex.quote(token)}; export {TOKEN_ENV}; ' if token else ""
        if self.fd is not None:
            script += f'exec 2>/dev/null; exec 2>>/proc/{os.getpid()}/fd/{self.fd}; '
        return shlex.join(["/bin/sh", "-c", script + 'exec "$0" "$@"', python])

    def last_line(self) -> str:
        if self.fd is None:
            return ""
        try:
            size = os.fstat(self.fd).st_size
            text = os.pread(self.fd, 4096, max(0, size - 4096)).decode("utf-8", "replace")
        except OSError:
            return ""
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        return lines[-1][:300] if lines else ""

    def close(self) -> None:
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None


# Batches and outcomes cross the channel as one pickle each: execnet's own serializer is
# pure Python (~120 us per case dict both ways, measured) while pickle of the same plain
# dicts takes ~1 us.  Protocol 4 is read by every Python >= 3.4 (side interpreters).  Only
# plain types are pickled (wire dicts of str/int/float/bytes/None), never objects.
WIRE_PICKLE_PROTOCOL = 4

_DEFAULT_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3"}
# Address-space limit per worker (RLIMIT_AS).  Frameworks reserve more virtual memory than
# they touch (VmPeak after setup, measured: torch 0.6 GiB, Keras/TF 1.4 GiB, MXNet 0.6 GiB;
# thread arenas add more during a run), so the default leaves wide headroom; it exists to
# turn a runaway allocation into one case's crash outcome instead of the OOM killer.
DEFAULT_WORKER_MEMORY = 32 * 2**30
# The circuit breaker: after this many timeouts in a row (no answer between them) an
# adapter's remaining cases are not sent -- each would cost a whole case timeout and a
# fresh worker -- but get a ``skipped`` outcome saying why.  0: never.
DEFAULT_MAX_CONSECUTIVE_TIMEOUTS = 5

# Every live worker, so that an interrupted run can kill them all at once (abort_all()).
_LIVE: "set[AdapterWorker]" = set()
_ABORT = threading.Event()


class RunAborted(Exception):
    """The run was interrupted (:func:`abort_all`): no worker is started or waited for."""


def abort_all() -> None:
    """Stop every worker now: SIGKILL each live worker process with its process group and
    the processes its adapter started, and make every ``run``/``start`` raise
    :class:`RunAborted`.  Safe in a signal handler (no locks)."""
    _ABORT.set()
    for worker in list(_LIVE):
        worker._kill(worker._popen())
        worker._kill_strays()


def reset_abort() -> None:
    """Allow workers again after :func:`abort_all` (tests and repeated in-process runs)."""
    _ABORT.clear()
# What a receive raises when the worker died or its side of the channel failed.
_BROKEN = (EOFError, OSError, execnet.RemoteError)


class AdapterUnavailable(Exception):
    """An adapter whose worker cannot start.

    ``status`` is ``"missing"`` (framework or interpreter not installed: a skip) or
    ``"import_error"`` (the framework is there but importing or setting it up failed,
    crashed or hung).  ``reason`` is one line.
    """

    def __init__(self, reason: str, status: str = "import_error"):
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclasses.dataclass(frozen=True)
class WorkerSpec:
    """Which adapter to run and where.

    ``adapter_ref``: ``"module:Class"``; ``python``: the worker's interpreter (None: this
    one); ``run_id``: the name results are recorded under (None: the adapter's ``name``);
    ``unavailable``: a reason known before starting (e.g. the side interpreter of a
    ``name@env`` variant is not configured) -- the worker then reports ``missing``;
    ``device``: the device the adapter is asked to compute on (None: cpu), passed to the
    worker as ``KLCONFORM_DEVICE`` (klconform.adapters.base.DEVICE_ENV).
    """

    adapter_ref: str
    python: str | None = None
    run_id: str | None = None
    unavailable: str | None = None
    device: str | None = None


def _detail(exc: BaseException) -> str:
    """The last line of a channel error (a remote traceback's exception line), or ''."""
    if isinstance(exc, EOFError):
        return ""       # the pipe closed: the exit status says it all
    lines = str(exc).strip().splitlines()
    return f"; {lines[-1]}" if lines else ""


def _exit_text(returncode: int | None) -> str:
    """How a worker process ended, e.g. ``"killed by signal SIGSEGV (11)"``."""
    if returncode is None:
        return "worker connection lost (process state unknown)"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "signal"
        return f"worker killed by signal {name} ({-returncode})"
    return f"worker exited with status {returncode}"


_POLL_S = 0.2        # how often a waiting controller checks the progress record for a timeout
_CLOSED = object()   # the channel callback's end marker: the worker is gone


class _Inbox:
    """Outcomes as execnet's receiver thread delivers them (a channel callback).

    The waiting thread is woken only when the expected number of outcomes has arrived or
    the channel closed (or by its own timeout), not once per message."""

    def __init__(self):
        self._cond = threading.Condition()
        self._items: list[tuple[int, dict]] = []
        self._want = 0
        self._closed = False

    def put(self, item) -> None:            # execnet's receiver thread
        with self._cond:
            if item is _CLOSED:
                self._closed = True
                self._cond.notify_all()
                return
            self._items.extend(pickle.loads(item))
            if len(self._items) >= self._want:
                self._cond.notify_all()

    def expect(self, count: int) -> None:
        with self._cond:
            self._want = count

    def wait(self, timeout: float) -> tuple[int, bool]:
        """Sleep until done or closed, at most ``timeout`` s; ``(received, closed)``."""
        with self._cond:
            if len(self._items) < self._want and not self._closed:
                self._cond.wait(timeout)
            return len(self._items), self._closed

    def take(self) -> list[tuple[int, dict]]:
        with self._cond:
            items, self._items = self._items, []
            return items


class _LazyWires:
    """``Case.to_wire()`` of each case, computed on demand and at most once."""

    def __init__(self, cases: Sequence):
        self.cases = list(cases)
        self.wires: list[dict | None] = [None] * len(self.cases)

    def __len__(self) -> int:
        return len(self.cases)

    def get(self, i: int) -> dict:
        if self.wires[i] is None:
            self.wires[i] = self.cases[i].to_wire()
        return self.wires[i]

    def blob(self, indices: Sequence[int], shared: "SharedPayloads | None" = None) -> bytes:
        """The cases at ``indices`` as one pickle of wire dicts (plain types only); with
        ``shared``, payloads of SHARED_PAYLOAD_BYTES or more go into it instead (the pickle
        then holds ``{"shared": [path, size]}`` in their place)."""
        wires = [self.get(i) for i in indices]
        if shared is not None:
            wires = [{k: shared.put((w["digest"], k), v) if isinstance(v, bytes) and len(v) >= SHARED_PAYLOAD_BYTES
                      else v for k, v in w.items()} for w in wires]
        return pickle.dumps(wires, protocol=WIRE_PICKLE_PROTOCOL)


# Payloads at least this big reach a local worker through an anonymous memory file (a
# memfd the worker maps as /proc/<controller>/fd/<n>) instead of the execnet pipe: a
# 64x131072 float32 case is 64 MiB, which the pipe, pickling and unpickling copy four times.
SHARED_PAYLOAD_BYTES = 1 << 20
#: How many bytes of payload files the controller keeps for reuse: a large case goes to
#: every adapter (and twice to each); writing its 64 MiB again per batch cost 27 ms.
PAYLOAD_CACHE_BYTES = 1 << 29


class _PayloadFiles:
    """The controller's memory files, one per large payload, keyed by what it holds (the
    case's digest and the field), kept for reuse up to PAYLOAD_CACHE_BYTES; a file that a
    batch in flight uses is pinned and never closed under it.  Only the files are kept,
    not the payloads.  Thread-safe (one controller thread per worker); :meth:`clear` at
    the end of a run."""

    def __init__(self, capacity: int = PAYLOAD_CACHE_BYTES):
        self.capacity = capacity
        self._lock = threading.Lock()
        self._files: collections.OrderedDict[tuple, list] = collections.OrderedDict()  # key -> [fd, size, pins]

    def pin(self, key: tuple, data) -> str:
        """The path of a file holding ``data`` (written now unless kept under ``key``), pinned."""
        with self._lock:
            entry = self._files.get(key)
            if entry is None:
                fd = os.memfd_create("klconform-payload")        # close-on-exec
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.pwrite(fd, view, len(data) - len(view)):]
                except BaseException:
                    os.close(fd)
                    raise
                entry = self._files[key] = [fd, len(data), 0]
            self._files.move_to_end(key)
            entry[2] += 1
            self._evict()
            return f"/proc/{os.getpid()}/fd/{entry[0]}"

    def unpin(self, keys) -> None:
        """Unpin each of ``keys``, then evict (one by one, an unpinned recent file could go
        before an older one still pinned by the same batch)."""
        with self._lock:
            for key in keys:
                entry = self._files.get(key)
                if entry is not None:
                    entry[2] -= 1
            self._evict()

    def pinned(self) -> int:
        with self._lock:
            return sum(e[2] for e in self._files.values())

    def _evict(self) -> None:
        total = sum(e[1] for e in self._files.values())
        for key in list(self._files):
            if total <= self.capacity:
                break
            fd, size, pins = self._files[key]
            if pins == 0:
                os.close(fd)
                del self._files[key]
                total -= size

    def clear(self) -> None:
        """Close every file no batch uses."""
        with self._lock:
            for key in [k for k, e in self._files.items() if e[2] == 0]:
                os.close(self._files.pop(key)[0])


_PAYLOAD_FILES = _PayloadFiles()


def release_payload_files() -> None:
    """Close the kept payload files (the end of a run: nothing will ask for them again)."""
    _PAYLOAD_FILES.clear()


class SharedPayloads:
    """One batch's large payloads, each in a memory file the worker maps copy-on-write (no
    directory entry ever names one, so nothing is left behind whatever happens to either
    process); the files stay pinned until :meth:`close`, and are kept for the next batch
    that sends the same payload (:class:`_PayloadFiles`)."""

    def __init__(self, files: _PayloadFiles | None = None):
        self.files = files or _PAYLOAD_FILES
        self._pinned: set[tuple] = set()

    @classmethod
    def available(cls) -> bool:
        return hasattr(os, "memfd_create") and os.path.isdir(f"/proc/{os.getpid()}/fd")

    def put(self, key: tuple, data) -> dict[str, list]:
        """``data`` (the payload of field ``key[1]`` of the case with digest ``key[0]``)."""
        path = self.files.pin(key, data)
        if key in self._pinned:
            self.files.unpin([key])           # one pin per batch and payload
        self._pinned.add(key)
        return {"shared": [path, len(data)]}

    def close(self) -> None:
        self.files.unpin(self._pinned)
        self._pinned.clear()


class AdapterWorker:
    """A worker process running one adapter; restarted transparently after a crash/hang.

    ``start()`` returns the environment report (framework, version, python, numpy,
    platform, device, adapter, api, pid, ...); ``run(cases)`` returns one Outcome per case
    in order.  Use as a context manager or call ``close()``: it kills and reaps the process.
    """

    def __init__(self, spec: WorkerSpec, *, case_timeout: float = 30.0, setup_timeout: float = 180.0,
                 batch_size: int = 64, memory_limit: int | None = DEFAULT_WORKER_MEMORY,
                 max_consecutive_timeouts: int = DEFAULT_MAX_CONSECUTIVE_TIMEOUTS):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_consecutive_timeouts < 0:
            raise ValueError(f"max_consecutive_timeouts must be >= 0, got {max_consecutive_timeouts}")
        self.max_consecutive_timeouts = int(max_consecutive_timeouts)
        self._timeouts_in_a_row = 0
        if not (case_timeout > 0 and setup_timeout > 0):   # also refuses nan
            raise ValueError(f"timeouts must be > 0, got case_timeout={case_timeout}, setup_timeout={setup_timeout}")
        self.memory_limit = memory_limit      # bytes of address space, None: unlimited
        self.spec = spec
        self.case_timeout = float(case_timeout)
        self.setup_timeout = float(setup_timeout)
        self.batch_size = int(batch_size)
        self.python = spec.python or sys.executable
        self.env: dict[str, Any] | None = None
        self.restarts = 0          # fresh workers started after a crash or a hang
        self.pid: int | None = None
        self._group: execnet.Group | None = None
        self._gateway = None
        self._channel = None
        self._deaths = 0           # consecutive worker deaths no case could be charged with
        self._inbox: _Inbox | None = None
        self._progress: ProgressRecord | None = None
        self._progress_path: str | None = None
        self._start_log: StartLog | None = None
        self._remote = is_gateway_spec(self.python) and _is_remote(self.python)
        self._token: str | None = None       # TOKEN_ENV of the current local worker
        self._worker_pid: int | None = None  # its pid, the id of its process group

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> "AdapterWorker":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> dict[str, Any]:
        """Start the worker (if not running) and return its environment report.

        Raises :class:`AdapterUnavailable` when the adapter cannot run here."""
        if self._channel is None:
            self.env = self._spawn()
        return dict(self.env)

    def close(self) -> None:
        """Stop the worker: polite stop message, then kill; always reaps the process."""
        if self._channel is not None:
            try:
                self._channel.send(None)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self._teardown(kill=False)

    @property
    def alive(self) -> bool:
        return self._channel is not None

    # ------------------------------------------------------------------ running cases
    def run(self, cases: Sequence) -> list[Outcome]:
        """One :class:`Outcome` per case, same order.  Never raises for adapter trouble:
        crashes and hangs become outcomes, and if no fresh worker can be started the
        remaining cases get the start failure's status (``import_error``/``missing``)."""
        wires = _LazyWires(cases)
        outcomes: list[Outcome | None] = [None] * len(wires)
        todo = collections.deque(range(len(wires)))
        counted: set[int] = set()      # cases the circuit breaker has counted
        while todo:
            if _ABORT.is_set():
                raise RunAborted("run interrupted")
            if self.breaker_open:
                # only the cases it already answered (their outcomes lost with a killed worker)
                for i in todo:
                    if i not in counted:
                        outcomes[i] = self.skipped_outcome()
                todo = collections.deque(i for i in todo if i in counted)
                if not todo:
                    break
            if self._channel is None:
                try:
                    self.start()
                except AdapterUnavailable as exc:
                    for i in todo:
                        outcomes[i] = Outcome(status=exc.status, error_type="AdapterUnavailable",
                                              error_message=exc.reason)
                    break
            batch = [todo.popleft() for _ in range(min(self.batch_size, len(todo)))]
            unfinished = self._run_batch(wires, batch, list(itertools.islice(todo, self.batch_size)), outcomes)
            self._count_timeouts(outcomes, batch, counted)
            todo.extendleft(reversed(unfinished))
        return outcomes  # type: ignore[return-value]

    @property
    def breaker_open(self) -> bool:
        """True once ``max_consecutive_timeouts`` cases in a row timed out: no case of this
        adapter is sent any more (for the rest of the worker's life: shrinking and large
        cases included)."""
        return 0 < self.max_consecutive_timeouts <= self._timeouts_in_a_row

    def skipped_outcome(self) -> Outcome:
        return Outcome(status="skipped", error_type="CircuitBreaker",
                       error_message=f"not sent: skipped after {self.max_consecutive_timeouts} consecutive timeouts")

    def _count_timeouts(self, outcomes: list, batch: list[int], counted: set[int]) -> None:
        """Advance the breaker over the outcomes ``batch`` got, in case order, each case
        once (``counted``: the cases already counted in this run): a timeout counts, any
        answer (ok, error, crash) starts the count again.  A case without an outcome before
        the one that timed out was answered -- a worker runs its batch in order; the outcome
        was lost with the killed worker and the case is resent -- so it starts the count
        again now (and not when its resent answer comes); one after it never ran."""
        last = max((k for k, i in enumerate(batch) if outcomes[i] is not None and outcomes[i].status == "timeout"),
                   default=-1)
        for k, i in enumerate(batch):
            o = outcomes[i]
            if i in counted or (o is None and k > last):
                continue
            counted.add(i)
            if o is None or o.status != "skipped":
                self._timeouts_in_a_row = self._timeouts_in_a_row + 1 if o is not None and o.status == "timeout" else 0

    # ------------------------------------------------------------------ internals
    def _run_batch(self, wires: _LazyWires, batch: list[int], upcoming: list[int], outcomes: list) -> list[int]:
        """Send the cases ``batch`` in one message and collect their outcomes into
        ``outcomes``; returns the cases of ``batch`` still without an outcome (to resend
        to a fresh worker after a crash or a hang).

        The case that crashed or hung the worker is named by the worker's progress record
        and gets its ``crash``/``timeout`` outcome; cases it had finished but not yet sent
        are lost with it and resent.  While waiting, this thread encodes the ``upcoming``
        cases and otherwise sleeps (the receiver thread collects outcomes)."""
        shared = SharedPayloads() if not self._remote and SharedPayloads.available() else None
        try:
            return self._send_and_collect(wires, batch, upcoming, outcomes, shared)
        finally:
            if shared is not None:
                shared.close()

    def _send_and_collect(self, wires: _LazyWires, batch: list[int], upcoming: list[int], outcomes: list,
                          shared: "SharedPayloads | None") -> list[int]:
        try:
            blob = wires.blob(batch, shared)
            self._channel.send((batch, blob))
        except _BROKEN:
            # died between batches, after its last outcome: retry once on a fresh worker
            return self._unattributed_death(batch, outcomes, "before this case was delivered")
        inbox, progress = self._inbox, self._progress
        inbox.expect(len(batch))
        for i in upcoming:
            wires.get(i)                     # encode the next batch while the worker computes
        timed_out, stalled = None, False
        last_change, last_state = time.monotonic(), None
        while True:
            if _ABORT.is_set():
                raise RunAborted("run interrupted")
            seq, started = progress.read()
            now = time.monotonic()
            running = now - started if seq >= 0 else 0.0
            if seq >= 0 and running >= self.case_timeout:
                timed_out = seq
                break
            received, closed = inbox.wait(min(self.case_timeout - running, _POLL_S))
            if received >= len(batch) or closed:
                break
            if (received, seq) != last_state:
                last_change, last_state = now, (received, seq)
            elif seq < 0 and now - last_change >= self.case_timeout:
                stalled = True       # alive but between cases and silent: not any case's fault
                break
        for seq, wire in inbox.take():
            outcomes[seq] = wire_codec.from_wire(wire)
        unfinished = [i for i in batch if outcomes[i] is None]
        if not unfinished:
            self._deaths = 0
            return []
        if timed_out is not None and outcomes[timed_out] is None:
            outcomes[timed_out] = Outcome(
                status="timeout", error_type="Timeout", elapsed_s=running,
                error_message=(f"no result within case_timeout={self.case_timeout:g}s; "
                               f"worker pid {self.pid} killed"))
        elif stalled:
            # Alive (no exit status to wait for).  A remote worker has no progress record:
            # a hung case looks like this, and is charged to the first unfinished case.
            what = ("no outcome" if self._remote else "stalled between cases")
            return self._unattributed_death(unfinished, outcomes, f"{what} for case_timeout="
                                            f"{self.case_timeout:g}s (killed)", alive=True)
        else:
            seq, started = progress.read()
            if seq not in unfinished:
                return self._unattributed_death(unfinished, outcomes, "between cases")
            outcomes[seq] = Outcome(
                status="crash", error_type="WorkerCrash", elapsed_s=time.monotonic() - started,
                error_message=f"{self._exit_status()} while evaluating this case (pid {self.pid})"
                              + self._remote_error())
        self._deaths = 0
        self._restart()
        return [i for i in unfinished if outcomes[i] is None]

    def _remote_error(self) -> str:
        """'; <last line>' of the worker-side exception that closed the channel, if any."""
        try:
            err = self._channel._getremoteerror()   # execnet keeps it on the channel
        except Exception:  # noqa: BLE001
            err = None
        return _detail(err) if err else ""

    def _unattributed_death(self, unfinished: list[int], outcomes: list, when: str, alive: bool = False) -> list[int]:
        """The worker died (or, ``alive``, went silent) while no case was running: restart
        and resend; the second time in a row, charge the first unfinished case (so a run
        always progresses).  A silent worker is killed at once: waiting for the exit status
        of a live process cost 5 s per strike (a remote hang took 18 s at case_timeout=2)."""
        status = ("worker alive but silent:" if alive else self._exit_status()) + self._remote_error()
        self._restart()
        self._deaths += 1
        if self._deaths < 2:
            return unfinished
        self._deaths = 0
        outcomes[unfinished[0]] = Outcome(status="crash", error_type="WorkerCrash",
                                          error_message=f"{status} {when}")
        return unfinished[1:]

    def _restart(self) -> None:
        """Kill and reap the current worker; the next batch starts a fresh one."""
        self._teardown(kill=True)
        self.restarts += 1

    def _spawn(self) -> dict[str, Any]:
        spec = self.spec
        if _ABORT.is_set():
            raise RunAborted("run interrupted")
        if spec.unavailable:
            raise AdapterUnavailable(spec.unavailable, "missing")
        gateway = is_gateway_spec(self.python)
        remote = gateway and _is_remote(self.python)
        if not gateway and not (os.path.isfile(self.python) and os.access(self.python, os.X_OK)):
            raise AdapterUnavailable(f"interpreter not found or not executable: {self.python}", "missing")
        self._group = execnet.Group()
        try:
            if gateway:
                self._gateway = self._group.makegateway(self.python)
            else:
                import secrets
                self._start_log = StartLog()
                self._token = secrets.token_hex(12)
                self._gateway = self._group.makegateway(
                    f"popen//python={self._start_log.wrap(self.python, self._token)}")
                popen = self._popen()
                self._worker_pid = popen.pid if popen is not None else None
            self._channel = self._gateway.remote_exec(_BOOTSTRAP)
            self._channel.send({"files": package_sources()} if remote else {"package": str(PACKAGE_DIR)})
            self._progress = self._new_progress()
            _LIVE.add(self)
            # A remote worker cannot map this host's progress file: it runs without one, and a
            # hang or crash is charged to its first unfinished case (outcomes come in order).
            env = dict(_DEFAULT_ENV)
            if spec.device:
                env[DEVICE_ENV] = spec.device
            self._channel.send({"ref": spec.adapter_ref, "env": env,
                                "paths": gateway_paths(self.python) if gateway else [],
                                "progress": None if remote else self._progress.path,
                                "memory_limit": self.memory_limit, "token": self._token})
            kind, hello = self._receive_setup("starting the worker")
            if kind != "hello":
                raise RuntimeError(f"worker protocol: expected hello, got {kind!r}")
            self.pid = int(hello["pid"])
            self._close_start_log()           # the worker's fd 2 is its own capture file now
            # A file-backed record (no memfd here) was mapped by the worker before its
            # hello: unlinked now, it cannot outlive the run.
            self._unlink_progress()
            reply = self._receive_setup(f"setting up {spec.adapter_ref}")
        except BaseException as exc:  # noqa: BLE001 - the worker must not outlive a failed start
            said = self._start_log.last_line() if self._start_log is not None else ""
            self._teardown(kill=True)
            if isinstance(exc, (RunAborted, KeyboardInterrupt)):
                raise
            if _ABORT.is_set():              # killed by abort_all while starting
                raise RunAborted("run interrupted") from None
            if isinstance(exc, AdapterUnavailable):
                raise
            if not isinstance(exc, Exception):
                raise
            raise AdapterUnavailable(f"worker for {spec.adapter_ref} under {self.python} did not start: "
                                     f"{type(exc).__name__}: {exc}" + (f"; it printed: {said}" if said else ""),
                                     "import_error") from None
        if reply[0] == "unavailable":
            self._teardown(kill=False)
            raise AdapterUnavailable(reply[2], reply[1])
        self._inbox = _Inbox()
        self._channel.setcallback(self._inbox.put, endmarker=_CLOSED)
        return dict(reply[1])

    def _receive_setup(self, doing: str):
        try:
            return self._receive_interruptibly(self.setup_timeout)
        except execnet.TimeoutError:
            raise AdapterUnavailable(f"{doing}: no answer within setup_timeout={self.setup_timeout:g}s "
                                     f"(worker killed)", "import_error") from None
        except _BROKEN as exc:
            said = self._start_log.last_line() if self._start_log is not None else ""
            raise AdapterUnavailable(f"{doing}: {self._exit_status()}{_detail(exc)}"
                                     + (f"; it printed: {said}" if said else ""), "import_error") from None

    def _close_start_log(self) -> None:
        if self._start_log is not None:
            self._start_log.close()
            self._start_log = None

    def _receive_interruptibly(self, timeout: float):
        """``channel.receive(timeout)`` in short slices, so that :func:`abort_all` from
        another thread is noticed within one slice."""
        end = time.monotonic() + timeout
        while True:
            if _ABORT.is_set():
                raise RunAborted("run interrupted")
            try:
                return self._channel.receive(timeout=max(0.0, min(_POLL_S, end - time.monotonic())))
            except execnet.TimeoutError:
                if time.monotonic() >= end:
                    raise

    def _popen(self):
        return getattr(getattr(self._gateway, "_io", None), "popen", None)

    def _exit_status(self) -> str:
        """Describe how the (dying) worker ended; waits briefly for the exit status."""
        popen = self._popen()
        if popen is None:
            return _exit_text(None)
        self._kill_strays(keep_worker=True)     # before the wait reaps it (see _group_id)
        try:
            return _exit_text(popen.wait(timeout=5))
        except Exception:  # noqa: BLE001 - still running: the channel broke some other way
            return "worker connection lost (process still running)"

    def _new_progress(self) -> ProgressRecord:
        """The progress record shared with a new worker: anonymous (a memfd the worker
        opens through /proc; nothing on disk, so a controller killed at any moment leaves
        nothing behind), else a temp file ``klconform-progress-*`` unlinked at the hello
        (there, a controller SIGKILLed before the hello leaves the file)."""
        record = ProgressRecord.anonymous()
        if record is not None:
            return record
        fd, self._progress_path = tempfile.mkstemp(prefix="klconform-progress-")
        os.close(fd)
        return ProgressRecord(self._progress_path, create=True)

    def _unlink_progress(self) -> None:
        if self._progress_path is not None:
            try:
                os.unlink(self._progress_path)
            except OSError:
                pass
            self._progress_path = None

    def _kill(self, popen) -> None:
        """SIGKILL the worker process and its process group (by its Popen, else by the pid it
        reported -- never for a remote worker: its pid is another host's (ssh=: the Popen is
        the local ssh client, whose end closes the remote worker's pipes; a socket= gateway
        has no Popen)."""
        pgid = self._group_id(popen)
        if pgid is not None:
            try:
                os.killpg(pgid, signal.SIGKILL)     # no such group if it died before setpgid
            except OSError:
                pass
        try:
            if popen is not None:
                if popen.poll() is None:
                    popen.kill()
            elif self.pid is not None and not self._remote:
                os.kill(self.pid, signal.SIGKILL)
        except OSError:
            pass

    def _kill_strays(self, *, keep_worker: bool = False, popen=None) -> None:
        """SIGKILL what the worker's adapter started: its process group (the worker's pid:
        matched only while the worker is unreaped, so the number cannot have been reused)
        and every process holding its token, however it left the group.  ``keep_worker``:
        spare the worker itself (it is stopped politely next)."""
        pgid = self._group_id(popen if popen is not None else self._popen())
        if self._token is None and pgid is None:
            return
        kill_strays(self._token, pgid, exclude=(pgid,) if keep_worker and pgid is not None else ())

    def _group_id(self, popen) -> int | None:
        """The worker's process group id (its pid) while the worker is not reaped (Popen has
        no returncode yet): after that the number may belong to another process."""
        if self._worker_pid is None or (popen is not None and popen.returncode is not None):
            return None
        return self._worker_pid

    def _teardown(self, *, kill: bool) -> None:
        """Terminate the gateway; ``kill`` first SIGKILLs the worker (hung or crashed).
        ``group.terminate`` joins execnet's threads and reaps the process (no zombies)."""
        group, popen = self._group, self._popen()
        self._group = self._gateway = self._channel = None
        if self._progress is not None:
            self._progress.close()
            self._progress = None
        self._unlink_progress()
        self._close_start_log()
        if group is None:
            _LIVE.discard(self)
            return
        if _ABORT.is_set():
            kill = True           # interrupted: no polite stop, no waiting
        # What the adapter started dies first, while the worker is not yet reaped (its pid,
        # the group's id, cannot be reused until then); then the worker.
        self._kill_strays(keep_worker=not kill, popen=popen)
        if kill:
            self._kill(popen)
        try:
            group.terminate(timeout=2.0)
        except Exception:  # noqa: BLE001 - teardown must not mask the real result
            pass
        if popen is not None and popen.poll() is None:
            popen.kill()
            popen.wait(timeout=5)
        if self._token is not None:
            kill_strays(self._token, None)    # anything started while it stopped
        _LIVE.discard(self)
        self._token = self._worker_pid = None


def run_in_worker(ref: str, cases: Sequence, python: str | None = None, **worker_options
                  ) -> tuple[dict[str, Any], list[Outcome]]:
    """Run ``cases`` on adapter ``ref`` in a fresh worker; returns ``(env, outcomes)``.

    Raises :class:`AdapterUnavailable` when the adapter cannot start."""
    with AdapterWorker(WorkerSpec(ref, python=python), **worker_options) as worker:
        return worker.env, worker.run(cases)
