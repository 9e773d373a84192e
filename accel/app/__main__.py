"""``python -m accel.app [--host H] [--port P] [--share] [--runs-root DIR] [--fixed-runs-root] [--no-custom-models]``.

``accel demo`` (in :mod:`accel.cli`) takes the same options but ``--no-custom-models``.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m accel.app", description="The accel Gradio demo.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="create a public gradio.live link")
    add_runs_root_arguments(parser)
    parser.add_argument("--no-custom-models", action="store_true", help="hide the hub id / local path box")
    args = parser.parse_args(argv)
    from . import launch

    kwargs = runs_root_kwargs(args)
    if args.no_custom_models:
        kwargs["allow_custom_models"] = False
    launch(host=args.host, port=args.port, share=args.share, **kwargs)
    return 0


def add_runs_root_arguments(parser: argparse.ArgumentParser) -> None:
    """``--runs-root DIR`` and ``--fixed-runs-root`` (``accel demo`` in :mod:`accel.cli` declares the same two)."""
    parser.add_argument(
        "--runs-root",
        default="runs",
        help="folder of accel eval runs for the curves tab; nothing outside it is read (default: %(default)s)",
    )
    parser.add_argument(
        "--fixed-runs-root", action="store_true", help="users cannot type another folder (inside the root) in the page"
    )


def runs_root_kwargs(args: argparse.Namespace) -> dict[str, object]:
    """The :func:`accel.app.build_app` arguments of :func:`add_runs_root_arguments`."""
    return {"runs_root": args.runs_root, "runs_root_editable": not args.fixed_runs_root}


if __name__ == "__main__":
    sys.exit(main())
