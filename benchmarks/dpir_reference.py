"""Is our `pnp` plug-and-play as good as DPIR with the same denoiser? An independent half-quadratic
splitting loop written from the DPIR paper (Zhang et al., TPAMI 2021, section 4: 24 iterations, the
denoiser's level annealed log-uniformly from 49/255 down to max(sigma_y, sf/255), rho_k = lambda
sigma_y^2 / sigma_k^2 with lambda 0.23, the data step solved exactly, optional x8 self-ensemble of the
denoiser) against the shipped recipe run through the sampler, on TRAINING crops (never validation).

    OMP_NUM_THREADS=1 python benchmarks/dpir_reference.py --model ffdnet --tasks superres4,deblur-gauss

Prints PSNR (dB) per crop and the mean: the classical start, the preset's `pnp` (with the
`[pnp_prior]` warm start when the model is a plug-and-play denoiser), and DPIR's loop with a few
settings. If the two agree, a margin the denoiser does not reach is the denoiser's, not the loop's.
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from guidedinv.app.request import apply_overrides, parse_request
from guidedinv.app.solve import restore
from guidedinv.bench.harness import TASKS, degrade, task_recipe, tuning_crops
from guidedinv.defaults import load_prior
from guidedinv.metrics import psnr

# (label, iterations, lambda, first level on [0, 1], x8 ensemble)
DPIR_SETTINGS = [("DPIR, 24 iterations, lambda 0.23", 24, 0.23, 49 / 255, False),
                 ("DPIR, 24 iterations, lambda 0.23, x8 ensemble", 24, 0.23, 49 / 255, True),
                 ("DPIR, 8 iterations, lambda 0.23", 8, 0.23, 49 / 255, False),
                 ("DPIR, 24 iterations, lambda 0.1", 24, 0.1, 49 / 255, False)]


def denoise(core, z: torch.Tensor, sigma: float, ensemble: bool) -> torch.Tensor:
    """The [0, 1] Gaussian denoiser, alone or averaged over the 8 flips and quarter turns."""
    level = torch.full((z.shape[0],), sigma)
    if not ensemble:
        return core(z, level)
    total = torch.zeros_like(z)
    for k in range(8):
        turned = torch.rot90(z, k % 4, (-2, -1))
        turned = turned.flip(-1) if k >= 4 else turned
        out = core(turned, level)
        out = out.flip(-1) if k >= 4 else out
        total += torch.rot90(out, -(k % 4), (-2, -1))
    return total / 8


def dpir(core, measured, start: torch.Tensor, sigma_y: float, factor: int, iterations: int, lam: float,
         first: float, ensemble: bool) -> torch.Tensor:
    """DPIR's loop on [0, 1]: x <- prox(x), z <- D(x, sigma_k); the operator's exact prox."""
    last = max(sigma_y, factor / 255 if factor > 1 else sigma_y)
    levels = torch.logspace(math.log10(first), math.log10(last), iterations).tolist()
    x = start
    with torch.no_grad():
        for sigma in levels:
            x = measured.operator.prox_l2(x, measured.y if measured.mask is None else measured.operator.A(measured.y),
                                          lam * sigma_y**2 / sigma**2)
            x = denoise(core, x, sigma, ensemble)
    return x.clamp(0, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="superres4,deblur-gauss,deblur-motion")
    parser.add_argument("--model", default="ffdnet", help="a plug-and-play denoiser: ffdnet or a DRUNet/DnCNN file")
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/train/bsd200"))
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--crop", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(1)
    prior = load_prior(args.model, device="cpu")
    core = getattr(prior.net, "core", None)
    if core is None:
        raise SystemExit(f"{args.model}: not a plug-and-play denoiser (DPIR's loop needs D(z, sigma))")
    files, crops = tuning_crops(args.data, args.images, args.crop)
    print(f"PSNR (dB) on {len(crops)} centre crops of {args.crop} px from {args.data}, prior {args.model}\n")
    for name in args.tasks.split(","):
        base = apply_overrides(task_recipe(TASKS[name]), [f'model="{args.model}"'], "--model")
        request = parse_request(base, name)
        init = request.settings.get("init") or "none"
        measured = [degrade(TASKS[name], x[None], seed=i)[1] for i, x in enumerate(crops)]
        starts = [restore(None, parse_request(apply_overrides(base, [f'method="{init}"'], init), init), m.y, mask=m.mask)
                  for m in measured]
        rows = [(f"classical start ({init})", [psnr(s[0], m.clean[0]) for s, m in zip(starts, measured)], 0.0)]
        t0 = time.perf_counter()
        ours = [restore(prior, request, m.y, mask=m.mask, seeds=[i]) for i, m in enumerate(measured)]
        rows.append((f"our pnp, the preset ({request.steps}, lam {request.settings['lam']}, "
                     f"start_sigma {request.settings.get('start_sigma')})",
                     [psnr(x[0], m.clean[0]) for x, m in zip(ours, measured)], (time.perf_counter() - t0) / len(crops)))
        for label, iterations, lam, first, ensemble in DPIR_SETTINGS:
            t0 = time.perf_counter()
            outs = [dpir(core, m, s, request.sigma_y, request.operator.factor, iterations, lam, first, ensemble)
                    for s, m in zip(starts, measured)]
            rows.append((label, [psnr(x[0], m.clean[0]) for x, m in zip(outs, measured)],
                         (time.perf_counter() - t0) / len(crops)))
        print(f"task {name}\n\n| loop | " + " | ".join(f.name for f in files) + " | mean | s / image |")
        print("|---|" + "---|" * (len(files) + 2))
        for label, scores, seconds in rows:
            print(f"| {label} | " + " | ".join(f"{s:.2f}" for s in scores) + f" | {sum(scores) / len(scores):.2f} | {seconds:.1f} |")
        print(flush=True)


if __name__ == "__main__":
    main()
