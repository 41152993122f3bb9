"""``klconform`` command line: the main job and report re-rendering.

    python -m klconform run    [options]              # every available adapter -> reports/latest/
    python -m klconform report RESULTS.json [--out DIR]  # re-render report.md / report.html
    python -m klconform list                           # the adapters a run would use

Exit status (documented in the README and in every report):
  0  no unexpected discrepancy
  1  an unexpected discrepancy: a discrepancy no known record covers, or a known record
     that no case showed (klconform/known/, strict)
  2  usage or input error (bad option, unknown framework, unreadable or
     schema-incompatible results file, output directory not writable) — one line on stderr
130 interrupted (completed adapters are kept in OUT/results.partial.json; the previous
     report in OUT is left intact)
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

EXIT_OK, EXIT_DISCREPANCY, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
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
def _csv(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="klconform", description="Cross-framework conformance of the KL-divergence loss.",
                epilog="Exit status: 0 no unexpected discrepancy, 1 unexpected discrepancy, 2 usage or input error.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    r = sub.add_parser("run", help="run every available adapter and write results.json, report.md, report.html")
    r.add_argument("--frameworks", metavar="NAMES",
                   help="comma-separated adapter names (e.g. torch.kl_div,mxnet.KLDivLoss@mxnet180) or framework "
                        "prefixes (torch); default: every registered adapter, plus NAME@ENV for each configured side "
                        "interpreter whose ENV starts with the adapter's framework prefix")
    r.add_argument("--adapter", action="append", default=[], metavar="MODULE:CLASS",
                   help="add a third-party adapter (repeatable; MODULE:CLASS@ENV for a side interpreter)")
    r.add_argument("--python", action="append", default=[], metavar="ENV=PATH",
                   help="interpreter for side environment ENV (repeatable; also KLCONFORM_PYTHON_<ENV>)")
    r.add_argument("--dtypes", metavar="LIST", help="comma-separated dtypes to keep (default: all)")
    r.add_argument("--examples", type=int, default=1000, metavar="N",
                   help="generated cases per adapter (default 1000), besides the curated cases")
    r.add_argument("--seed", type=int, default=0, help="corpus seed (default 0)")
    r.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"output directory (default {DEFAULT_OUT})")
    r.add_argument("--formats", default="json,md,html", metavar="LIST", help="any of json,md,html (default all)")
    r.add_argument("--case-timeout", type=float, default=20.0, metavar="S", help="per-case worker timeout (s)")
    r.add_argument("--batch-size", type=int, default=64, metavar="N", help="cases per worker round trip")
    r.add_argument("--shrink-rounds", type=int, default=6, metavar="N", help="counterexample shrinking rounds")
    r.add_argument("--quiet", action="store_true", help="no progress display")
    rep = sub.add_parser("report", help="re-render reports from a results.json")
    rep.add_argument("results", metavar="RESULTS.json")
    rep.add_argument("--out", default=None, metavar="DIR", help="output directory (default: the results file's)")
    rep.add_argument("--formats", default="md,html", metavar="LIST", help="any of json,md,html (default md,html)")
    sub.add_parser("list", help="list the adapters a run would use")
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
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
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


def expand_names(names: list[str] | None, known: dict[str, str], pythons: dict[str, str]) -> list[str]:
    """Adapter names to run: ``names`` with framework prefixes expanded (``torch`` ->
    every registered ``torch.*``); for None every registered adapter plus ``NAME@ENV`` for
    each configured side environment whose name starts with NAME's framework prefix
    (``mxnet180`` -> ``mxnet.KLDivLoss@mxnet180``)."""
    if names is None:
        out = list(known)
        for env in configured_envs(pythons):
            out += [f"{n}@{env}" for n in known if env.startswith(n.split(".", 1)[0].lower())]
        return out
    out = []
    for n in names:
        base, at, env = n.partition("@")
        if base not in known and ":" not in base and any(k.split(".", 1)[0] == base for k in known):
            out += [k + at + env for k in known if k.split(".", 1)[0] == base]
        else:
            out.append(n)
    return out


def resolve_specs(frameworks: str | None, adapters: list[str], pythons_opt: list[str]):
    from . import registry
    try:
        pythons = registry.parse_python_options(pythons_opt)
        known = registry.builtin_adapters()
        names = expand_names(_csv(frameworks), known, pythons)
        if frameworks is not None and not names and not adapters:
            raise UsageError(f"--frameworks {frameworks!r}: no adapter named")
        return registry.resolve(names, adapters, pythons=pythons, known=known)
    except registry.RegistryError as exc:
        raise UsageError(str(exc).splitlines()[0]) from None


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
def write_outputs(result, out: Path, formats: list[str]) -> list[Path]:
    """Write the requested files atomically (each via temp file + os.replace)."""
    from .report.html import render_html
    from .report.markdown import render_markdown
    from .report.summary import build_model
    from .resultsio import atomic_write_text, write_results
    written = []
    if "json" in formats:
        write_results(result, out / FILES["json"])
        written.append(out / FILES["json"])
    if "md" in formats or "html" in formats:
        model = build_model(result)
        if "md" in formats:
            atomic_write_text(out / FILES["md"], render_markdown(result, model))
            written.append(out / FILES["md"])
        if "html" in formats:
            atomic_write_text(out / FILES["html"], render_html(result, model))
            written.append(out / FILES["html"])
    return written


def exit_status(result) -> int:
    from .unexpected import unexpected_findings
    return EXIT_DISCREPANCY if any(unexpected_findings(r) for r in result.runs) else EXIT_OK


def reproduction_command(args) -> str:
    """The command that reproduces this run's results (output directory left out: the
    results do not depend on it)."""
    cmd = ["python", "-m", "klconform", "run", "--seed", str(args.seed), "--examples", str(args.examples)]
    if args.frameworks is not None:
        cmd += ["--frameworks", args.frameworks]
    for a in args.adapter:
        cmd += ["--adapter", a]
    for p in args.python:
        cmd += ["--python", p]
    if args.dtypes:
        cmd += ["--dtypes", args.dtypes]
    return shlex.join(cmd)


# ----------------------------------------------------------------------------- commands
def cmd_run(args) -> int:
    formats = parse_formats(args.formats)
    dtypes = parse_dtypes(args.dtypes)
    if args.examples < 0:
        raise UsageError(f"--examples {args.examples}: must be >= 0")
    out = prepare_out_dir(args.out)
    specs = resolve_specs(args.frameworks, args.adapter, args.python)
    if not specs:
        raise UsageError("no adapter to run")
    from . import engine, registry
    from .provenance import reference_identity
    from .results import RunResult
    from .resultsio import write_results
    import hypothesis

    progress = Progress(args.quiet)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    t0 = time.perf_counter()
    adapters = []
    for s in specs:   # a registered adapter whose module fails to import is a recorded skip
        try:
            adapters.append(registry.load_adapter_class(s.adapter_ref)())
        except registry.RegistryError as exc:
            adapters.append(exc)
    caps = [a.capabilities() for a, s in zip(adapters, specs) if not s.unavailable and not isinstance(a, Exception)]
    progress.line(f"building the corpus (seed {args.seed}, {args.examples} generated cases per adapter)")
    cases = engine.build_corpus(args.seed, args.examples, caps)
    if dtypes:
        cases = [c for c in cases if c.dtype in dtypes]
    hyp = {"version": hypothesis.__version__, "seed": args.seed, "max_examples": args.examples,
           "phases": ["generate"], "database": None, "derandomize": False,
           "strategy": "klconform.strategies.cases / cases_for per adapter (klconform.engine.build_corpus)",
           "curated": "klconform.curated.all_curated", "dtypes": dtypes or "all"}
    result = RunResult(schema_version=engine.SCHEMA_VERSION, seed=args.seed, hypothesis=hyp,
                       corpus_digest=engine.corpus_digest(cases), cases={c.digest: c.to_json() for c in cases},
                       runs=[], command=reproduction_command(args), started_at=started, complete=False,
                       reference=dict(reference_identity()))
    progress.line(f"{len(cases)} cases, {len(specs)} adapter(s)")
    partial = out / PARTIAL
    try:
        for i, (spec, adapter) in enumerate(zip(specs, adapters), 1):
            if isinstance(adapter, Exception):
                from .results import AdapterRun
                run_id = spec.run_id or spec.adapter_ref
                progress.line(f"[{i}/{len(specs)}] {run_id}: skipped (import_error: {adapter})")
                result.runs.append(AdapterRun(adapter=run_id, api="", env={}, status="import_error", reason=str(adapter)))
                continue
            run_id = spec.run_id or adapter.name
            progress.line(f"[{i}/{len(specs)}] {run_id}: starting worker")
            target = engine.open_target(spec, case_timeout=args.case_timeout, batch_size=args.batch_size)
            if not isinstance(target, engine.Target):
                progress.line(f"[{i}/{len(specs)}] {run_id}: skipped ({target.status}: {target.reason})")
                result.runs.append(target)
            else:
                res = engine.run_conformance([], cases, seed=args.seed, targets=[target], batch_size=args.batch_size,
                                             shrink_rounds=args.shrink_rounds, progress=progress.cases,
                                             hypothesis_settings=hyp, command=result.command)
                for d, cj in res.cases.items():
                    result.cases.setdefault(d, cj)
                run = res.runs[0]
                result.runs.append(run)
                n_bad = sum(v.cls != "match" for v in run.verdicts)
                progress.line(f"[{i}/{len(specs)}] {run_id}: {len(run.outcomes)} outcomes, {n_bad} discrepancy verdicts, "
                              f"observed {run.fingerprint.get('observed', {}).get('name', '?')}")
            result.elapsed_s = time.perf_counter() - t0
            write_results(result, partial, check=False)   # what is complete survives an interruption
    except KeyboardInterrupt:
        sys.stderr.write(f"\nklconform: interrupted; {len(result.runs)} completed adapter(s) kept in {partial}; "
                         f"the previous report in {out} is intact\n")
        return EXIT_INTERRUPTED
    result.complete = True
    result.elapsed_s = time.perf_counter() - t0
    progress.line("writing " + ", ".join(FILES[f] for f in formats))
    written = write_outputs(result, out, formats)
    try:
        partial.unlink()
    except FileNotFoundError:
        pass
    status = exit_status(result)
    progress.line(f"wrote {', '.join(str(p) for p in written)}; exit status {status}")
    return status


def cmd_report(args) -> int:
    from .resultsio import ResultsError, read_results
    formats = parse_formats(args.formats)
    try:
        result = read_results(args.results)
    except ResultsError as exc:
        raise UsageError(str(exc)) from None
    out = prepare_out_dir(args.out or Path(args.results).resolve().parent)
    from .provenance import reference_identity
    from .report.summary import reference_note
    if (result.reference or {}).get("digest") != reference_identity()["digest"]:
        sys.stderr.write(f"klconform: note: {reference_note(result)}\n")
    write_outputs(result, out, formats)
    return exit_status(result)


def cmd_list(args) -> int:
    specs = resolve_specs(None, [], [])
    for s in specs:
        print(f"{s.run_id or s.adapter_ref}\t{s.adapter_ref}\t{s.python or sys.executable}"
              + (f"\t(unavailable: {s.unavailable})" if s.unavailable else ""))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        args = build_parser().parse_args(argv)
        return {"run": cmd_run, "report": cmd_report, "list": cmd_list}[args.command](args)
    except UsageError as exc:
        msg = re.sub(r"\s+", " ", str(exc)).strip()
        sys.stderr.write(f"klconform: error: {msg}\n")
        return EXIT_USAGE
