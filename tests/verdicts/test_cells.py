"""The special-value table (klconform/cells.py) against SPEC.md §2 and the reference, and the
frozen corpus' cell cases: every expressible cell has one."""
import numpy as np
import pytest

from klconform import cells, frozen
from klconform.case import Case
from klconform.reference import evaluate
from klconform.reference.family import Point
from klconform.reference.spec import SPEC_PATH, clause_ids, clause_text


def _rules():
    return list(cells.RULES) + [rule for _, rule in cells.FAMILY_RULES.values()]


@pytest.mark.parametrize("rule", _rules(), ids=lambda r: r.clause)
def test_each_rule_quotes_its_clause(rule):
    assert rule.clause in clause_ids()
    text = clause_text(rule.clause)
    for quote in rule.quotes:
        assert quote in text, f"{rule.clause} no longer says {quote!r}"


def test_rules_are_checked_in_spec_order():
    section = SPEC_PATH.read_text(encoding="utf-8").split("## 2.", 1)[1].split("\n## ", 1)[0]
    assert "They are checked in this order: the first that applies decides." in " ".join(section.split())
    ids = clause_ids()
    order = [r.clause for r in cells.RULES[:-1]]
    assert order == sorted(order, key=ids.index)
    assert all(f"**{c}**" in section for c in order)
    assert cells.RULES[-1].clause == "KL-DEF-1"      # the formula: what no convention decides


def test_encodings_express_what_section_3_says():
    # log encodings: p = exp(t) >= +0 (no -0, no negative); logits: softmax in [0, 1] or NaN
    assert len(cells.all_cells()) == 10 * 10 + 10 * 7 + 10 * 5 + 7 * 10 + 7 * 7 + 7 * 5
    assert "-0,0/logprob,prob" in cells.inexpressible("logprob", "prob")
    assert "0,gt1/prob,logits" in cells.inexpressible("prob", "logits")
    assert "0,+inf/prob,logits" in cells.inexpressible("prob", "logits")
    t = np.array([-np.inf, -90.0, -1.5, 0.0, 0.5, np.inf, np.nan, -0.0])
    assert cells.entry_classes(t, "logprob", "float32").tolist() == [
        "0", "subnormal", "lt1", "1", "gt1", "+inf", "nan", "1"]
    z = np.array([[-np.inf, 0.0], [0.0, -np.inf], [-1.0, 0.0], [-90.0, 0.0], [np.inf, 0.0], [-np.inf, -np.inf]])
    assert cells.entry_classes(z, "logits", "float32").tolist() == [
        ["0", "1"], ["1", "0"], ["lt1", "lt1"], ["subnormal", "lt1"], ["nan", "nan"], ["nan", "nan"]]
    x = np.array([0.0, -0.0, 2.0**-130, 0.5, 1.0, 3.0, np.inf, np.nan, -2.0**-130, -np.inf])
    assert cells.entry_classes(x, "prob", "float32").tolist() == list(cells.CLASSES)


def _kind(x: float) -> str:
    return ("nan" if np.isnan(x) else "+inf" if x == np.inf else "-inf" if x == -np.inf
            else "zero" if x == 0 else "finite")


@pytest.fixture(scope="module")
def corpus():
    return frozen.load()


@pytest.fixture(scope="module")
def cell_cases(corpus):
    return [c for c in corpus if c.label.startswith("cell/")]


def test_every_expressible_cell_has_a_frozen_case(cell_cases):
    labelled = {c.label.split("/", 1)[1] for c in cell_cases}
    assert labelled == set(cells.all_cells())
    for c in cell_cases:   # the label says the truth: the case reaches its cell
        assert c.label.split("/", 1)[1] in cells.cells_of(c), c.label


@pytest.mark.parametrize("point", ["canonical", *cells.FAMILY_RULES])
def test_reference_gives_the_term_the_table_decides(cell_cases, point):
    """At every cell, the reference's term (entry 0 of the cell case, reduction none) is the
    kind SPEC §2's rules give: the table and the reference read SPEC alike."""
    fields = {} if point == "canonical" else cells.FAMILY_RULES[point][0]
    wrong, done = [], set()
    for c in cell_cases:
        key = c.label.split("/", 1)[1]
        if key in done:
            continue
        done.add(key)
        got = _kind(evaluate(c.replace(reduction="none"), Point(reduction="none", **fields)).value[0, 0])
        want = cells.decide(key, point).term
        ok = got == want or (want in ("finite", "q") and got in ("finite", "zero"))
        if not ok:
            wrong.append((key, cells.decide(key, point), got))
    assert wrong == []


def test_decide_names_the_first_clause_that_applies():
    assert cells.decide("+inf,0/prob,prob") == cells.Decision("KL-ZERO-2", "+inf")   # before KL-INF-1
    assert cells.decide("0,nan/prob,prob") == cells.Decision("KL-INVALID-1", "nan")
    assert cells.decide("+inf,+inf/logprob,logprob") == cells.Decision("KL-INF-1", "nan")
    assert cells.decide("-0,+inf/prob,prob") == cells.Decision("KL-ZERO-1", "zero")
    assert cells.decide("negative,lt1/prob,prob", "negative=zero") == cells.Decision("KL-NEG-ZERO", "zero")
    assert cells.decide("lt1,negative/prob,prob", "negative=zero").clause == "KL-INVALID-1"
    assert cells.decide("0,0/logprob,logprob", "zero_inf=nan") == cells.Decision("KL-ZERO-3", "nan")
    assert cells.decide("0,lt1/prob,logprob", "zero_inf=nan").clause == "KL-ZERO-1"
    assert cells.decide("0,gt1/prob,prob", "generalised") == cells.Decision("KL-GEN-2", "q")


def test_cells_of_counts_broadcast_entries():
    c = Case(target=[[0.0], [0.5]], pred=[[0.25, np.inf]], dtype="float64", pred_kind="prob", reduction="none")
    assert cells.cells_of(c) == {"0,lt1/prob,prob", "0,+inf/prob,prob", "lt1,lt1/prob,prob", "lt1,+inf/prob,prob"}
