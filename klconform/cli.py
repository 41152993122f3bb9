"""``klconform`` command line: the main job and report re-rendering.

    python -m klconform run    [options]              # every available adapter, frozen corpus -> reports/latest/
    python -m klconform explore [options]             # new Hypothesis cases: what the frozen corpus misses
    python -m klconform corpus freeze|add|coverage    # maintain and measure the frozen corpus (docs/corpus.md)
    python -m klconform report RESULTS.json [--out DIR]  # re-render report.md / report.html
    python -m klconform list                           # the adapters a run would use
    python -m klconform diff OLD NEW                   # changes between two results/baseline files
    python -m klconform baseline check|update RESULTS.json [--baselines DIR]   # upgrade checks
    python -m klconform dashboard RESULTS... [--out DIR]  # the interop dashboard (docs/dashboard.md)

Exit status (documented in the README and in every report):
  0  no unexpected discrepancy
  1  an unexpected discrepancy: a discrepancy no known record covers, or a known record
     that no case showed (klconform/known/, strict)
  2  usage, input or internal error (bad option, unknown framework, an adapter that cannot
     be loaded, unreadable or inconsistent results file, output directory not writable or
     in use by another run, an output file not written) — one line on stderr; for an
     internal error also the path of a log file with the details
  3  not checked ("nothing compared: <why>"): an adapter asked for by name (--frameworks,
     --adapter) could not run or compared no case; nothing at all was compared (no adapter
     ran, no case left: an empty corpus, --dtypes keeping none; then the previous report
     in OUT is left as it was); diff / baseline check with no adapter run or case in common
130 interrupted by SIGINT/SIGTERM (completed adapters are kept in OUT/results.partial.json
     when there are any; the previous report in OUT is left intact).  A signal that arrives
     while the output files are being replaced is held until the new set is complete; the
     run then exits with its own status (and says so on stderr)
When several apply, the first of 2, 3, 1 wins.
"""
from __future__ import annotations

import argparse
import errno
import math
import os
import re
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

EXIT_OK, EXIT_DISCREPANCY, EXIT_USAGE, EXIT_NOT_CHECKED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
MAX_EXAMPLES = 100_000   # ~1 h per adapter at the measured ~30 ms per case: beyond is a typo
CALLER_CWD_ENV = "KLCONFORM_CALLER_CWD"   # set by bootstrap.py, which chdirs to the repository
FORMATS = ("json", "md", "html")
FILES = {"json": "results.json", "md": "report.md", "html": "report.html"}
PARTIAL = "results.partial.json"
DEFAULT_OUT = "reports/latest"


