"""The prose cannot drift from what it names.

Every known-record id, SPEC clause id, adapter name and ``klconform run`` option that the
documentation mentions must exist in its one home: record ids in ``klconform/known/*.toml``,
clause ids in ``reference/SPEC.md``, adapter names in the registry (or, for unregistered
variants, in the class a ``MODULE:CLASS`` reference next to them names), options in
``klconform.cli.build_parser()``.  Each check reads those homes, never a copy, and each
has a meta-check that its pattern really finds the things it checks (a scanner that
matches nothing would pass silently).  Failures read ``FILE:LINE: ...``.
"""
from __future__ import annotations

import argparse
import importlib
import re
import tomllib
from pathlib import Path

import pytest

from klconform.cli import build_parser
from klconform.reference.spec import clause_ids
from klconform.registry import builtin_adapters

ROOT = Path(__file__).resolve().parents[2]
KNOWN_DIR = ROOT / "klconform" / "known"
CLAIMS = ROOT / "klconform" / "claims.toml"
README = ROOT / "README.md"
FRAMEWORK_DOCS = sorted((ROOT / "docs" / "frameworks").glob("*.md"))


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def doc_files() -> list[Path]:
    """Where ids are cited: the README, every doc, the spec, the claims and the record
    files themselves (their notes cross-reference other records)."""
    return [README, *sorted((ROOT / "docs").rglob("*.md")), ROOT / "reference" / "SPEC.md",
            CLAIMS, *sorted(KNOWN_DIR.glob("*.toml"))]


def record_ids() -> set[str]:
    ids: set[str] = set()
    for f in sorted(KNOWN_DIR.glob("*.toml")):
        ids |= {r["id"] for r in tomllib.loads(f.read_text(encoding="utf-8")).get("discrepancy", [])}
    return ids


def claim_ids() -> set[str]:
    return {c["id"] for c in tomllib.loads(CLAIMS.read_text(encoding="utf-8"))["claim"]}


def framework_prefixes() -> tuple[str, ...]:
    """Record ids start with their framework's name, hyphenated (``tf_keras`` -> ``tf-keras``)."""
    return tuple(sorted({n.split(".")[0].replace("_", "-") for n in builtin_adapters()}, key=len, reverse=True))


# ---------------------------------------------------------------- scanners (pure: text in, hits out)
def id_pattern(prefixes) -> re.Pattern:
    # framework prefix plus at least two hyphenated words, so "keras-team" (a GitHub owner)
    # or "torch-2.13.0" is not taken for an id; "." is allowed inside (mxnet-1.8-...).
    alt = "|".join(map(re.escape, prefixes))
    return re.compile(rf"(?<![\w/.-])(?:{alt})(?:-[a-z0-9.]+){{2,}}(?![A-Za-z0-9_/-])")


CLAUSE_RE = re.compile(r"(?<![\w-])KL-[A-Z0-9]+(?:-[A-Z0-9]+)*(-\*)?")
CLAUSE_ID_SYNTAX = {"KL-AREA-N"}   # SPEC.md's description of the id format, not a citation
ID_DEFINITION = re.compile(r'^\s*id\s*=\s*"')   # a record's or claim's own id line


def scan(text: str, pattern: re.Pattern, skip_line=None):
    """``(line number, match)`` for every hit of ``pattern`` in ``text``."""
    for no, line in enumerate(text.splitlines(), 1):
        if skip_line is not None and skip_line.match(line):
            continue
        for m in pattern.finditer(line):
            yield no, m


def stale_record_ids(name: str, text: str, known: set[str], prefixes) -> tuple[list[str], set[str]]:
    """Problems (``name:line: ...``) and the known ids found."""
    problems, found = [], set()
    for no, m in scan(text, id_pattern(prefixes), ID_DEFINITION):
        ident = m.group(0).rstrip(".")   # a sentence may end right after an id
        if ident in known:
            found.add(ident)
        else:
            problems.append(f"{name}:{no}: unknown record id {ident!r} (not in klconform/known/*.toml)")
    return problems, found


def stale_clause_ids(name: str, text: str, clauses: set[str]) -> tuple[list[str], set[str]]:
    problems, found = [], set()
    for no, m in scan(text, CLAUSE_RE):
        ident, wildcard = m.group(0), m.group(1)
        if ident in CLAUSE_ID_SYNTAX:
            continue
        if wildcard:   # "KL-BOUND-*": some clause must carry the prefix
            ok = any(c.startswith(ident[:-1]) for c in clauses)
        else:
            ok = ident in clauses
        if ok:
            found.add(ident)
        else:
            problems.append(f"{name}:{no}: unknown SPEC clause id {ident!r} (not in reference/SPEC.md)")
    return problems, found


