"""Known records cover what the framework does, not any value at their place: for every
record that covers verdicts of a real run, a wrong value planted into a covered outcome
(klconform.behaviour.planted: the value, or the gradient the verdict is about, made finite
and wrong everywhere: beyond the reference's bound, and beyond a record's own ``within``) must leave at least one discrepancy no record covers."""
import pytest

from klconform import behaviour, engine, registry
from klconform import records as known_mod
from klconform.reference.family import canonical as canonical_point
from klconform.verdicts import effective_point

# classes whose outcome has no value to plant (the framework raised, died or hung)
_NO_VALUE = ("error", "crash", "timeout", "nondeterministic")
_PER_RECORD = 3


def _session(run):
    spec = registry.resolve([run.adapter])[0]
    adapter = registry.load_adapter(spec.adapter_ref)
    target = engine.Target(run.adapter, adapter, runner=None, env=dict(run.env))
    return engine.AdapterSession(target, records=known_mod.load_for(adapter))


def test_planted_wrong_values_at_recorded_places_are_unexpected(adapter_result):
    """KL-VERDICT-MATCH: a record states a behaviour; a planted defect at a recorded place is
    an unexpected discrepancy (a wrong batchmean divisor once passed a gradient item whose
    record named only grad_input)."""
    run = adapter_result.run
    session = _session(run)
    picked: dict[str, list] = {}
    for e in adapter_result.evaluated:
        if e.shrunk:
            continue
        for v in e.verdicts:
            if v.known and v.cls not in _NO_VALUE and len(picked.setdefault(v.known, [])) < _PER_RECORD:
                picked[v.known].append((e, v))
    if not picked:
        pytest.skip(f"{run.adapter}: no record covers a verdict with a value in this run")
    still_covered = []
    by_id = {r.id: r for r in session.records}
    for rid, items in sorted(picked.items()):
        margin = float(by_id[rid].observed.get("within", 1.0))
        for e, v in items:
            case, documented = e.sent.case, effective_point(session.target.adapter.documented(e.sent.case), e.sent.case)
            canonical = canonical_point(case)
            compared = canonical if v.against == "canonical" else (documented or canonical)
            obs = session.observation(case, e.outcome, e.verdicts, v.against, compared, documented)
            bad = behaviour.planted(e.outcome, v, obs, margin)
            vs = session.verdicts_for(e.sent.case, bad)
            if not any(x.cls != "match" and x.known is None for x in vs):
                still_covered.append(f"{rid}: case {e.sent.case.digest} ({v.cls}, {v.against}) planted "
                                     f"-> {sorted({(x.cls, x.known) for x in vs if x.cls != 'match'})}")
    checked = sum(len(items) for items in picked.values())
    assert not still_covered, (f"{len(still_covered)} of {checked} planted defects still covered:\n"
                               + "\n".join(still_covered[:20]))
