"""The distillation adapters (torchtune, TRL, Liger; SPEC.md §12) run in the side
environment ``distill`` (tests/adapters/distill_driver.py) and are judged here against
reference.distill: each scenario names the family points the framework's value and
gradients must agree with (within the reference's bound, KL-DISTILL-BOUND) and those they
must not.  The expected values are the reference's; the points are what the upstream source
computes (adapters/torchtune_kd.py, adapters/trl_jsd.py: the documented point, and where the
framework departs from it, the point it computes instead).

The framework tests skip while ``.venvs/distill`` is absent (``python3 bootstrap.py env
distill``); torchtune 0.3.1's, while ``.venvs/distill031`` is.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from klconform.reference.distill import DistillPoint, canonical, evaluate
from klconform.reference.dtypes import round_to

sys.path.insert(0, str(Path(__file__).resolve().parent))
import distill_cases  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PYTHON = Path(os.environ.get("KLCONFORM_PYTHON_DISTILL", ROOT / ".venvs" / "distill" / "bin" / "python"))

CE = {"cross_entropy": True}
EMPTY0 = {"empty_mean": "zero"}
# scenario -> [(point fields over the case's canonical point, "match" | "differ", parts)]
# parts: "value", "pred" (student gradient), "target" (teacher gradient)
EXPECT: dict[str, list[tuple[dict, str, tuple[str, ...]]]] = {
    # KL-DISTILL-CE: ForwardKLLoss is the cross-entropy; its student gradient is the KL's
    "tt-forward-one-token": [({}, "differ", ("value", "target")), ({}, "match", ("pred",)),
                             (CE, "match", ("value", "pred", "target"))],
    "tt-forward-masked": [({}, "differ", ("value",)), (CE, "match", ("value", "pred", "target"))],
    "tt-forward-sum": [(CE, "match", ("value", "pred", "target"))],
    "tt-forward-empty": [({}, "differ", ("value",)), ({**CE, **EMPTY0}, "match", ("value",))],
    "tt-forward-32000-bf16": [({}, "differ", ("value",)), ({}, "match", ("pred",)),
                              (CE, "match", ("value", "pred", "target"))],
    "tt-reverse-masked": [({}, "match", ("value", "pred", "target"))],
    "tt-reverse-50257-bf16": [({}, "match", ("value", "pred", "target"))],
    "tt-reverse-empty": [({}, "differ", ("value",)), (EMPTY0, "match", ("value",))],
    "tt-symmetric": [({}, "differ", ("value",)), (CE, "match", ("value", "pred", "target"))],
    "tt-symmetric-0.3-fp16": [({}, "differ", ("value",)), (CE, "match", ("value", "pred", "target"))],
    # KL-DISTILL-CHUNK: 0.6.1 divides the chunks' sum by the kept tokens, not by the chunks
    "tt-forward-chunked": [(CE, "match", ("value", "pred", "target")),
                           ({**CE, "chunk_mean": True}, "differ", ("value",))],
    "tt-forward-chunked-128256": [(CE, "match", ("value", "pred", "target"))],
    "tt-reverse-chunked": [({}, "match", ("value", "pred", "target")),
                           ({"chunk_mean": True}, "differ", ("value",))],
    "tt-reverse-chunked-empty": [({}, "match", ("value",))],          # 0/0: no empty-mask guard here
    "tt-symmetric-chunked": [(CE, "match", ("value", "pred", "target"))],
    # KL-DISTILL-JSD-ENDS: TRL's beta == 0 / 1 branches
    "trl-jsd-one-token-0": [({}, "differ", ("value",)), ({"jsd_endpoints": "kl"}, "match", ("value", "pred", "target"))],
    "trl-jsd-one-token-0.001": [({}, "match", ("value", "pred", "target"))],
    "trl-jsd-one-token-0.5": [({}, "match", ("value", "pred", "target"))],
    "trl-jsd-one-token-0.999": [({}, "match", ("value", "pred", "target"))],
    "trl-jsd-one-token-1": [({}, "differ", ("value",)), ({"jsd_endpoints": "kl"}, "match", ("value", "pred", "target"))],
    "trl-jsd-masked-tau2": [({}, "match", ("value", "pred", "target"))],
    "trl-jsd-batchmean-no-labels": [({}, "match", ("value", "pred", "target"))],
    "trl-jsd-mean-masked": [({}, "match", ("value", "pred", "target"))],
    "trl-jsd-empty": [({}, "differ", ("value",)), (EMPTY0, "match", ("value",))],
    "trl-forward-256000-bf16": [({}, "match", ("value",))],
    "trl-jsd-32000-bf16-tau0.5": [({}, "match", ("value", "pred", "target"))],
    "trl-reverse-float32-tau4": [({}, "match", ("value", "pred", "target"))],
}


@pytest.fixture(scope="module")
def driven(tmp_path_factory):
    if not PYTHON.exists():
        pytest.skip(f"side environment distill absent ({PYTHON}): python3 bootstrap.py env distill")
    out = tmp_path_factory.mktemp("distill")
    proc = subprocess.run([str(PYTHON), str(ROOT / "tests" / "adapters" / "distill_driver.py"), str(out)],
                          capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = json.loads((out / "outcomes.json").read_text())
    with np.load(out / "arrays.npz") as z:
        arrays = {k: z[k] for k in z.files}
    return meta, arrays


def agrees(observed: np.ndarray, expected: np.ndarray, bound: np.ndarray, dtype: str) -> tuple[bool, str]:
    """KL-BOUND-4 on the expectation rounded to the returned dtype."""
    want = round_to(np.asarray(expected, dtype=np.float64), dtype)
    got = np.asarray(observed, dtype=np.float64)
    if got.shape != want.shape:
        return False, f"shape {got.shape} vs {want.shape}"
    fin = np.isfinite(want)
    special_ok = np.array_equal(np.isnan(got), np.isnan(want)) and np.array_equal(got[np.isinf(want)], want[np.isinf(want)])
    err = np.abs(got[fin] - want[fin])
    b = np.broadcast_to(bound, want.shape)[fin]
    ok = special_ok and bool(np.all(err <= b)) and bool(np.all(np.isfinite(got[fin])))
    worst = float(np.max(err / np.maximum(b, 1e-300))) if err.size else 0.0
    return ok, f"err/bound {worst:.3g}, special values {'same' if special_ok else 'differ'}"


def test_every_scenario_has_expectations():
    assert set(EXPECT) == {sid for sid, _, _ in distill_cases.SCENARIOS}


@pytest.mark.parametrize("sid", sorted(EXPECT))
def test_scenario(driven, sid):
    """KL-DISTILL-FWD KL-DISTILL-REV KL-DISTILL-SYM KL-DISTILL-JSD KL-DISTILL-JSD-ENDS
    KL-DISTILL-CE KL-DISTILL-MASK KL-DISTILL-EMPTY KL-DISTILL-CHUNK KL-DISTILL-CHUNK-MEAN
    KL-DISTILL-DTYPE KL-DISTILL-BOUND: the framework against the reference's points."""
    meta, arrays = driven
    m = meta[sid]
    assert m["status"] == "ok", m
    ref, build = distill_cases.by_id()[sid]
    case = build()
    assert m["dtype"] == case.dtype, f"{sid}: returned {m['dtype']}, asked {case.dtype} (KL-DISTILL-DTYPE)"
    base = canonical(case)
    for fields, want, parts in EXPECT[sid]:
        point = DistillPoint(**{**base.to_json(), **fields})
        e = evaluate(case, point)
        for part in parts:
            if part == "value":
                ok, why = agrees(arrays[f"{sid}__value"], e.value, e.bound, m["dtype"])
            else:
                key = f"{sid}__{part}"
                assert key in arrays, f"{sid}: no {part} gradient came back"
                ok, why = agrees(arrays[key], e.grads[part], e.grad_bounds[part], m["grad_dtypes"][part])
            assert ok == (want == "match"), f"{sid} {part} at {point.name}: expected to {want}; {why}"