# A command mention sets the context of the options that follow it in the same paragraph.
COMMAND_RE = re.compile(r"(?:bootstrap\.py|klconform)\s+(run|report|list|explore|corpus|test|env|lock)\b|\bpytest\b|\bpip(?:-compile)?\b|\buv\b")
OPTION_RE = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
UNCHECKED = "other tool"


def option_mentions(text: str):
    """``(line, option, command)`` for every ``--option`` in ``text``; ``command`` is the
    klconform subcommand it was written for (``None``: no command named before it in its
    paragraph; ``UNCHECKED``: pytest's, pip's, ...)."""
    context = None
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            context = None
            continue
        events = [(m.start(), "cmd", m) for m in COMMAND_RE.finditer(line)]
        events += [(m.start(), "opt", m) for m in OPTION_RE.finditer(line)]
        for _, kind, m in sorted(events, key=lambda e: e[0]):
            if kind == "cmd":
                sub = m.group(1)
                context = sub if sub in ("run", "report", "list", "explore") else UNCHECKED
            else:
                yield no, m.group(0), context


def parser_options() -> dict[str, set[str]]:
    """``{subcommand: {option strings}}`` read from the real CLI parser."""
    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: set(p._option_string_actions) for name, p in subs.choices.items()}


def stale_options(name: str, text: str, options: dict[str, set[str]]) -> tuple[list[str], set[str]]:
    problems, found = [], set()
    every = set().union(*options.values())
    for no, opt, command in option_mentions(text):
        if command == UNCHECKED:
            continue
        allowed = options.get(command, every) if command else every
        where = f"klconform {command}" if command else "any klconform command"
        if opt in allowed:
            found.add(opt)
        else:
            problems.append(f"{name}:{no}: option {opt!r} is not an option of {where} (klconform.cli.build_parser)")
    return problems, found


ADAPTER_REF_RE = re.compile(r"\b((?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*):([A-Z]\w*)\b")


def adapter_name_re(prefixes) -> re.Pattern:
    alt = "|".join(re.escape(p.replace("-", "_")) for p in prefixes)
    return re.compile(rf"`((?:{alt})\.[A-Za-z_]\w*)(?:@(\w+))?`")


def referenced_adapter_names(text: str) -> dict[str, str]:
    """``{adapter name: "module:Class"}`` for the ``module:Class`` references in ``text``
    whose module imports (adapter modules never import their framework at top level)."""
    out = {}
    for m in ADAPTER_REF_RE.finditer(text):
        module, cls = m.groups()
        if not module.startswith("klconform.adapters."):
            continue
        obj = getattr(importlib.import_module(module), cls)
        out[obj.name] = f"{module}:{cls}"
    return out


def side_envs() -> set[str]:
    import configparser
    ini = configparser.ConfigParser()
    ini.read(ROOT / "tox.ini")
    return {s.removeprefix("testenv:worker-") for s in ini.sections() if s.startswith("testenv:worker-")}


def stale_adapter_names(name: str, text: str, registered: set[str], prefixes, envs: set[str]):
    problems, found = [], set()
    by_ref = referenced_adapter_names(text)
    for no, m in scan(text, adapter_name_re(prefixes)):
        adapter, env = m.groups()
        if adapter not in registered and adapter not in by_ref:
            problems.append(f"{name}:{no}: adapter {adapter!r} is neither registered "
                            f"(klconform.registry.builtin_adapters) nor named by a MODULE:CLASS in this file")
        elif env is not None and env not in envs:
            problems.append(f"{name}:{no}: {adapter}@{env}: no [testenv:worker-{env}] in tox.ini")
        else:
            found.add(adapter)
    return problems, found


# ---------------------------------------------------------------- the checks
def _all(check, files, *args):
    problems, found = [], set()
    for f in files:
        p, h = check(_rel(f), f.read_text(encoding="utf-8"), *args)
        problems += p
        found |= h
    return problems, found


def test_every_record_id_cited_exists():
    problems, found = _all(stale_record_ids, doc_files(), record_ids() | claim_ids(), framework_prefixes())
    assert not problems, "\n".join(problems)
    # meta: the pattern sees real ids (the framework docs cite dozens)
    assert len(found & record_ids()) >= 30, sorted(found)


def test_every_record_is_documented_in_its_framework_notes():
    """Drift the other way: a record added without a word in docs/frameworks/."""
    _, found = _all(stale_record_ids, FRAMEWORK_DOCS, record_ids(), framework_prefixes())
    missing = sorted(record_ids() - found)
    assert not missing, f"records not cited in docs/frameworks/*.md: {missing}"


def test_every_record_id_is_visible_to_the_scanner():
    # an id the pattern cannot match would never be checked anywhere
    pattern = id_pattern(framework_prefixes())
    invisible = sorted(i for i in record_ids() if not pattern.fullmatch(i))
    assert not invisible, invisible


