"""Generation phase of ``accel eval``: every (config, prompt, seed) sample, resumably, on 1..N processes.

Work is split across processes with accelerate's ``PartialState`` (``accelerate launch -m accel.cli
eval ...``); each sample's seed depends only on its prompt index and seed index, so a 2-process
run produces exactly the samples of a 1-process run. Finished samples are never redone or
overwritten: a sample counts as finished once its record line is written (after its PNG).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from .. import api
from ..devices import resolve_device, resolve_dtype, what_ran
from ..errors import ConfigError, OutOfMemoryError, is_out_of_memory
from ..files import atomic_write
from ..metrics.cost import DenoiserTimer, synchronize
from ..sampling.solver import SolverConfig
from ..sampling.timestep_schedule import TimestepScheduleConfig
from .records import RecordWriter, merge, read_records, record_key
from .runfolder import holds_lock, on_main_process, remove_stale_temporaries, run_folder_lock
from .spec import SweepSpec, entry_name

BASELINE = "baseline"


@dataclasses.dataclass(frozen=True)
class RunEntry:
    """One curve point: a name, the plugin configs (empty for baselines) and the step count."""

    name: str
    configs: tuple[Any, ...]
    steps: int
    #: "baseline", "fewer_steps", "fewer_steps_schedule" (on a searched schedule), "fewer_steps_solver"
    #: (with the sweep's solver) or "method"
    kind: str


def run_entries(spec: SweepSpec) -> list[RunEntry]:
    entries = [RunEntry(BASELINE, (), spec.steps, "baseline")]
    entries += [RunEntry(f"steps{k}", (), k, "fewer_steps") for k in spec.fewer_step_counts()]
    for k, path in spec.schedule_files():
        schedule = TimestepScheduleConfig.load(path)
        entries.append(RunEntry(f"steps{k}+schedule", (schedule,), k, "fewer_steps_schedule"))
    if spec.solver is not None:
        solver = SolverConfig(solver=spec.solver)
        entries += [
            RunEntry(f"steps{k}+{spec.solver}", (solver,), k, "fewer_steps_solver") for k in spec.fewer_step_counts()
        ]
    for steps, configs, label in spec.plugin_sets():
        entries.append(RunEntry(label or entry_name(steps, configs, spec.steps), tuple(configs), steps, "method"))
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise ConfigError(f"two grid entries share a name: {names}")
    return entries


def sample_seed(spec: SweepSpec, prompt_id: int, seed_index: int) -> int:
    return spec.base_seed + 1000 * prompt_id + seed_index


def sample_path(entry: str, prompt_id: int, seed: int) -> str:
    safe = entry.replace("/", "-")
    return os.path.join("samples", safe, f"p{prompt_id:04d}_s{seed}.png")


def environment(device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """What the run ran on: device and its name, dtype, versions (main process; every rank uses the
    same kind of device)."""
    import transformers

    return {
        **what_ran(device, dtype),
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "cuda": torch.cuda.is_available(),
        "threads": torch.get_num_threads(),
        "compile": False,
    }


def prepare_run_dir(
    spec: SweepSpec, out_root: str, device: torch.device | None = None, dtype: torch.dtype | None = None
) -> str:
    """Create the run folder and its config.json, or check that an existing one ran the same sweep.

    Holding the folder's lock, also delete the temporaries that crashed writers left behind.
    """
    run_dir = os.path.join(out_root, spec.run_name)
    os.makedirs(run_dir, exist_ok=True)
    if holds_lock(run_dir):
        remove_stale_temporaries(run_dir)
    config_path = os.path.join(run_dir, "config.json")
    payload = {
        "spec": spec.to_dict(),
        "environment": environment(device or torch.device("cpu"), dtype or torch.float32),
        "entries": [
            {"name": e.name, "kind": e.kind, "steps": e.steps, "configs": [c.to_dict() for c in e.configs]}
            for e in run_entries(spec)
        ],
    }
    if os.path.exists(config_path):
        with open(config_path) as f:
            old = json.load(f)
        if old.get("spec") != json.loads(json.dumps(spec.to_dict())):
            raise ConfigError(
                f"{run_dir} holds a different sweep (its config.json differs); pass another --out "
                "or name the sweep differently: finished results are never overwritten"
            )
    else:
        with atomic_write(config_path) as f:
            json.dump(payload, f, indent=2, default=str)
    return run_dir


def process_state():
    """accelerate's ``PartialState``; on machines without CUDA, processes talk over gloo (MULTI_CPU)."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def load_pipeline(spec: SweepSpec, device: Any = None, dtype: torch.dtype | None = None):
    from ..pipelines.loading import load

    pipe = load(spec.model, device=str(device) if device is not None else None, dtype=dtype)
    if spec.scheduler:
        import diffusers

        cls = getattr(diffusers, spec.scheduler, None)
        if cls is None or not hasattr(cls, "from_config"):
            raise ConfigError(f"unknown scheduler {spec.scheduler!r}; use a diffusers scheduler class name")
        pipe.scheduler = cls.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _denoiser(pipe) -> torch.nn.Module:
    return getattr(pipe, "unet", None) or pipe.transformer