class UsageError(Exception):
    """A usage or input problem: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):   # one line, not argparse's usage block
        raise UsageError(message)


# ----------------------------------------------------------------------------- options
def _seconds(text: str) -> float:
    """A positive, finite number of seconds (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds: {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r}: must be a finite number of seconds > 0")
    return value


def _int_in(low: int, high: int | None = None):
    """An argparse type: an integer in [low, high]."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f">= {low}" if high is None else f"between {low} and {high}"
            raise argparse.ArgumentTypeError(f"{value}: must be {bound}")
        return value
    return parse


def _memory(text: str) -> int | None:
    """``--worker-memory``: bytes with an optional K/M/G/T suffix; 0 or ``none``: no limit."""
    t = text.strip().lower()
    if t in ("0", "none", "unlimited"):
        return None
    units = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
    scale = units.get(t[-1:], 1)
    try:
        value = float(t[:-1] if t[-1:] in units else t) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid size: {text!r} (e.g. 16G, 512M, none)") from None
    if not (math.isfinite(value) and value >= 256 * 2**20):
        raise argparse.ArgumentTypeError(f"{text!r}: at least 256M (a Python worker needs that much), or none")
    return int(value)


def _csv(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="klconform", description="Cross-framework conformance of the KL-divergence loss.",
                epilog="Exit status: 0 no unexpected discrepancy, 1 unexpected discrepancy, 2 usage, input "
                       "or internal error, 3 nothing compared (an adapter asked for could not run, no case left, "
                       "nothing in common), "
                       "130 interrupted.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    r = sub.add_parser("run", help="run every available adapter and write results.json, report.md, report.html")
    r.add_argument("--frameworks", metavar="NAMES",
                   help="comma-separated adapter names (e.g. torch.kl_div,mxnet.KLDivLoss@mxnet180), framework "
                        "prefixes (torch) or 'all' (every registered adapter, plus NAME@ENV for each configured side "
                        "interpreter whose ENV starts with the adapter's framework prefix); default: all, or only "
                        "the --adapter ones when --adapter is given")
    r.add_argument("--adapter", action="append", default=[], metavar="MODULE:CLASS",
                   help="a third-party adapter (repeatable; MODULE:CLASS@ENV for a side interpreter); without "
                        "--frameworks only these run (--frameworks all adds the registered ones)")
    r.add_argument("--python", action="append", default=[], metavar="ENV=PATH",
                   help="interpreter for side environment ENV (repeatable; also KLCONFORM_PYTHON_<ENV>)")
    r.add_argument("--dtypes", metavar="LIST", help="comma-separated dtypes to keep (default: all)")
    r.add_argument("--corpus", metavar="FILE", default=None,
                   help="a corpus file in the frozen format (default: the frozen corpus, klconform/data/frozen-corpus.jsonl)")
    r.add_argument("--devices", default="cpu", metavar="LIST",
                   help="devices each adapter runs on, side by side (e.g. cpu,cuda): an adapter declaring a device "
                        "gets one more run, NAME[device]; a device the worker lacks makes that run unavailable "
                        "(default cpu)")
    r.add_argument("--large", default="quick", metavar="WHICH",
                   help="the large family (docs/large.md) each adapter also runs: quick (7 cases of ~10^5 elements, the default), "
                        "all (klconform/data/large-corpus.jsonl: 112 recipes up to 64x131072), none, or a FILE "
                        "in that format")
    r.add_argument("--jobs", type=_int_in(1, 64), default=None, metavar="N",
                   help="adapters run at once, each in its own worker (default: the number of CPUs)")
    r.add_argument("--out", default=None, metavar="DIR",
                   help=f"output directory, relative to where the command was typed (default {DEFAULT_OUT} of the project)")
    r.add_argument("--formats", default="json,md,html", metavar="LIST", help="any of json,md,html (default all)")
    r.add_argument("--case-timeout", type=_seconds, default=20.0, metavar="S", help="per-case worker timeout (s, default 20)")
    r.add_argument("--setup-timeout", type=_seconds, default=180.0, metavar="S",
                   help="time a worker may take to import and set up its framework (s, default 180)")
    r.add_argument("--worker-memory", type=_memory, default="32G", metavar="SIZE",
                   help="address-space limit per worker (RLIMIT_AS; e.g. 16G; none: no limit; default 32G): "
                        "a case that exceeds it becomes a crash outcome")
    r.add_argument("--max-consecutive-timeouts", type=_int_in(0, 1_000_000), default=5, metavar="N",
                   help="circuit breaker: after N cases in a row time out, an adapter's remaining cases are not sent "
                        "but reported as skipped (default 5; 0: never)")
    r.add_argument("--batch-size", type=_int_in(1, 10_000), default=64, metavar="N", help="cases per worker round trip")
    r.add_argument("--shrink-rounds", type=_int_in(0, 100), default=6, metavar="N", help="counterexample shrinking rounds")
    r.add_argument("--shrink-budget", type=_seconds, default=60.0, metavar="S",
                   help="seconds of counterexample shrinking per adapter (default 60); crashes and hangs are "
                        "shrunk by at most 2 candidates")
    r.add_argument("--quiet", action="store_true", help="no progress display")
    rep = sub.add_parser("report", help="re-render reports from a results.json")
    rep.add_argument("results", metavar="RESULTS.json")
    rep.add_argument("--out", default=None, metavar="DIR", help="output directory (default: the results file's)")
    rep.add_argument("--formats", default="md,html", metavar="LIST", help="any of json,md,html (default md,html)")
    add_upgrade_parsers(sub)
    from .show import add_parser as add_show_parser
    add_show_parser(sub)
    from .report.dashboard_cli import add_parser as add_dashboard_parser
    add_dashboard_parser(sub)
    x = sub.add_parser("explore", help="draw new cases with Hypothesis and show what the frozen corpus misses")
    for flag in ("--frameworks", "--adapter", "--python", "--dtypes", "--case-timeout", "--setup-timeout",
                 "--worker-memory", "--max-consecutive-timeouts", "--batch-size", "--shrink-rounds",
                 "--shrink-budget", "--quiet", "--jobs"):
        action = next(a for a in r._actions if flag in a.option_strings)
        x._add_action(action)
    x.add_argument("--examples", type=_int_in(1, MAX_EXAMPLES), default=1000, metavar="N",
                   help=f"generated cases per adapter (default 1000, at most {MAX_EXAMPLES})")
    x.add_argument("--seed", type=int, default=1, help="Hypothesis seed (default 1; the frozen corpus was drawn with 0)")
    x.add_argument("--save", metavar="FILE", help="write the minimal new cases to FILE in the frozen format")
    c = sub.add_parser("corpus", help="maintain and measure the frozen corpus")
    csub = c.add_subparsers(dest="corpus_command", required=True, parser_class=_Parser)
    fr = csub.add_parser("freeze", help="(maintainers) draw the frozen corpus anew from the generator")
    fr.add_argument("--seed", type=int, default=0, help="Hypothesis seed (default 0)")
    fr.add_argument("--examples", type=_int_in(1, MAX_EXAMPLES), default=1000, metavar="N",
                    help="generated cases per built-in adapter (default 1000, the ci size)")
    fr.add_argument("--out", metavar="FILE", default=None, help="where to write (default: the frozen corpus)")
    fl = csub.add_parser("freeze-large", help="(maintainers) write the large corpus: klconform.large.catalogue() "
                                              "recipes with the digests of the cases they generate")
    fl.add_argument("--out", metavar="FILE", default=None, help="where to write (default klconform/data/large-corpus.jsonl)")
    ad = csub.add_parser("add", help="merge the cases of FILE (frozen format) into the frozen corpus")
    ad.add_argument("file", metavar="FILE")
    ad.add_argument("--corpus", metavar="FILE", default=None, help="the corpus to add to (default: the frozen corpus)")
    cv = csub.add_parser("coverage", help="cases per SPEC clause, capability value and special value, per adapter")
    cv.add_argument("--frameworks", metavar="NAMES", help="as for run")
    cv.add_argument("--adapter", action="append", default=[], metavar="MODULE:CLASS", help="as for run")
    cv.add_argument("--corpus", metavar="FILE", default=None, help="as for run")
    ls = sub.add_parser("list", help="list the adapters a run would use")
    ls.add_argument("--frameworks", metavar="NAMES", help="as for run")
    ls.add_argument("--adapter", action="append", default=[], metavar="MODULE:CLASS", help="as for run")
    ls.add_argument("--python", action="append", default=[], metavar="ENV=PATH", help="as for run")
    return p


def parse_formats(value: str) -> list[str]:
    formats = _csv(value) or []
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise UsageError(f"--formats {value!r}: expected a comma-separated subset of {','.join(FORMATS)}")
    return [f for f in FORMATS if f in formats]


def parse_dtypes(value: str | None) -> list[str] | None:
    from .reference.dtypes import DTYPES
    if value is None:
        return None
    dts = _csv(value) or []
    bad = [d for d in dts if d not in DTYPES]
    if bad or not dts:
        raise UsageError(f"--dtypes {value!r}: unknown dtype {bad[0] if bad else '(none)'}; expected any of {','.join(DTYPES)}")
    return dts


def prepare_out_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` if needed and prove it writable (UsageError otherwise)."""
    from .resultsio import DEFER
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with DEFER.region():          # a signal between creating and removing the probe left it behind
            fd, probe = tempfile.mkstemp(prefix=".klconform-probe-", dir=out)
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        raise UsageError(f"output directory {str(out)!r} is not writable ({exc.strerror or exc})") from None
    return out


# ----------------------------------------------------------------------------- adapters
def configured_envs(pythons: dict[str, str]) -> list[str]:
    """Side environments with an interpreter configured (--python or KLCONFORM_PYTHON_*)."""
    from .registry import PYTHON_ENV_PREFIX
    envs = {k.lower() for k in pythons}
    envs |= {k[len(PYTHON_ENV_PREFIX):].lower() for k in os.environ if k.startswith(PYTHON_ENV_PREFIX)}
    return sorted(e for e in envs if e)


ALL = "all"   # --frameworks all: every registered adapter (and side-interpreter variants)


def expand_names(names: list[str] | None, known: dict[str, str], pythons: dict[str, str]) -> list[str]:
    """Adapter names to run: ``names`` with framework prefixes expanded (``torch`` ->
    every registered ``torch.*``); for None or ``all`` every registered adapter plus
    ``NAME@ENV`` for each configured side environment whose name starts with NAME's
    framework prefix (``mxnet180`` -> ``mxnet.KLDivLoss@mxnet180``)."""
    if names is None:
        out = list(known)
        for env in configured_envs(pythons):
            out += [f"{n}@{env}" for n in known if env.startswith(n.split(".", 1)[0].lower())]
        return out
    out = []
    for n in names:
        if n == ALL:
            out += expand_names(None, known, pythons)
            continue
        base, at, env = n.partition("@")
        if base not in known and ":" not in base and any(k.split(".", 1)[0] == base for k in known):
            out += [k + at + env for k in known if k.split(".", 1)[0] == base]
        else:
            out.append(n)
    return out


def resolve_specs(frameworks: str | None, adapters: list[str], pythons_opt: list[str]):
    """The WorkerSpecs a run uses: ``--frameworks`` (default ``all``, or none when
    ``--adapter`` is given: a user who names an adapter means that adapter), then the
    ``--adapter`` ones."""
    from . import registry
    try:
        pythons = registry.parse_python_options(pythons_opt)
        known = registry.builtin_adapters()
        wanted = _csv(frameworks) if frameworks is not None else ([] if adapters else [ALL])
        names = expand_names(wanted, known, pythons)
        if frameworks is not None and not names and not adapters:
            raise UsageError(f"--frameworks {frameworks!r}: no adapter named")
        return registry.resolve(names, adapters, pythons=pythons, known=known)
    except registry.RegistryError as exc:
        raise UsageError(str(exc).splitlines()[0]) from None


def asked_for(frameworks: str | None, adapters: list[str], pythons_opt: list[str], specs) -> set[str]:
    """The keys (run id or reference) of the specs the user named, as opposed to those
    that came with ``all`` (the default without --adapter): a named adapter that cannot
    run is exit 3 (and one that cannot be loaded a usage error), a registered one that
    came with ``all`` a recorded skip."""
    wanted = _csv(frameworks) if frameworks is not None else ([] if adapters else [ALL])
    everything = set()
    if ALL in wanted:
        everything = {s.run_id or s.adapter_ref for s in resolve_specs(ALL, [], pythons_opt)}
        if wanted == [ALL] and not adapters:
            return set()
    return {s.run_id or s.adapter_ref for s in specs} - everything


# ----------------------------------------------------------------------------- progress
class Progress:
    """Progress on stderr: one updating line on a terminal, plain lines otherwise."""

    def __init__(self, quiet: bool = False, stream=None):
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = time.perf_counter()
        self._last = 0.0

    def line(self, text: str) -> None:
        if self.quiet:
            return
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(f"[{time.perf_counter() - self.t0:6.1f}s] {text}\n")
        self.stream.flush()

    def cases(self, run_id: str, done: int, total: int) -> None:
        if self.quiet:
            return
        now = time.perf_counter()
        if self.tty:
            self.stream.write(f"\r\033[K  {run_id}: {done}/{total} cases")
            self.stream.flush()
        elif done == total or now - self._last > 10:
            self.stream.write(f"  {run_id}: {done}/{total} cases\n")
            self.stream.flush()
            self._last = now


# ----------------------------------------------------------------------------- writing
def write_outputs(result, out: Path, formats: list[str], *, replace_set: bool = False, status: int | None = None):
    """Render the requested files and replace them in ``out`` together
    (:func:`klconform.resultsio.write_set`); returns its :class:`~klconform.resultsio.WrittenSet`.
    ``replace_set`` (a run): this run's files are the whole set, so the files of the
    formats not asked for (left by an earlier run, now out of date) are removed with it;
    and a stop asked for before the replacements start leaves the previous set.
    ``status``: the exit status the command will end with when the set is written, if
    not the findings' own (the reports state it)."""
    from .report.html import render_html
    from .report.markdown import render_markdown
    from .report.summary import build_model
    from .resultsio import dumps, to_document, validate
    model = []

    def the_model():
        if not model:
            model.append(build_model(result))
            if status is not None and status != model[0].exit_status:
                model[0].command_status = status
        return model[0]

    def results_json():
        doc = to_document(result)
        validate(doc, where=f"results for {out / FILES['json']}")
        return dumps(doc)

    renders = {"json": results_json, "md": lambda: render_markdown(result, the_model()),
               "html": lambda: render_html(result, the_model())}
    from .resultsio import write_set
    if not replace_set:
        return write_set(out, {FILES[f]: renders[f] for f in formats})
    return write_set(out, {FILES[f]: renders[f] for f in formats},
                     remove=[FILES[f] for f in FORMATS if f not in formats], stop_requested=_stop_observed)


def exit_status(result) -> int:
    from .unexpected import unexpected_findings
    return EXIT_DISCREPANCY if any(unexpected_findings(r) for r in result.runs) else EXIT_OK


def reproduction_command(args) -> str:
    """The command that reproduces this run's results (output directory left out: the
    results do not depend on it)."""
    cmd = ["python", "-m", "klconform", "run"]
    if args.corpus:
        cmd += ["--corpus", args.corpus]
    if args.frameworks is not None:
        cmd += ["--frameworks", args.frameworks]
    for a in args.adapter:
        cmd += ["--adapter", a]
    for p in args.python:
        cmd += ["--python", p]
    if args.dtypes:
        cmd += ["--dtypes", args.dtypes]
    if getattr(args, "devices", "cpu") != "cpu":
        cmd += ["--devices", args.devices]
    if getattr(args, "large", "quick") != "quick":
        cmd += ["--large", args.large]
    return shlex.join(cmd)


# ----------------------------------------------------------------------------- commands
def out_path(value: str | None) -> Path:
    """``--out`` as the user meant it: relative to the directory the command was typed in
    (bootstrap.py changes to the repository root and passes that directory on); None: the
    default, relative to this process's directory (the project, under bootstrap.py)."""
    if value is None:
        return Path(DEFAULT_OUT)
    path = Path(os.path.expanduser(value))
    caller = os.environ.get(CALLER_CWD_ENV)
    return path if path.is_absolute() or not caller else Path(caller) / path


def load_adapters(specs, named: bool, *, keep_failed: bool = False) -> list:
    """Controller-side instances, one per spec; a spec whose adapter cannot be loaded gets
    its RegistryError instead (a recorded skip) -- or, when the user ``named`` the adapters,
    a UsageError: asking for an adapter that cannot even be constructed is an input error.
    ``keep_failed``: an adapter whose ``capabilities()`` fails (registry.AdapterFailed, its
    own bug) gets its error even when named: it costs that adapter's run only."""
    from . import registry
    adapters = []
    for s in specs:
        try:
            adapters.append(registry.load_adapter(s.adapter_ref))
        except registry.RegistryError as exc:
            if named and not (keep_failed and isinstance(exc, registry.AdapterFailed)):
                raise UsageError(str(exc)) from None
            adapters.append(exc)
    return adapters


def warn_unused_pythons(pythons_opt: list[str], specs) -> None:
    """A warning line for each ``--python ENV=...`` that no adapter of the run uses."""
    from . import registry
    used = {(s.run_id or "").partition("@")[2] for s in specs}
    for env in registry.parse_python_options(pythons_opt):
        if env not in used:
            sys.stderr.write(f"klconform: warning: --python {env}=...: no adapter of this run uses "
                             f"environment {env!r} (name it as ADAPTER@{env})\n")


def load_corpus(path: str | None):
    """The cases of the corpus file ``path`` (default: the frozen corpus) and what the
    results record about it; a bad file is a UsageError naming file:line."""
    from . import frozen
    file = frozen.FROZEN_PATH if path is None else out_path(path)
    try:
        cases = frozen.load(file)
        head = frozen.read_header(file)
    except frozen.FrozenCorpusError as exc:
        raise UsageError(str(exc)) from None
    return cases, {"corpus": "frozen" if path is None else "file", "file": str(path or "klconform/data/frozen-corpus.jsonl"),
                   "made_by": head.get("made_by", ""), "format_version": head["version"], "cases": head["cases"],
                   "digest": head["digest"]}


def writable_file(option: str, value: str) -> Path:
    """``value`` as the path of a file this command will write (relative to where it was
    typed), checked before any work: a UsageError naming ``option`` otherwise."""
    from .resultsio import UnsafeOutput, output_target
    path = out_path(value)
    try:
        target = output_target(path)    # the one rule of every writer: regular files or new paths
    except UnsafeOutput as exc:
        raise UsageError(f"{option} {exc}") from None     # exc names the path
    if not os.access(target.parent, os.W_OK):
        raise UsageError(f"{option} {value}: not a writable file path (directory {target.parent} is not writable)")
    return path


def write_file(path: Path, write) -> Path:
    """``write()`` (a corpus, a large corpus: one file replaced atomically); an I/O failure
    (a full disk, a read-only filesystem) is a UsageError naming ``path``, the file as it was."""
    try:
        return write()
    except OSError as exc:
        raise UsageError(f"{path}: not written ({exc.strerror or exc}); the file is left as it was") from None


def load_large(value: str, dtypes: list[str] | None):
    """The large-family entries ``--large`` names (kept to ``dtypes``) and what the results
    record about them; a bad value or file is a UsageError."""
    from . import large
    try:
        entries = large.select(value, out_path)
    except large.LargeCorpusError as exc:
        raise UsageError(f"--large {value}: {exc}") from None
    entries = [e for e in entries if not dtypes or e[0].dtype in dtypes]
    return entries, {"which": value, "cases": len(entries)}


def with_devices(specs, value: str):
    """``specs`` plus, per device of ``value`` other than cpu, one spec ``NAME[device]`` for
    each adapter that declares it (``Adapter.devices``), right after its cpu run."""
    import dataclasses
    from . import registry
    devices = _csv(value) or []
    known = ("cpu", "cuda")
    bad = [d for d in devices if d not in known]
    if bad or not devices:
        raise UsageError(f"--devices {value!r}: expected a comma-separated subset of {','.join(known)}")
    out = []
    for spec in specs:
        if "cpu" in devices:
            out.append(spec)
        others = [d for d in devices if d != "cpu"]
        if not others:
            continue
        try:
            cls = registry.load_adapter_class(spec.adapter_ref)
        except Exception:       # noqa: BLE001 - reported by load_adapters like any bad adapter
            continue
        out += [dataclasses.replace(spec, device=d, run_id=f"{spec.run_id or cls.name}[{d}]")
                for d in others if d in cls.devices]
    return out


def _declared_devices(spec) -> str:
    """``double.good: cpu``: an adapter's run id and the devices it declares."""
    from . import registry
    try:
        cls = registry.load_adapter_class(spec.adapter_ref)
    except Exception:  # noqa: BLE001 - load_adapters reports it if the run gets that far
        return spec.run_id or spec.adapter_ref
    return f"{spec.run_id or cls.name}: {', '.join(cls.devices)}"


def cmd_run(args) -> int:
    formats = parse_formats(args.formats)
    dtypes = parse_dtypes(args.dtypes)
    out = prepare_out_dir(out_path(args.out))
    selected = resolve_specs(args.frameworks, args.adapter, args.python)
    specs = with_devices(selected, args.devices)
    if not specs and selected:
        return _nothing_compared(f"--devices {args.devices}: no selected adapter declares {args.devices} ("
                                 + "; ".join(_declared_devices(s) for s in selected) + f"); {out} is left as it was")
    if not specs:
        raise UsageError("no adapter to run")
    named = asked_for(args.frameworks, args.adapter, args.python, specs)
    adapters = load_adapters(specs, bool(named), keep_failed=True)
    warn_unused_pythons(args.python, specs)
    from .resultsio import OutputBusy, OutputLock
    lock = OutputLock(out)
    try:
        try:
            lock.__enter__()
        except OutputBusy as exc:
            raise UsageError(str(exc)) from None
        return _run_locked(args, formats, dtypes, out, specs, adapters, named)
    finally:
        lock.__exit__(None, None, None)


def adapter_done_line(run: AdapterRun) -> str:
    """The progress line of an adapter run that ended, whatever it holds: a skipped run, an
    ok run whose fingerprint has no observed point (no outcome with a value: every case
    failed, or none was sent) or no fingerprint at all."""
    if run.status != "ok":
        return f"{run.adapter}: skipped ({run.status}: {run.reason})"
    n_bad = sum(v.cls != "match" for v in run.verdicts)
    fp = run.fingerprint if isinstance(run.fingerprint, dict) else {}
    observed = fp.get("observed")
    name = observed.get("name") if isinstance(observed, dict) else None
    if name:
        seen = f"observed {name}"
    else:
        why = fp.get("reason") or fp.get("status") or "no fingerprint"
        seen = f"no observed point ({why})"
    from .report.summary import skipped_note
    skipped = skipped_note(run)
    return f"{run.adapter}: {len(run.outcomes)} outcomes, {n_bad} discrepancy verdicts, {seen}" + (
        f"; {skipped}" if skipped else "")


def _run_locked(args, formats, dtypes, out: Path, specs, adapters, named: set[str]) -> int:
    from . import engine, workers
    from .provenance import reference_identity
    from .results import AdapterRun, RunResult
    from .resultsio import UnsafeOutput, write_results

    progress = Progress(args.quiet)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    t0 = time.perf_counter()
    cases, corpus_source = load_corpus(args.corpus)
    if dtypes:
        cases = [c for c in cases if c.dtype in dtypes]
    corpus_source["dtypes"] = dtypes or "all"
    large_entries, corpus_source["large"] = load_large(args.large, dtypes)
    if not cases and not large_entries:
        kept = f", none of dtype {','.join(dtypes)}" if dtypes and corpus_source["cases"] else ""
        return _nothing_compared(f"no case left: {corpus_source['file']} has {corpus_source['cases']} case(s){kept}, "
                                 f"--large {args.large} adds none; the previous report in {out} is left as it was")
    result = RunResult(schema_version=engine.SCHEMA_VERSION, seed=0, hypothesis=corpus_source,
                       corpus_digest=engine.corpus_digest(cases), cases={c.digest: c.to_json() for c in cases},
                       runs=[], command=reproduction_command(args), started_at=started, complete=False,
                       reference=dict(reference_identity()))
    jobs = args.jobs or os.cpu_count() or 1
    progress.line(f"{len(cases)} cases ({corpus_source['file']}) + {len(large_entries)} large, "
                  f"{len(specs)} adapter(s), {jobs} at a time")
    partial = out / PARTIAL
    partial_written = False
    worker_options = dict(setup_timeout=args.setup_timeout, memory_limit=args.worker_memory,
                          max_consecutive_timeouts=args.max_consecutive_timeouts)
    asked = set()     # run ids of the adapters the user named
    done: dict[int, AdapterRun] = {}     # spec index -> run (the results keep the specs' order)
    runnable: list[tuple[int, object]] = []
    lock = _threading.Lock()
    for i, (spec, adapter) in enumerate(zip(specs, adapters)):
        if (spec.run_id or spec.adapter_ref) in named:
            asked.add(spec.run_id or (spec.adapter_ref if isinstance(adapter, Exception) else adapter.name))
        if isinstance(adapter, Exception):
            from .registry import AdapterFailed
            run_id = spec.run_id or spec.adapter_ref
            why = "error" if isinstance(adapter, AdapterFailed) else "import_error"
            progress.line(f"[{i + 1}/{len(specs)}] {run_id}: skipped ({why}: {adapter})")
            done[i] = AdapterRun(adapter=run_id, api="", env={}, status=why, reason=str(adapter))
        else:
            runnable.append((i, spec))

    snapshot_memo: dict = {}     # each finished run's JSON made once across the snapshots

    def finished(j: int, run, cited: dict) -> None:     # called by the engine's threads as each adapter ends
        nonlocal partial_written
        i = runnable[j][0]
        with lock:
            for d, cj in cited.items():         # a partial file must hold every case it cites
                result.cases.setdefault(d, cj)
            done[i] = run
            result.runs = [done[k] for k in sorted(done)]
            progress.line(f"[{i + 1}/{len(specs)}] {adapter_done_line(run)}")
            result.elapsed_s = time.perf_counter() - t0
            _raise_if_stopped()
            if any(r.status == "ok" for r in result.runs):
                try:
                    write_results(result, partial, check=False, memo=snapshot_memo)   # what is complete survives an interruption
                    partial_written = True
                except (OSError, UnsafeOutput) as exc:   # a snapshot only: the run goes on without it
                    progress.line(f"{partial}: not written ({getattr(exc, 'strerror', None) or exc})")

    try:
        res = engine.run_conformance([s for _, s in runnable], cases, batch_size=args.batch_size,
                                     case_timeout=args.case_timeout, shrink_rounds=args.shrink_rounds,
                                     shrink_budget=args.shrink_budget,
                                     progress=progress.cases, hypothesis_settings=corpus_source,
                                     command=result.command, jobs=jobs, worker_options=worker_options,
                                     on_run=finished, large=large_entries)
        for d, cj in res.cases.items():
            result.cases.setdefault(d, cj)
        result.runs = [done[k] for k in sorted(done)]
        _raise_if_stopped()
    except BaseException as exc:
        if not _interruption(exc):
            raise
        return _interrupted(result, partial if partial_written else None, out)
    not_run = [r for r in result.runs if r.status != "ok"]
    compared = {r.adapter: engine.compared_cases(r) for r in result.runs}
    if not any(compared.values()):
        if partial_written:
            partial.unlink(missing_ok=True)
        if len(not_run) == len(result.runs):
            why = "no adapter could run: " + "; ".join(f"{r.adapter} ({r.status}: {r.reason})" for r in not_run)
        else:
            why = (f"no adapter took any of the {len(cases)} case(s) and {len(large_entries)} large case(s) left"
                   + (f" after --dtypes {','.join(dtypes)}" if dtypes else "") + ": "
                   + ", ".join(r.adapter for r in result.runs if r.status == "ok")
                   + "".join(f"; {r.adapter} could not run ({r.status}: {r.reason})" for r in not_run))
        return _nothing_compared(f"{why}; the previous report in {out} is left as it was")
    result.complete = True
    result.elapsed_s = time.perf_counter() - t0
    progress.line("writing " + ", ".join(FILES[f] for f in formats))
    named_not_run = [r for r in not_run if r.adapter in asked]
    empty = [r.adapter for r in result.runs if r.status == "ok" and r.adapter in asked and not compared[r.adapter]]
    try:
        written_set = write_outputs(result, out, formats, replace_set=True,
                                    status=EXIT_NOT_CHECKED if named_not_run or empty else None)
    except BaseException as exc:
        if not _interruption(exc):
            raise
        return _interrupted(result, partial if partial_written else None, out)
    written, problems = written_set.written, written_set.problems
    if partial_written:     # the set is complete, or it was refused (exit 2) and the previous one stays
        partial.unlink(missing_ok=True)
    status = exit_status(result)
    final = EXIT_USAGE if problems else EXIT_NOT_CHECKED if named_not_run or empty else status
    if written_set.removed:
        progress.line(f"removed {', '.join(str(p) for p in written_set.removed)} (an earlier run's, "
                      f"not among --formats {args.formats})")
    progress.line(f"wrote {', '.join(str(p) for p in written) or 'nothing'}; exit status {final}")
    if written_set.held:
        import signal
        names = ", ".join(signal.Signals(s).name for s in written_set.held)
        sys.stderr.write(f"klconform: {names} arrived while the output files were being replaced: the new "
                         f"set in {out} is complete, and the exit status is the run's\n")
    if problems:
        _error_line("; ".join(problems))
        return EXIT_USAGE
    print(compared_line(result.runs, compared))
    if named_not_run:
        _error_line("adapter(s) asked for could not run: "
                    + "; ".join(f"{r.adapter} ({r.status}: {r.reason})" for r in named_not_run))
        return EXIT_NOT_CHECKED
    if empty:
        _error_line(f"adapter(s) asked for compared no case: {', '.join(empty)} (none of the {len(cases)} case(s) "
                    f"and {len(large_entries)} large case(s) left is one they take)")
        return EXIT_NOT_CHECKED
    return status


def compared_line(runs, compared: dict[str, int]) -> str:
    """A run's last line: the adapter runs × cases compared, and the runs that compared none."""
    done = [(r.adapter, compared[r.adapter]) for r in runs if compared[r.adapter]]
    missed = [f"{r.adapter} ({r.status}: {r.reason})" if r.status != "ok" else f"{r.adapter} (no case it takes)"
              for r in runs if not compared[r.adapter]]
    text = f"compared {adapters_by_cases(done)}" + (f"; not compared: {'; '.join(missed)}" if missed else "")
    return re.sub(r"\s+", " ", text)


def cmd_report(args) -> int:
    from .resultsio import ResultsError, read_results
    formats = parse_formats(args.formats)
    try:
        result = read_results(args.results)
    except ResultsError as exc:
        raise UsageError(str(exc)) from None
    out = prepare_out_dir(out_path(args.out) if args.out else Path(args.results).resolve().parent)
    from .provenance import reference_identity
    from .report.summary import reference_note
    if (result.reference or {}).get("digest") != reference_identity()["digest"]:
        sys.stderr.write(f"klconform: note: {reference_note(result)}\n")
    problems = write_outputs(result, out, formats).problems
    if problems:
        _error_line("; ".join(problems))
        return EXIT_USAGE
    return exit_status(result)


def cmd_explore(args) -> int:
    """Draw new cases, run them, print per adapter the discrepancy kinds only the new cases
    show (unrecorded first) with the smallest case of each; the frozen corpus is replayed
    only as far as it decides that (klconform.explore.explore_runs)."""
    from . import explore, frozen, workers
    dtypes = parse_dtypes(args.dtypes)
    # before the run: a bad --save must not cost the exploration
    save_path = writable_file("--save", args.save) if args.save else None
    specs = resolve_specs(args.frameworks, args.adapter, args.python)
    adapters = load_adapters(specs, True, keep_failed=True)
    progress = Progress(args.quiet)
    base, _ = load_corpus(None)
    for spec, a in zip(specs, adapters):
        if isinstance(a, Exception):
            print(f"{spec.run_id or spec.adapter_ref}: not run (error: {a})")
    runnable = [(s, a) for s, a in zip(specs, adapters) if not isinstance(a, Exception)]
    progress.line(f"drawing {args.examples} cases per adapter (seed {args.seed})")
    drawn = explore.build_corpus(args.seed, args.examples, [a.capabilities() for _, a in runnable], curated=False)
    known = {c.digest for c in base}
    drawn = [c for c in drawn if c.digest not in known and (not dtypes or c.dtype in dtypes)]
    frozen_cases = [c for c in base if not dtypes or c.dtype in dtypes]
    progress.line(f"{len(drawn)} new cases, {len(runnable)} adapter(s); the {len(frozen_cases)} frozen ones "
                  f"replayed only as far as needed")
    try:
        res, seen = explore.explore_runs(
            [s for s, _ in runnable], drawn, frozen_cases, seed=args.seed, jobs=args.jobs or os.cpu_count() or 1,
            run_options=dict(batch_size=args.batch_size, case_timeout=args.case_timeout,
                             shrink_rounds=args.shrink_rounds, shrink_budget=args.shrink_budget,
                             progress=progress.cases,
                             worker_options=dict(setup_timeout=args.setup_timeout, memory_limit=args.worker_memory,
                                                 max_consecutive_timeouts=args.max_consecutive_timeouts)))
    except BaseException as exc:
        if not _interruption(exc):
            raise
        workers.abort_all()
        return _stopped()
    unreplayed = {name: why for name, why in seen.items() if isinstance(why, str)}
    findings = explore.new_findings(res, {name: k for name, k in seen.items() if not isinstance(k, str)})
    from .case import Case
    save: list = []
    for run in res.runs:
        if run.status != "ok":
            print(f"{run.adapter}: not run ({run.status}: {run.reason})")
            continue
        if run.adapter in unreplayed:
            print(f"{run.adapter}: frozen corpus not replayed ({unreplayed[run.adapter]}): "
                  f"cannot tell what is new")
            continue
        for f in findings.get(run.adapter, []):
            case = Case.from_json(res.cases[f["case"]])
            print(f"{run.adapter}: {'NEW' if not f['known'] else 'recorded ' + f['known']} {f['cls']} vs "
                  f"{f['against']}{' (' + f['explained_by'] + ')' if f['explained_by'] else ''}: {f['count']} "
                  f"case(s), smallest {case!r}")
            save.append(Case.from_json(res.cases[f["canonical"]]))
        if not findings.get(run.adapter):
            print(f"{run.adapter}: nothing the frozen corpus does not show")
    if args.save:
        kept = explore.dedupe(save)
        write_file(save_path, lambda: frozen.dump(kept, save_path, made_by=f"klconform explore --seed {args.seed} "
                                                                        f"--examples {args.examples}"))
        print(f"wrote {len(kept)} case(s) to {args.save}")
    if not res.runs or all(r.status != "ok" for r in res.runs) or unreplayed:
        return EXIT_NOT_CHECKED
    return EXIT_DISCREPANCY if any(not f["known"] for fs in findings.values() for f in fs) else EXIT_OK


def cmd_corpus(args) -> int:
    from . import frozen
    if args.corpus_command == "freeze":
        from . import explore
        target = writable_file("--out", args.out) if args.out else frozen.FROZEN_PATH   # before the drawing
        cases, made_by = explore.freeze(args.seed, args.examples)
        path = write_file(target, lambda: frozen.dump(cases, target, made_by=made_by))
        print(f"{path}: {len(cases)} cases, {path.stat().st_size} bytes")
        return EXIT_OK
    if args.corpus_command == "freeze-large":
        from . import large
        target = writable_file("--out", args.out) if args.out else large.LARGE_PATH
        path = write_file(target, lambda: large.freeze(target))
        print(f"{path}: {len(large.read(path))} recipes")
        return EXIT_OK
    if args.corpus_command == "add":
        # written through a symlink to the corpus it names; checked before it is read (a FIFO would block)
        base_path = writable_file("--corpus", args.corpus) if args.corpus else frozen.FROZEN_PATH
        base, _ = load_corpus(str(base_path))
        more, _ = load_corpus(args.file)
        merged = frozen.merge(base, more)
        head = frozen.read_header(base_path)
        write_file(base_path, lambda: frozen.dump(merged, base_path, made_by=head.get("made_by", "")))
        print(f"{base_path}: {len(merged) - len(base)} case(s) added, {len(merged)} in all")
        return EXIT_OK
    from . import coverage
    from .evaluator import make_evaluator
    from .translate import translate_all
    cases, _ = load_corpus(args.corpus)
    specs = resolve_specs(args.frameworks, args.adapter, [])
    ev = make_evaluator()
    low = 0
    for spec, adapter in zip(specs, load_adapters(specs, True)):
        caps = adapter.capabilities()
        cov = coverage.count([t.case for t in translate_all(cases, caps)], caps, evaluate=ev)
        under = coverage.below_floor(cov, caps)
        low += bool(under)
        print(f"{spec.run_id or adapter.name}:")
        for section, counts in cov.items():
            print(f"  {section}: " + ", ".join(f"{k} {n}" for k, n in counts.items()))
        print("  " + coverage.cells_summary(cov))
        print("  below the floor: " + ("; ".join(under) if under else "nothing"))
    return EXIT_DISCREPANCY if low else EXIT_OK


def cmd_show(args) -> int:
    from .show import ShowError, main as show_main
    try:
        return show_main(args)
    except ShowError as exc:
        raise UsageError(str(exc)) from None


def cmd_dashboard(args) -> int:
    from .report.dashboard import NothingToShow
    from .report.dashboard_cli import DEFAULT_OUT, DashboardError, run
    try:
        return run(args, lambda: prepare_out_dir(out_path(args.out) if args.out else Path(DEFAULT_OUT)))
    except DashboardError as exc:
        raise UsageError(str(exc)) from None
    except NothingToShow as exc:
        return _nothing_compared(str(exc))


def cmd_list(args) -> int:
    specs = resolve_specs(args.frameworks, args.adapter, args.python)
    for s in specs:
        print(f"{s.run_id or s.adapter_ref}\t{s.adapter_ref}\t{s.python or sys.executable}"
              + (f"\t(unavailable: {s.unavailable})" if s.unavailable else ""))
    return EXIT_OK


# ----------------------------------------------------------------------------- upgrade checks
def add_upgrade_parsers(sub) -> None:
    """``diff`` and ``baseline check|update`` (docs/upgrade-checks.md)."""
    d = sub.add_parser("diff", help="what changed between two results.json or baseline files, in words")
    d.add_argument("old", metavar="OLD")
    d.add_argument("new", metavar="NEW")
    b = sub.add_parser("baseline", help="check a results.json against the committed baselines, or update them")
    b.add_argument("action", choices=("check", "update"))
    b.add_argument("results", metavar="RESULTS.json")
    b.add_argument("--baselines", default=None, metavar="DIR", help="baselines directory (default: klconform's own)")


def _nothing_compared(why: str) -> int:
    """Nothing was compared: one line saying why, exit 3 (never a green "0 changes")."""
    _error_line(f"nothing compared: {why}")
    return EXIT_NOT_CHECKED


def adapters_by_cases(counts: Sequence[tuple[str, int]]) -> str:
    """``2 adapter runs × 4047 cases (a 4047, b 4047)``: runs and the cases each compared."""
    n = len(counts)
    sizes = sorted({k for _, k in counts})
    span = f"{sizes[0]}" if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}"
    each = ", ".join(f"{name} {k}" for name, k in counts)
    return (f"{n} adapter run{'s' if n != 1 else ''} × {span} case{'s' if sizes[-1] != 1 else ''}"
            + (f" ({each})" if each else ""))


