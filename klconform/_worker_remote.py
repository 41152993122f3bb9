"""The worker side of :mod:`klconform.workers`: runs inside the worker process.

This module is imported in the worker after the controller's bootstrap put the project
root on ``sys.path``.  The worker may be *another* interpreter (another virtualenv) that
has numpy but neither execnet (execnet bootstraps itself over the pipe) nor klconform
installed, so the top level imports only the standard library; numpy, the case codec and
the adapter are imported in :func:`serve` once the environment is prepared.

Protocol (all messages are tuples/dicts of plain types, see DESIGN.md §Worker protocol):

controller -> worker                        worker -> controller
``{"ref", "env", "paths", "progress"}``     ``("hello", {"pid", "python"})``
                                            ``("ready", env)`` | ``("unavailable", status, reason)``
``([seq...], pickle([case wire...]))``      ``pickle([(seq, outcome wire), ...])``, in order,
                                            at the end of the batch and every FLUSH_INTERVAL_S
``None`` (stop)

The *progress record* (a 16-byte shared file, :class:`ProgressRecord`) holds the case in
progress and its start time: that is what lets the controller attribute a crash or a hang
to the right case, and time each case, without a message per case.
"""
from __future__ import annotations

import os
import pickle
import platform
import re
import sys
import time
import traceback
import warnings

WORKER_PROTOCOL = 3
# Outcomes wait at most this long in the worker before being sent (slow adapters).
FLUSH_INTERVAL_S = 0.05
WIRE_PICKLE_PROTOCOL = 4   # as klconform.workers: plain types only, readable by Python >= 3.4


def prepare_environment(env: dict, paths: list) -> None:
    """Environment every framework needs before its first import.

    TF_CPP_MIN_LOG_LEVEL=3 keeps TensorFlow's C++ logging off stderr; MXNet 1.x uses the
    alias ``numpy.bool`` that numpy >= 1.24 removed, so restore it before any adapter runs.
    """
    for p in reversed(paths):
        if p not in sys.path:
            sys.path.insert(0, p)
    os.environ.update({k: str(v) for k, v in env.items()})
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy
    if "bool" not in numpy.__dict__:
        numpy.bool = bool


def bind_to_controller() -> None:
    """The worker lives only as long as its controller.  Ctrl-C in a terminal reaches the
    whole process group: the worker ignores SIGINT and leaves stopping to the controller
    (which kills it).  A controller that dies without doing so (SIGKILL) is noticed by a
    daemon thread polling the parent pid; PR_SET_PDEATHSIG is not used because it fires
    when the controller *thread* that spawned the worker exits, and restarts happen on
    short-lived threads."""
    import signal
    import threading
    if threading.current_thread() is threading.main_thread():
        # a gateway may run this on another thread (ssh), where Python refuses signal
        # handlers; such a worker shares no terminal process group with the controller
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        kill_strays(os.environ.get(TOKEN_ENV), os.getpid())    # nobody else will
        os._exit(70)

    threading.Thread(target=watch, name="klconform-parent-watch", daemon=True).start()


# Every worker's environment holds this variable with a value of its own (set when the
# controller starts it): whatever the adapter's children do to leave the worker's process
# group -- a new session, a double fork -- they inherit it, and so can be found and killed.
TOKEN_ENV = "KLCONFORM_WORKER_TOKEN"


def own_process_group() -> None:
    """Make the worker the leader of a process group of its own (before any adapter code
    runs), so that it and the children an adapter starts are killed as one group."""
    try:
        os.setpgid(0, 0)
    except OSError:      # already a session leader (an ssh worker): a group of its own already
        pass


def strays(token, pgid, exclude=()) -> list:
    """The live processes (zombies excepted) of a worker: those in process group ``pgid``
    (the worker's pid; None: none) and those whose environment holds ``TOKEN_ENV=token``
    (None: none), except this process and ``exclude``.  Reads /proc (Linux); [] without it."""
    needle = f"{TOKEN_ENV}={token}".encode() if token else None
    skip = {os.getpid(), *exclude}
    found = []
    try:
        entries = [e.name for e in os.scandir("/proc") if e.name.isdigit()]
    except OSError:
        return found
    for name in entries:
        pid = int(name)
        if pid in skip:
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
            if fields[0] == b"Z":
                continue
            if pgid is not None and int(fields[2]) == pgid:
                found.append(pid)
                continue
            if needle is not None:
                with open(f"/proc/{name}/environ", "rb") as fh:
                    if needle in fh.read().split(b"\0"):
                        found.append(pid)
        except (OSError, IndexError, ValueError):   # gone meanwhile, or not ours to read
            continue
    return found


