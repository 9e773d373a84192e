"""accel.devices: the device and dtype every tool runs on, including under ``accelerate launch``."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import accel
from accel.devices import resolve_device, resolve_dtype, what_ran


@dataclasses.dataclass
class FakeState:
    """What accelerate's ``PartialState`` tells a rank (its device, index and the world size)."""

    device: torch.device
    process_index: int = 1
    num_processes: int = 2
    is_main_process: bool = False


def test_explicit_devices_and_clear_errors():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(accel.ConfigError, match="torch device such as 'cpu' or 'cuda:0'"):
        resolve_device("gpu please")
    if not torch.cuda.is_available():
        with pytest.raises(accel.ConfigError, match="no CUDA device"):
            resolve_device("cuda:0")


def test_auto_device_follows_the_accelerate_rank(monkeypatch):
    """Under ``accelerate launch`` each rank's pipeline goes to that rank's device: the state's device,
    or ``cuda:LOCAL_RANK`` from the environment; ``--cpu`` keeps every rank on the CPU."""
    assert resolve_device("auto", FakeState(torch.device("cuda", 1))) == torch.device("cuda", 1)
    assert resolve_device(None, FakeState(torch.device("cpu"))) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert resolve_device("auto") == torch.device("cuda", 3)
    monkeypatch.setenv("ACCELERATE_USE_CPU", "true")
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("ACCELERATE_USE_CPU")
    assert resolve_device("auto") == torch.device("cpu")


def test_dtype_default_is_bfloat16_on_cuda_and_float32_elsewhere():
    assert resolve_dtype("auto", "cpu") is torch.float32
    assert resolve_dtype(None, torch.device("cuda", 0)) is torch.bfloat16
    assert resolve_dtype("float16", "cpu") is torch.float16
    assert resolve_dtype(torch.bfloat16) is torch.bfloat16
    with pytest.raises(accel.ConfigError, match=r"dtype must be one of \['auto', 'float32', 'bfloat16', 'float16'\]"):
        resolve_dtype("fp8")


def test_the_record_says_what_ran():
    record = what_ran("cpu", torch.bfloat16)
    assert record["device"] == "cpu" and record["dtype"] == "bfloat16"
    assert record["torch"] == torch.__version__ and record["accel"] == accel.__version__ and record["diffusers"]


def test_tune_loads_each_rank_on_its_own_device(monkeypatch, tmp_path):
    """With a fake 2-rank state (rank 1 of 2 on cuda:1), `accel tune` loads the model on cuda:1 in
    bfloat16 (auto), or in the dtype asked for."""
    from accel.tuning import tune as tune_module

    class Loaded(Exception):
        pass

    calls = []

    def fake_load(model, device=None, dtype=None, **kwargs):
        calls.append((model, device, dtype))
        raise Loaded

    monkeypatch.setattr("accel.tuning.processes.process_state", lambda: FakeState(torch.device("cuda", 1)))
    monkeypatch.setattr("accel.pipelines.loading.load", fake_load)
    for dtype, expected in (("auto", torch.bfloat16), ("float16", torch.float16)):
        with pytest.raises(Loaded):
            settings = tune_module.TuneSettings(num_prompts=2, validation_prompts=2)
            tune_module.tune("sd-digits", str(tmp_path / "t"), settings, dtype=dtype)
        assert calls[-1] == ("sd-digits", "cuda:1", expected)
