"""Compare guided-method settings on TRAINING crops (never on validation images): how the shipped
recipes' method settings (tasks/*.toml) were chosen.

Each configuration is ``METHOD|key=value|key=value`` (values in TOML syntax, as for --set); a
classical method needs no settings. Prints the PSNR of each crop and the mean, per configuration.

    OMP_NUM_THREADS=1 python benchmarks/tune_methods.py superres4 --crop 128 --images 2 \\
        'lanczos' 'pnp|steps="logsnr20"|lam=0.3' 'pnp|steps="logsnr20"|lam=1.0' 'diffpir|steps="logsnr20"'

The crops are centre crops of ../shared/data/train/bsd200 images 4 onwards (the first three tuned the
baselines, benchmarks/tune_baselines.py); crop i's seed is i (the sampler's; its measurement, made
once and shared by every configuration, by guidedinv.app.measure's rule: noise from measurement_seed(i)).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from guidedinv.app.request import apply_overrides, parse_request
from guidedinv.app.solve import restore
from guidedinv.bench.harness import TASKS, degrade, task_recipe, tuning_crops
from guidedinv.defaults import load_prior
from guidedinv.metrics import psnr


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
    files, crops = tuning_crops(args.data, args.images, args.crop)
    measured = [degrade(TASKS[args.task], x[None], seed=i)[1] for i, x in enumerate(crops)]
    base = task_recipe(TASKS[args.task])
    requests = {}
    for config in args.configs:  # every configuration checked before the model loads
        method, *settings = config.split("|")
        recipe = apply_overrides(base, [f'method="{method}"', *(f"methods.{method}.{s}" for s in settings)], config)
        requests[config] = parse_request(recipe, config)
    prior = load_prior(args.model, device="cpu") if any(r.uses_network for r in requests.values()) else None
    print(f"PSNR (dB) on {len(crops)} centre crops of {args.crop} px from {args.data}, task {args.task}\n")
    print("| configuration | " + " | ".join(f.name for f in files) + " | mean | s / image |")
    print("|---|" + "---|" * (len(files) + 2))
    for config, request in requests.items():
        scores, start = [], time.perf_counter()
        for i, m in enumerate(measured):
            out = restore(prior if request.uses_network else None, request, m.y, mask=m.mask, seeds=[i])
            scores.append(psnr(out[0], m.clean[0]))
        seconds = (time.perf_counter() - start) / len(crops)
        cell = config.replace("|", "\\|")  # a bar inside a markdown table cell must be escaped
        print(f"| `{cell}` | " + " | ".join(f"{s:.2f}" for s in scores) + f" | {sum(scores) / len(scores):.2f} | {seconds:.1f} |",
              flush=True)


if __name__ == "__main__":
    main()
