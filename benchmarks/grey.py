"""Grey photos against their colour versions: each task on the same crops, once in colour and once
as the grey image (the mean of the channels), pnp at 20 network calls and every classical baseline
of the task; prints, per task, pnp's PSNR margin over the best baseline in colour and in grey.
A grey photo is restored as a grey measurement of a colour image (guidedinv.operators.ColourToGrey).

    python benchmarks/grey.py ../shared/data/val/cbsd68 ../shared/data/val/set14 --limit 2 --crop 256

--matched adds the colour crops at sigma_y x sqrt(3): the mean of three channels with noise s has
noise s / sqrt(3), so a colour measurement carries three times the information on the luminance that
a grey one of the same sigma_y does; at sigma_y x sqrt(3) the two carry the same. --nfe 0 runs pnp at
each preset's own steps.
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
    ap.add_argument("--matched", action="store_true", help="also colour at sigma_y x sqrt(3) (module notes)")
    args = ap.parse_args()
    prior = load_prior("default")
    images = list_images(args.folders, args.limit)
    print(f"# {len(images)} crops of {args.crop} px ({', '.join(f'{d}/{p.name}' for d, p in images)}); pnp at {args.nfe} NFE; "
          f"{torch.get_num_threads()} threads")
    kinds = ["colour", "grey", *(["colour, sigma_y x sqrt(3)"] if args.matched else [])]
    print("| task | " + " | ".join(f"{k}: pnp | {k}: best baseline | {k}: margin" for k in kinds) + " |")
    print("|---|" + "---|---|---|" * len(kinds))
    for name in args.tasks.split(","):
        task = TASKS[name]
        base = task_recipe(task)
        matched = task_recipe(task, sigma_y=float(base["noise"]["sigma_y"]) * 3 ** 0.5)
        methods = [m for m in task.methods if not get_method(m).uses_network]
        scores: dict[tuple[str, str], list[float]] = {}
        start = time.perf_counter()
        for dataset, path in images:
            colour, _ = centre_crop(read_image(path).image, args.crop)
            if colour.shape[0] == 1:
                colour = colour.expand(3, -1, -1)
            for kind, clean, task_base in (("colour", colour, base), ("grey", colour.mean(0, keepdim=True), base),
                                           ("colour, sigma_y x sqrt(3)", colour, matched))[:len(kinds)]:
                s = image_seed(dataset, path.name)
                recipe, m = degrade(task_base, clean[None], seed=s)
                for method in ("pnp", *methods):
                    nfe = args.nfe if get_method(method).uses_network and args.nfe else None
                    req = method_request(recipe, method, nfe)
                    x = restore(prior if req.uses_network else None, req, m.y, mask=m.mask, seeds=[s])
                    scores.setdefault((kind, method), []).append(psnr(x[0].clamp(0, 1), m.clean[0]))
        row = [name]
        for kind in kinds:
            pnp = statistics.mean(scores[(kind, "pnp")])
            best = max(methods, key=lambda b: statistics.mean(scores[(kind, b)]))
            best_psnr = statistics.mean(scores[(kind, best)])
            row += [f"{pnp:.2f}", f"{best} {best_psnr:.2f}", f"{pnp - best_psnr:+.2f}"]
        print("| " + " | ".join(row) + f" |  <!-- {time.perf_counter() - start:.0f} s -->", flush=True)


if __name__ == "__main__":
    main()