def test_quoted_figures(driven):
    """The tracker's figures, from the frameworks: torchtune's ForwardKLLoss gives log 2 =
    0.693147 where KL is 0.130812; TRL's JSD gives 0.130812 at beta = 0 and 0.000131 at
    beta = 1e-3 (KL-DISTILL-CE, KL-DISTILL-JSD-ENDS)."""
    _, arrays = driven
    assert f"{float(arrays['tt-forward-one-token__value']):.6f}" == "0.693147"
    assert f"{float(arrays['trl-jsd-one-token-0__value']):.6f}" == "0.130812"
    assert f"{float(arrays['trl-jsd-one-token-0.001__value']):.6f}" == "0.000131"
    assert math.isclose(float(arrays["tt-forward-one-token__value"]), math.log(2), rel_tol=1e-6)


def test_liger_is_skipped_with_its_reason_on_cpu():
    """Liger-Kernel's losses are declared cuda-only: without a CUDA device setup() refuses
    before importing Liger (no Triton on CPU)."""
    from klconform.adapters.base import DeviceUnavailable
    from klconform.adapters.liger_kd import LigerJSD, LigerKLDIVLoss

    import torch      # the main environment's CPU build

    assert LigerJSD.devices == ("cuda",) and LigerKLDIVLoss.devices == ("cuda",)
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: Liger runs")
    for cls in (LigerJSD, LigerKLDIVLoss):
        with pytest.raises(DeviceUnavailable, match="CUDA devices only"):
            cls().setup()


