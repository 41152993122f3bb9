"""Coverage of the frozen corpus: the floor of docs/corpus.md, per built-in adapter
(capabilities from the adapter classes: no framework needed)."""
import numpy as np
import pytest

from klconform import coverage, frozen, registry
from klconform.case import Case
from klconform.evaluator import make_evaluator
from klconform.translate import translate_all

BUILTIN = registry.builtin_adapters()


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