def kill_strays(token, pgid, exclude=()) -> int:
    """SIGKILL every process :func:`strays` finds, again until none is left (a process
    forking while it is killed leaves a child the next pass finds); how many were killed."""
    import signal
    killed = set()
    for attempt in range(50):
        found = strays(token, pgid, exclude)
        if not found:
            break
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except OSError:
                pass
        time.sleep(0.002 * (attempt + 1))        # a killed process takes a moment to become a zombie
    return len(killed)


def limit_memory(limit) -> None:
    """Cap the worker's address space (RLIMIT_AS) at ``limit`` bytes (None: no cap), so a
    runaway allocation fails in this worker (MemoryError, or a native abort: a crash
    outcome for the case) rather than taking the machine down."""
    if not limit:
        return
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = int(limit) if hard == resource.RLIM_INFINITY else min(int(limit), hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def import_class(ref: str):
    """The object named by ``"module:Class"``: the one loader of adapter references.

    It lives here, in the standard-library-only worker module, because the worker (maybe
    another interpreter without klconform installed) must load adapters too;
    :func:`klconform.registry.load_adapter_class` reuses it and adds its checks.  Failures
    propagate: the ImportError of the module, or the AttributeError of ``getattr`` (whose
    ``name`` is the class name)."""
    import importlib
    module_name, _, class_name = ref.partition(":")
    if not module_name or not class_name:
        raise ValueError(f"adapter reference {ref!r}: expected 'module:Class'")
    module = importlib.import_module(module_name)
    return getattr(module, class_name)


def start_adapter(ref: str):
    """Load the adapter and run its ``setup``.

    Returns ``(adapter, env)`` or ``(None, (status, reason))`` where status is
    ``"missing"`` when ``setup`` could not find the framework (ModuleNotFoundError) and
    ``"import_error"`` for every other failure, including a broken adapter module.
    """
    try:
        adapter = import_class(ref)()
    except BaseException as exc:  # noqa: BLE001 - any failure is data for the controller
        return None, ("import_error", f"cannot load adapter {ref}: {_one_line(exc)}")
    from klconform.adapters.base import DEVICE_ENV
    device = os.environ.get(DEVICE_ENV) or "cpu"
    declared = tuple(getattr(adapter, "devices", ("cpu",)))
    if device not in declared:
        return None, ("import_error", f"{ref} setup failed: DeviceUnavailable: device {device!r} asked for; "
                                      f"the adapter declares {', '.join(declared)}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # import-time deprecation chatter is not a result
            facts = adapter.setup() or {}
    except ModuleNotFoundError as exc:
        return None, ("missing", f"{getattr(adapter, 'framework', '') or ref}: {_one_line(exc)}")
    except BaseException as exc:  # noqa: BLE001
        tb = traceback.extract_tb(exc.__traceback__)
        where = f" (at {tb[-1].filename}:{tb[-1].lineno})" if tb else ""
        return None, ("import_error", f"{ref} setup failed: {_one_line(exc)}{where}")
    return adapter, describe(adapter, ref, dict(facts))


def describe(adapter, ref: str, facts: dict) -> dict:
    """The environment report: the adapter's own facts plus what the worker knows."""
    import numpy
    env = {
        "adapter": getattr(adapter, "name", "") or ref,
        "adapter_ref": ref,
        "api": getattr(adapter, "api", ""),
        "framework": getattr(adapter, "framework", ""),
        "version": None,
        "device": "cpu",
        "python": sys.executable,
        "python_version": platform.python_version(),
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "pid": os.getpid(),
        "worker_protocol": WORKER_PROTOCOL,
    }
    env.update({k: v for k, v in facts.items() if v is not None or k not in env})
    return _plain(env)


def _plain(x):
    """``x`` reduced to types an execnet channel carries (str for anything exotic)."""
    if x is None or isinstance(x, (bool, int, float, str, bytes)):
        return x
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set, frozenset)):
        return [_plain(v) for v in x]
    return str(x)


# The Case fields and wire version the fast decoder below knows; anything else falls back
# to Case.from_wire.
_CASE_FIELDS = frozenset({"target", "pred", "dtype", "target_kind", "pred_kind", "reduction", "class_axis",
                          "batch_axis", "weight", "sample_weight", "grad", "label",
                          "target_dtype", "pred_dtype", "target_sent_shape"})