@contextlib.contextmanager
def _memory_named(call: dict[str, Any]) -> Iterator[None]:
    """Turn an allocator failure into an :class:`OutOfMemoryError` that names the requested size."""
    try:
        yield
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        size = " x ".join(f"{key} {call[key]}" for key in ("height", "width", "num_frames") if key in call)
        raise OutOfMemoryError(
            f"out of memory generating one sample at {size or 'the model default size'}; use a smaller size in "
            "`call:` or a device with more memory"
        ) from None


def generate(pipe, prompt: str, seed: int, call: dict[str, Any], steps: int) -> tuple[torch.Tensor, float, float]:
    """One sample: ``(image (3,H,W) or video (F,3,H,W) in [0,1], seconds, denoiser seconds)``."""
    kwargs = {
        **call,
        "num_inference_steps": steps,
        "generator": torch.Generator("cpu").manual_seed(seed),
        "output_type": "pt",
    }
    with torch.no_grad(), DenoiserTimer(_denoiser(pipe)) as timer, _memory_named(call):
        synchronize()
        start = time.perf_counter()
        out = pipe(prompt=prompt, **kwargs)
        synchronize()
        seconds = time.perf_counter() - start
    result = out.frames if hasattr(out, "frames") else out.images
    return result[0].float().cpu().clamp(0, 1), seconds, timer.seconds


