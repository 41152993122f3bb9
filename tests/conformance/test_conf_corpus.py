"""The corpus: identical bytes to every adapter, enough cases per adapter (budget)."""
from conformance_area import CASES_PER_ADAPTER

from klconform.translate import translate


def test_enough_generated_cases(adapter_result):
    """>= CASES_PER_ADAPTER distinct generated cases of the frozen corpus reach every adapter
    (shrinker-made and curated cases do not count)."""
    generated = {e.sent.case.digest for e in adapter_result.evaluated
                 if not e.shrunk and not e.sent.case.label.startswith("curated/")}
    assert len(generated) >= CASES_PER_ADAPTER


def test_identical_bytes_for_identical_questions(klconform_runs):
    caps = {k: cls().capabilities() for k, cls in klconform_runs.classes.items()}
    for c in klconform_runs.corpus()[:300]:
        sent = {k: translate(c, cp) for k, cp in caps.items()}
        for k, t in sent.items():
            if t is not None and not t.conversions:
                assert t.case.to_wire() == c.to_wire()
