"""Choose the classical baselines' default constants on TRAINING crops (never on validation images).

Prints, for each baseline setting, the mean PSNR over fixed centre crops of the first images of
../shared/data/train/bsd200, with the benchmark's degradations (sigma_y = 0.01; denoising 0.05).
The defaults in guidedinv/baselines.py are the best rows here, rounded, written relative to sigma_y.

    OMP_NUM_THREADS=1 python benchmarks/tune_baselines.py [--images 3] [--crop 256] [--methods tv_deconv]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from guidedinv.bench.harness import TASKS, centre_crop, degrade, list_images
from guidedinv.io import read_image
from guidedinv.metrics import psnr
from guidedinv.app.recipes import apply_overrides
from guidedinv.app.restore import restore

GRID = {  # task -> method -> (setting, values)
    "deblur-gauss": {"wiener": ("balance", [0.003, 0.01, 0.03, 0.1, 0.3]),
                     "richardson_lucy": ("iterations", [10, 20, 30, 50, 100]),
                     "tv_deconv": ("weight", [0.0002, 0.0005, 0.001, 0.002, 0.005])},
    "deblur-motion": {"wiener": ("balance", [0.003, 0.01, 0.03, 0.1, 0.3]),
                      "richardson_lucy": ("iterations", [10, 20, 30, 50, 100]),
                      "tv_deconv": ("weight", [0.0002, 0.0005, 0.001, 0.002, 0.005])},
    "denoise": {"tv_denoise": ("weight", [0.02, 0.035, 0.05, 0.075, 0.1])},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/train/bsd200"))
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--methods", default="", help="comma-separated subset of the methods (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    files = list_images([Path(args.data)], limit=args.images)
    crops = [centre_crop(read_image(f).image, args.crop)[0] for _, f in files]
    print(f"mean PSNR (dB) over {len(crops)} centre crops of {args.crop} px from {args.data}\n")
    print("| task | method | setting | value | value / sigma_y | PSNR |\n|---|---|---|---|---|---|")
    for task, methods in GRID.items():
        for method, (key, values) in methods.items():
            if args.methods and method not in args.methods.split(","):
                continue
            for value in values:
                scores = []
                for i, x in enumerate(crops):
                    recipe, y, mask, _ = degrade(TASKS[task], x[None], seed=i)
                    recipe = apply_overrides(recipe, [f'method="{method}"', f"methods.{method}.{key}={value}"])
                    scores.append(psnr(restore(None, recipe, y, mask=mask)[0], x))
                sigma = float(recipe["noise"]["sigma_y"])
                ratio = "" if key == "iterations" else f"{value / sigma:.3g}"
                print(f"| {task} | {method} | {key} | {value} | {ratio} | {sum(scores) / len(scores):.2f} |", flush=True)


if __name__ == "__main__":
    main()