_CASE_WIRE_VERSION = 1


def case_decoder(case_cls, from_bits_carried):
    """A function wire dict -> Case equal to ``case_cls.from_wire`` but without re-running
    the constructor's checks, its inputs the received values (``case_cls`` is
    ``klconform.case.ReceivedCase``: the float64 fields are widened on first read).  Why that
    is sound: the wire was written by ``Case.to_wire`` of a Case the controller already
    validated, and ``from_bits_carried`` restores its values bit for bit.  Why bother: the
    checks cost ~40 us per case (numpy call overhead on small arrays), a quarter of a typical
    framework call, and widening a 10⁷-element input a full pass.  Falls back to
    ``from_wire`` whenever the Case class or the wire version is not the one this decoder
    was written for."""
    import dataclasses
    if {f.name for f in dataclasses.fields(case_cls)} != _CASE_FIELDS or "__getattr__" not in vars(case_cls):
        return case_cls.from_wire

    def carried(w, key, dtype):
        """The values as received (Case.sent_values)."""
        values = from_bits_carried(w[key], dtype, tuple(w[key + "_shape"]))
        values.setflags(write=False)
        return values

    def wide(w, key, dtype):
        values = carried(w, key, dtype).astype("float64")
        values.setflags(write=False)
        return values

    def decode(w):
        if w.get("v") != _CASE_WIRE_VERSION:
            return case_cls.from_wire(w)
        dtype = w["dtype"]
        # the optional keys (absent when None): each input in its own dtype, the target's sent shape
        tdt, pdt, sent = w.get("target_dtype"), w.get("pred_dtype"), w.get("target_sent_shape")
        case = object.__new__(case_cls)
        values = {
            "_carried": {"target": carried(w, "target", tdt or dtype), "pred": carried(w, "pred", pdt or dtype)},
            "dtype": dtype,
            "target_kind": w["target_kind"], "pred_kind": w["pred_kind"], "reduction": w["reduction"],
            "class_axis": w["class_axis"], "batch_axis": w["batch_axis"], "weight": w["weight"],
            "sample_weight": None if w["sample_weight"] is None else wide(w, "sample_weight", dtype),
            "grad": w["grad"], "label": w.get("label", ""),
            "target_dtype": tdt, "pred_dtype": pdt, "target_sent_shape": None if sent is None else tuple(sent),
        }
        for name, value in values.items():
            object.__setattr__(case, name, value)
        return case

    return decode


def evaluate_wire(adapter, wire: dict, decode, codec) -> dict:
    """One case in, one outcome wire dict out; adapter exceptions become ``status="error"``.
    ``decode`` turns the case wire into a Case (:func:`case_decoder`); ``codec`` is
    :mod:`klconform.wire` (imported once the worker's environment is prepared)."""
    outcome_cls, to_wire = codec.Outcome, codec.to_wire
    start = time.perf_counter()
    case = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            case = decode(wire)
            outcome = adapter.evaluate(case)
            if not isinstance(outcome, outcome_cls):
                outcome = outcome_cls(status="error", error_type="TypeError",
                                      error_message=f"evaluate returned {type(outcome).__name__}, not Outcome")
        except MemoryError as exc:    # the worker's memory limit: the case broke the worker's bounds
            outcome = outcome_cls(status="crash", error_type="MemoryError",
                                  error_message=f"out of memory (worker address-space limit): {exc}")
        except BaseException as exc:  # noqa: BLE001 - SystemExit from an adapter is an error too
            outcome = outcome_cls(status="error", error_type=type(exc).__name__, error_message=str(exc))
    outcome.elapsed_s = time.perf_counter() - start
    if caught:
        own = list(outcome.warnings or [])
        room = max(0, MAX_WARNINGS - len(own))
        outcome.warnings = own + [f"{w.category.__name__}: {w.message}" for w in caught[:room]]
        if len(caught) > room:
            outcome.warnings.append(f"[{len(caught) - room} more warning(s) dropped]")
    outcome = bounded(outcome, case, outcome_cls)
    try:
        return to_wire(outcome)
    except Exception as exc:  # noqa: BLE001 - e.g. a value that is not an array
        return to_wire(outcome_cls(status="error", error_type=type(exc).__name__,
                                   error_message=f"outcome not serialisable: {exc}",
                                   elapsed_s=outcome.elapsed_s))


