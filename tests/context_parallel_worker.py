"""One rank of a context-parallel run on the CPU: ``torchrun --nproc_per_node 2 -m tests.context_parallel_worker OUT``.

Each rank builds the same tiny pipelines and shards their denoisers with diffusers' Ulysses context
parallelism (gloo). Per rank, under ``OUT``:

* ``rank<k>_<case>.pt``: the output of every case of :data:`CASES` (plain, and each plugin or stack
  that runs under context parallelism), with ``rank<k>.json`` holding its ``accel.summary`` savings;
* ``rank<k>_linear_ag.pt``: LinearAG (:func:`linear_ag_case`), its savings in ``rank<k>.json``;
* ``rank<k>_flux_ras_late.pt``: RAS with parallelism enabled after apply (its savings in ``rank<k>.json``);
* ``rank<k>_compiled.pt`` and the graph counts of two compiled generations (``compile_repeated_blocks``);
* in ``rank<k>.json``, what RAS (under Ulysses with uneven shards, ``ulysses_anything``), sparse
  attention (under Ring attention) and its neighbourhood pattern (under Ulysses) do when applied to a
  context-parallel denoiser, and when parallelism is enabled after they were applied: each must
  refuse with the reason, never run silently as a no-op.

The test (``tests/test_parallel.py``) runs :data:`CASES` in one process and compares.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

import torch

STEPS = 4
#: what each plugin's summary says it saved
SAVINGS = (
    "recompute_fraction",
    "cfg_dropped_at_step",
    "mean_density",
    "attention_flops_saved",
    "attention_flops_dense",
    "attention_flops_computed",
    "sparse_calls",
    "dense_calls",
    "tokens_per_step",
    "token_fraction",
    "indices",
    "uncond_per_step",
    "zeroed_steps",
    "scheduler",
)


def _cases() -> dict[str, tuple[str, Callable[[], list[Any]]]]:
    import accel

    def block_cache() -> Any:
        return accel.BlockCacheConfig(interval=2)

    def guidance() -> Any:
        return accel.AdaptiveGuidanceConfig(threshold=-1.0)  # CFG dropped after the first step

    def sparse() -> Any:  # small blocks, tiles and thresholds, so that the tiny Wan's masks are sparse
        return accel.SparseAttentionConfig(
            tau=0.5,
            min_keep=0.0,
            max_keep=0.5,
            dense_warmup_fraction=0.0,
            block_size=8,
            tile=(1, 2, 2),
            backend="torch",
        )

    cases = {
        f"{family}_{name}": (family, configs, {})
        for family in ("wan", "flux")
        for name, configs in (
            ("plain", lambda: []),
            ("block_cache", lambda: [block_cache()]),
            ("adaptive_guidance", lambda: [guidance()]),
            ("block_cache+adaptive_guidance", lambda: [block_cache(), guidance()]),
        )
    }
    video = {"height": 64, "width": 64}  # enough video tokens for several 8-token blocks

    def ras() -> Any:
        return accel.RASConfig(sample_ratio=0.5, warmup_steps=1)

    cases["flux_ras"] = ("flux", lambda: [ras()], {})
    cases["flux_ras+adaptive_guidance"] = ("flux", lambda: [ras(), guidance()], {})

    def schedule() -> Any:  # every other level of an 8-step schedule
        return accel.TimestepScheduleConfig(reference_steps=2 * STEPS, indices=tuple(range(0, 2 * STEPS, 2)))

    def window() -> Any:  # step 0 zeroed (CFG-Zero*), CFG on step 1 only
        return accel.GuidanceWindowConfig(start=0.25, stop=0.5, zero_steps=1)

    cases["wan_timestep_schedule"] = ("wan", lambda: [schedule()], {})
    cases["wan_guidance_window"] = ("wan", lambda: [window()], {})
    cases["wan_timestep_schedule+guidance_window+block_cache"] = (
        "wan",
        lambda: [schedule(), window(), block_cache()],
        {},
    )
    cases["wan_solver+timestep_schedule"] = (  # DPM-Solver++ in flow mode for Wan's UniPC, then a schedule
        "wan",
        lambda: [accel.SolverConfig(solver="dpmsolver++"), schedule()],
        {},
    )
    cases["wan_sparse_attention"] = ("wan", lambda: [sparse()], video)
    cases["wan_sparse_attention+adaptive_guidance"] = ("wan", lambda: [sparse(), guidance()], video)
    return cases


#: case name -> (tiny family, the plugin configs it applies, call arguments besides the defaults)
CASES = _cases()


def run_case(
    tiny: Any, configs: list[Any], inputs: dict[str, Any], then: Callable[[Any], Any] | None = None
) -> tuple[torch.Tensor, dict[str, Any]]:
    """The case's output and the savings ``accel.summary`` reports (NFE, each plugin's own counts);
    ``then`` runs between apply and the generation (to enable parallelism late)."""
    import accel

    if configs:
        accel.apply(tiny.pipe, *configs)
    if then is not None:
        then(tiny)
    with torch.no_grad():
        output = tiny(**tiny.inputs(steps=STEPS, **inputs))
    summary = accel.summary(tiny.pipe) if configs else {}
    savings = {"nfe": summary["last_call"]["nfe"]} if configs else {}
    for denoiser in summary.get("denoisers", {}).values():
        for plugin, stats in denoiser["plugins"].items():
            savings[plugin] = {k: stats[k] for k in SAVINGS if k in stats}
    for plugin in accel.get_handle(tiny.pipe).sessions[0].plugins if configs else []:
        if plugin.name == "ras":  # how many chosen tokens lie in the first half (rank 0's shard)
            selection = plugin.selection
            chosen = [selection.chosen[step] for step in sorted(selection.chosen)]
            half = selection.num_tokens // 2
            savings["ras"]["first_half"] = [None if c is None else int((c < half).sum()) for c in chosen]
    return output, savings


def _perturbed_shard(tiny: Any, rank: int, calls: list[int]) -> dict[str, Any]:
    """Adaptive guidance at a threshold its similarities cross, with rank 1's shard of the first block's
    input perturbed: each rank still takes the same decision (it tests gathered predictions)."""
    import accel

    def perturb(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        calls.append(1)
        hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        noisy = hidden + 0.5 * torch.randn(hidden.shape, generator=torch.Generator().manual_seed(7))
        if "hidden_states" in kwargs:
            return args, {**kwargs, "hidden_states": noisy}
        return (noisy, *args[1:]), kwargs

    if rank == 1:
        tiny.denoiser.blocks[0].register_forward_pre_hook(perturb, with_kwargs=True)
    accel.apply(tiny.pipe, accel.AdaptiveGuidanceConfig(threshold=0.3, reduction="sample"))
    with torch.no_grad():
        output = tiny(**tiny.inputs(steps=STEPS, batch=2))
    stats = accel.summary(tiny.pipe)
    plugin = next(iter(stats["denoisers"].values()))["plugins"]["adaptive_guidance"]
    return {
        "output": [float(output.double().sum()), float(output.double().square().sum())],
        "similarities": plugin["similarities"],
        "cfg_dropped_at_step": {str(k): v for k, v in plugin["cfg_dropped_at_step"].items()},
        "nfe": stats["last_call"]["nfe"],
    }


#: LinearAG's case: the tiny Wan text pipeline, 8 steps (predicted steps 2 and 4 with these settings)
LINEAR_AG_CALL = {"num_inference_steps": 8, "guidance_scale": 3.0, "height": 32, "width": 32, "num_frames": 5}


def linear_ag_case(folder: str, parallel: Callable[[Any], Any] | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
    """LinearAG with coefficients calibrated here (deterministic, before any parallelism), on a denoiser
    that ``parallel`` makes context-parallel (None: one process). The output and the savings."""
    import accel
    from accel.pipelines.testing import tiny_text_pipeline
    from accel.tuning.linear_ag_fit import calibrate

    pipe = tiny_text_pipeline("wan")
    pipe.set_progress_bar_config(disable=True)
    path = os.path.join(folder, "coefficients.json")
    calibrate(pipe, ["a red circle", "a blue square"], LINEAR_AG_CALL, seeds=[0, 1], history=2, out=path)
    if parallel is not None:
        parallel(pipe.transformer)
    accel.apply(pipe, accel.LinearAGConfig(coefficients=path, predict_every=2, predict_until=0.75, threshold=1.5))
    with torch.no_grad():
        generator = torch.Generator().manual_seed(5)
        output = pipe(prompt="a green triangle", generator=generator, output_type="pt", **LINEAR_AG_CALL).frames
    summary = accel.summary(pipe)
    stats = next(iter(summary["denoisers"].values()))["plugins"]["linear_ag"]
    return output, {"nfe": summary["last_call"]["nfe"], "predicted_steps": stats["predicted_steps"]}


def _compiled(tiny: Any) -> dict[str, Any]:
    """BlockCache + adaptive guidance on a context-parallel denoiser whose repeated blocks are compiled
    (a graph-recording eager backend): the graphs each of two generations compiles, and the output."""
    import accel

    torch._dynamo.reset()
    graphs: list = []

    def backend(gm: Any, example_inputs: Any) -> Any:
        graphs.append(gm)
        return gm.forward

    accel.apply(tiny.pipe, accel.BlockCacheConfig(interval=2), accel.AdaptiveGuidanceConfig(threshold=-1.0))
    tiny.denoiser.compile_repeated_blocks(backend=backend)
    counts = []
    with torch._dynamo.config.patch(recompile_limit=64, accumulated_recompile_limit=4096), torch.no_grad():
        for _ in range(2):
            before = len(graphs)
            output = tiny(**tiny.inputs(steps=STEPS))
            counts.append(len(graphs) - before)
    torch._dynamo.reset()
    return {"graphs": counts, "output": output}


def _outcome(call: Callable[[], Any]) -> str:
    try:
        call()
    except Exception as exc:  # recorded for the test to judge
        return f"{type(exc).__name__}: {exc}"
    return "ran"


def main(out_dir: str) -> None:
    import torch.distributed as dist

    # diffusers 0.42.1 places rank r on device ``r % torch.accelerator.device_count()``, which divides by
    # zero on a machine without accelerators. On the CPU every process is its own device: count one.
    torch.accelerator.device_count = lambda: 1
    dist.init_process_group("gloo")
    rank = dist.get_rank()

    from diffusers import ContextParallelConfig

    import accel
    from accel.pipelines.testing import tiny_pipeline

    def parallel(tiny: Any, ring: bool = False, uneven: bool = False) -> Any:
        degrees = {"ring_degree": 2} if ring else {"ulysses_degree": 2, "ulysses_anything": uneven}
        tiny.denoiser.enable_parallelism(config=ContextParallelConfig(**degrees))
        return tiny

    results: dict[str, Any] = {}
    for name, (family, configs, inputs) in CASES.items():
        output, results[name] = run_case(parallel(tiny_pipeline(family)), configs(), inputs)
        torch.save(output, os.path.join(out_dir, f"rank{rank}_{name}.pt"))
    late = tiny_pipeline("flux")  # parallelism enabled after apply: diffusers' gather runs inside RAS's scatter
    output, results["flux_ras_late"] = run_case(late, CASES["flux_ras"][1](), {}, then=parallel)
    torch.save(output, os.path.join(out_dir, f"rank{rank}_flux_ras_late.pt"))
    compiled = _compiled(parallel(tiny_pipeline("wan")))
    torch.save(compiled.pop("output"), os.path.join(out_dir, f"rank{rank}_compiled.pt"))
    results["compiled"] = compiled
    folder = os.path.join(out_dir, f"rank{rank}")
    os.makedirs(folder)
    ulysses = ContextParallelConfig(ulysses_degree=2)
    output, results["linear_ag"] = linear_ag_case(folder, lambda denoiser: denoiser.enable_parallelism(config=ulysses))
    torch.save(output, os.path.join(out_dir, f"rank{rank}_linear_ag.pt"))
    calls: list[int] = []
    results["perturbed"] = _perturbed_shard(parallel(tiny_pipeline("wan")), rank, calls)
    results["perturbed_calls"] = len(calls)
    neighborhood = accel.SparseAttentionConfig(
        pattern="neighborhood", kernel_size=(1, 2, 2), dense_warmup_fraction=0.0
    )
    for case, family, config, ring in (
        ("flux", "flux", accel.RASConfig(sample_ratio=0.5, warmup_steps=1), False),
        ("wan", "wan", accel.SparseAttentionConfig(dense_warmup_fraction=0.0, backend="torch"), True),
        ("wan_neighborhood", "wan", neighborhood, False),
    ):
        tiny = parallel(tiny_pipeline(family), ring, uneven=family == "flux")
        results[f"refused_{case}_apply"] = _outcome(lambda tiny=tiny, config=config: accel.apply(tiny.pipe, config))
        late = tiny_pipeline(family)
        accel.apply(late.pipe, config)
        parallel(late, ring, uneven=family == "flux")
        results[f"refused_{case}_late"] = _outcome(lambda late=late: late(**late.inputs(steps=STEPS)))
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(results, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