def _print_changes(changes, compared: Sequence[tuple[str, int]], not_compared: Sequence[str] = ()) -> int:
    """The changes, then one line: how many, over how many adapter runs × cases in common."""
    from .diff import render_text
    if changes:
        print(render_text(changes))
        if any(c.cases for c in changes):
            print("(one case in full: klconform show DIGEST --results RESULTS.json)")
    real = [c for c in changes if c.is_change]
    print(f"{len(real)} change{'s' if len(real) != 1 else ''}" + (" (notes marked =)" if len(real) < len(changes) else "")
          + f"; compared {adapters_by_cases(compared)} in common"
          + (f"; not compared: {'; '.join(not_compared)}" if not_compared else ""))
    return EXIT_DISCREPANCY if real else EXIT_OK


def cmd_diff(args) -> int:
    from .baseline import BaselineError, check_compatible, load_side
    from .diff import cases_in_common, compare_baselines, pair_baselines, run_name
    try:
        old, new = load_side(args.old), load_side(args.new)
        pairs = pair_baselines(old, new)
        changes, compared = [], []
        for a, b in pairs:
            check_compatible(a, b)
            changes += compare_baselines(a, b)
            name = run_name(b) if run_name(a) == run_name(b) else f"{run_name(a)} -> {run_name(b)}"
            compared.append((name, cases_in_common(a, b)))
    except BaselineError as exc:
        raise UsageError(str(exc)) from None
    paired = {id(x) for pair in pairs for x in pair}
    alone = [f"{run_name(x)} (only in {side})" for side, xs in (("OLD", old), ("NEW", new))
             for x in xs if id(x) not in paired]
    if not pairs:
        names = lambda xs: ", ".join(run_name(x) for x in xs) or "no adapter run"   # noqa: E731
        return _nothing_compared(f"no adapter in common: {args.old} has {names(old)}; {args.new} has {names(new)}")
    if not any(k for _, k in compared):
        sizes = "; ".join(f"{name}: {len(a.cases)} case(s) in OLD, {len(b.cases)} in NEW, none the same"
                          for (name, _), (a, b) in zip(compared, pairs))
        return _nothing_compared(f"no case in common between {args.old} and {args.new} ({sizes})")
    return _print_changes(changes, compared, alone)


