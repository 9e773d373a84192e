"""``accel.pipelines.load``: safetensors only (pickle-only folders are refused with accel's error), and
loading plus generating with the built-in models raises no warning caused by accel's own calls."""

from __future__ import annotations

import collections
import os
import warnings

import pytest
import torch

from accel.errors import UnsupportedModelError
from accel.pipelines import load
from accel.pipelines.builtin import BUILTIN_MODELS

GENERATORS = [name for name, spec in BUILTIN_MODELS.items() if spec.kind != "classifier"]


def pickle_only_pipeline(folder: str, with_objects: bool) -> str:
    """A tiny diffusers pipeline folder whose weights are all pickles (``.bin``), no safetensors.

    ``with_objects``: the text encoder's pickle also holds a non-tensor object (torch's weights-only
    unpickler refuses it with a bare ``UnpicklingError``).
    """
    from safetensors.torch import load_file

    from accel.pipelines.testing import tiny_text_pipeline

    pipe = tiny_text_pipeline("unet")
    getattr(pipe, "pipe", pipe).save_pretrained(folder, safe_serialization=False)
    for component in os.listdir(folder):
        directory = os.path.join(folder, component)
        for name in os.listdir(directory) if os.path.isdir(directory) else []:
            if name.endswith(".safetensors"):  # transformers saves safetensors regardless
                state = load_file(os.path.join(directory, name))
                os.remove(os.path.join(directory, name))
                if with_objects:
                    state["_meta"] = collections.OrderedDict(note=print)
                torch.save(state, os.path.join(directory, "pytorch_model.bin"))
    return folder


@pytest.mark.parametrize("with_objects", [False, True], ids=["tensors", "objects"])
def test_pickle_only_folder_is_refused_with_accels_error(tmp_path, with_objects):
    folder = pickle_only_pipeline(str(tmp_path / "pickled"), with_objects)
    assert not any(name.endswith(".safetensors") for _, _, files in os.walk(folder) for name in files)
    with pytest.raises(UnsupportedModelError, match="safetensors") as info:
        load(folder)
    assert "pickle" in str(info.value)


def test_extra_weights_next_to_safetensors_still_load(tmp_path):
    from accel.pipelines.testing import tiny_text_pipeline

    folder = str(tmp_path / "both")
    tiny_text_pipeline("unet").save_pretrained(folder)
    torch.save({}, os.path.join(folder, "unet", "diffusion_pytorch_model.bin"))  # ignored: safetensors present
    assert type(load(folder)).__name__ == "StableDiffusionPipeline"


def _accels_warnings(records: list[warnings.WarningMessage]) -> list[str]:
    """Warnings raised from accel's own files, or about the deprecated ``torch_dtype`` argument."""
    package = os.path.dirname(os.path.abspath(__import__("accel").__file__)) + os.sep
    return [
        f"{w.category.__name__} {w.filename}:{w.lineno}: {w.message}"
        for w in records
        if os.path.abspath(w.filename).startswith(package) or "torch_dtype" in str(w.message)
    ]


@pytest.mark.parametrize("name", GENERATORS)
def test_builtin_models_load_and_generate_without_accels_warnings(name):
    spec = BUILTIN_MODELS[name]
    assert spec.is_trained(), f"{name} ships without weights"
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        pipe = load(name)
        pipe.set_progress_bar_config(disable=True)
        call = dict(spec.call_defaults, num_inference_steps=2, output_type="pt")
        with torch.no_grad():
            pipe(prompt=["x"], generator=torch.Generator().manual_seed(0), **call)
    assert not _accels_warnings(records)


def test_domain_metrics_load_without_accels_warnings():
    from accel.metrics.domain import DomainMetrics

    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        for spec in {spec.dataset: spec for spec in BUILTIN_MODELS.values() if spec.kind != "classifier"}.values():
            DomainMetrics(spec.dataset)
    assert not _accels_warnings(records)


def test_sparse_attention_under_flop_counting_warns_nothing(monkeypatch):
    """``accel eval`` counts FLOPs under torch's FlopCounterMode, which compiled FlexAttention cannot run
    under: "auto" must take the torch implementation there, without a warning and without giving up
    FlexAttention for the rest of the process."""
    from accel.kernels import dispatch
    from accel.kernels.block_mask import BlockSparseMask
    from accel.metrics.cost import count_flops

    monkeypatch.setattr(dispatch, "_FLEX_FAILED", {})  # as in a fresh process
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 64, 16, generator=g) for _ in range(3))
    blocks = torch.rand(1, 2, 4, 4, generator=g) < 0.5
    blocks[..., torch.arange(4), torch.arange(4)] = True
    mask = BlockSparseMask.from_block_bool(blocks, 16, 16, 64, 64)
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        with torch.no_grad(), count_flops() as flops:
            out, used = dispatch.block_sparse_attention(q, k, v, mask)
    assert [str(w.message) for w in records] == []
    assert used == "torch" and flops["total"] > 0 and torch.isfinite(out).all()
    assert dispatch.backend_status(q, mask)["flex"] is None  # FlexAttention stays available afterwards
