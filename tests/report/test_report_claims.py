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
