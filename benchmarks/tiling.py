"""How the network's tiling (guidedinv/tiling.py) changes restoration quality and time, on TRAINING
crops (never validation images): a guided method (default pnp) with the task recipe's settings, the
prior's network run on the whole image (tile 0) or on tiles of N px sharing N/SHARE px (--share 8 is
the package's rule, guidedinv.tiling.tiles_of).

    OMP_NUM_THREADS=1 python benchmarks/tiling.py --crop 256 --images 3 --tiles 0,48,64,96,128 \\
        --tasks inpaint-random,superres4,deblur-gauss,deblur-motion

With --speed it instead times one network call (no restoration) per image size and tiling:

    OMP_NUM_THREADS=2 python benchmarks/tiling.py --speed --sizes 256x256,240x320,512x512 --tiles 0,64,80,96

Prints one markdown table per task: the PSNR of each crop, the mean and the seconds per image. The
crops are centre crops of ../shared/data/train/bsd200 images 4 onwards (as benchmarks/tune_methods.py);
crop i's seed is i (the sampler's; the measurement's noise from measurement_seed(i), guidedinv.app.measure),
and its measurement is made once, so every row sees the same measurements.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from guidedinv.app.solve import restore
from guidedinv.bench.harness import TASKS, degrade, method_request, task_recipe, tuning_crops
from guidedinv.defaults import load_prior
from guidedinv.metrics import psnr
from guidedinv.tiling import Tiling


def tiling_and_label(tile: int, share: int) -> tuple[Tiling | None, str]:
    """The tiling of a --tiles entry (0: none) and its table label."""
    if tile == 0:
        return None, "whole image"
    return Tiling(tile, tile // share), f"{tile} px, {tile // share} shared"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="inpaint-random,superres4,deblur-gauss,deblur-motion")
    parser.add_argument("--tiles", default="0,48,64,96,128", help="tile sizes in px; 0 = whole image")
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/train/bsd200"))
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--share", type=int, default=8, help="tiles share 1/SHARE of their side")
    parser.add_argument("--model", default="default")
    parser.add_argument("--method", default="pnp", help="the guided method, with the task recipe's settings for it")
    parser.add_argument("--speed", action="store_true", help="time one network call per size and tiling instead")
    parser.add_argument("--sizes", default="256x256,240x320,512x512", help="HxW sizes for --speed")
    args = parser.parse_args()
    if args.speed:
        return speed(args)
    torch.set_num_threads(1)
    files, crops = tuning_crops(args.data, args.images, args.crop)
    tiles = [tiling_and_label(int(t), args.share) for t in args.tiles.split(",")]
    tasks = args.tasks.split(",")
    requests = {task: method_request(task_recipe(TASKS[task]), args.method, None) for task in tasks}  # checked up front
    prior = load_prior(args.model, device="cpu", tile=0)
    print(f"PSNR (dB) on {len(crops)} centre crops of {args.crop} px from {args.data}; "
          f"method {args.method} with each task recipe's settings")
    for task in tasks:
        measured = [degrade(TASKS[task], x[None], seed=i)[1] for i, x in enumerate(crops)]
        print(f"\n### {task}\n")
        print("| network tiles | " + " | ".join(f.name for f in files) + " | mean | s / image |")
        print("|---|" + "---|" * (len(files) + 2))
        for tiling, label in tiles:
            prior.tiling = tiling
            scores, start = [], time.perf_counter()
            for i, m in enumerate(measured):
                scores.append(psnr(restore(prior, requests[task], m.y, mask=m.mask, seeds=[i])[0], m.clean[0]))
            seconds = (time.perf_counter() - start) / len(crops)
            print(f"| {label} | " + " | ".join(f"{s:.2f}" for s in scores)
                  + f" | {sum(scores) / len(scores):.2f} | {seconds:.1f} |", flush=True)


def speed(args: argparse.Namespace) -> None:
    """ms per network call (median of 3 after a warm-up), whole image and each tiling, at each size."""
    prior = load_prior(args.model, device="cpu", tile=0)
    tiles = [tiling_and_label(int(t), args.share) for t in args.tiles.split(",")]
    print(f"ms per network call of the {args.model} prior, CPU, {torch.get_num_threads()} thread(s), t = 500\n")
    print("| image | " + " | ".join(label for _, label in tiles) + " |")
    print("|---|" + "---|" * len(tiles))
    for size in args.sizes.split(","):
        h, w = (int(v) for v in size.lower().split("x"))
        x, t = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(0)), torch.full((1,), 500.0)
        cells = []
        for tiling, _ in tiles:
            prior.tiling = tiling
            with torch.no_grad():
                prior(x, t)
                times = []
                for _ in range(3):
                    start = time.perf_counter()
                    prior(x, t)
                    times.append(time.perf_counter() - start)
            cells.append(f"{sorted(times)[1] * 1000:.0f}")
        print(f"| {h}x{w} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
