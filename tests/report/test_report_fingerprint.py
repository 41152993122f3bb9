"""Fingerprints are inferred from outcomes alone: outcomes built from the reference under a
known family point must give back that point (SPEC.md KL-FAM-1)."""
from __future__ import annotations

import numpy as np
import pytest

from klconform import wire
from klconform.adapters.base import Outcome
from klconform.fingerprint import Template, infer_fingerprint, point_for
from klconform.reference.evaluate import evaluate
from klconform.reference.family import Point


def outcomes_at(cases, point_of):
    """Outcome of each case as a framework at ``point_of(case)`` would return it."""
    out = {}
    for c in cases:
        try:
            e = evaluate(c, point_of(c))
        except ValueError as exc:   # undefined there: the framework raises
            out[c.digest] = Outcome(status="error", error_type="ValueError", error_message=str(exc))
            continue
        v = np.asarray(e.value_in_dtype, dtype=np.float64)
        out[c.digest] = Outcome(status="ok", value=v, dtype=c.dtype, shape=v.shape)
    return out


KNOWN = [
    # (template the double really computes, description)
    (Template(), "canonical"),
    (Template(epsilon="target_log_eps", eps=1e-12), "MXNet-like target epsilon"),
    (Template(epsilon="clip_both", eps=1e-7), "Keras-like clipping"),
    (Template(zero_inf="nan"), "torch-like 0*inf = NaN"),
    (Template(swap=True, reductions=(("batchmean", "sum"),)), "two deviations at once"),
    (Template(reductions=(("mean", "batchmean"), ("sum", "mean"))), "two reductions mapped"),
]


@pytest.mark.parametrize("template,why", KNOWN, ids=[k[1] for k in KNOWN])
def test_known_semantics_are_recovered(corpus, template, why):
    cases = {c.digest: c for c in corpus}
    outs = outcomes_at(corpus, lambda c: point_for(template, c))
    fp = infer_fingerprint(cases, outs)
    assert fp["status"] == "exact", fp
    got = Template.from_json(fp["observed"]["template"])
    assert got == template, (got.name, template.name)
    assert fp["agree"] == fp["compared"] == sum(o.status == "ok" for o in outs.values())


def test_no_family_point_is_said_loudly(corpus):
    cases = {c.digest: c for c in corpus}
    outs = outcomes_at(corpus, lambda c: Point(reduction=c.reduction))
    for o in outs.values():
        if o.value is not None:
            o.value = np.where(np.isfinite(o.value), o.value * 1.37 + 0.5, o.value)
    fp = infer_fingerprint(cases, outs)
    assert fp["status"] == "unexplained"
    assert fp["agree"] < 0.9 * fp["compared"]
    assert fp["unexplained_cases"]


def test_documented_point_is_compared_not_copied(corpus):
    cases = {c.digest: c for c in corpus}
    outs = outcomes_at(corpus, lambda c: Point(reduction=c.reduction, epsilon="target_log_eps", eps=1e-12))
    documented = {"points": {r: Point(reduction=r).to_json() for r in {c.reduction for c in corpus}}}
    fp = infer_fingerprint(cases, outs, documented=documented)
    assert fp["observed"]["template"]["epsilon"] == "target_log_eps"
    assert fp["differs_from_documented"] == ["epsilon", "eps"]
    assert fp["documented"]["agree"] < fp["agree"]


def test_pure_function_of_json_data(corpus):
    cases = {c.digest: c for c in corpus[:120]}
    outs = outcomes_at(corpus[:120], lambda c: Point(reduction=c.reduction, zero_inf="nan"))
    a = infer_fingerprint(cases, outs)
    b = infer_fingerprint({d: c.to_json() for d, c in cases.items()}, {d: wire.to_json(o) for d, o in outs.items()})
    assert a == b


def test_no_outcomes_is_no_data(corpus):
    fp = infer_fingerprint({c.digest: c for c in corpus[:3]},
                           {c.digest: Outcome(status="crash") for c in corpus[:3]})
    assert fp["status"] == "no_data" and fp["compared"] == 0 and fp["observed"] is None


def test_point_for_normalises_inapplicable_fields(corpus):
    c = next(c for c in corpus if c.weight is None and c.sample_weight is None and c.target_kind == "prob")
    t = Template(target_as="prob", weight_level="distribution", weight_divisor="weight_sum")
    assert point_for(t, c) == Point(reduction=c.reduction)


def test_equally_good_templates_are_not_no_op_variants(corpus):
    """On prob-only cases, reading an input "as prob" changes nothing: no tie may differ
    from the observed template (or another tie) only by such a no-op field.  (Keras-like:
    clipping, documented with per-distribution weights; weights of ones cannot tell the
    weight levels apart, so that tie is real.)"""
    probs = [c for c in corpus if c.target_kind == "prob" and c.pred_kind == "prob" and c.target.ndim >= 2]
    probs = [c.replace(sample_weight=np.ones(c.target.shape[:-1])) for c in probs]
    assert probs
    cases = {c.digest: c for c in probs}
    t = Template(epsilon="clip_both", eps=1e-7)
    doc = {"points": {c.reduction: Point(reduction=c.reduction, epsilon="clip_both", eps=1e-7,
                                         weight_level="distribution").to_json() for c in probs}}
    outs = outcomes_at(probs, lambda c: point_for(t, c))
    odd = outs[probs[0].digest]   # one outcome nothing explains: the search looks further
    odd.value = np.asarray(odd.value) * 1.37 + 0.5
    fp = infer_fingerprint(cases, outs, documented=doc)
    ties = [Template.from_json(x["template"]) for x in fp["ties_templates"]]
    assert ties, fp["ties"]
    meanings = [tuple(point_for(x, c) for c in probs) for x in ties]
    assert len(set(meanings)) == len(meanings), fp["ties"]
    assert all(x.pred_as != "prob" and x.target_as != "prob" for x in ties), fp["ties"]


@pytest.mark.parametrize("template,noisy", [(Template(swap=True, reductions=(("batchmean", "sum"),)), 0),
                                            (Template(epsilon="target_log_eps", eps=1e-12), 7),
                                            (Template(zero_inf="nan"), 10**6)])
def test_pruned_search_reports_what_the_full_search_does(corpus, template, noisy):
    """Scoring stops once a template can neither improve the search nor rank among the
    reported alternatives: every field of the result is what scoring every template in
    full gives (exact, partly and not explained; two starting points), with fewer
    evaluations."""
    few = corpus[::10]                   # every reduction, a tenth of the cases: the property, cheaply
    cases = {c.digest: c for c in few}
    outs = outcomes_at(few, lambda c: point_for(template, c))
    for i, o in enumerate(o for o in outs.values() if o.value is not None):
        if i % 50 < min(noisy, 50):      # `noisy` outcomes in every 50 made wrong (all, for 10**6)
            o.value = np.where(np.isfinite(o.value), o.value * 1.37 + 0.5, o.value)
    documented = {"points": {r: Point(reduction=r).to_json() for r in {c.reduction for c in few}}}
    pruned = infer_fingerprint(cases, outs, documented=documented)
    full = infer_fingerprint(cases, outs, documented=documented, prune=False)
    assert pruned["search"].pop("evaluations") < full["search"].pop("evaluations")
    assert pruned == full
