"""diffusers' context parallelism (Ulysses, 2 processes, gloo on the CPU) with accel's plugins.

The plugins that run there (BlockCache, adaptive guidance, RAS, sparse attention under Ulysses, and
stacks of them) give the same output on every rank, equal to one process, with the same savings;
those that cannot act (RAS on uneven shards; sparse attention under Ring attention) refuse with the
reason, at apply and when parallelism is enabled after apply, instead of silently doing nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from accel.pipelines.testing import tiny_pipeline

from .context_parallel_worker import CASES, linear_ag_case, run_case

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def parallel_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("context_parallel")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    command += ["-m", "tests.context_parallel_worker", str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    return out, ranks


@pytest.mark.parametrize("case", sorted(CASES))
def test_plugins_under_context_parallelism_equal_one_process(parallel_run, case):
    out, ranks = parallel_run
    family, configs, inputs = CASES[case]
    outputs = [torch.load(out / f"rank{r}_{case}.pt", weights_only=True) for r in range(2)]
    assert torch.equal(outputs[0], outputs[1])  # every rank holds the same, gathered output
    single, savings = run_case(tiny_pipeline(family), configs(), inputs)
    assert torch.allclose(outputs[0], single, atol=1e-5), float((outputs[0] - single).abs().max())
    assert ranks[0][case] == ranks[1][case] == savings  # the same savings, reported alike on every rank
    if "block_cache" in case:
        assert savings["block_cache"]["recompute_fraction"] < 1.0  # components really reused
    if "adaptive_guidance" in case:  # two calls (CFG) at step 0, one at each of the 3 others
        assert savings["adaptive_guidance"]["cfg_dropped_at_step"] == 1 and savings["nfe"] == 5.0
    if "guidance_window" in case:  # step 0 skipped, CFG on step 1, the conditional branch on steps 2-3
        assert savings["guidance_window"]["zeroed_steps"] == [0] and savings["nfe"] == 2 + 1 + 1
    if "timestep_schedule" in case:
        assert savings["timestep_schedule"]["indices"] == [0, 2, 4, 6]
    if "solver" in case:  # every rank swapped its scheduler alike
        assert savings["solver"]["scheduler"] == "DPMSolverMultistepScheduler"
    if "ras" in case:  # tokens chosen on the whole sequence, not an equal share of each rank's shard
        assert savings["ras"]["tokens_per_step"] == [16, 8, 8, 8]
        assert any(first not in (None, 4) for first in savings["ras"]["first_half"]), savings["ras"]
    if "sparse_attention" in case:  # block-sparse on the whole sequence, inside Ulysses' all-to-all
        assert savings["sparse_attention"]["sparse_calls"] > 0 and savings["sparse_attention"]["mean_density"] < 1


def test_ras_with_parallelism_enabled_after_apply_equals_one_process(parallel_run):
    """Enabled after apply, diffusers' gather of the predictions runs inside RAS's scatter hook: RAS
    gathers and scatters there itself, with the same output and savings as in one process."""
    out, ranks = parallel_run
    outputs = [torch.load(out / f"rank{r}_flux_ras_late.pt", weights_only=True) for r in range(2)]
    assert torch.equal(outputs[0], outputs[1])
    family, configs, inputs = CASES["flux_ras"]
    single, savings = run_case(tiny_pipeline(family), configs(), inputs)
    assert torch.allclose(outputs[0], single, atol=1e-5), float((outputs[0] - single).abs().max())
    assert ranks[0]["flux_ras_late"] == ranks[1]["flux_ras_late"] == savings


def test_linear_ag_under_context_parallelism_equals_one_process(parallel_run, tmp_path):
    """LinearAG (coefficients calibrated on the tiny Wan text pipeline) predicts the same steps on both
    ranks as in one process, with the same output and NFE."""
    out, ranks = parallel_run
    outputs = [torch.load(out / f"rank{r}_linear_ag.pt", weights_only=True) for r in range(2)]
    assert torch.equal(outputs[0], outputs[1])
    single, savings = linear_ag_case(str(tmp_path))
    assert torch.allclose(outputs[0], single, atol=1e-5), float((outputs[0] - single).abs().max())
    assert ranks[0]["linear_ag"] == ranks[1]["linear_ag"] == savings
    assert savings["predicted_steps"] == [2, 4] and savings["nfe"] == 2 * 8 - 2


def test_compiled_blocks_under_context_parallelism_compile_nothing_new_on_a_second_call(parallel_run):
    """``compile_repeated_blocks`` on the context-parallel Wan with BlockCache + adaptive guidance: the
    second generation compiles no graph, and the output is the eager context-parallel one."""
    out, ranks = parallel_run
    for rank in range(2):
        first, second = ranks[rank]["compiled"]["graphs"]
        assert first >= 1 and second == 0, (first, second)
        compiled = torch.load(out / f"rank{rank}_compiled.pt", weights_only=True)
        eager = torch.load(out / f"rank{rank}_wan_block_cache+adaptive_guidance.pt", weights_only=True)
        torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)


def test_ranks_take_the_same_data_dependent_decision_when_one_shard_differs(parallel_run):
    """Rank 1's shard of the first block's input is perturbed; adaptive guidance (per sample, at a
    threshold its similarities cross) still decides alike on both ranks, from gathered predictions."""
    _, ranks = parallel_run
    first, second = ranks[0]["perturbed"], ranks[1]["perturbed"]
    assert ranks[0]["perturbed_calls"] == 0 and ranks[1]["perturbed_calls"] > 0  # only rank 1's shard moved
    assert first == second
    assert first["cfg_dropped_at_step"] and first["nfe"] < 2 * 4  # the decision was taken, and saved calls


@pytest.mark.parametrize(
    "family,config,degrees",
    [
        ("flux", "RASConfig", "ulysses_anything"),
        ("wan", "SparseAttentionConfig", "ring_degree=2"),
        ("wan_neighborhood", "SparseAttentionConfig", "neighbourhood pattern is not wired into Ulysses"),
    ],
)
@pytest.mark.parametrize("when", ["apply", "late"])
def test_plugins_that_cannot_act_refuse_context_parallelism(parallel_run, family, config, degrees, when):
    """RAS on uneven shards (``ulysses_anything``), and sparse attention under Ring attention, refuse with
    the reason at apply and when parallelism is enabled after apply, instead of running as a silent no-op."""
    _, ranks = parallel_run
    for rank in ranks:
        message = rank[f"refused_{family}_{when}"]
        assert message.startswith("UnsupportedModelError: ") and config in message
        assert "context parallelism (" in message and degrees in message and "no speed-up" in message
