"""Check that rerunning a built-in model's training reproduces the shipped weights.

    python -m accel.pipelines.builtin.train_diffusion sd3-shapes --out /tmp/rerun/sd3-shapes
    python -m accel.pipelines.builtin.reproduce sd3-shapes /tmp/rerun/sd3-shapes

Compares every tensor of every safetensors file in the shipped folder with the rerun's (same thread
count as recorded in ``training.json``: CPU kernels split reductions by thread count), prints the
largest difference, and records the outcome under ``rerun_check`` in the shipped ``training.json``
so that the model card can state it.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os

from safetensors.torch import load_file

from ...errors import ConfigError, NotFoundError
from . import WEIGHTS_DIR


def compare(shipped: str, rerun: str) -> dict:
    """Per-folder comparison of two saved models: tensors compared, identical or not, max |difference|."""
    files = sorted(
        os.path.relpath(p, shipped) for p in glob.glob(os.path.join(shipped, "**", "*.safetensors"), recursive=True)
    )
    if not files:
        raise NotFoundError(f"no safetensors files under {shipped}")
    tensors, max_diff, differing = 0, 0.0, []
    for rel in files:
        other = os.path.join(rerun, rel)
        if not os.path.exists(other):
            raise NotFoundError(f"the rerun has no {rel} (expected at {other})")
        a, b = load_file(os.path.join(shipped, rel)), load_file(other)
        if a.keys() != b.keys():
            raise ConfigError(f"{rel}: the rerun's tensor names differ from the shipped ones")
        for key in a:
            tensors += 1
            diff = float((a[key].float() - b[key].float()).abs().max()) if a[key].numel() else 0.0
            if diff > 0:
                differing.append(f"{rel}:{key}")
            max_diff = max(max_diff, diff)
    return {
        "files": len(files),
        "tensors": tensors,
        "identical": not differing,
        "max_abs_difference": max_diff,
        "differing_tensors": len(differing),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="built-in weights folder name, e.g. sd3-shapes")
    parser.add_argument("rerun", help="the folder the rerun wrote (train_diffusion --out)")
    args = parser.parse_args(argv)
    shipped = os.path.join(WEIGHTS_DIR, args.name)
    result = compare(shipped, args.rerun)
    rerun_training = json.load(open(os.path.join(args.rerun, "training.json")))
    path = os.path.join(shipped, "training.json")
    training = json.load(open(path))
    if rerun_training.get("threads") != training.get("threads"):
        raise SystemExit(
            f"the rerun used {rerun_training.get('threads')} thread(s), the shipped run "
            f"{training.get('threads')}; rerun with OMP_NUM_THREADS={training.get('threads')}"
        )
    result.update(
        date=datetime.date.today().isoformat(),
        rerun_minutes=rerun_training.get("minutes"),
        rerun_final_loss=rerun_training.get("final_loss"),
    )
    training["rerun_check"] = result
    with open(path, "w") as f:
        json.dump(training, f, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