# What one outcome may carry back (a pickled batch is held whole by the controller): text
# is cut, and arrays are checked against the case before they travel (bounded()).
MAX_MESSAGE_CHARS = 10_000
MAX_WARNINGS = 50
MAX_WARNING_CHARS = 1_000


def _elements(shape) -> int:
    """Elements of ``shape`` with every empty axis counted as 1: a reduction removing an
    empty axis leaves the others (a (2, 0) case's per-distribution loss has 2 entries)."""
    n = 1
    for d in shape:
        n *= max(int(d), 1)
    return n


#: Answers up to this many elements always reach the controller, whatever the case: a
#: wrong but small shape is a ``shape`` verdict there, judged like any other answer; the
#: limit exists only so that an answer that cannot be a reading of the case (10^8 entries
#: for a 10-entry case) costs the worker, not the controller's memory.
SMALL_ANSWER = 1 << 16


def result_limit(case) -> int | None:
    """The most elements an array of an outcome of ``case`` may hold before it is refused in
    the worker: 4x the largest of the elementwise loss's (broadcast) shape and the inputs'
    (empty axes counted as 1, :func:`_elements`), and never under :data:`SMALL_ANSWER`.
    Every result of the family is no larger (KL-SHAPE-2), nor is a gradient.  None when the
    case's shapes cannot be read (no check)."""
    try:
        most = max(_elements(case.shape), *(_elements(case.sent_shape(s)) for s in ("target", "pred")))
    except Exception:  # noqa: BLE001 - a case type without these: nothing to check against
        return None
    return max(SMALL_ANSWER, 4 * most)


def _size(a) -> int:
    size = getattr(a, "size", None)
    if isinstance(size, int):
        return size
    try:
        import numpy
        return int(numpy.size(a))
    except Exception:  # noqa: BLE001 - not array-like: to_wire reports it
        return 0


def _cut(text, limit: int):
    if not isinstance(text, str) or len(text) <= limit:
        return text
    return text[:limit] + f" [{len(text) - limit} more character(s) dropped]"


def bounded(outcome, case, outcome_cls):
    """``outcome`` as it may travel: its text cut (message, each warning, their count) and,
    when its value or a gradient holds more elements than any answer to ``case`` can
    (:func:`result_limit`), a ``crash`` outcome that says so instead -- decided here, so
    that an 800 MB answer never reaches the controller."""
    outcome.error_message = _cut(outcome.error_message, MAX_MESSAGE_CHARS)
    outcome.native_call = _cut(outcome.native_call, MAX_WARNING_CHARS)
    if isinstance(outcome.warnings, (list, tuple)) and (
            len(outcome.warnings) > MAX_WARNINGS + 1 or any(isinstance(w, str) and len(w) > MAX_WARNING_CHARS
                                                           for w in outcome.warnings)):
        kept = [_cut(w, MAX_WARNING_CHARS) for w in outcome.warnings[:MAX_WARNINGS]]
        if len(outcome.warnings) > MAX_WARNINGS:
            kept.append(f"[{len(outcome.warnings) - MAX_WARNINGS} more warning(s) dropped]")
        outcome.warnings = kept
    limit = result_limit(case) if case is not None else None
    if limit is None:
        return outcome
    arrays = [("value", outcome.value)] + [(f"gradient wrt {k}", g) for k, g in dict(outcome.grads or {}).items()]
    for what, a in arrays:
        if a is None:
            continue
        n = _size(a)
        if n > limit:
            shape = list(getattr(a, "shape", ()) or [n])
            return outcome_cls(
                status="crash", error_type="OversizedOutcome", elapsed_s=outcome.elapsed_s,
                warnings=list(outcome.warnings or [])[:MAX_WARNINGS], native_call=outcome.native_call,
                error_message=f"returned a {what} of {n} elements (shape {shape}) for a case whose result has at "
                              f"most {limit} (KL-SHAPE-2); not sent to the controller")
    return outcome


