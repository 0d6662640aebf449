"""Choose the classical baselines' default constants on TRAINING crops (never on validation images).

Prints, for each baseline setting, the mean PSNR over fixed centre crops of the first images of
../shared/data/train/bsd200, with the benchmark's degradations (sigma_y = 0.01; denoising 0.05; crop i's
measurement seeded by i, guidedinv.app.measure's rule).
The defaults in guidedinv/baselines.py are the best rows here, rounded, written relative to sigma_y.

    OMP_NUM_THREADS=1 python benchmarks/tune_baselines.py [--images 3] [--crop 256] [--methods tv_deconv]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from guidedinv.app.request import apply_overrides, parse_request
from guidedinv.app.solve import restore
from guidedinv.bench.harness import TASKS, centre_crop, degrade, list_images, task_recipe
from guidedinv.io import read_image
from guidedinv.metrics import psnr

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
        base = task_recipe(TASKS[task])
        measured = [degrade(TASKS[task], x[None], seed=i)[1] for i, x in enumerate(crops)]  # crop i: seed i
        for method, (key, values) in methods.items():
            if args.methods and method not in args.methods.split(","):
                continue
            for value in values:
                request = parse_request(apply_overrides(base, [f'method="{method}"', f"methods.{method}.{key}={value}"]))
                scores = [psnr(restore(None, request, m.y, mask=m.mask)[0], m.clean[0]) for m in measured]
                sigma = request.sigma_y
                ratio = "" if key == "iterations" else f"{value / sigma:.3g}"
                print(f"| {task} | {method} | {key} | {value} | {ratio} | {sum(scores) / len(scores):.2f} |", flush=True)


if __name__ == "__main__":
    main()
