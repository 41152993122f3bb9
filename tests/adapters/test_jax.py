"""The JAX adapters (``jax.scipy.special.rel_entr`` / ``kl_div``) against the reference, in
the side environment ``jax`` (``.venvs/jax``, built by ``python3 bootstrap.py env jax``;
skipped with the reason when absent).  Expected values: ``reference.evaluate`` at the
documented point (SPEC.md §11: ``none+negative=inf``, ``none+generalised+negative=inf``),
within ``Expected.bound`` (KL-BOUND-2..4); tests named ``*_discrepancy`` pin the departures
recorded in klconform/known/jax_rel_entr.toml and jax_kl_div.toml (docs/frameworks/jax.md).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from adapter_checks import assert_within
from klconform import records as known_records
from klconform.adapters.jax_special import JaxKLDiv, JaxRelEntr
from klconform.case import Case
from klconform.reference import evaluate
from klconform.reference.dtypes import round_to
from klconform.reference.family import Point
from klconform.reference.spec import clause_ids

ROOT = Path(__file__).resolve().parents[2]
SIDE_PYTHON = os.environ.get("KLCONFORM_PYTHON_JAX", str(ROOT / ".venvs/jax/bin/python"))
INF, NAN = np.inf, np.nan
P3 = np.array([[0.25, 0.5, 0.25], [0.5, 0.25, 0.25]])
Q3 = np.array([[0.5, 0.25, 0.25], [0.125, 0.625, 0.25]])
ADAPTERS = {"rel_entr": (JaxRelEntr, "klconform.adapters.jax_special:JaxRelEntr"),
            "kl_div": (JaxKLDiv, "klconform.adapters.jax_special:JaxKLDiv")}

pytestmark = pytest.mark.framework


def build_cases() -> dict[str, Case]:
    cs = {}
    for dt in ("float16", "bfloat16", "float32", "float64"):
        cs[f"benign/{dt}"] = Case(round_to(P3, dt), round_to(Q3, dt), dtype=dt, target_kind="prob",
                                  pred_kind="prob", reduction="none")
    for label, p, q in (("zero_p", [0.0, 1.0], [0.5, 0.5]), ("pos_p_zero_q", [0.5, 0.5], [0.0, 1.0]),
                        ("neg_q", [0.5, 0.5], [-0.5, 1.5]), ("nan_p", [NAN, 1.0], [0.5, 0.5]),
                        ("inf_p_q_ge_1", [INF, 0.5], [2.0, 0.5]), ("bcast", P3, Q3[:1]),
                        ("scalar", 0.25, 0.5), ("empty", np.zeros((0, 2)), np.zeros((0, 2)))):
        cs[label] = Case(p, q, target_kind="prob", pred_kind="prob", reduction="none", label=label)
    return cs


CASES = build_cases()


@pytest.fixture(scope="module", params=list(ADAPTERS))
def run(request):
    """(adapter instance, label -> Outcome) from the side environment."""
    if not os.path.exists(SIDE_PYTHON):
        pytest.skip(f"JAX side interpreter {SIDE_PYTHON} is absent (python3 bootstrap.py env jax)")
    from klconform.workers import run_in_worker
    cls, ref = ADAPTERS[request.param]
    labels = list(CASES)
    env, outs = run_in_worker(ref, [CASES[k] for k in labels], python=SIDE_PYTHON)
    assert env["framework"] == "jax" and env["jax_enable_x64"] is True
    return cls(), dict(zip(labels, outs))


# ----------------------------------------------------------------------------- declarations
def test_module_does_not_import_jax():
    code = ("import sys, klconform.adapters.jax_special as m, klconform.adapters.optax_losses as o; "
            "m.JaxRelEntr().capabilities(); o.OptaxKLDivergence().capabilities(); print('jax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def test_capabilities_and_documented_points():
    for cls in (JaxRelEntr, JaxKLDiv):
        caps = cls().capabilities()
        assert caps.reductions == {"none"} and caps.pred_kinds == {"prob"} and caps.target_kinds == {"prob"}
        assert caps.dtypes == {"float16", "bfloat16", "float32", "float64"} and caps.broadcasting
    case = CASES["benign/float64"]
    assert JaxRelEntr().documented(case) == Point(reduction="none", negative="inf")
    assert JaxKLDiv().documented(case) == Point(reduction="none", generalised=True, negative="inf")


@pytest.mark.parametrize("name", ["jax.rel_entr", "jax.kl_div"])
def test_records_are_valid_and_cite_upstream(name):
    records = known_records.load(name)
    assert records and all(set(r.clauses) <= set(clause_ids()) for r in records)
    assert all(r.citation.startswith("https://") for r in records)


# ----------------------------------------------------------------------------- values
@pytest.mark.parametrize("label", ["benign/float32", "benign/float64", "bcast", "scalar", "empty", "neg_q"])
def test_values_match_the_documented_point(run, label):
    adapter, obs = run
    case, out = CASES[label], obs[label]
    exp = evaluate(case, adapter.documented(case))
    assert out.status == "ok" and out.dtype == case.dtype and tuple(out.shape) == exp.value.shape
    assert_within(out.value, exp.value_in_dtype, exp.bound, label)


def test_benign_gradients_match(run):
    adapter, obs = run
    case, out = CASES["benign/float64"], obs["benign/float64"]
    exp = evaluate(case, adapter.documented(case))
    for k in ("pred", "target"):
        assert out.grad_dtypes[k] == "float64"
        assert_within(out.grads[k], exp.grads[k], exp.grad_bounds[k], k)


def test_kl_div_is_the_generalised_term_discrepancy(run):
    """jax-kl-div-generalised: p = 0, q = 0.5 gives q (KL-GEN-2), the canonical term 0."""
    adapter, obs = run
    if adapter.name != "jax.kl_div":
        pytest.skip("kl_div only")
    out = obs["zero_p"]
    assert out.value[0] == 0.5 and evaluate(CASES["zero_p"], Point(reduction="none")).value[0] == 0.0


def test_nan_input_discrepancy(run):
    """jax-rel-entr-nan-input-inf: NaN > 0 is false, so rel_entr returns +inf; kl_div's
    - p + q makes it NaN again."""
    adapter, obs = run
    expected = INF if adapter.name == "jax.rel_entr" else NAN
    np.testing.assert_array_equal(obs["nan_p"].value[:1], [expected])


def test_inf_target_discrepancy(run):
    """p = inf, q = 2: inf - inf = NaN where KL-INF-1 / KL-GEN-2 give +inf."""
    _, obs = run
    assert np.isnan(obs["inf_p_q_ge_1"].value[0])


def test_masked_where_gradients_discrepancy(run):
    """p = 0: d/dp is 0 (rel_entr) or -1 (kl_div) where SPEC's right derivative is -inf;
    q = 0 < p: d/dq is 0 or +1, SPEC -inf."""
    adapter, obs = run
    shift = 0.0 if adapter.name == "jax.rel_entr" else 1.0
    assert obs["zero_p"].grads["target"][0] == -shift
    assert obs["pos_p_zero_q"].grads["pred"][0] == shift
    assert evaluate(CASES["zero_p"], adapter.documented(CASES["zero_p"])).grads["target"][0] == -INF


# ----------------------------------------------------------------------------- compiled path
# Every JAX/optax adapter evaluates through one compiled executable per signature
# (_Jax.compiled); the op-by-op path (jax.vjp per call) is what it must reproduce bit for bit.
# The op-by-op path costs ~0.2-0.5 s per new signature here: by default every 8th sent case
# of the frozen corpus (each dtype, reduction, broadcast and gradient form is among them);
# KLCONFORM_JAX_EQUIVALENCE_STRIDE=1 compares the whole corpus (~15 min for the six).
EQUIVALENCE_STRIDE = int(os.environ.get("KLCONFORM_JAX_EQUIVALENCE_STRIDE", "8"))
ALL_JAX_REFS = [ref for _, ref in ADAPTERS.values()] + [
    f"klconform.adapters.optax_losses:{name}" for name in
    ("OptaxKLDivergence", "OptaxKLDivergenceLogTargets", "OptaxGeneralizedKLDivergence", "OptaxConvexKLDivergence")]


def side_script(args: list[str]) -> str:
    """stdout of ``args`` run by the side interpreter with klconform importable (as a worker)."""
    if not os.path.exists(SIDE_PYTHON):
        pytest.skip(f"JAX side interpreter {SIDE_PYTHON} is absent (python3 bootstrap.py env jax)")
    from klconform.workers import package_path_dir
    env = dict(os.environ, PYTHONPATH=package_path_dir(), JAX_PLATFORMS="cpu")
    out = subprocess.run([SIDE_PYTHON, *args], capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.mark.slow
@pytest.mark.parametrize("ref", ALL_JAX_REFS, ids=[r.split(":")[1] for r in ALL_JAX_REFS])
def test_compiled_path_reproduces_the_op_by_op_outcomes(ref):
    """Status, value and gradient bits, dtypes, shapes, warnings, errors, native call: equal on
    the frozen corpus (every EQUIVALENCE_STRIDE-th sent case)."""
    import json
    script = str(Path(__file__).with_name("jax_equivalence.py"))
    result = json.loads(side_script([script, "--stride", str(EQUIVALENCE_STRIDE), ref]).splitlines()[-1])
    assert result["cases"] > 50 and result["signatures"] > 10
    assert result["differ"] == [], result["differ"][:5]


COMPILED_PROBE = r"""
import json, warnings, numpy as np
from klconform.case import Case
from klconform.adapters.optax_losses import OptaxConvexKLDivergence
from klconform.adapters.jax_special import JaxRelEntr
from klconform import wire
from klconform._worker_remote import evaluate_wire
p, q = np.array([[0.25, 0.75], [0.5, 0.5]]), np.array([[0.5, 0.5], [0.25, 0.75]])
def case(**kw):
    d = dict(target_kind="prob", pred_kind="logprob", reduction="distribution")
    d.update(kw)
    lq = np.log(q) if d["pred_kind"] == "logprob" else q
    return Case(p, lq, **d)
