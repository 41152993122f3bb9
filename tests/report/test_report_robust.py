"""No report stage crashes on an outcome an adapter can return (shapes flattened,
transposed, scalar for an array, empty, NaN-only, odd dtype strings), and value claims
are judged on the quantity they are about."""
from __future__ import annotations

import pytest

from klconform import cli, resultsio
from klconform.curated import all_curated
from klconform.report.claims import HOLDS, check_claims, load_claims

from tests.report import doubles
from tests.report.conftest import run_doubles


@pytest.fixture(scope="module")
def curated64():
    """Curated float64 cases of every reduction, among them the claims' labelled ones."""
    keep = ("curated/one_hot_q_zero", "curated/hand_checked_example", "curated/equal")
    return [c for c in all_curated() if c.dtype == "float64" and c.label in keep]


@pytest.mark.parametrize("kind", sorted(doubles.MANGLED))
def test_every_format_is_written_whatever_the_adapter_returned(kind, curated64, tmp_path, capsys):
    res = run_doubles([doubles.MANGLED[kind]], curated64)
    ws = cli.write_outputs(res, tmp_path, ["json", "md", "html"])
    assert ws.problems == [] and sorted(p.name for p in ws.written) == ["report.html", "report.md", "results.json"]
    # and re-rendering the saved results does not crash either (exit 0/1, never 2)
    rc = cli.main(["report", str(tmp_path / "results.json"), "--out", str(tmp_path / "re")])
    assert rc in (cli.EXIT_OK, cli.EXIT_DISCREPANCY), capsys.readouterr().err
    assert (tmp_path / "re" / "report.md").exists() and (tmp_path / "re" / "report.html").exists()


def test_a_failing_report_stage_is_one_line_exit_2_and_no_format_is_written(curated64, tmp_path, capsys,
                                                                           monkeypatch):
    res = run_doubles([doubles.PointAdapter], curated64)
    resultsio.write_set(tmp_path, {"results.json": resultsio.dumps(resultsio.to_document(res))})
    import klconform.report.markdown as md

    def broken(*a, **k):
        raise RuntimeError("a renderer bug")
    monkeypatch.setattr(md, "render_markdown", broken)
    rc = cli.main(["report", str(tmp_path / "results.json"), "--out", str(tmp_path / "re")])
    err = capsys.readouterr().err
    assert rc == cli.EXIT_USAGE and len(err.strip().splitlines()) == 1 and "report.md" in err
    assert sorted(p.name for p in (tmp_path / "re").iterdir()) == []     # a set is replaced whole or not at all


def test_divergence_claims_judge_none_outcomes_per_distribution(curated64):
    """'KL blows up when q is 0 where p is not' holds for a correct implementation whose
    `none` output is [0, inf, 0]: the claim is about the divergence, not single terms."""
    res = run_doubles([doubles.PointAdapter], curated64)
    claims = [c for c in load_claims() if c.id in ("article-q-zero-blows-up", "keras-doc-formula-zero-pred")]
    results = [r for r in check_claims(res, claims) if r.run is not None and r.status != "not checked"]
    assert results and all(r.status == HOLDS for r in results), [(r.claim.id, r.evidence) for r in results]


def test_report_reads_gzipped_results(curated64, tmp_path, capsys):
    import gzip
    res = run_doubles([doubles.PointAdapter], curated64)
    (tmp_path / "results.json.gz").write_bytes(gzip.compress(resultsio.dumps(resultsio.to_document(res)).encode()))
    rc = cli.main(["report", str(tmp_path / "results.json.gz"), "--out", str(tmp_path / "re")])
    assert rc in (cli.EXIT_OK, cli.EXIT_DISCREPANCY), capsys.readouterr().err
    assert (tmp_path / "re" / "report.md").exists()
    (tmp_path / "bad.json.gz").write_bytes(b"not gzip")
    rc = cli.main(["report", str(tmp_path / "bad.json.gz"), "--out", str(tmp_path / "re2")])
    err = capsys.readouterr().err
    assert rc == cli.EXIT_USAGE and len(err.strip().splitlines()) == 1