def serve(channel) -> None:
    """The worker's main loop (called by the bootstrap with the execnet channel)."""
    own_process_group()
    config = channel.receive()
    if config.get("token"):
        os.environ.setdefault(TOKEN_ENV, config["token"])    # also where the launcher could not set it
    # From here on the worker's fd 2 goes to a file, setup included: native start-up
    # messages (TensorFlow's oneDNN/CUDA/absl lines) become the run's setup warnings.
    stderr = StderrCapture()
    # Opened before the hello: a file-backed record is unlinked by the controller once it
    # has the hello (an anonymous one, /proc/<controller>/fd/N, has no name to unlink).
    progress = ProgressRecord(config["progress"]) if config.get("progress") else None
    bind_to_controller()
    channel.send(("hello", {"pid": os.getpid(), "python": sys.executable}))
    try:
        limit_memory(config.get("memory_limit"))
        prepare_environment(config.get("env", {}), config.get("paths", []))
        from klconform import wire as codec
        from klconform.case import ReceivedCase
        from klconform.reference.dtypes import from_bits_carried
        decode = case_decoder(ReceivedCase, from_bits_carried)
    except BaseException as exc:  # noqa: BLE001
        channel.send(("unavailable", "import_error", f"worker environment: {_one_line(exc)}"))
        return
    adapter, result = start_adapter(config["ref"])
    if adapter is None:
        channel.send(("unavailable", *result))
        return
    setup_lines = stderr.new_lines(StderrCapture.MAX_SETUP_LINES)
    if setup_lines:
        result["setup_warnings"] = setup_lines
    channel.send(("ready", result))
    while True:
        msg = channel.receive()
        if msg is None:
            # the adapter's children go with the worker (a remote worker has no one else to do it)
            kill_strays(os.environ.get(TOKEN_ENV), os.getpid())
            return
        seqs, blob = msg
        wires = pickle.loads(blob)
        with SharedPayloads() as payloads:
            run_batch(channel, adapter, decode, codec, seqs, payloads.attach(wires), progress, stderr)
            del wires


def run_batch(channel, adapter, decode, codec, seqs, wires, progress, stderr=None) -> None:
    """Evaluate one batch; outcomes go back as pickled lists of ``(seq, wire)``, flushed at
    the end of the batch and whenever FLUSH_INTERVAL_S has passed (slow adapters).  The
    progress record names the case in progress, so the controller can attribute a crash
    or a hang without a message per case (execnet's per-message cost, ~40 us of framing
    and wake-ups per case, was the largest part of the harness overhead)."""
    pending, last_flush = [], time.monotonic()
    for seq, wire in zip(seqs, wires):
        if progress is not None:
            progress.start(seq)
        outcome = evaluate_wire(adapter, wire, decode, codec)
        if progress is not None:
            progress.idle()
        if stderr is not None:
            lines = stderr.new_lines()
            if lines:
                outcome["warnings"] = list(outcome["warnings"]) + [f"stderr: {line}" for line in lines]
        pending.append((seq, outcome))
        if time.monotonic() - last_flush >= FLUSH_INTERVAL_S:
            channel.send(pickle.dumps(pending, protocol=WIRE_PICKLE_PROTOCOL))
            pending, last_flush = [], time.monotonic()
    if pending:
        channel.send(pickle.dumps(pending, protocol=WIRE_PICKLE_PROTOCOL))


class SharedPayloads:
    """Worker side of klconform.workers.SharedPayloads: maps the controller's memory files
    privately (copy-on-write: nothing this process does reaches the file) and puts views of
    them where the wires hold ``{"shared": [path, size]}``.  The decoded case keeps
    read-only views (``Case.sent_values``, from which adapters build tensors without a
    copy; ``Case.private_view`` where a framework shares only writable memory); each map is
    closed when the batch is done, or when its last view goes."""

    def __init__(self):
        self._maps: dict[str, object] = {}

    def __enter__(self):
        return self

    def attach(self, wires: list) -> list:
        import mmap
        for w in wires:
            for k, v in list(w.items()):
                if isinstance(v, dict) and set(v) == {"shared"}:
                    path, size = v["shared"]
                    if path not in self._maps:
                        with open(path, "rb") as f:       # the map keeps its own descriptor
                            self._maps[path] = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
                    w[k] = memoryview(self._maps[path])[:size]
        return wires

    def __exit__(self, *exc):
        busy = []
        for m in self._maps.values():
            try:
                m.close()
            except BufferError:       # a view still alive: a reference cycle, an adapter's cache
                busy.append(m)
        if busy:
            # only then a collection (80-150 ms with a framework loaded, twice a 64 MiB
            # case's kl_div: not after every batch); a view that survives it keeps its map
            # until it goes
            import gc
            gc.collect()
            for m in busy:
                try:
                    m.close()
                except BufferError:
                    pass
        self._maps.clear()
        return False


