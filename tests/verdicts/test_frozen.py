"""The frozen corpus: the committed file the gate replays byte for byte."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from klconform import cli, frozen
from klconform.case import Case
from klconform.curated import all_curated

ROOT = Path(__file__).resolve().parents[2]


def test_dump_then_load_gives_the_same_wire_bytes(tmp_path):
    odd = [Case(target=[[0.5, -0.0, np.nan, np.inf]], pred=[[-np.inf, 2.0 ** -24, -0.0, 1.0]], dtype=dt,
                reduction="sum", weight=0.3, label="odd/values") for dt in ("float16", "bfloat16", "float32", "float64")]
    neg_nan = Case(target=[[-np.nan if False else np.float64(-np.nan), 0.5]], pred=[[0.5, 0.5]], dtype="float16",
                   pred_kind="prob", label="odd/negative_nan")
    cases = all_curated()[:300] + odd + [neg_nan]
    path = frozen.dump(cases, tmp_path / "c.jsonl", made_by="test")
    back = frozen.load(path)
    assert [c.to_wire() for c in back] == [c.to_wire() for c in cases]


def test_committed_corpus_loads_and_replays_its_own_bytes():
    cases = frozen.load()
    assert len(cases) > 3000 and len({c.digest for c in cases}) == len(cases)
    lines = frozen.FROZEN_PATH.read_text().splitlines()[1:]
    assert [frozen.case_to_line(c) for c in cases] == lines      # canonical: re-dumping changes nothing


def test_loading_and_translating_does_not_import_hypothesis():
    code = ("import sys; from klconform import frozen, registry; from klconform.translate import translate_all; "
            "cases = frozen.load(); "
            "n = sum(len(translate_all(cases, registry.load_adapter(r).capabilities())) "
            "for r in registry.builtin_adapters().values()); "
            "print(n, 'hypothesis' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    n, imported = out.split()
    assert int(n) > 0 and imported == "False"


@pytest.mark.parametrize("mangle,needle", [
    (lambda ls: ['{"format": "other"}'] + ls[1:], ":1: not a klconform corpus"),
    (lambda ls: [ls[0].replace('"version":1', '"version":9')] + ls[1:], ":1: corpus format version 9"),
    (lambda ls: ls[:2] + [ls[2].replace('"reduction":"', '"reduction":"x')] + ls[3:], ":3: reduction"),
    (lambda ls: ls[:2] + [ls[2].replace('"values":[', '"values":[0.125,', 1)] + ls[3:], ":3: "),
    (lambda ls: ls[:2] + ls[3:], ":1: header says"),
    (lambda ls: [ls[0]] + [ls[2], ls[1]] + ls[3:], ":1: header digest"),
    (lambda ls: ls[:2] + ["{not json"] + ls[3:], ":3: "),
])
def test_a_bad_file_names_file_and_line(tmp_path, mangle, needle, capsys):
    good = frozen.dump(all_curated()[:5], tmp_path / "good.jsonl", made_by="test")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(mangle(good.read_text().splitlines())) + "\n")
    with pytest.raises(frozen.FrozenCorpusError, match=None) as exc:
        frozen.load(bad)
    assert str(exc.value).startswith(f"{bad}:") and needle in str(exc.value), exc.value
    rc = cli.main(["corpus", "coverage", "--frameworks", "torch.kl_div", "--corpus", str(bad)])
    err = capsys.readouterr().err
    assert rc == cli.EXIT_USAGE and err.count("\n") == 1 and needle in err


def test_merge_dedupes_and_is_deterministic():
    base = all_curated()[:10]
    more = all_curated()[5:20]
    a = frozen.merge(base, more)
    assert a == frozen.merge(base, list(reversed(more)))
    assert a[:10] == base and len(a) == 20
    assert [c.digest for c in a[10:]] == sorted(c.digest for c in a[10:])


def test_corpus_add_merges_into_the_file(tmp_path, capsys):
    base = frozen.dump(all_curated()[:10], tmp_path / "base.jsonl", made_by="base")
    more = frozen.dump(all_curated()[8:12], tmp_path / "more.jsonl", made_by="more")
    assert cli.main(["corpus", "add", str(more), "--corpus", str(base)]) == cli.EXIT_OK
    assert [c.digest for c in frozen.load(base)] == [c.digest for c in frozen.merge(all_curated()[:10], all_curated()[8:12])]
    assert json.loads(base.read_text().splitlines()[0])["made_by"] == "base"


def test_run_with_an_unreadable_corpus_is_one_line_exit_2(tmp_path, capsys):
    rc = cli.main(["run", "--frameworks", "tests.harness.misbehaving:GoodKL", "--corpus", str(tmp_path / "none.jsonl"),
                   "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == cli.EXIT_USAGE and err.count("\n") == 1 and "cannot read the corpus" in err


# ----------------------------------------------------------------------------- sent bytes
# Baselines and records are keyed by the digests of the cases adapters are sent; those must
# be the same bytes whatever is installed (docs/corpus.md). tests/data/sent-digests.json holds
# them per capability set; tests/packaging/test_numpy2_bytes.py checks them under numpy 2.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import sent_digests  # noqa: E402

REFRESH = "if the change is meant, refresh it: python tests/verdicts/sent_digests.py --write"


def test_sent_digests_equal_the_golden_file():
    diff = sent_digests.differences(json.loads(sent_digests.GOLDEN.read_text()), sent_digests.compute())
    assert not diff, "\n".join(diff[:20] + [REFRESH])


def _clear_value_caches():
    from klconform import exactmath, large
    for cache in (exactmath._log1, exactmath._exp1, exactmath._softmax_row, large.generate):
        cache.cache_clear()


@pytest.fixture
def nudged_numpy(monkeypatch):
    """numpy's exp/log a few ulps off, with other NaN bits, for exactmath (translation and
    large-case generation compute through it): another numpy build, as far as they can see."""
    from klconform import exactmath
    nudged = sent_digests.NudgedNumpy(seed=17, ulps=4)
    _clear_value_caches()
    monkeypatch.setattr(exactmath, "np", nudged)
    yield nudged
    monkeypatch.undo()
    _clear_value_caches()


def test_sent_digests_do_not_depend_on_numpys_exp_and_log(nudged_numpy):
    # torch.kl_div and keras.KLDivergence between them are sent every conversion there is
    # (prob -> logprob, logprob -> prob, logits -> prob and -> logprob) in every dtype
    now = sent_digests.compute(adapters={"torch.kl_div", "keras.KLDivergence"})
    assert len(now["capability_sets"]) == 2 and nudged_numpy.calls > 500
    diff = sent_digests.differences(sent_digests.restricted(json.loads(sent_digests.GOLDEN.read_text()), now), now)
    assert not diff, diff[:20]
