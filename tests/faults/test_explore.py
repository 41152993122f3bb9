"""``klconform explore`` replays only what it needs of the frozen corpus: the drawn cases
first, then frozen cases only while a discrepancy kind the drawn cases showed has not been
seen there yet (what decides whether it is new) -- not all of the thousands of frozen
cases before the three it was asked to draw."""
from __future__ import annotations

import os
import re

from klconform import cli, frozen
from klconform.translate import translate_all
from tests.faults import faulty
from tests.faults.test_faults import F

COUNTS = F + "CountsCases"


def _taken() -> int:
    """How many frozen cases the counting double takes (what a full replay sends)."""
    return len(translate_all(frozen.load(), faulty.CountsCases().capabilities()))


def test_explore_with_three_examples_does_not_replay_the_frozen_corpus(tmp_path, capsys, monkeypatch):
    log = tmp_path / "sent.log"
    monkeypatch.setenv(faulty.COUNT_LOG_ENV, str(log))
    rc = cli.main(["explore", "--frameworks", COUNTS, "--examples", "3", "--seed", "1", "--shrink-rounds", "0",
                   "--quiet"])
    out, err = capsys.readouterr()
    assert rc in (cli.EXIT_OK, cli.EXIT_DISCREPANCY), err
    assert "Traceback" not in err
    sent = len(log.read_text().splitlines())
    taken = _taken()
    assert taken > 50                        # the replay this avoids
    assert 3 <= sent < taken // 2, (sent, taken)
    assert "fault.counts_cases" in out, out


def test_explore_still_finds_what_only_new_cases_show(tmp_path, capsys, monkeypatch):
    """Whatever it skipped, explore's findings are those of a full replay: a kind it calls
    new is shown by no frozen case (checked here against a full run of the frozen corpus)."""
    from klconform import engine
    from klconform.workers import WorkerSpec
    monkeypatch.setenv(faulty.COUNT_LOG_ENV, os.devnull)
    rc = cli.main(["explore", "--frameworks", COUNTS, "--examples", "3", "--seed", "1", "--shrink-rounds", "0",
                   "--quiet"])
    out, err = capsys.readouterr()
    new = [ln for ln in out.splitlines() if ": NEW " in ln or ": recorded " in ln]
    full = engine.run_conformance([WorkerSpec(COUNTS)], frozen.load(), shrink_rounds=0)
    kinds = {(v.against, v.cls, v.explained_by or "") for v in full.runs[0].verdicts if v.cls != "match"}
    for line in new:
        cls, against, point = re.search(r": (?:NEW|recorded \S+) (\S+) vs (\w+)(?: \(([^)]*)\))?:", line).groups()
        assert (against, cls, point or "") not in kinds, (line, kinds)
