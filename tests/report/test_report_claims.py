"""Documentation claims: the shipped file is well-formed and sourced; each check kind
decides holds / does not hold / not checked from results alone."""
from __future__ import annotations

import re

import pytest

from klconform.registry import builtin_adapters
from klconform.report import claims as claims_mod
from klconform.report.claims import FAILS, HOLDS, UNCHECKED, Claim, check_claim, load_claims


def test_shipped_claims_load_and_are_sourced():
    cs = load_claims()
    assert len(cs) >= 15
    names = set(builtin_adapters())
    seeds = {c.source.split(" ")[0] for c in cs if c.source.startswith("seeds/")}
    assert {"seeds/001_536cac8297eb12cd.txt", "seeds/002_d2a7130b4c17f5cc.txt", "seeds/003_f77502d9f4837bb7.txt"} <= seeds
    for c in cs:
        assert c.quote.strip() and c.source.strip()
        assert all(s == "*" or s in names for s in c.subject), (c.id, c.subject)
    topics = {c.topic for c in cs}
    assert {"reduction", "epsilon", "NaN behaviour", "argument order", "from_logits default"} <= topics


def plain(text: str) -> str:
    """Text without markdown links, backticks, notebook JSON escapes; whitespace collapsed."""
    text = re.sub(r"\[([^\]\n]*)\]\([^)\n]*\)", r"\1", text)
    text = text.replace("`", "").replace('\\"', '"').replace("\\n", " ")
    return " ".join(text.split())


def test_seed_quotes_are_in_the_seed_documents():
    from pathlib import Path
    seeds = Path(__file__).resolve().parents[3] / "shared" / "seeds"
    if not seeds.is_dir():
        pytest.skip("seed documents not present")
    for c in load_claims():
        if c.source.startswith("seeds/"):
            text = plain((seeds / c.source.split(" ")[0].removeprefix("seeds/")).read_text())
            for fragment in c.quote.split("..."):   # " ... " joins verbatim excerpts
                key = plain(fragment)[:40]
                assert key in text, (c.id, key)


def test_malformed_claims_are_one_line_errors(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[[claim]]\nid = "x"\nsubject = "a"\ntopic = "t"\nsource = "s"\nquote = "q"\n'
                 'check = { kind = "guess" }\n')
    with pytest.raises(claims_mod.ClaimsError, match="check.kind 'guess'"):
        load_claims(p)
    p.write_text('[[claim]]\nid = "x"\nsubject = "a"\ntopic = "t"\nsource = "s"\nquote = "q"\n'
                 'check = { kind = "fingerprint", expect = { colour = "red" } }\n')
    with pytest.raises(claims_mod.ClaimsError, match="colour"):
        load_claims(p)


def claim(subject, **check) -> Claim:
    return Claim(id="t", subject=(subject,), topic="t", source="test", quote="q", check=check)


def status(result, c, run):
    return {r.run: r.status for r in check_claim(c, result)}[run]


def test_fingerprint_checks(recorded):
    assert status(recorded, claim("double.target_eps", kind="fingerprint",
                                  expect={"epsilon": "target_log_eps", "eps": 1e-12}), "double.target_eps") == HOLDS
    assert status(recorded, claim("double.target_eps", kind="fingerprint", expect={"epsilon": "none"}),
                  "double.target_eps") == FAILS
    assert status(recorded, claim("double.swapped_sum", kind="fingerprint",
                                  expect={"swap": True, "reduction[batchmean]": "sum"}), "double.swapped_sum") == HOLDS
    assert status(recorded, claim("double.canonical", kind="fingerprint",
                                  expect={"reduction[distribution]": "distribution"}), "double.canonical") == UNCHECKED


def test_value_and_relation_checks(recorded):
    zero = claim("*", kind="value", cases={"label": "curated/equal"}, expect=0.0)
    res = {r.run: r for r in check_claim(zero, recorded)}
    assert res["double.canonical"].status == HOLDS and res["double.swapped_sum"].status == HOLDS
    # eps = 1e-12 inside log(p) biases KL(P||P) by ~1e-12: beyond the float64 bound, within float32's
    assert res["double.target_eps"].status == FAILS and "float64" in res["double.target_eps"].evidence
    f32 = claim("double.target_eps", kind="value", cases={"label": "curated/equal", "dtype": "float32"}, expect=0.0)
    assert status(recorded, f32, "double.target_eps") == HOLDS
    inf = claim("*", kind="value", cases={"label": "curated/one_hot_q_zero"}, expect="inf")
    got = {r.run: r.status for r in check_claim(inf, recorded)}
    # swapped: KL(Q||P) with Q having zeros where P > 0 ... and P zero where Q > 0 -> also +inf
    assert got["double.canonical"] == HOLDS
    factor = claim("double.canonical", kind="value", cases={"label": "curated/hand_checked_example", "reduction": "mean"},
                   expect={"point": {"reduction": "sum"}, "factor": 0.25})
    assert status(recorded, factor, "double.canonical") == HOLDS
    wrong = claim("double.canonical", kind="value", cases={"label": "curated/hand_checked_example", "reduction": "mean"},
                  expect={"point": {"reduction": "sum"}, "factor": 0.5})
    assert status(recorded, wrong, "double.canonical") == FAILS
    order = claim("double.canonical", kind="relation", left={"label": "curated/seed_mxnet_d2_vs_d1"},
                  right={"label": "curated/seed_mxnet_d3_vs_d1"}, op="<", pair_on=["dtype", "reduction", "pred_kind"])
    assert status(recorded, order, "double.canonical") == HOLDS
    order_rev = dict(order.check, op=">")
    assert status(recorded, claim("double.canonical", **order_rev), "double.canonical") == FAILS


