"""Conformance, the large family (docs/large.md; ``--klconform-large``, default quick): the
same cases at realistic sizes, each sent twice to one worker (KL-VERDICT-NONDETERMINISTIC).

Discrepancies on large cases fail the plugin's per-area items like any other; this module
checks that every adapter that can take a large case without converting it was sent it,
twice, and that its bound stays tight (KL-BOUND-7)."""
from klconform import large


def _takes(adapter_result, recipe) -> bool:
    caps = adapter_result.run.capabilities
    return (recipe.dtype in caps["dtypes"] and recipe.reduction in caps["reductions"]
            and recipe.pred_kind in caps["pred_kinds"] and recipe.target_kind in caps["target_kinds"]
            and caps["min_ndim"] <= 2 <= caps["max_ndim"])


def test_every_expressible_quick_case_is_sent_twice(adapter_result):
    run = adapter_result.run
    sent = {e["digest"]: e for e in run.large}
    for recipe, digest in large.QUICK:
        if _takes(adapter_result, recipe):
            assert digest in sent, f"{recipe.label} not sent"
            entry = sent[digest]
            assert entry["repeat"] in ("identical", "differs")
            assert entry["elements"] == recipe.elements
        else:
            assert digest not in sent


# bound / value allowed: 1 % in float32 and float64; in float16 and bfloat16 the rounding of
# each term's logarithms alone, 2u·(|log p| + |log q| + 1) ≈ 40u of a row's mass, is 4-5 % of a
# peaked row's KL in bfloat16 and 16 % of a flat float16 row's (the quick set's float16
# probabilities of Q are flat lest they underflow); the accumulation part stays float32's
TIGHT = {"float32": 1e-2, "float64": 1e-2, "float16": 0.25, "bfloat16": 0.1}


def test_large_outcomes_are_judged_against_a_tight_bound(adapter_result):
    """A large case's verdict rests on KL-BOUND-7: the bound is far below the value."""
    for entry in adapter_result.run.large:
        if entry["verdicts"] != ["match"]:
            continue
        case = adapter_result.cases[entry["digest"]]
        from klconform.reference.evaluate import evaluate
        from klconform.reference.family import canonical
        exp = evaluate(case, canonical(case))
        assert (exp.bound <= TIGHT[case.dtype] * abs(exp.value) + 1e-30).all(), entry["label"]