def test_every_clause_id_cited_exists():
    clauses = set(clause_ids())
    problems, found = _all(stale_clause_ids, doc_files(), clauses)
    assert not problems, "\n".join(problems)
    assert len(found) >= 40, sorted(found)   # SPEC.md alone cites its own clauses
    invisible = sorted(c for c in clauses if not CLAUSE_RE.fullmatch(c))
    assert not invisible, invisible


def test_every_adapter_name_in_framework_notes_exists():
    registered = set(builtin_adapters())
    problems, found = _all(stale_adapter_names, FRAMEWORK_DOCS, registered, framework_prefixes(), side_envs())
    assert not problems, "\n".join(problems)
    assert registered <= found, f"framework notes do not name {sorted(registered - found)}"


def test_every_run_option_in_readme_exists():
    options = parser_options()
    problems, found = _all(stale_options, [README], options)
    assert not problems, "\n".join(problems)
    assert len(found & options["run"]) >= 5, sorted(found)


# ---------------------------------------------------------------- the scanners can fail
def test_scanners_report_file_line_and_the_stale_id():
    text = ("intro\n"
            "see `torch-no-such-record` and mxnet-1.8-divides-by-non-batch-elements.\n"
            "clause KL-NO-SUCH-9, family KL-BOUND-*, keras-team/keras#19520\n")
    known = {"mxnet-1.8-divides-by-non-batch-elements"}
    problems, found = stale_record_ids("X.md", text, known, ("torch", "mxnet", "keras"))
    assert problems == ["X.md:2: unknown record id 'torch-no-such-record' (not in klconform/known/*.toml)"]
    assert found == known
    problems, found = stale_clause_ids("X.md", text, {"KL-BOUND-1"})
    assert problems == ["X.md:3: unknown SPEC clause id 'KL-NO-SUCH-9' (not in reference/SPEC.md)"]
    assert found == {"KL-BOUND-*"}


def test_option_context_follows_the_command_named_before_it():
    text = ("Run `python3 bootstrap.py run --examples 5 --bogus`; `python -m klconform report r.json --out D`\n"
            "and `python3 bootstrap.py test --hypothesis-profile=ci`.\n"
            "\n"
            "`--adapter x:Y` with no command.\n")
    options = {"run": {"--examples", "--adapter", "--out"}, "report": {"--out"}, "list": set()}
    assert list(option_mentions(text)) == [
        (1, "--examples", "run"), (1, "--bogus", "run"), (1, "--out", "report"),
        (2, "--hypothesis-profile", UNCHECKED), (4, "--adapter", None)]
    problems, _ = stale_options("R.md", text, options)
    assert problems == ["R.md:1: option '--bogus' is not an option of klconform run (klconform.cli.build_parser)"]


def test_adapter_names_need_registration_or_a_class_reference():
    text = ("`torch.kl_div` and `torch.nope` and `mxnet.KLDivLoss@nowhere`\n"
            "`keras.KLDivergence_dtype_arg` via `--adapter klconform.adapters.keras_kldivergence:KerasKLDivergenceDtypeArg`\n")
    problems, found = stale_adapter_names("F.md", text, {"torch.kl_div", "mxnet.KLDivLoss"},
                                          ("torch", "mxnet", "keras"), {"mxnet180"})
    assert problems == [
        "F.md:1: adapter 'torch.nope' is neither registered (klconform.registry.builtin_adapters) "
        "nor named by a MODULE:CLASS in this file",
        "F.md:1: mxnet.KLDivLoss@nowhere: no [testenv:worker-nowhere] in tox.ini"]
    assert found == {"torch.kl_div", "keras.KLDivergence_dtype_arg"}


@pytest.mark.parametrize("text", ["issue 5", "(issue 3)", "H9 item 2"])
def test_tracker_reference_pattern_matches(text):
    assert TRACKER_RE.search(text)


# Our own tracker's references ("issue 5", "(issue 3 item 2)", "H9") mean nothing to a
# reader of the repository; upstream ones carry the project (pytorch#89558, PR #18423).
TRACKER_RE = re.compile(r"\b[Ii]ssue \d+\b(?! ?#)|(?<![\w#])H\d+\b")


def test_no_internal_tracker_references():
    files = [*ROOT.glob("*.md"), *ROOT.glob("*.py"), *ROOT.glob("*.toml")]
    for sub in ("klconform", "reference", "adapters", "tests", "docs", "benchmarks", "examples"):
        for ext in ("py", "md", "toml"):
            files += (ROOT / sub).rglob(f"*.{ext}")
    problems = []
    for f in sorted(set(files)):
        if "__pycache__" in f.parts or f == Path(__file__).resolve():   # this file quotes the patterns
            continue
        for no, m in scan(f.read_text(encoding="utf-8"), TRACKER_RE):
            problems.append(f"{_rel(f)}:{no}: tracker reference {m.group(0)!r}")
    assert not problems, "\n".join(problems)
