"""Engine: deterministic corpus, batching, counterexample blobs."""
import kl_doubles as D
from klconform import engine, explore


def test_corpus_is_deterministic_and_fills_every_adapter():
    caps = [D.ReferenceAdapter().capabilities()]
    a = explore.build_corpus(11, 50, caps, curated=False)
    b = explore.build_corpus(11, 50, caps, curated=False)
    assert [c.digest for c in a] == [c.digest for c in b]
    assert engine.corpus_digest(a) == engine.corpus_digest(b)
    assert len(a) >= 50


def test_blob_round_trip():
    c = explore.build_corpus(1, 5, curated=False)[-1]
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
    corpus = explore.build_corpus(2, 100, [a.capabilities()], curated=False)
    run, ev = engine.run_adapter(engine.Target(a.name, a, r), corpus, records=[], batch_size=50)
    assert r.calls == -(-len(ev) // 50)


def test_run_conformance_with_opened_targets():
    a = D.ReferenceAdapter()
    t = engine.Target(a.name, a, engine.InProcessRunner(a), env={"version": "0"})
    res = engine.run_conformance([], explore.build_corpus(3, 30, curated=False), seed=3, targets=[t])
    assert res.runs[0].adapter == a.name and res.corpus_digest
    assert set(res.runs[0].outcomes) <= set(res.cases)


def test_corpus_sends_n_distinct_generated_cases_to_each_adapter():
    """Counted after translation (two canonical cases may become one sent case) and without
    the curated ones: the issue's '>= n cases per adapter' holds exactly, not nearly."""
    from klconform.adapters.base import Capabilities
    from klconform.translate import translate
    narrow = Capabilities(dtypes=frozenset({"float32"}), reductions=frozenset({"sum"}),
                          pred_kinds=frozenset({"prob"}), target_kinds=frozenset({"prob"}), min_ndim=1)
    wide = D.ReferenceAdapter().capabilities()
    corpus = explore.build_corpus(4, 80, [wide, narrow])
    for caps in (wide, narrow):
        sent = {translate(c, caps).case.digest for c in corpus
                if not c.label.startswith("curated/") and translate(c, caps) is not None}
        curated = {translate(c, caps).case.digest for c in corpus
                   if c.label.startswith("curated/") and translate(c, caps) is not None}
        assert len(sent - curated) >= 80


def test_pipelined_run_gives_the_sequential_verdicts():
    a = D.WrongReduction()
    corpus = explore.build_corpus(6, 40, [a.capabilities()], curated=False)
    t = engine.Target(a.name, a, engine.InProcessRunner(a), env={"version": "0"})
    s = engine.AdapterSession(t, batch_size=7)
    sent = [engine.translate(c, s.caps) for c in corpus]
    piped = s.evaluate_pipelined(sent)
    plain = engine.AdapterSession(t, batch_size=7).evaluate(sent)
    assert [[(v.against, v.cls, v.explained_by) for v in e.verdicts] for e in piped] == \
        [[(v.against, v.cls, v.explained_by) for v in e.verdicts] for e in plain]


class DocumentedSum(D.WrongReduction):
    """Sums where it should average, and documents exactly that."""
    name = "double.documented_sum"

    def documented(self, case):
        return self.point(case)


RECORD = '''
[[discrepancy]]
id = "sums-instead-of-averaging"
class = "semantic"
against = "canonical"
clauses = ["KL-RED-BATCHMEAN"]
when = "averaging reductions are computed as sums"
match = { reduction = ["batchmean", "mean", "distribution_mean"] }
explained_by = "sum"
citation = "https://example.org/double-sums"
'''


def test_run_conformance_results_render_with_documented_points_and_citations(tmp_path):
    """The library path (run_conformance -> render_markdown) gives the report the CLI gives:
    the documented semantics and the known records' citations come with the results."""
    from klconform.report.markdown import render_markdown
    (tmp_path / "double_documented_sum.toml").write_text(RECORD)
    a = DocumentedSum()
    t = engine.Target(a.name, a, engine.InProcessRunner(a), env={"version": "0"})
    corpus = [c for c in explore.build_corpus(8, 40, [a.capabilities()], curated=False)
              if c.reduction in ("batchmean", "sum")]
    res = engine.run_conformance([], corpus, seed=8, targets=[t], known_dir=tmp_path, shrink_rounds=0)
    run = res.runs[0]
    assert run.documented["points"]["batchmean"]["reduction"] == "sum"
    assert "sums-instead-of-averaging" in run.known_records
    md = render_markdown(res)
    assert "batchmean→sum" in md                      # the documented point, in the fingerprint table
    assert "known `sums-instead-of-averaging`" in md and "https://example.org/double-sums" in md
