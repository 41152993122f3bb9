"""Engine: deterministic corpus, batching, counterexample blobs."""
import kl_doubles as D
from klconform import engine


def test_corpus_is_deterministic_and_fills_every_adapter():
    caps = [D.ReferenceAdapter().capabilities()]
    a = engine.build_corpus(11, 50, caps, curated=False)
    b = engine.build_corpus(11, 50, caps, curated=False)
    assert [c.digest for c in a] == [c.digest for c in b]
    assert engine.corpus_digest(a) == engine.corpus_digest(b)
    assert len(a) >= 50


def test_blob_round_trip():
    c = engine.build_corpus(1, 5, curated=False)[-1]
    assert engine.case_from_blob(engine.case_blob(c)).to_wire() == c.to_wire()


class CountingRunner(engine.InProcessRunner):
    def __init__(self, adapter):
        super().__init__(adapter)
        self.calls = 0

    def run(self, cases):
        self.calls += 1
        return super().run(cases)


def test_cases_are_sent_in_batches():
    a = D.ReferenceAdapter()
    r = CountingRunner(a)
    corpus = engine.build_corpus(2, 100, [a.capabilities()], curated=False)
    run, ev = engine.run_adapter(engine.Target(a.name, a, r), corpus, records=[], batch_size=50)
    assert r.calls == -(-len(ev) // 50)


def test_run_conformance_with_opened_targets():
    a = D.ReferenceAdapter()
    t = engine.Target(a.name, a, engine.InProcessRunner(a), env={"version": "0"})
    res = engine.run_conformance([], engine.build_corpus(3, 30, curated=False), seed=3, targets=[t])
    assert res.runs[0].adapter == a.name and res.corpus_digest
    assert set(res.runs[0].outcomes) <= set(res.cases)