def test_missing_subject_is_not_checked(recorded):
    res = check_claim(claim("mxnet.KLDivLoss", kind="value", cases={"label": "x"}, expect=0.0), recorded)
    assert [(r.run, r.status) for r in res] == [(None, UNCHECKED)]
    assert "no run of mxnet.KLDivLoss" in res[0].evidence


def test_printed_values_to_the_printed_precision(recorded):
    # KL([.3,.4,.1,.2] || [.2,.5,.2,.1]) summed = 0.101696831...: rounded 0.1017, truncated 0.1016
    sel = {"label": "curated/seed_mxnet_d2_vs_d1", "reduction": "sum"}
    res = {p: check_claim(claim("double.canonical", kind="value", cases=sel, expect={"printed": p}), recorded)[0]
           for p in ("0.1017", "0.1016", "0.1015", "0.10")}
    assert res["0.1017"].status == HOLDS and "truncated" not in res["0.1017"].evidence
    assert res["0.1016"].status == HOLDS and "truncated, not rounded" in res["0.1016"].evidence
    assert res["0.1015"].status == FAILS and "off by" in res["0.1015"].evidence
    assert res["0.10"].status == HOLDS
    assert "is the canonical value" in res["0.1017"].evidence
    # the swapped+sum double returns KL(Q||P): the printed KL(P||Q) is not its value
    swapped = claim("double.swapped_sum", kind="value", cases=sel, expect={"printed": "0.1017"})
    assert status(recorded, swapped, "double.swapped_sum") == FAILS
    vals, tols = claims_mod._printed(["0.916", "-3.08e-06"])
    assert list(vals) == [0.916, -3.08e-06] and tols[0] == pytest.approx(5e-4) and tols[1] == pytest.approx(5e-9)
    n = check_claim(claim("double.canonical", kind="value", cases=sel, expect={"printed": ["0.1017", "0"]}), recorded)[0]
    assert n.status == FAILS and "2 are printed" in n.evidence


def test_batch_size_relation(recorded):
    """batchmean x batch size == sum: the canonical double divides by the broadcast batch size;
    the swapped+sum double applies sum for batchmean, so the divisor is 1."""
    c = claim("*", kind="relation", left={"reduction": "batchmean"}, right={"reduction": "sum"}, op="==",
              left_factor="batch_size", pair_on=["dtype", "pred_kind", "target_kind", "target", "pred",
                                                 "weight", "sample_weight", "class_axis", "batch_axis"])
    res = {r.run: r for r in check_claim(c, recorded)}
    assert res["double.canonical"].status == HOLDS
    assert "broadcast" not in res["double.canonical"].evidence
    assert res["double.swapped_sum"].status == FAILS and "observed divisor 1" in res["double.swapped_sum"].evidence
    # broadcast: pred (1, 2) against target (3, 2) -- the batch size is the broadcast one (3)
    row = claim("double.canonical", kind="relation", left={"label": "curated/broadcast_pred_row", "reduction": "batchmean"},
                right={"label": "curated/broadcast_pred_row", "reduction": "sum"}, op="==", left_factor="batch_size",
                pair_on=["dtype", "pred_kind", "target_kind"])
    assert status(recorded, row, "double.canonical") == HOLDS
    wrong = dict(row.check, left_factor=None)
    with pytest.raises(claims_mod.ClaimsError, match="left_factor"):
        claims_mod._validate("x", {"id": "x", "subject": "a", "topic": "t", "source": "s", "quote": "q", "check": wrong})


def test_shape_checks(recorded):
    scalar = claim("double.canonical", kind="shape", cases={"reduction": ["sum", "batchmean"]}, of="output", expect="scalar")
    assert status(recorded, scalar, "double.canonical") == HOLDS
    r = check_claim(claim("double.canonical", kind="shape", cases={"reduction": "sum"}, of="output", expect="input"),
                    recorded)[0]
    assert r.status == FAILS and "input shape" in r.evidence
    # the doubles broadcast: a "same shape only" requirement does not hold, with the pairs named
    same = check_claim(claim("double.canonical", kind="shape", cases={"label": "*"}, of="accepted", expect="same"),
                       recorded)[0]
    assert same.status == FAILS and "pred [1, 2] / target [3, 2]" in same.evidence
    # equal counts that do not broadcast are sent only to adapters declaring reshaped_target
    # (KL-SHAPE-3; the doubles do not): not checkable here, and said why
    count = check_claim(claim("double.canonical", kind="shape", cases={"label": "*"}, of="accepted", expect="same_count"),
                        recorded)[0]
    assert count.status == UNCHECKED and "target_sent_shape" in count.evidence and "accepted" in count.evidence
    for bad in ({"of": "output", "expect": "same"}, {"of": "size", "expect": "scalar"}):
        with pytest.raises(claims_mod.ClaimsError):
            claims_mod._validate("x", {"id": "x", "subject": "a", "topic": "t", "source": "s", "quote": "q",
                                       "check": {"kind": "shape", "cases": {}, **bad}})


def test_shrunk_counterexamples_are_not_selected(recorded):
    """A shrunk counterexample keeps its corpus case's label; a claim about a documented
    example must not judge it."""
    for run in recorded.runs:
        shrunk = {cx["case"] for cx in run.counterexamples.values() if cx.get("case") != cx.get("found_as")}
        assert not shrunk & set(claims_mod.select(recorded, run, {"label": "*"}))
    assert any(cx.get("case") != cx.get("found_as") for run in recorded.runs for cx in run.counterexamples.values())