class StderrCapture:
    """Redirects the worker's file descriptor 2 into a temporary file, so that native
    framework messages (MXNet's C++ warnings, TensorFlow's absl logging) become per-case
    warnings instead of noise on the controller's terminal.  Timestamps and thread ids are
    stripped so that identical runs record identical warnings.  The capture starts before
    the adapter's setup: what the framework prints while importing becomes the run's
    ``setup_warnings`` (environment report), capped like a case's."""

    _STAMP = re.compile(r"^(\[\d\d:\d\d:\d\d\] |[IWEF]\d{4} [\d:.]+\s+\d+ |"
                        r"\d{4}-\d\d-\d\d [\d:.]+: (?=[IWEF] ))")
    MAX_LINES = 5
    MAX_SETUP_LINES = 40  # a framework's start-up (TensorFlow: ~18 lines) is kept whole
    MAX_BYTES = 8192     # read per case; the rest is counted, not kept (a flood stays small)

    def __init__(self):
        import fcntl
        import tempfile
        sys.stderr.flush()
        # O_APPEND: after the file is emptied, writers continue at its (new) end, not at
        # their old offset, so the file never grows past one case's messages.
        self._file = tempfile.TemporaryFile(buffering=0)
        flags = fcntl.fcntl(self._file.fileno(), fcntl.F_GETFL)
        fcntl.fcntl(self._file.fileno(), fcntl.F_SETFL, flags | os.O_APPEND)
        os.dup2(self._file.fileno(), 2)

    def new_lines(self, max_lines: int = MAX_LINES) -> list:
        fd = self._file.fileno()
        size = os.fstat(fd).st_size
        if size == 0:              # the common case: one fstat per case
            return []
        data = os.pread(fd, min(size, self.MAX_BYTES), 0)
        os.ftruncate(fd, 0)
        text = data.decode("utf-8", "replace")
        lines = [self._STAMP.sub("", ln).strip() for ln in text.splitlines()]
        lines = [ln for ln in lines if ln]
        kept = lines[:max_lines]
        dropped = size - len(data)
        if len(lines) > max_lines or dropped:
            kept.append(f"[{len(lines) - len(kept)} more line(s) and {dropped} byte(s) of stderr dropped]")
        return kept


class ProgressRecord:
    """Which case the worker is evaluating, in a 16-byte shared file (mmap).

    Layout ``<dq``: the ``time.monotonic()`` at which the case started (a system-wide
    clock on the worker's host) and its sequence number, -1 between cases.  The start
    time is written before the number, so a reader never sees a case with a later start
    than its real one (a timeout can fire late, never early)."""

    SIZE = 16

    def __init__(self, path: str, create: bool = False):
        import mmap
        import struct
        self._struct = struct
        self._owned_fd = None
        self.path = path
        if create:
            with open(path, "wb") as fh:
                fh.write(struct.pack("<dq", 0.0, -1))
        self._file = open(path, "r+b")
        self._map = mmap.mmap(self._file.fileno(), self.SIZE)

    @classmethod
    def anonymous(cls):
        """Controller side: a record that no directory entry ever names (a memfd), so that
        nothing is left behind whenever the controller dies.  The worker opens it as
        ``/proc/<controller pid>/fd/<n>`` (``.path``).  None where that is not possible
        (no memfd or no /proc): the caller falls back to a named temp file."""
        if not hasattr(os, "memfd_create"):
            return None
        import struct
        fd = None
        try:
            fd = os.memfd_create("klconform-progress")     # close-on-exec: no other child gets it
            os.write(fd, struct.pack("<dq", 0.0, -1))
            record = cls(f"/proc/{os.getpid()}/fd/{fd}")  # reopened through /proc, as the worker will
        except OSError:
            if fd is not None:
                os.close(fd)
            return None
        record._owned_fd = fd
        return record

    def start(self, seq: int) -> None:
        self._struct.pack_into("<d", self._map, 0, time.monotonic())
        self._struct.pack_into("<q", self._map, 8, seq)

    def idle(self) -> None:
        self._struct.pack_into("<q", self._map, 8, -1)

    def read(self) -> tuple[int, float]:
        """``(seq, started)``; seq is -1 between cases."""
        started, seq = self._struct.unpack_from("<dq", self._map, 0)
        return seq, started

    def close(self) -> None:
        try:
            self._map.close()
        finally:
            self._file.close()
            if self._owned_fd is not None:
                os.close(self._owned_fd)
                self._owned_fd = None