def cmd_baseline(args) -> int:
    from . import baseline
    from .resultsio import ResultsError, read_results
    directory = Path(args.baselines) if args.baselines else baseline.BASELINE_DIR
    try:
        result = read_results(args.results)
        if args.action == "update":
            for path in baseline.update(result, directory):
                print(path)
            return EXIT_OK
        changes, compared = baseline.check_counted(result, directory)
    except (ResultsError, baseline.BaselineError) as exc:
        raise UsageError(str(exc).splitlines()[0]) from None
    ran = [r for r in result.runs if r.status == "ok"]
    if not ran:
        return _nothing_compared(f"no adapter run in {args.results} has answers"
                                 + (f" ({'; '.join(f'{r.adapter}: {r.status}' for r in result.runs)})" if result.runs else ""))
    if not compared:
        return _nothing_compared(f"no baseline in {directory} for {', '.join(r.adapter for r in ran)} "
                                 f"(`klconform baseline update` records one)")
    if not any(k for _, k in compared):
        return _nothing_compared(f"no case in common with the baselines in {directory}: "
                                 f"{', '.join(name for name, _ in compared)}")
    baselined = {name for name, _ in compared}
    missing = [f"{r.adapter} (no baseline)" for r in ran if r.adapter not in baselined]
    return _print_changes(changes, compared, missing)


