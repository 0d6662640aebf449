"""Grey photos against their colour versions: each task on the same crops, once in colour and once
as the grey image (the mean of the channels), pnp at 20 network calls and every classical baseline
of the task; prints, per task, pnp's PSNR margin over the best baseline in colour and in grey.
A grey photo is restored as a grey measurement of a colour image (guidedinv.operators.ColourToGrey).

    python benchmarks/grey.py ../shared/data/val/cbsd68 ../shared/data/val/set14 --limit 2 --crop 256
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from guidedinv.app import restore
from guidedinv.app.methods import get_method
from guidedinv.bench.harness import TASKS, centre_crop, degrade, image_seed, list_images, method_request, task_recipe
from guidedinv.defaults import load_prior
from guidedinv.io import read_image
from guidedinv.metrics import psnr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--limit", type=int, default=2)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--nfe", type=int, default=20)
    ap.add_argument("--tasks", default=",".join(TASKS))
    args = ap.parse_args()
    prior = load_prior("default")
    images = list_images(args.folders, args.limit)
    print(f"# {len(images)} crops of {args.crop} px ({', '.join(f'{d}/{p.name}' for d, p in images)}); pnp at {args.nfe} NFE; "
          f"{torch.get_num_threads()} threads")
    print("| task | colour: pnp | colour: best baseline | colour margin | grey: pnp | grey: best baseline | grey margin |")
    print("|---|---|---|---|---|---|---|")
    for name in args.tasks.split(","):
        task = TASKS[name]
        base = task_recipe(task)
        methods = [m for m in task.methods if not get_method(m).uses_network]
        scores: dict[tuple[str, str], list[float]] = {}
        start = time.perf_counter()
        for dataset, path in images:
            colour, _ = centre_crop(read_image(path).image, args.crop)
            if colour.shape[0] == 1:
                colour = colour.expand(3, -1, -1)
            for kind, clean in (("colour", colour), ("grey", colour.mean(0, keepdim=True))):
                s = image_seed(dataset, path.name)
                recipe, m = degrade(base, clean[None], seed=s)
                for method in ("pnp", *methods):
                    req = method_request(recipe, method, args.nfe if get_method(method).uses_network else None)
                    x = restore(prior if req.uses_network else None, req, m.y, mask=m.mask, seeds=[s])
                    scores.setdefault((kind, method), []).append(psnr(x[0].clamp(0, 1), m.clean[0]))
        row = [name]
        for kind in ("colour", "grey"):
            pnp = statistics.mean(scores[(kind, "pnp")])
            best = max(methods, key=lambda b: statistics.mean(scores[(kind, b)]))
            best_psnr = statistics.mean(scores[(kind, best)])
            row += [f"{pnp:.2f}", f"{best} {best_psnr:.2f}", f"{pnp - best_psnr:+.2f}"]
        print("| " + " | ".join(row) + f" |  <!-- {time.perf_counter() - start:.0f} s -->", flush=True)


if __name__ == "__main__":
    main()
