"""A known record whose case condition no sent case can meet is not applicable: neither
required (strict check) nor a failure (e.g. `run --dtypes float64` and a float16 record)."""
from klconform import engine, records
from klconform.curated import all_curated
from klconform.facts import facts

import kl_doubles as D

RECORD = '''
[[discrepancy]]
id = "sums-instead-of-averaging"
class = "semantic"
against = "canonical"
clauses = ["KL-RED-MEAN"]
when = "mean sums"
match = { reduction = "mean" }
explained_by = "sum*"
citation = "https://example.invalid"

[[discrepancy]]
id = "only-in-float16"
class = "special_value"
against = "canonical"
clauses = ["KL-DTYPE-3"]
when = "float16 only"
match = { dtype = "float16", status = "ok" }
observed = { value = "+inf" }
citation = "https://example.invalid"
'''


def test_can_occur_reads_only_case_conditions():
    recs = records.parse_records(__import__("tomllib").loads(RECORD), "t.toml")
    f64 = [facts(c) for c in all_curated() if c.dtype == "float64"]
    f16 = [facts(c) for c in all_curated() if c.dtype == "float16"]
    assert records.can_occur(recs[0], f64)
    assert not records.can_occur(recs[1], f64)       # status (an outcome fact) is not asked of cases
    assert records.can_occur(recs[1], f16)
    assert not records.can_occur(recs[0], [])


def test_a_record_that_cannot_occur_is_not_applicable_not_unobserved(tmp_path):
    a = D.WrongReduction()
    (tmp_path / records.file_for(a.name, tmp_path).name).write_text(RECORD)
    cases = [c for c in all_curated() if c.dtype == "float64" and c.reduction == "mean"]
    t = engine.Target(a.name, a, engine.InProcessRunner(a), env={"version": "0"})
    res = engine.run_conformance([], cases, targets=[t], known_dir=tmp_path, shrink_rounds=0)
    run = res.runs[0]
    assert run.not_applicable_known == ["only-in-float16"]
    assert "only-in-float16" not in run.unmatched_known