def save_sample(tensor: torch.Tensor, path: str, meta: dict[str, Any]) -> None:
    """PNG with the prompt and config in its text chunks; videos are saved as a strip of frames."""
    from PIL import Image, PngImagePlugin

    if tensor.ndim == 4:  # (F, 3, H, W) -> frames side by side
        tensor = torch.cat(list(tensor), dim=-1)
    array = (tensor.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    info = PngImagePlugin.PngInfo()
    for key, value in meta.items():
        info.add_text(key, value if isinstance(value, str) else json.dumps(value))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_write(path, "wb") as f:
        Image.fromarray(array).save(f, format="PNG", pnginfo=info)


def load_sample(path: str, frames: int = 1) -> torch.Tensor:
    """Inverse of :func:`save_sample`: ``(3,H,W)`` or ``(F,3,H,W)`` in [0, 1]."""
    from PIL import Image

    array = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    tensor = torch.from_numpy(array).permute(2, 0, 1)
    if frames > 1:
        tensor = torch.stack(tensor.chunk(frames, dim=-1))
    return tensor


def _measure_flops(pipe, prompt: str, seed: int, call: dict[str, Any], steps: int) -> dict[str, float]:
    """FLOPs of one pipeline call, of its denoiser calls alone, and the NFEs that call ran.

    Counting costs several times a plain call, so it runs once per entry; scoring scales the
    denoiser part to each entry's mean NFE over all samples (exact for methods that drop CFG rows).
    """
    kwargs = {
        **call,
        "num_inference_steps": steps,
        "generator": torch.Generator("cpu").manual_seed(seed),
        "output_type": "pt",
    }
    from torch.utils.flop_counter import FlopCounterMode

    # one counter: a second would double the cost
    with torch.no_grad(), FlopCounterMode(display=False) as mode, _memory_named(call):
        pipe(prompt=prompt, **kwargs)
    denoiser = sum(mode.get_flop_counts().get(type(_denoiser(pipe)).__name__, {}).values())
    nfe = api.summary(pipe)["last_call"].get("nfe")
    return {"total": int(mode.get_total_flops()), "denoiser": int(denoiser), "nfe": nfe}


def interleaved(entries: list[RunEntry], pairs: list[tuple[int, int]]) -> list[tuple[RunEntry, int, int]]:
    """Every (entry, prompt id, seed), sample by sample: each sample runs every entry back to back.

    So each entry's time is measured within seconds of the baseline's on the same sample (paired
    speedups survive a machine whose load changes), and the order inside a round rotates so that no
    entry always runs first.
    """
    order = []
    for index, (pid, seed) in enumerate(pairs):
        shift = index % len(entries)
        order += [(entry, pid, seed) for entry in entries[shift:] + entries[:shift]]
    return order


def run_generation(
    spec: SweepSpec,
    out_root: str = "runs",
    max_samples: int | None = None,
    progress: bool = True,
    measure_flops: bool = True,
    wait: bool | float = False,
) -> str:
    """Generate every missing sample of ``spec``; returns the run folder.

    The main process holds the run folder's lock throughout (see :mod:`.runfolder`); ``wait`` says
    whether to queue behind another run that holds it (True, or at most that many seconds) or to
    refuse at once with a :class:`~accel.errors.StateError` (False).
    """
    state = process_state()
    with run_folder_lock(os.path.join(out_root, spec.run_name), state, wait=wait):
        return _generate_missing(spec, out_root, state, max_samples, progress, measure_flops)


def _generate_missing(
    spec: SweepSpec, out_root: str, state: Any, max_samples: int | None, progress: bool, measure_flops: bool
) -> str:
    from tqdm.auto import tqdm

    run_dir = os.path.join(out_root, spec.run_name)
    device = resolve_device(spec.device, state)
    dtype = resolve_dtype(spec.dtype, device)
    on_main_process(state, lambda: prepare_run_dir(spec, out_root, device, dtype))
    state.wait_for_everyone()
    prompts = spec.prompt_list()
    pairs = [(pid, sample_seed(spec, pid, j)) for j in range(spec.seeds_per_prompt) for pid in range(len(prompts))]
    if max_samples:
        pairs = pairs[:max_samples]
    entries = run_entries(spec)
    done = read_records(run_dir)
    todo = [
        (e, pid, seed) for e, pid, seed in interleaved(entries, pairs) if record_key(e.name, pid, seed) not in done
    ]
    flops_path = os.path.join(run_dir, "flops.json")
    flops = json.load(open(flops_path)) if os.path.exists(flops_path) else {}
    pipe = load_pipeline(spec, device, dtype)
    call = spec.call_kwargs()
    with state.split_between_processes(todo) as mine:
        writer = RecordWriter(run_dir, state.process_index)
        bar = tqdm(
            total=len(mine),
            desc=f"eval {spec.run_name}",
            unit="sample",
            disable=not progress,
            position=state.process_index,
            dynamic_ncols=True,
        )
        current: str | None = None
        warm: set[str] = set()
        try:
            for entry, pid, seed in mine:
                if entry.name != current:
                    api.remove(pipe)
                    api.apply(pipe, *entry.configs)
                    current = entry.name
                if entry.name not in warm:  # one untimed run first: the FLOP count where one is missing
                    warm.add(entry.name)
                    _warm_up(
                        pipe,
                        entry,
                        prompts[pid],
                        seed,
                        call,
                        flops,
                        flops_path,
                        measure_flops and state.is_main_process,
                    )
                sample, seconds, denoiser_seconds = generate(pipe, prompts[pid], seed, call, entry.steps)
                path = sample_path(entry.name, pid, seed)
                meta = {"prompt": prompts[pid], "config": entry.name, "seed": str(seed), "steps": str(entry.steps)}
                save_sample(sample, os.path.join(run_dir, path), {**meta, "model": spec.model})
                timing = {"latency_s": seconds, "denoiser_s": denoiser_seconds}
                writer.write(_record(entry, pid, prompts[pid], seed, path, sample, timing, api.summary(pipe), state))
                bar.update(1)
        finally:
            bar.close()
            writer.close()
            api.remove(pipe)
    state.wait_for_everyone()
    if state.is_main_process:
        merge(run_dir)
    state.wait_for_everyone()
    return run_dir


def _warm_up(
    pipe: Any, entry: Any, prompt: str, seed: int, call: dict, flops: dict, flops_path: str, may_count: bool
) -> None:
    """An entry's first, untimed run; it counts the entry's FLOPs where the count is missing. Fewer-steps
    entries run the baseline's denoiser call fewer times: scoring scales the baseline's count by their
    NFEs instead of paying for a count of their own."""
    if may_count and entry.kind != "fewer_steps" and entry.name not in flops:
        flops[entry.name] = _measure_flops(pipe, prompt, seed, call, entry.steps)
        with atomic_write(flops_path) as f:
            json.dump(flops, f, indent=2)
    else:
        generate(pipe, prompt, seed, call, entry.steps)


def _record(
    entry: Any, pid: int, prompt: str, seed: int, path: str, sample: Any, timing: dict, summary: dict, state: Any
) -> dict[str, Any]:
    """One sample's row of ``records.jsonl``."""
    return {
        "key": record_key(entry.name, pid, seed),
        "config": entry.name,
        "kind": entry.kind,
        "prompt_id": pid,
        "prompt": prompt,
        "seed": seed,
        "steps": entry.steps,
        "path": path,
        "frames": int(sample.shape[0]) if sample.ndim == 4 else 1,
        **timing,
        "nfe": summary["last_call"].get("nfe"),
        "denoiser_calls": summary["last_call"].get("denoiser_calls"),
        "plugin_stats": {name: d["plugins"] for name, d in summary["denoisers"].items()},
        "rank": state.process_index,
        "time": time.time(),
    }
