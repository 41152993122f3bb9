"""Report sections: the large family (``runs[].large``: realistic sizes, each case twice in
one worker) and devices side by side (runs ``NAME`` and ``NAME[device]`` of one adapter on
the same cases: a case whose verdicts differ between devices is a finding)."""
from __future__ import annotations

import re
from html import escape as E

LARGE_TITLE = "Large cases and determinism"
LARGE_INTRO = ("The large family (docs/large.md): rows of 10³–2·10⁵ classes, batches up to 10³, judged against the "
               "blocked-summation bound (KL-BOUND-7); each case is evaluated twice in a row by one worker and any "
               "bit of difference is a `nondeterministic` verdict.")
DEVICE_TITLE = "Devices side by side"
DEVICE_INTRO = ("The same cases on each device an adapter was asked for (`klconform run --devices`): cases whose "
                "verdicts against the canonical definition differ between the devices are findings.")
_DEVICE = re.compile(r"^(.*)\[(\w+)\]$")


def large_rows(model) -> list[list[str]]:
    rows = []
    for run in model.result.runs:
        entries = getattr(run, "large", None) or []
        if run.status != "ok" or not entries:
            continue
        tally: dict[str, int] = {}
        for e in entries:
            for cls in e.get("verdicts") or ["(none)"]:
                tally[cls] = tally.get(cls, 0) + 1
        # how close the matching cases come to their bound (KL-BOUND-7's tightness); a
        # discrepancy's own ratio is in its verdict
        errs = [e["err_over_bound"] for e in entries
                if e.get("verdicts") == ["match"] and e.get("err_over_bound") is not None]
        differs = [e for e in entries if e.get("repeat") == "differs"]
        largest = max(entries, key=lambda e: e.get("elements", 0))
        secs = [e["seconds"] for e in entries if e.get("seconds") is not None]
        rows.append([run.adapter, str(len(entries)), ", ".join(f"{k} {n}" for k, n in sorted(tally.items())),
                     f"{max(errs):.3g}" if errs else "-",
                     f"{len(differs)} differ" + (f" (e.g. {differs[0]['label']})" if differs else ""),
                     f"{largest['elements']:,}", f"{max(secs):.3f} s" if secs else "-"])
    return rows


def device_rows(model) -> list[list[str]]:
    runs = {r.adapter: r for r in model.result.runs if r.status == "ok"}
    rows = []
    for name, run in runs.items():
        m = _DEVICE.match(name)
        if not m or m.group(1) not in runs:
            continue
        base = runs[m.group(1)]
        a, b = _classes(base), _classes(run)
        common = sorted(set(a) & set(b))
        differ = [d for d in common if a[d] != b[d]]
        example = (f"case `{differ[0]}`: {', '.join(sorted(a[differ[0]])) or 'match'} on "
                   f"{base.env.get('device', 'cpu')}, {', '.join(sorted(b[differ[0]])) or 'match'} on {m.group(2)}"
                   if differ else "-")
        rows.append([base.adapter, m.group(2), str(len(common)), str(len(differ)), example])
    return rows


def _classes(run) -> dict[str, frozenset[str]]:
    out: dict[str, set[str]] = {}
    for v in run.verdicts:
        if v.against == "canonical":
            out.setdefault(v.case, set())
            if v.cls != "match":
                out[v.case].add(v.cls)
    return {d: frozenset(c) for d, c in out.items()}


_LARGE_HEAD = ["adapter", "large cases", "verdicts", "max err/bound of the matches", "repeated twice",
               "largest case (elements)", "slowest framework call"]
_DEVICE_HEAD = ["adapter", "device", "cases on both", "verdicts differ", "example"]


def markdown_section(model) -> list[str]:
    out = []
    for title, intro, head, rows in ((LARGE_TITLE, LARGE_INTRO, _LARGE_HEAD, large_rows(model)),
                                     (DEVICE_TITLE, DEVICE_INTRO, _DEVICE_HEAD, device_rows(model))):
        if rows:
            out += [f"## {title}", "", intro, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows] + [""]
    return out


def _code(text: str) -> str:
    """Markdown's `code` spans of an escaped text as HTML <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)


def html_section(model) -> str:
    parts = []
    for title, intro, head, rows in ((LARGE_TITLE, LARGE_INTRO, _LARGE_HEAD, large_rows(model)),
                                     (DEVICE_TITLE, DEVICE_INTRO, _DEVICE_HEAD, device_rows(model))):
        if rows:
            parts.append(f"<h2>{E(title)}</h2><p>{_code(E(intro))}</p><table><tr>" + "".join(f"<th>{E(h)}</th>" for h in head)
                         + "</tr>" + "".join("<tr>" + "".join(f"<td>{E(c)}</td>" for c in r) + "</tr>" for r in rows)
                         + "</table>")
    return "".join(parts)
