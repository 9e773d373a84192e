"""``python -m accel.app [--host H] [--port P] [--share] [--runs-root DIR] [--no-custom-models]``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m accel.app", description="The accel Gradio demo.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="create a public gradio.live link")
    parser.add_argument("--runs-root", default="runs", help="folder of accel eval runs for the curves tab")
    parser.add_argument("--no-custom-models", action="store_true", help="hide the hub id / local path box")
    args = parser.parse_args(argv)
    from . import launch

    kwargs = {"runs_root": args.runs_root}
    if args.no_custom_models:
        kwargs["allow_custom_models"] = False
    launch(host=args.host, port=args.port, share=args.share, **kwargs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