# What the machine, not klconform, makes fail: a full disk or quota, no permission, a
# read-only filesystem, a closed pipe, a missing or wrong kind of path, too many files.
IO_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO, errno.EFBIG,
                       errno.EPIPE, errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ELOOP, errno.ENAMETOOLONG,
                       errno.EMFILE, errno.ENFILE, errno.ETXTBSY, errno.EXDEV})


class StdoutFailure(OSError):
    """Writing standard output failed (a closed pipe, a full device)."""


class _Stdout:
    """sys.stdout while a command runs: the same stream, whose write failures say they are
    stdout's (:class:`StdoutFailure`), so that they are reported as such."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        try:
            return self._stream.write(text)
        except OSError as exc:
            raise StdoutFailure(exc.errno, exc.strerror) from None

    def flush(self):
        try:
            return self._stream.flush()
        except OSError as exc:
            raise StdoutFailure(exc.errno, exc.strerror) from None

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _io_failure(exc: OSError) -> int:
    """An I/O failure that escaped a command: one plain line naming the path, exit 2 -- and
    nothing at all when the reader of stdout closed the pipe (``klconform diff A B | head``:
    it had what it wanted).  stdout is then pointed at /dev/null, so that the interpreter's
    own flush at exit cannot fail again."""
    on_stdout = isinstance(exc, StdoutFailure)
    if on_stdout:
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass
        if exc.errno == errno.EPIPE:
            return EXIT_USAGE
    what = exc.strerror or os.strerror(exc.errno)
    if exc.filename:
        where = f"{exc.filename}" + (f" -> {exc.filename2}" if exc.filename2 else "")
        _error_line(f"{where}: {what}")
    elif on_stdout:
        _error_line(f"standard output: not written ({what})")
    else:
        _error_line(f"{what} ({errno.errorcode.get(exc.errno, exc.errno)})")
    return EXIT_USAGE


def _error_line(message: str) -> None:
    text = re.sub(r"\s+", " ", message).strip()
    sys.stderr.write(f"klconform: error: {text}\n")


# A stop asked for by SIGINT/SIGTERM.  Set before anything else the handler does, and
# checked again between adapters and before the output files are replaced: a
# KeyboardInterrupt swallowed on its way up (a library's gc callback, say) cannot make
# the run go on and write a new report.
import threading as _threading
_STOP = _threading.Event()
_ACTED = _threading.Event()       # the stop has been raised or handled: later signals change nothing
_EXITING = _threading.Event()     # main() is returning: its status stands


def _stop_observed() -> bool:
    """True when a stop was asked for; the caller acts on it (so a repeat is dropped)."""
    if _STOP.is_set():
        _ACTED.set()
        return True
    return False


def _interruption(exc: BaseException) -> bool:
    """Whether ``exc`` ends the run as an interruption: a KeyboardInterrupt, or one that
    Python or a library wrapped (``resultsio.caused_by_interrupt``), the workers aborted
    (``workers.RunAborted``), or anything raised while a stop was asked for."""
    from .resultsio import caused_by_interrupt
    workers = sys.modules.get(__package__ + ".workers")    # not imported: no run to abort
    aborted = workers is not None and isinstance(exc, workers.RunAborted)
    return aborted or caused_by_interrupt(exc) or _STOP.is_set()


def _raise_if_stopped() -> None:
    if _stop_observed():
        raise KeyboardInterrupt


def _stopped() -> int:
    """An interrupted command with nothing to report about its outputs: say so, exit 130."""
    _ACTED.set()
    sys.stderr.write("\nklconform: interrupted\n")
    return EXIT_INTERRUPTED


def _interrupted(result, partial: Path | None, out: Path) -> int:
    """The run was stopped before its output set was replaced: kill the workers, say what
    was kept (a partial file only when one was written), exit 130."""
    _ACTED.set()
    from . import workers
    workers.abort_all()
    kept = (f"{sum(r.status == 'ok' for r in result.runs)} completed adapter(s) kept in {partial}; "
            if partial is not None and partial.exists() else "no adapter had completed; ")
    sys.stderr.write(f"\nklconform: interrupted; {kept}the previous report in {out} is intact\n")
    return EXIT_INTERRUPTED


def _stop_on_signal(signum, frame) -> None:
    """SIGINT/SIGTERM: kill every worker now (no waiting for a batch), then unwind the
    controller with KeyboardInterrupt; further signals are ignored while it cleans up.
    Once the output files are being replaced the signal is only recorded (the set is
    completed; :func:`klconform.resultsio.write_set`); inside a short deferred region
    (``resultsio.DEFER``: a temp file being created or cleaned up) it is sent again when
    the region ends; once main() returns it is ignored."""
    import signal
    # Not imported here: the signal may come while one of them is being imported (a
    # partly initialised module); one that is not imported yet has nothing to stop.
    workers = sys.modules.get(__package__ + ".workers")
    resultsio = sys.modules.get(__package__ + ".resultsio")
    commit, defer = getattr(resultsio, "COMMIT", None), getattr(resultsio, "DEFER", None)
    if _EXITING.is_set() or _ACTED.is_set():
        return
    if commit is not None and commit.active:
        commit.held.append(signum)
        return
    if defer is not None and defer.depth:
        defer.pending.append(signum)      # sent again when the region ends
        return
    _STOP.set()
    if getattr(workers, "abort_all", None) is not None:
        workers.abort_all()
    if _in_finalizer(frame):
        # A KeyboardInterrupt raised in a finalizer is printed and dropped by Python:
        # ask again in a moment, from wherever the controller is then, unless it has
        # stopped by then on its own (the workers are gone: RunAborted) - the repeat then
        # arrives in a handled stop and is ignored (_ACTED), never a second interrupt.
        import threading
        again = threading.Timer(0.05, _ask_again, (signum,))
        again.daemon = True            # never joined at exit
        again.start()
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _ACTED.set()
    raise KeyboardInterrupt


def _ask_again(signum: int) -> None:
    if not (_ACTED.is_set() or _EXITING.is_set()):
        os.kill(os.getpid(), signum)


def _in_finalizer(frame) -> bool:
    while frame is not None:
        if frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


def check_environment() -> None:
    """The KLCONFORM_* variables klconform itself reads, checked before any work (a bad one
    is the user's input: one line, exit 2, not an internal error mid-run).  KLCONFORM_DEVICE
    and KLCONFORM_PYTHON_<ENV> cost only the runs that use them (unavailable, with why)."""
    from klconform.reference._accurate import BACKENDS
    backend = os.environ.get("KLCONFORM_REFERENCE_BACKEND")
    if backend is not None and backend not in BACKENDS:
        raise UsageError(f"KLCONFORM_REFERENCE_BACKEND={backend!r}: must be one of {', '.join(BACKENDS)}")


def main(argv: Sequence[str] | None = None, *, keep_signal_handlers: bool = False) -> int:
    """The command line; never ends in a traceback (exit statuses: module docstring).
    ``keep_signal_handlers`` (:func:`klconform.__main__.entry`): leave the handlers installed when
    returning, so that a signal arriving while the process exits is ignored instead of
    becoming a KeyboardInterrupt traceback; in-process callers get theirs back."""
    import signal
    import threading
    from .resultsio import COMMIT, UnsafeOutput
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    _STOP.clear()
    _ACTED.clear()
    _EXITING.clear()
    COMMIT.reset()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, _stop_on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    stdout = sys.stdout
    sys.stdout = _Stdout(stdout)
    try:
        args = build_parser().parse_args(argv)
        check_environment()
        status = {"run": cmd_run, "report": cmd_report, "list": cmd_list, "diff": cmd_diff,
                  "baseline": cmd_baseline, "explore": cmd_explore, "corpus": cmd_corpus,
                  "show": cmd_show, "dashboard": cmd_dashboard}[args.command](args)
        sys.stdout.flush()      # a full or closed stdout fails here, not at interpreter exit
        return status
    except (UsageError, UnsafeOutput) as exc:   # UnsafeOutput: a path no writer writes (resultsio.output_target)
        _error_line(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        return _stopped()
    except Exception as exc:  # noqa: BLE001 - klconform's own bug: one line and the details in a log
        if _interruption(exc):
            return _stopped()
        if isinstance(exc, OSError) and exc.errno in IO_ERRNOS:
            return _io_failure(exc)
        from .resultsio import log_internal_error
        try:
            where = f"; details in {log_internal_error(exc)}"
        except OSError:
            where = ""
        _error_line(f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}{where}")
        return EXIT_USAGE
    finally:
        if isinstance(sys.stdout, _Stdout):
            sys.stdout = stdout
        _EXITING.set()
        if not keep_signal_handlers:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            _STOP.clear()
            _ACTED.clear()
            COMMIT.reset()
        from . import workers
        workers.reset_abort()
