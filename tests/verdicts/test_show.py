"""``klconform show DIGEST``: a case by its digest (canonical or sent, a unique prefix), its
inputs, the reference's value and bound, and each run's outcome and verdicts; exit 2 with
one line for an unknown or ambiguous digest."""
import numpy as np
import pytest

import kl_doubles as D
from klconform import cli, engine
from klconform.case import Case
from klconform.evaluator import make_evaluator
from klconform.resultsio import write_results


@pytest.fixture(scope="module")
def results_file(tmp_path_factory):
    cases = [Case(target=np.array([[0.25, 0.75]] * 3), pred=np.log([[0.5, 0.5]] * 3), reduction="batchmean"),
             Case(target=np.array([[0.5, 0.5]]), pred=np.array([[-0.5, -1.0]]), reduction="sum")]
    a = D.WrongBatchmeanDivisor()
    t = engine.Target(run_id=a.name, adapter=a, runner=engine.InProcessRunner(a), env={"version": "0"})
    result = engine.run_conformance([], cases, targets=[t], shrink_rounds=0, evaluator=make_evaluator())
    path = tmp_path_factory.mktemp("show") / "results.json"
    write_results(result, path)
    return path, cases


def test_show_prints_inputs_reference_outcome_and_verdicts(results_file, capsys):
    path, cases = results_file
    digest = cases[0].digest
    assert cli.main(["show", digest[:10], "--results", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"case {digest}")
    # batchmean of 3 rows of KL([.25,.75] || [.5,.5]): the reference's value, printed as a number
    kl = 0.25 * np.log(0.25 / 0.5) + 0.75 * np.log(0.75 / 0.5)
    assert "reference at the canonical point (batchmean): value " in out
    line = next(x for x in out.splitlines() if x.startswith("reference at the canonical point"))
    assert abs(float(line.split("value ")[1].split(",")[0]) - kl) < 1e-15
    assert "double.wrong_batchmean_divisor" in out and "outcome: value " in out
    assert "vs canonical: semantic (explained by mean) [KL-RED-BATCHMEAN, KL-RED-MEAN, KL-VERDICT-SEMANTIC]" in out
    assert "np." not in out


def test_show_without_results_uses_the_corpus(capsys):
    from klconform import frozen
    digest = frozen.load()[0].digest
    assert cli.main(["show", digest]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"case {digest}") and "reference at the canonical point" in out


@pytest.mark.parametrize("digest, words", [("0000000000000", "no case with digest"), ("xyz", "not a case digest"),
                                           ("", "not a case digest")])
def test_unknown_digest_is_one_line_and_exit_2(digest, words, capsys):
    assert cli.main(["show", digest]) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1


def test_ambiguous_prefix_is_one_line_and_exit_2(capsys):
    from klconform import frozen
    digests = [c.digest for c in frozen.load()]
    prefix = next(d[:1] for d in digests if sum(x.startswith(d[:1]) for x in digests) > 1)
    assert cli.main(["show", prefix]) == 2
    err = capsys.readouterr().err
    assert "ambiguous" in err and len(err.strip().splitlines()) == 1