# ----------------------------------------------------------------------------- torchtune 0.3.1 beside 0.6.1
PYTHON_031 = Path(os.environ.get("KLCONFORM_PYTHON_DISTILL031", ROOT / ".venvs" / "distill031" / "bin" / "python"))
CHUNKED_031 = ("tt-forward-chunked", "tt-forward-chunked-128256", "tt-forward-one-token")


@pytest.fixture(scope="module")
def driven_031(tmp_path_factory):
    if not PYTHON_031.exists():
        pytest.skip(f"side environment distill031 absent ({PYTHON_031}): python3 bootstrap.py env distill031")
    out = tmp_path_factory.mktemp("distill031")
    proc = subprocess.run([str(PYTHON_031), str(ROOT / "tests" / "adapters" / "distill_driver.py"), str(out),
                           *CHUNKED_031], capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = json.loads((out / "outcomes.json").read_text())
    with np.load(out / "arrays.npz") as z:
        arrays = {k: z[k] for k in z.files}
    return meta, arrays


@pytest.mark.parametrize("sid", CHUNKED_031[:2])
def test_torchtune_031_averages_chunk_means_and_061_does_not(driven, driven_031, sid):
    """KL-DISTILL-CHUNK-MEAN: torchtune 0.3.1's ForwardKLWithChunkedOutputLoss is the
    chunk_mean member (per-chunk token means over num_output_chunks, an all-ignored chunk
    counting 0), 0.6.1's the token mean (pytorch/torchtune#1865, 0.4.0): the version change
    the two environments show on one case, value and gradients."""
    case = distill_cases.by_id()[sid][1]()
    token = DistillPoint(**{**canonical(case).to_json(), **CE})
    chunk = DistillPoint(**{**token.to_json(), "chunk_mean": True})
    for (meta, arrays), version, right, wrong in ((driven_031, "0.3.1", chunk, token),
                                                  (driven, "0.6.1", token, chunk)):
        m = meta[sid]
        assert m["status"] == "ok" and m["env"]["version"].startswith(version), m
        for point, want in ((right, True), (wrong, False)):
            e = evaluate(case, point)
            ok, why = agrees(arrays[f"{sid}__value"], e.value, e.bound, m["dtype"])
            assert ok == want, f"{version} {sid} at {point.name}: {why}"
        e = evaluate(case, right)
        for part in ("pred", "target"):
            ok, why = agrees(arrays[f"{sid}__{part}"], e.grads[part], e.grad_bounds[part], m["grad_dtypes"][part])
            assert ok, f"{version} {sid} {part} gradient at {right.name}: {why}"


def test_torchtune_031_forward_kl_is_already_cross_entropy(driven_031):
    """KL-DISTILL-CE: the cross-entropy is no regression: 0.3.1's ForwardKLLoss gives log 2
    on the one-token example too."""
    meta, arrays = driven_031
    assert meta["tt-forward-one-token"]["env"]["version"].startswith("0.3.1")
    assert f"{float(arrays['tt-forward-one-token__value']):.6f}" == "0.693147"
