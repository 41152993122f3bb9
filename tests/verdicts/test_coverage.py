"""Coverage of the frozen corpus: the floor of docs/corpus.md, per built-in adapter
(capabilities from the adapter classes: no framework needed)."""
import numpy as np
import pytest

from klconform import coverage, frozen, registry
from klconform.case import Case
from klconform import distill_harness
from klconform.evaluator import make_evaluator
from klconform.translate import translate_all

# a distillation adapter gets the distillation corpus, not the frozen one (klconform.distill_harness)
BUILTIN = {n: r for n, r in registry.builtin_adapters().items()
           if not distill_harness.is_distill(registry.load_adapter(r))}


@pytest.fixture(scope="module")
def corpus():
    return frozen.load()


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_frozen_corpus_keeps_the_coverage_floor(name, corpus):
    caps = registry.load_adapter(BUILTIN[name]).capabilities()
    cov = coverage.count([t.case for t in translate_all(corpus, caps)], caps, evaluate=make_evaluator())
    assert coverage.below_floor(cov, caps) == []


def test_counts_what_a_case_exercises():
    c = Case(target=[[0.5, -0.0, 0.5]], pred=[[1e4, 0.0, -np.inf]], dtype="float32", pred_kind="logits",
             reduction="sum", sample_weight=[[0.0]])
    assert set(coverage.special_keys(c)) == {"+0", "-0", "-inf", "huge_logits"}
    assert {"weights=sample", "sample_weight=with_zeros", "sample_weight=uniform", "class_axis=last",
            "batch_axis=first"} <= set(coverage.capability_keys(c))


def test_below_floor_reports_a_gap():
    caps = registry.load_adapter(BUILTIN["torch.kl_div"]).capabilities()
    cov = coverage.count([], caps)
    assert "special: -0 = 0 < 5" in coverage.below_floor(cov, caps)


def test_cells_are_counted_per_encoding_the_adapter_takes():
    caps = registry.load_adapter(BUILTIN["torch.kl_div"]).capabilities()
    cells = coverage.declared(caps)["cells"]
    # torch takes log q only: prob and logprob targets against logprob predictions
    assert len(cells) == 10 * 7 + 7 * 7 and "+inf,0/prob,logprob" in cells and "0,0/prob,prob" not in cells
    c = Case(target=[[np.inf, 0.5]], pred=[[-np.inf, -1.0]], dtype="float32", reduction="none")
    cov = coverage.count([c], caps)
    assert cov["cells"]["+inf,0/prob,logprob"] == 1 and cov["cells"]["lt1,lt1/prob,logprob"] == 1
    assert "cells: 0,nan/prob,logprob = 0 < 1" in coverage.below_floor(cov, caps)


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_quick_large_set_asks_low_precision_accumulation_where_taken(name):
    """Every adapter that reduces (a reduction other than none) in float16 or bfloat16 gets
    a quick large case in one of those dtypes (low-precision accumulation at realistic
    sizes is checked by default)."""
    from klconform import large
    caps = registry.load_adapter(BUILTIN[name]).capabilities()
    low = {"float16", "bfloat16"} & set(caps.dtypes)
    takes = [r for r, _ in large.QUICK if large.expressible(r, caps)]
    if not low or not set(caps.reductions) - {"none"}:
        return
    assert any(r.dtype in low and r.classes >= 10_000 for r in takes), name
