"""``klconform dashboard INPUT... [--out DIR]``: the interop dashboard as a static site
(docs/dashboard.md).

Inputs are results files (``results.json``, ``results.json.gz``), baseline files
(``*.jsonl``) and directories of baseline files, plus klconform's committed baselines
unless ``--no-baselines``.  Writes ``index.html``, ``dashboard.json`` and
``dashboard.csv`` into DIR together (all replaced, or none: klconform.resultsio.write_set).
"""
from __future__ import annotations

import json
from pathlib import Path

# The parser is built for every klconform command: the model, the reference and the
# results reader are imported only when the dashboard is made.

FILES = ("index.html", "dashboard.json", "dashboard.csv")
DEFAULT_OUT = "reports/dashboard"


class DashboardError(Exception):
    """A bad input or an output that could not be written: one line (exit 2)."""


def add_parser(sub) -> None:
    d = sub.add_parser("dashboard", help="the interop dashboard: every SPEC clause x every adapter-version, scores, "
                                         "history -> DIR/index.html, dashboard.json, dashboard.csv")
    d.add_argument("inputs", nargs="+", metavar="RESULTS",
                   help="results.json(.gz) files, baseline .jsonl files, or directories of baseline files")
    d.add_argument("--out", default=None, metavar="DIR",
                   help=f"output directory, relative to where the command was typed (default {DEFAULT_OUT} of the project)")
    d.add_argument("--no-baselines", action="store_true",
                   help="leave out klconform's committed baselines (klconform/data/baselines/)")


def load_inputs(paths, committed: bool = True):
    """``(results, baselines)`` as :func:`klconform.report.dashboard.build` takes them, in
    the order given (the committed baselines last); DashboardError for an input that is
    none of these."""
    from .. import baseline
    from ..resultsio import ResultsError, read_results
    results, baselines = [], []
    try:
        for p in paths:
            path = Path(p)
            if path.is_dir():
                found = sorted(path.glob("*" + baseline.SUFFIX))
                if not found:
                    raise DashboardError(f"{p}: a directory without baseline files (*{baseline.SUFFIX})")
                baselines += [(str(f), baseline.read(f)) for f in found]
            elif path.suffix == baseline.SUFFIX:
                if not path.is_file():
                    raise DashboardError(f"{p}: no such baseline file")
                baselines.append((str(p), baseline.read(path)))
            else:
                results.append((str(p), read_results(path)))
        if committed:
            baselines += [(f"klconform/data/baselines/{f.name}", baseline.read(f))
                          for f in sorted(baseline.BASELINE_DIR.glob("*" + baseline.SUFFIX))]
    except (ResultsError, baseline.BaselineError) as exc:
        raise DashboardError(str(exc).splitlines()[0]) from None
    return results, baselines


def render_files(board) -> dict[str, object]:
    """The site's files (of a :class:`klconform.report.dashboard.Dashboard`), name -> render
    (a callable returning the text)."""
    from . import dashboard, dashboard_html
    return {"index.html": lambda: dashboard_html.render(board),
            "dashboard.json": lambda: json.dumps(board.to_json(), sort_keys=True, indent=1, ensure_ascii=False,
                                                 allow_nan=False) + "\n",
            "dashboard.csv": lambda: dashboard.to_csv(board)}


def run(args, prepare_out) -> int:
    """The command: inputs read, the model built (:class:`dashboard.NothingToShow` when no
    clause was compared), ``prepare_out()`` the output directory, the files written
    together; one line on stdout saying what was shown."""
    from ..resultsio import write_set
    from .dashboard import build
    results, baselines = load_inputs(args.inputs, committed=not args.no_baselines)
    board = build(results, baselines)
    out = prepare_out()
    done = write_set(out, render_files(board))
    if done.problems:
        raise DashboardError("; ".join(done.problems))
    shown = [c for c in board.columns if c.in_matrix]
    line = (f"dashboard: {len(shown)} adapter-versions ({sum(c.detail == 'clauses' for c in shown)} with clause detail) "
            f"x {sum(r.type == 'clause' for r in board.rows)} SPEC clauses")
    for s in board.scores:
        v = s["interop"]
        line += f"; interop {'-' if v is None else f'{100 * v:.0f}%'} on corpus {s['corpus_digest']}"
    steps = sum(len(g["steps"]) for g in board.history.get("groups", []))
    print(f"{line}; {steps} version step(s); wrote {', '.join(str(out / f) for f in FILES)}")
    return 0
