"""Compare guided-method settings on TRAINING crops (never on validation images): how the shipped
recipes' method settings (tasks/*.toml) were chosen.

Each configuration is ``METHOD|key=value|key=value`` (values in TOML syntax, as for --set); a
classical method needs no settings. Prints the PSNR of each crop and the mean, per configuration.

    OMP_NUM_THREADS=1 python benchmarks/tune_methods.py superres4 --crop 128 --images 2 \\
        'lanczos' 'pnp|steps="logsnr20"|lam=0.3' 'pnp|steps="logsnr20"|lam=1.0' 'diffpir|steps="logsnr20"'

The crops are centre crops of ../shared/data/train/bsd200 images 4 onwards (the first three tuned the
baselines, benchmarks/tune_baselines.py); measurement seeds are the crop's index.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from guidedinv.bench.harness import TASKS, centre_crop, degrade, list_images
from guidedinv.defaults import load_prior
from guidedinv.io import read_image
from guidedinv.metrics import psnr
from guidedinv.app.recipes import BASELINES, apply_overrides
from guidedinv.app.restore import restore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=sorted(TASKS))
    parser.add_argument("configs", nargs="+", help="METHOD|key=value|... (see the module docstring)")
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/train/bsd200"))
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    torch.set_num_threads(1)
    files = list_images([Path(args.data)], limit=3 + args.images)[3:]
    crops = [centre_crop(read_image(f).image, args.crop)[0] for _, f in files]
    prior = load_prior(args.model, device="cpu")
    print(f"PSNR (dB) on {len(crops)} centre crops of {args.crop} px from {args.data}, task {args.task}\n")
    print("| configuration | " + " | ".join(f.name for _, f in files) + " | mean | s / image |")
    print("|---|" + "---|" * (len(files) + 2))
    for config in args.configs:
        method, *settings = config.split("|")
        scores, start = [], time.perf_counter()
        for i, x in enumerate(crops):
            recipe, y, mask, _ = degrade(TASKS[args.task], x[None], seed=i)
            recipe = apply_overrides(recipe, [f'method="{method}"', *(f"methods.{method}.{s}" for s in settings)])
            out = restore(None if method in BASELINES else prior, recipe, y, mask=mask)
            scores.append(psnr(out[0], x))
        seconds = (time.perf_counter() - start) / len(crops)
        cell = config.replace("|", "\\|")  # a bar inside a markdown table cell must be escaped
        print(f"| `{cell}` | " + " | ".join(f"{s:.2f}" for s in scores) + f" | {sum(scores) / len(scores):.2f} | {seconds:.1f} |",
              flush=True)


if __name__ == "__main__":
    main()