a = OptaxConvexKLDivergence()
a.setup()
outs = [evaluate_wire(a, c, lambda c: c, wire) for c in
        (case(), case(), case(reduction="sum"), case(class_axis=0))]
r = JaxRelEntr()
r.setup()
rel = [evaluate_wire(r, c, lambda c: c, wire) for c in
       (case(pred_kind="prob", reduction="none"), Case(p[0], q, target_kind="prob", pred_kind="prob", reduction="none"))]
print(json.dumps({"executables": len(a._executables), "warnings": [o["warnings"] for o in outs],
                  "values": [o["value"] is not None for o in outs], "rel": len(r._executables),
                  "rel_shapes": [o["shape"] for o in rel]}))
"""


def test_compiled_path_compiles_once_per_signature_and_warns_every_call():
    """The same case twice reuses its executable; reduction and class axis are part of the
    signature; the deprecation warning traced once is raised on every call, as the op-by-op
    path raises it."""
    import json
    got = json.loads(side_script(["-c", COMPILED_PROBE]).splitlines()[-1])
    assert got["executables"] == 3 and got["values"] == [True] * 4
    assert all(len(w) == 1 and w[0].startswith("DeprecationWarning") for w in got["warnings"])
    assert got["rel"] == 2 and got["rel_shapes"] == [[2, 2], [2, 2]]
