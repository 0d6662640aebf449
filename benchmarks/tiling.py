"""How the network's tiling (guidedinv/tiling.py) changes restoration quality and time, on TRAINING
crops (never validation images): a guided method (default pnp) with the task recipe's settings, the
prior's network run on the whole image (tile 0) or on tiles of N px sharing N/4 px.

    OMP_NUM_THREADS=1 python benchmarks/tiling.py --crop 256 --images 3 --tiles 0,48,64,96,128 \\
        --tasks inpaint-random,superres4,deblur-gauss,deblur-motion

Prints one markdown table per task: the PSNR of each crop, the mean and the seconds per image. The
crops are centre crops of ../shared/data/train/bsd200 images 4 onwards (as benchmarks/tune_methods.py);
measurement seeds are the crop's index, so every row sees the same measurements.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from guidedinv.bench import TASKS, centre_crop, degrade, list_images
from guidedinv.defaults import load_prior
from guidedinv.io import read_image
from guidedinv.metrics import psnr
from guidedinv.recipes import apply_overrides
from guidedinv.restore import restore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="inpaint-random,superres4,deblur-gauss,deblur-motion")
    parser.add_argument("--tiles", default="0,48,64,96,128", help="tile sizes in px; 0 = whole image")
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/train/bsd200"))
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--model", default="default")
    parser.add_argument("--method", default="pnp", help="the guided method, with the task recipe's settings for it")
    args = parser.parse_args()
    torch.set_num_threads(1)
    files = list_images([Path(args.data)], limit=3 + args.images)[3:]
    crops = [centre_crop(read_image(f).image, args.crop)[0] for _, f in files]
    tiles = [int(t) for t in args.tiles.split(",")]
    print(f"PSNR (dB) on {len(crops)} centre crops of {args.crop} px from {args.data}; method {args.method} with each task recipe's settings")
    for task in args.tasks.split(","):
        print(f"\n### {task}\n")
        print("| network tiles | " + " | ".join(f.name for _, f in files) + " | mean | s / image |")
        print("|---|" + "---|" * (len(files) + 2))
        for tile in tiles:
            prior = load_prior(args.model, device="cpu", tile=tile)
            scores, start = [], time.perf_counter()
            for i, x in enumerate(crops):
                recipe, y, mask, _ = degrade(TASKS[task], x[None], seed=i)
                recipe = apply_overrides(recipe, [f'method="{args.method}"'])
                scores.append(psnr(restore(prior, recipe, y, mask=mask)[0], x))
            seconds = (time.perf_counter() - start) / len(crops)
            label = "whole image" if tile == 0 else f"{tile} px, {tile // 4} shared"
            print(f"| {label} | " + " | ".join(f"{s:.2f}" for s in scores)
                  + f" | {sum(scores) / len(scores):.2f} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
