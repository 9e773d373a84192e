"""The ``accel`` command line.

accel eval [SPEC.yaml] [--out runs] [--max-samples N]   quality-speed sweep (default: built-in models)
accel demo [--port 7860] [--runs-root runs]              the Gradio demo
accel info                                               versions, supported families, plugins, built-in models
accel train MODEL                                        retrain a built-in model
accel reparam finetune [...]                             RePaViT distillation fine-tune
accel calibrate-linear-ag MODEL --out coeffs.json        fit LinearAG coefficients
accel search-cache MODEL --out DIR                       search caching schedules (NSGA-II)
accel tune MODEL --out DIR [--minutes M]                 search step count x plugin stacks; writes DIR/plan.json
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def _cmd_eval(args: argparse.Namespace) -> int:
    from .evaluation import evaluate, format_table
    from .evaluation.scoring import WIDE_SPREAD

    results = evaluate(
        args.spec,
        out=args.out,
        max_samples=args.max_samples,
        progress=not args.no_progress,
        # the built-in sweep judges on FLOPs unless told otherwise: its verdicts must not depend on
        # how busy the machine is (wall clock is still reported beside them)
        speed=args.speed or ("auto" if args.spec else "flops"),
        wait=args.wait,
        device=args.device,
        dtype=args.dtype,
    )
    for run_dir, result in results.items():
        print(f"\n== {run_dir}")
        print(format_table(result["rows"]))
        if result["noisy_timing"]:
            print(
                f"note: the per-sample wall-clock speedups of {', '.join(result['noisy_timing'])} vary by more than "
                f"{WIDE_SPREAD:.0%} of their median (10-90%), so the curves and verdicts use the "
                f"{result['rows'][0]['speed_axis']} axis (--speed wall or flops to choose)"
            )
        print(f"Pareto plot: {result['png']}")
        print(f"interactive: {result['html']}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    import diffusers
    import torch

    import accel

    from .pipelines.builtin import BUILTIN_MODELS
    from .pipelines.registry import supported_adapters
    from .plugin import registered_configs

    print(
        f"accel {accel.__version__}  torch {torch.__version__}  diffusers {diffusers.__version__}  "
        f"cuda={torch.cuda.is_available()}"
    )
    adapters = supported_adapters()
    print(f"supported families ({len(adapters)}):")
    for adapter in adapters:
        print(f"  {adapter.family:<16} {adapter.kind:<10} {adapter.title}")
    print(
        "  + any other diffusers transformer whose repeated blocks accel discovers (BlockCache, adaptive guidance); "
        "the matrix: docs/models.md"
    )
    print("plugins:", ", ".join(c.__name__ for c in registered_configs()))
    print("built-in models:")
    for name, spec in BUILTIN_MODELS.items():
        print(f"  {name:<18} {'trained' if spec.is_trained() else 'NOT TRAINED':<12} {spec.title}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    if args.model in ("classifiers",):
        from .pipelines.builtin import CLASSIFIER_DIRS
        from .pipelines.builtin.train_classifiers import (
            train_digits_classifier,
            train_shapes_classifier,
            train_varied_shapes_classifier,
            train_video_classifier,
        )

        for dataset, train_classifier in (
            ("digits", train_digits_classifier),
            ("shapes", train_shapes_classifier),
            ("varied_shapes", train_varied_shapes_classifier),
            ("moving_shapes", train_video_classifier),
        ):
            folder = os.path.basename(CLASSIFIER_DIRS[dataset])
            print(train_classifier(out_dir=os.path.join(args.out, folder) if args.out else None))
    elif args.model in ("vae", "vae-varied-shapes"):
        from .pipelines.builtin.train_autoencoders import train_image_vae

        print(train_image_vae("vae-rgb32" if args.model == "vae" else args.model, out_dir=args.out))
    elif args.model == "vae-video":
        from .pipelines.builtin.train_autoencoders import train_video_vae

        print(train_video_vae(out_dir=args.out) if args.out else train_video_vae())
    elif args.model == "vit-digits":
        from .pipelines.builtin.vit import train_vit

        print(train_vit(out_dir=args.out))
    else:
        from .pipelines.builtin.train_diffusion import train

        print(train(args.model, max_steps=args.max_steps, out_dir=args.out))
    return 0


def _cmd_tune(args: argparse.Namespace) -> int:
    from .evaluation.prompts import load_prompts
    from .tuning.tune import TuneSettings, tune

    settings = TuneSettings(
        population=args.population,
        generations=args.generations,
        seed=args.seed,
        minutes=args.minutes,
        num_prompts=args.num_prompts,
        seeds=args.seeds,
        validation_prompts=args.validation_prompts,
        validation_seeds=args.validation_seeds,
        metric=args.metric,
        linear_ag=not args.no_linear_ag,
        schedule=not args.no_schedule,
        solver=not args.no_solver,
        wall_repeats=args.wall_repeats,
        batch_size=args.batch_size,
    )
    call = _call_arguments(args.call)
    for key, value in (("num_inference_steps", args.steps), ("guidance_scale", args.guidance_scale)):
        if value is not None:
            call[key] = value
    prompts = None if args.prompts == "builtin" else load_prompts(args.prompts, args.model)
    plan = tune(
        args.model,
        args.out,
        settings,
        call=call,
        prompts=prompts,
        progress=not args.no_progress,
        device=args.device,
        dtype=args.dtype,
    )
    if int(os.environ.get("RANK", "0")) == 0:
        gap = plan.info["overfitting"]
        print(f"plan: {args.out}/plan.json ({len(plan.settings)} settings, held-out {plan.metric}):")
        for setting in plan.settings:
            wall = f", wall {setting.wall_speedup:.2f}x" if setting.wall_speedup else ""
            print(f"  {setting}{wall}")
        print(
            f"calibration promised {gap['mean_promised_minus_validated']:+.2f} {plan.metric} more than held-out "
            f"samples gave (mean; worst {gap['max_promised_minus_validated']:+.2f})"
        )
        print(f"plot: {args.out}/front.png, {args.out}/front.html")
    return 0


def _call_arguments(items: list[str] | None) -> dict:
    """``--call KEY=VALUE`` (repeatable; VALUE read as a YAML scalar: 64, 2.5, true, text) or ``--call FILE``
    (a YAML or JSON mapping)."""
    from .errors import ConfigError
    from .files import parse_yaml, read_data

    call: dict = {}
    for item in items or []:
        if "=" not in item:
            data = read_data(item, "--call file")
            if not isinstance(data, dict):
                raise ConfigError(f"--call {item}: the file must hold a mapping of pipeline arguments")
            call.update(data)
            continue
        key, _, text = item.partition("=")
        if not key.isidentifier():
            raise ConfigError(f"--call {item!r}: expected KEY=VALUE with a pipeline argument name as KEY")
        call[key] = parse_yaml(text, f"--call {key}") if text else ""
    return call


def _add_call_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """``--call KEY=VALUE|FILE`` (repeatable), read by :func:`_call_arguments`."""
    parser.add_argument("--call", action="extend", nargs="+", metavar="KEY=VALUE|FILE", help=help)


def add_device_arguments(parser: argparse.ArgumentParser, what: str = "the model") -> None:
    from .devices import DTYPE_CHOICES

    parser.add_argument(
        "--device",
        default=None,
        help=f"where {what} runs: auto (default: the accelerate process's device, else CUDA, else the CPU), "
        "cpu, cuda, cuda:1, ...",
    )
    parser.add_argument(
        "--dtype",
        choices=DTYPE_CHOICES,
        default=None,
        help="precision: auto (default: bfloat16 on CUDA, float32 elsewhere), float32, bfloat16, float16",
    )


def _cmd_calibrate_linear_ag(args: argparse.Namespace) -> int:
    from .devices import resolve_device, resolve_dtype
    from .evaluation.prompts import load_prompts
    from .pipelines.builtin import BUILTIN_MODELS
    from .pipelines.loading import load
    from .tuning.linear_ag_fit import calibrate

    device = resolve_device(args.device)
    pipe = load(args.model, device=str(device), dtype=resolve_dtype(args.dtype, device))
    pipe.set_progress_bar_config(disable=True)
    call = dict(BUILTIN_MODELS[args.model].call_defaults) if args.model in BUILTIN_MODELS else {}
    call.update(num_inference_steps=args.steps, guidance_scale=args.guidance_scale)
    prompts = load_prompts(args.prompts, args.model)[: args.num_prompts]
    data = calibrate(
        pipe, prompts, call, seeds=list(range(args.seeds)), history=args.history, out=args.out, model_name=args.model
    )
    worst = min(data["r2"].values()) if data["r2"] else float("nan")
    print(
        f"wrote {args.out}: {len(data['coefficients'])} steps fitted on {data['trajectories']} trajectories, "
        f"lowest R^2 {worst:.4f}"
    )
    return 0


def _cmd_search_cache(args: argparse.Namespace) -> int:
    from .evaluation.prompts import load_prompts
    from .tuning.cache_search import SearchSettings, search_cache

    prompts = load_prompts(args.prompts, args.model)[: args.num_prompts]
    settings = SearchSettings(
        population=args.population,
        generations=args.generations,
        seed=args.seed,
        minutes=args.minutes,
        metric=args.metric,
    )
    rows = search_cache(
        args.model,
        args.out,
        steps=args.steps,
        kind=args.kind,
        prompts=prompts,
        seeds=tuple(range(args.seeds)),
        settings=settings,
        branch=args.branch,
        forecast_order=args.forecast_order,
        device=args.device,
        dtype=args.dtype,
    )
    print(f"Pareto front ({len(rows)} schedules, in {args.out}/front):")
    for row in rows:
        print(
            f"  {row['path']}: {row['speedup_flops']:.2f}x FLOPs (measured ratio {row['flops_ratio_measured']}), "
            f"{args.metric} {row[args.metric]:.4g}"
        )
    print(f"plot: {args.out}/front.png")
    return 0


def _cmd_schedule(args: argparse.Namespace) -> int:
    from .devices import resolve_device, resolve_dtype
    from .evaluation.prompts import load_prompts
    from .pipelines.builtin import BUILTIN_MODELS
    from .pipelines.loading import load
    from .sampling.solver import SolverConfig
    from .tuning.schedule_search import search_schedules

    if args.solver is not None:
        SolverConfig(solver=args.solver)  # a clear error before the model loads
    device = resolve_device(args.device)
    pipe = load(args.model, device=str(device), dtype=resolve_dtype(args.dtype, device))
    pipe.set_progress_bar_config(disable=True)
    call = dict(BUILTIN_MODELS[args.model].call_defaults) if args.model in BUILTIN_MODELS else {}
    call.update(_call_arguments(args.call))
    prompts = load_prompts(args.prompts, args.model)[: args.num_prompts]
    found = search_schedules(
        pipe,
        prompts,
        list(range(args.seeds)),
        call,
        args.steps,
        args.out,
        reference_steps=args.reference,
        solver=args.solver,
    )
    print(f"levels of the {args.reference}-step schedule, chosen on {len(prompts) * args.seeds} samples:")
    for n, result in found.items():
        print(
            f"  {n} steps: {list(result['config'].indices)} -> {args.out}/schedule_{n}.json "
            f"(jump error {result['cost']:.4g}; evenly spaced levels {result['evenly_spaced_cost']:.4g})"
        )
    solver = f"accel.SolverConfig(solver={args.solver!r}), " if args.solver else ""
    print(
        f"use: accel.apply(pipe, [{solver}accel.TimestepScheduleConfig.load(PATH)]); pipe(..., num_inference_steps=N)"
    )
    return 0


def _cmd_reparam(args: argparse.Namespace) -> int:
    from .tuning.repavit_finetune import main as finetune_main

    return int(finetune_main(args.rest) or 0)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .app import launch

    launch(
        host=args.host,
        port=args.port,
        share=args.share,
        runs_root=args.runs_root,
        runs_root_editable=not args.fixed_runs_root,
        device=args.device,
        dtype=args.dtype,
    )
    return 0


def _add_eval_command(sub: Any) -> None:
    ev = sub.add_parser("eval", help="sweep plugin configs and draw quality-speed curves")
    ev.add_argument(
        "spec", nargs="?", default=None, help="sweep spec (YAML/JSON); default: every built-in model and plugin"
    )
    ev.add_argument("--out", default="runs", help="output root (one folder per sweep; reruns resume)")
    ev.add_argument("--max-samples", type=int, default=None, help="samples per config (smoke runs)")
    ev.add_argument("--no-progress", action="store_true", help="no progress bars")
    ev.add_argument(
        "--wait",
        action="store_true",
        help="when another accel eval holds a run folder, wait for it to finish, then resume there "
        "(default: refuse at once)",
    )
    ev.add_argument(
        "--speed",
        choices=["auto", "flops", "wall"],
        default=None,
        help="x axis of the curves and of the 'beats fewer steps' verdicts: FLOP ratio or paired wall-clock "
        "speedup; auto: wall clock unless its paired spread is wide (default: auto for a spec, flops for the "
        "built-in sweep, whose verdicts must not depend on the machine's load)",
    )
    add_device_arguments(ev, "every sweep (overrides the specs' device / dtype)")
    ev.set_defaults(func=_cmd_eval)


def _add_info_command(sub: Any) -> None:
    info = sub.add_parser("info", help="versions, supported families, plugins, built-in models")
    info.set_defaults(func=_cmd_info)


def _add_train_command(sub: Any) -> None:
    tr = sub.add_parser("train", help="retrain a built-in model (CPU, minutes)")
    tr.add_argument(
        "model",
        choices=[
            "sd-digits",
            "pixart-shapes",
            "sd3-shapes",
            "wan-moving-shapes",
            "vit-digits",
            "classifiers",
            "vae",
            "vae-varied-shapes",
            "vae-video",
        ],
    )
    tr.add_argument(
        "--max-steps", type=int, default=None, help="diffusion models: training steps (default: the recipe's)"
    )
    tr.add_argument(
        "--out",
        default=None,
        help="output folder (default: the shipped weights; for `classifiers` it gets "
        "one subfolder each); use another one to check that a rerun reproduces them",
    )
    tr.set_defaults(func=_cmd_train)


def _add_search_cache_command(sub: Any) -> None:
    sc = sub.add_parser("search-cache", help="NSGA-II search of caching schedules (ECAD); resumable")
    sc.add_argument("model", help="built-in model name, hub id or local path")
    sc.add_argument("--out", required=True, help="output folder (rerun with the same folder to resume)")
    sc.add_argument("--kind", choices=["auto", "block", "deepcache"], default="auto")
    sc.add_argument("--steps", type=int, default=20)
    sc.add_argument("--generations", type=int, default=30)
    sc.add_argument("--population", type=int, default=24)
    sc.add_argument("--metric", choices=["psnr", "ssim", "alignment"], default="psnr")
    sc.add_argument("--prompts", default="builtin")
    sc.add_argument("--num-prompts", type=int, default=8)
    sc.add_argument("--seeds", type=int, default=1, help="seeds per calibration prompt")
    sc.add_argument("--branch", type=int, default=1, help="DeepCache branch for U-Net searches (official numbering)")
    sc.add_argument(
        "--forecast-order",
        type=int,
        choices=[0, 1, 2],
        default=1,
        help="each cached unit may forecast with this Taylor order instead of reusing (0: reuse only)",
    )
    sc.add_argument("--minutes", type=float, default=None, help="time budget; the search checkpoints and stops")
    sc.add_argument("--seed", type=int, default=0)
    add_device_arguments(sc)
    sc.set_defaults(func=_cmd_search_cache)


def _add_tune_command(sub: Any) -> None:
    tu = sub.add_parser(
        "tune",
        help="NSGA-II over the step count and every plugin stack; writes DIR/plan.json (resumable; "
        "split over processes with accelerate launch)",
    )
    tu.add_argument("model", help="built-in model name, hub id or local path")
    tu.add_argument("--out", required=True, help="output folder (rerun with the same folder to resume)")
    tu.add_argument("--minutes", type=float, default=None, help="time budget of the search; rerun to resume")
    tu.add_argument("--generations", type=int, default=12)
    tu.add_argument("--population", type=int, default=20)
    tu.add_argument("--num-prompts", type=int, default=8, help="calibration prompts")
    tu.add_argument("--seeds", type=int, default=1, help="seeds per calibration prompt")
    tu.add_argument("--validation-prompts", type=int, default=8, help="held-out prompts (after the calibration ones)")
    tu.add_argument(
        "--validation-seeds", type=int, default=2, help="seeds per held-out prompt (never calibration seeds)"
    )
    tu.add_argument("--metric", choices=["psnr", "ssim", "alignment"], default="psnr")
    tu.add_argument("--prompts", default="builtin", help="'builtin' or a .txt/.csv prompt file")
    tu.add_argument("--steps", type=int, default=None, help="the baseline's step count (default: the model's)")
    tu.add_argument(
        "--guidance-scale", type=float, default=None, help="default: the pipeline's own default (recorded in the plan)"
    )
    _add_call_argument(
        tu,
        "pipeline call argument for every generation, recorded in the plan (repeatable): height=1024, "
        "num_frames=81, negative_prompt=..., or a YAML/JSON file of them",
    )
    tu.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="samples per pipeline call while generating calibration and validation sets (default: 1 on a GPU, "
        "all at once on the CPU); results do not depend on it",
    )
    add_device_arguments(tu)
    tu.add_argument("--no-linear-ag", action="store_true", help="leave LinearAG (and its calibrations) out")
    tu.add_argument(
        "--no-schedule", action="store_true", help="leave the searched timestep schedule (and its search) out"
    )
    tu.add_argument(
        "--no-solver",
        action="store_true",
        help="leave the solver gene (DPM-Solver++ / UniPC instead of the pipeline's scheduler) out",
    )
    tu.add_argument("--wall-repeats", type=int, default=3, help="paired wall-clock repeats per plan setting (0: skip)")
    tu.add_argument("--seed", type=int, default=0)
    tu.add_argument("--no-progress", action="store_true")
    tu.set_defaults(func=_cmd_tune)


def _add_calibrate_linear_ag_command(sub: Any) -> None:
    cal = sub.add_parser("calibrate-linear-ag", help="fit LinearAG coefficients on calibration trajectories")
    cal.add_argument("model", help="built-in model name, hub id or local path")
    cal.add_argument("--out", required=True, help="coefficients JSON to write")
    cal.add_argument("--steps", type=int, default=20)
    cal.add_argument("--guidance-scale", type=float, default=2.0)
    cal.add_argument("--prompts", default="builtin", help="'builtin' or a .txt/.csv prompt file")
    cal.add_argument("--num-prompts", type=int, default=16)
    cal.add_argument("--seeds", type=int, default=2, help="seeds per prompt")
    cal.add_argument("--history", type=int, default=2, help="past steps in the affine estimate")
    add_device_arguments(cal)
    cal.set_defaults(func=_cmd_calibrate_linear_ag)


def _add_schedule_command(sub: Any) -> None:
    sc = sub.add_parser(
        "schedule",
        help="choose N timesteps of a fine schedule by dynamic programming (OSS); writes DIR/schedule_<N>.json "
        "(resumable)",
    )
    sc.add_argument("model", help="built-in model name, hub id or local path")
    sc.add_argument("--steps", type=int, nargs="+", required=True, help="step counts to choose levels for")
    sc.add_argument("--out", required=True, help="output folder (rerun with the same folder to resume)")
    sc.add_argument("--reference", type=int, default=50, help="steps of the fine reference schedule")
    sc.add_argument(
        "--solver",
        default=None,
        help="dpmsolver++, unipc, ...: search on this solver's levels (apply accel.SolverConfig before the "
        "schedule); default: the pipeline's scheduler",
    )
    sc.add_argument("--prompts", default="builtin", help="'builtin' or a .txt/.csv prompt file")
    sc.add_argument("--num-prompts", type=int, default=8, help="calibration prompts")
    sc.add_argument("--seeds", type=int, default=1, help="seeds per calibration prompt")
    _add_call_argument(
        sc, "pipeline call argument for every generation (repeatable): height=1024, guidance_scale=4, ..."
    )
    add_device_arguments(sc)
    sc.set_defaults(func=_cmd_schedule)


def _add_reparam_command(sub: Any) -> None:
    rp = sub.add_parser("reparam", help="RePaViT tools: `accel reparam finetune --help`")
    rp.add_argument("action", choices=["finetune"])
    rp.add_argument("rest", nargs=argparse.REMAINDER, help="arguments of the action")
    rp.set_defaults(func=_cmd_reparam)


def _add_demo_command(sub: Any) -> None:
    demo = sub.add_parser("demo", help="launch the Gradio demo")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=7860)
    demo.add_argument("--share", action="store_true")
    demo.add_argument(
        "--runs-root",
        default="runs",
        help="folder of accel eval runs for the curves tab; nothing outside it is read (default: %(default)s)",
    )
    demo.add_argument(
        "--fixed-runs-root", action="store_true", help="users cannot type another folder (inside the root) in the page"
    )
    add_device_arguments(demo, "the demo's models")
    demo.set_defaults(func=_cmd_demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="accel", description="Training-free acceleration plugins for diffusion and vision models."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add_command in (
        _add_eval_command,
        _add_info_command,
        _add_train_command,
        _add_search_cache_command,
        _add_tune_command,
        _add_calibrate_linear_ag_command,
        _add_schedule_command,
        _add_reparam_command,
        _add_demo_command,
    ):
        add_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. Every failure is one line on stderr: an accel error's message, or for anything
    else what happened in a sentence, with the traceback written to a log file (never to the screen)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"accel {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place that turns any failure into one line
        from .errors import AccelError

        if isinstance(exc, AccelError):
            print(f"accel {args.command}: error: {_one_line(exc)}", file=sys.stderr)
            return 2
        log = _write_traceback(args.command)
        print(f"accel {args.command}: error: {_describe(exc)} (traceback: {log})", file=sys.stderr)
        return 1


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _describe(exc: BaseException) -> str:
    """An unexpected failure in a sentence: a full disk, memory, or the exception's type and message."""
    import errno

    from .errors import is_out_of_memory

    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        where = repr(exc.filename) if exc.filename else "a file"
        return f"no space left on the device writing {where}; free some space or choose another output folder"
    if is_out_of_memory(exc):
        return "out of memory; use a smaller size, batch or model, or a machine with more memory"
    return f"unexpected {type(exc).__name__}: {_one_line(exc)[:500]}"


def _write_traceback(command: str) -> str:
    """Write the current exception's traceback to a log file; returns its path."""
    import tempfile
    import time
    import traceback

    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    for folder in (os.path.join(root, "accel", "logs"), tempfile.gettempdir()):
        path = os.path.join(folder, f"accel-{command}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log")
        try:
            os.makedirs(folder, exist_ok=True)
            with open(path, "w") as f:
                f.write(f"accel {' '.join(sys.argv[1:])}\n\n{traceback.format_exc()}")
            return path
        except OSError:
            continue
    return "not written: no writable log folder"


if __name__ == "__main__":
    sys.exit(main())
