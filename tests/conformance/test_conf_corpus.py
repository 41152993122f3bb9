"""The corpus: identical bytes to every adapter, enough cases per adapter (budget)."""
from conformance_area import cases_per_adapter

from klconform.translate import translate


def test_enough_generated_cases(adapter_result):
    """The issue's budget: >= 10 x max_examples (ci: 1000) distinct generated cases reach
    every adapter (shrinker-made cases do not count)."""
    generated = {e.sent.case.digest for e in adapter_result.evaluated
                 if not e.shrunk and not e.sent.case.label.startswith("curated/")}
    assert len(generated) >= cases_per_adapter()


def test_identical_bytes_for_identical_questions(specs, corpus):
    from klconform import registry
    caps = {k: registry.load_adapter(s.adapter_ref).capabilities() for k, s in specs.items()}
    for c in corpus[:300]:
        sent = {k: translate(c, cp) for k, cp in caps.items()}
        for k, t in sent.items():
            if t is not None and not t.conversions:
                assert t.case.to_wire() == c.to_wire()
