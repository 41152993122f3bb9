"""The digests of the cases the default gate sends, per capability set of the registered
adapters: the frozen corpus after ``klconform.translate`` and the quick large set as
generated.  Baselines and records are keyed by these digests, so they must be the same
bytes whatever numpy (or anything else) is installed; tests/data/sent-digests.json holds
them, tests/verdicts/test_frozen.py recomputes them here and tests/packaging/
test_numpy2_bytes.py recomputes them in a fresh venv with numpy 2.

    python tests/verdicts/sent_digests.py            # compare with the golden file, exit 1 on a difference
    python tests/verdicts/sent_digests.py --write    # refresh the golden file (review its diff)
    python tests/verdicts/sent_digests.py --json     # print the table computed here

Only klconform is imported (the installed one when run by path from another venv).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "sent-digests.json"
#: Capabilities fields that do not change what translate sends
_NOT_SENT = ("devices", "options")


class NudgedNumpy:
    """numpy, except that ``log`` and ``exp`` return results a few ulps off (up to
    ``ulps`` either way, drawn per entry from ``seed``) and NaNs of another sign and
    payload: what another numpy build may return.  Install it as a module's ``np`` to show
    that module's bytes do not depend on those last bits."""

    def __init__(self, seed: int = 0, ulps: int = 4):
        import numpy
        self._np, self._rng, self._ulps = numpy, numpy.random.default_rng(seed), ulps
        self.calls = 0

    def __getattr__(self, name):
        return getattr(self._np, name)

    def _nudge(self, y):
        np = self._np
        self.calls += 1
        y = np.array(y, dtype=np.float64)
        steps = self._rng.integers(-self._ulps, self._ulps + 1, size=y.shape)
        for _ in range(self._ulps):
            y = np.where(steps > 0, np.nextafter(y, np.inf), np.where(steps < 0, np.nextafter(y, -np.inf), y))
            steps = steps - np.sign(steps)
        return np.where(np.isnan(y), np.uint64(0xFFF4000000000DEF).view(np.float64), y)

    def log(self, x, *args, **kw):
        return self._nudge(self._np.log(x, *args, **kw))

    def exp(self, x, *args, **kw):
        return self._nudge(self._np.exp(x, *args, **kw))


def capability_key(caps) -> str:
    """A short stable name of the capability fields translation depends on."""
    fields = {k: v for k, v in caps.to_json().items() if k not in _NOT_SENT}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


def compute(adapters=None) -> dict:
    """The table: per capability set, its adapters, how many cases are sent, the digest of
    the sent digests in order, and each translated case's sent digest by canonical digest;
    the quick large set's generated digests by label.  ``adapters``: only the capability
    sets of these registered adapters (a partial table; compare with :func:`restricted`)."""
    from klconform import frozen, large, registry
    from klconform.translate import translate_all

    cases = frozen.load()
    groups: dict[str, dict] = {}
    for name, ref in registry.builtin_adapters().items():
        if adapters is not None and name not in adapters:
            continue
        caps = registry.load_adapter(ref).capabilities()
        key = capability_key(caps)
        if key in groups:
            groups[key]["adapters"].append(name)
            continue
        sent = translate_all(cases, caps)
        groups[key] = {
            "adapters": [name],
            "sent": len(sent),
            "sent_digest": frozen.digests_digest(t.case.digest for t in sent),
            "translated": {t.canonical.digest: t.case.digest for t in sent if t.case is not t.canonical},
            "quick_large": [d for r, d in large.QUICK if large.expressible(r, caps)],
        }
    return {"frozen_corpus": frozen.corpus_digest(cases),
            "capability_sets": dict(sorted(groups.items())),
            "quick_large": {r.label: large.generate(r).digest for r, _ in large.QUICK}}


def restricted(golden: dict, now: dict) -> dict:
    """``golden`` with only the capability sets a partial ``now`` has."""
    return {**golden, "capability_sets": {k: v for k, v in golden["capability_sets"].items()
                                          if k in now["capability_sets"]}}


def differences(golden: dict, now: dict) -> list[str]:
    """One line per difference between two tables (empty: the same bytes)."""
    out = []
    if golden["frozen_corpus"] != now["frozen_corpus"]:
        out.append(f"frozen corpus {golden['frozen_corpus']} -> {now['frozen_corpus']} (regenerate the golden file)")
    g, n = golden["capability_sets"], now["capability_sets"]
    for key in sorted(set(g) | set(n)):
        if key not in g or key not in n:
            which = n.get(key) or g.get(key)
            out.append(f"capability set {key} ({', '.join(which['adapters'])}) only in "
                       f"{'this run' if key not in g else 'the golden file'} (regenerate the golden file)")
            continue
        a, b = g[key]["translated"], n[key]["translated"]
        changed = sorted(c for c in set(a) | set(b) if a.get(c) != b.get(c))
        if changed or g[key]["sent_digest"] != n[key]["sent_digest"]:
            out.append(f"{', '.join(n[key]['adapters'])}: {len(changed)} translated cases with other bytes "
                       f"(canonical {', '.join(changed[:5])}{' ...' if len(changed) > 5 else ''}); "
                       f"sent {g[key]['sent']} -> {n[key]['sent']}")
    for label in sorted(set(golden["quick_large"]) | set(now["quick_large"])):
        if golden["quick_large"].get(label) != now["quick_large"].get(label):
            out.append(f"quick large {label}: {golden['quick_large'].get(label)} -> {now['quick_large'].get(label)}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="write the golden file")
    ap.add_argument("--json", action="store_true", help="print the table computed here")
    args = ap.parse_args(argv)
    now = compute()
    if args.json:
        json.dump(now, sys.stdout, sort_keys=True)
        return 0
    if args.write:
        GOLDEN.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        print(f"wrote {GOLDEN}")
        return 0
    diff = differences(json.loads(GOLDEN.read_text(encoding="utf-8")), now)
    print("\n".join(diff) if diff else "the same bytes as the golden file")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
