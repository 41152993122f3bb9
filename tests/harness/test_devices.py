"""Devices (issue: an adapter asked for a device; CPU and GPU side by side): the asked
device reaches the worker, an absent one makes the run unavailable, ``--devices`` adds
``NAME[device]`` runs only for adapters declaring the device, and the report compares them."""
from __future__ import annotations

import pytest

from klconform import cli
from klconform.adapters.base import DEVICE_ENV, DeviceUnavailable, asked_device
from klconform.report import scale
from klconform.results import AdapterRun, RunResult, Verdict
from klconform.workers import AdapterUnavailable, AdapterWorker, WorkerSpec

REF = "tests.harness.misbehaving:"


def test_asked_device_defaults_to_cpu_and_refuses_an_absent_one(monkeypatch):
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    assert asked_device() == "cpu"
    monkeypatch.setenv(DEVICE_ENV, "cuda")
    assert asked_device(["cpu", "cuda"]) == "cuda"
    with pytest.raises(DeviceUnavailable, match="device 'cuda' asked for; this worker has cpu"):
        asked_device(["cpu"])


def test_the_device_reaches_the_worker_and_an_absent_one_is_unavailable():
    with AdapterWorker(WorkerSpec(REF + "PretendGPU", device="cuda")) as w:
        assert w.env["device"] == "cuda"
    with AdapterWorker(WorkerSpec(REF + "PretendGPU")) as w:
        assert w.env["device"] == "cpu"
    with pytest.raises(AdapterUnavailable, match="DeviceUnavailable: device 'cuda' asked for"):
        with AdapterWorker(WorkerSpec(REF + "GoodKL", device="cuda")) as w:   # GoodKL: cpu only
            w.env


def test_devices_option_adds_a_run_per_declaring_adapter():
    specs = [WorkerSpec("klconform.adapters.torch_kl_div:TorchKLDiv"),
             WorkerSpec("klconform.adapters.scipy_kl:ScipyEntropy")]
    out = cli.with_devices(specs, "cpu,cuda")
    assert [(s.run_id, s.device) for s in out] == [(None, None), ("torch.kl_div[cuda]", "cuda"), (None, None)]
    assert [(s.run_id, s.device) for s in cli.with_devices(specs, "cuda")] == [("torch.kl_div[cuda]", "cuda")]
    with pytest.raises(cli.UsageError, match="--devices 'tpu'"):
        cli.with_devices(specs, "tpu")


def _run(name, device, classes):
    r = AdapterRun(adapter=name, api="x", env={"device": device})
    for case, cls in classes.items():
        r.verdicts.append(Verdict(adapter=name, case=case, against="canonical", cls=cls,
                                  clauses=("KL-VERDICT-" + cls.upper(),)))
    return r


def test_report_compares_devices_case_by_case():
    cpu = _run("torch.kl_div", "cpu", {"a": "match", "b": "match", "c": "precision"})
    gpu = _run("torch.kl_div[cuda]", "cuda", {"a": "match", "b": "precision", "c": "precision", "d": "match"})
    res = RunResult(schema_version=1, seed=0, hypothesis={}, corpus_digest="", cases={}, runs=[cpu, gpu])

    class Model:
        result = res
    rows = scale.device_rows(Model)
    assert rows == [["torch.kl_div", "cuda", "3", "1", "case `b`: match on cpu, precision on cuda"]]
    md = "\n".join(scale.markdown_section(Model))
    assert f"## {scale.DEVICE_TITLE}" in md and "precision on cuda" in md
    assert scale.DEVICE_TITLE in scale.html_section(Model)
