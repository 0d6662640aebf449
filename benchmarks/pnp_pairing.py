"""Why does `pnp` collapse with few steps on motion deblurring with FFDNet when DPIR's loop with as
few iterations does not? Variants of the half-quadratic splitting loop, written here on [0, 1] with
the FFDNet core D(z, sigma), on TRAINING crops (the crops of benchmarks/tune_methods.py).

Levels s_0 > ... > s_{N-1} are the sampler's grid ("logsnrN" below the warm start's timestep, /2 to
the [0, 1] scale); rho(s) = lam sigma_y^2 / s^2; prox(x, rho) = argmin ||y - A x||^2 + rho ||x - x'||^2
with the operator restore() builds. Every loop starts from the classical estimate plus s_0 times the
sampler's own start noise (seed i for crop i), unless it ends in "-clean".

    ours            x = D(z, s_k); x = prox(x, rho(s_k)); z = x               (ends with a prox)
    ours+D          ours, then x = D(x, s_{N-1})
    next            x = D(z, s_k); x = prox(x, rho(s_{k+1})), no prox after the last D
    dpir            x = prox(z, rho(s_k)); z = D(x, s_k)                       (ends with D)
    ...-clean       from the classical estimate itself (DPIR's start)
    ...-sy          the N levels log-spaced from s_0 down to max(sigma_y, sf/255) (DPIR's end)
    ours-clip       ours with the prox output clipped to [0, 1]

    OMP_NUM_THREADS=1 python benchmarks/pnp_pairing.py --crop 128 --images 3
    OMP_NUM_THREADS=1 python benchmarks/pnp_pairing.py --trace deblur-motion:8:ours

First, "ours" is checked against the real `pnp` through restore() (same crops, seeds, settings).
--trace TASK:N:VARIANT prints, per step, the level D is told and the RMSE (x 255) of D's input
against the clean crop: the noise D actually sees.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from guidedinv.app.measure import build_operator
from guidedinv.app.noise_range import prior_section_first
from guidedinv.app.request import apply_overrides, parse_request
from guidedinv.app.solve import restore, run_classical
from guidedinv.bench.harness import TASKS, degrade, task_recipe, tuning_crops
from guidedinv.defaults import load_prior
from guidedinv.metrics import psnr
from guidedinv.noise import NoiseSource
from guidedinv.sampler import build_path

# key: (order, rho at the next level, final denoising, clean start, levels end at DPIR's max(sigma_y, sf/255),
# prox output clipped to [0, 1])
VARIANTS = {"ours": ("ours", False, False, False, False, False),
            "ours+D": ("ours", False, True, False, False, False),
            "ours-clean": ("ours", False, False, True, False, False),
            "ours-clip": ("ours", False, False, False, False, True),
            "next": ("ours", True, False, False, False, False),
            "dpir": ("dpir", False, False, False, False, False),
            "dpir-clean": ("dpir", False, False, True, False, False),
            "ours-sy": ("ours", False, False, False, True, False),
            "next-sy": ("ours", True, False, False, True, False),
            "dpir-clean-sy": ("dpir", False, False, True, True, False)}


def grid(schedule, start_sigma: float, n: int) -> list[float]:
    """The sampler's levels for "logsnrN" below the warm start, on the [0, 1] scale."""
    path = build_path(f"logsnr{n}", schedule, init_t=schedule.t_from_sigma(start_sigma))
    return [schedule.sigma(t) / 2 for t in path[:-1]]


def run_variant(name: str, denoise, prox, start: torch.Tensor, noise: torch.Tensor, levels: list[float],
                last: float, trace=None) -> torch.Tensor:
    """One loop of VARIANTS on [0, 1]; trace(step, told level, input of D) sees every denoising."""
    order, nxt, final, clean, to_sigma_y, clip = VARIANTS[name]
    if clip:
        prox = (lambda p: lambda x, s: p(x, s).clamp(0, 1))(prox)
    if to_sigma_y:
        levels = torch.logspace(math.log10(levels[0]), math.log10(last), len(levels)).tolist()
    z = start if clean else start + levels[0] * noise

    def d(x, s):
        if trace is not None:
            trace(s, x)
        return denoise(x, s)

    if order == "dpir":
        for s in levels:
            z = d(prox(z, s), s)
        return z
    for k, s in enumerate(levels):
        z = d(z, s)
        if not nxt:
            z = prox(z, s)
        elif k + 1 < len(levels):
            z = prox(z, levels[k + 1])
    return d(z, levels[-1]) if final else z


def loop(variant: str, request, denoise, schedule, start_sigma: float, start: torch.Tensor, measured, seed: int,
         tracing: bool) -> torch.Tensor:
    """One crop through one variant with the request's grid, lam and sigma_y; the operator restore() builds."""
    operator = build_operator(request, tuple(measured.clean.shape[-2:]), None, for_solver=True)
    lam, sigma_y, factor = request.settings["lam"], request.sigma_y, request.operator.factor

    def prox(x, s):
        return operator.prox_l2(x, measured.y, lam * sigma_y**2 / s**2)

    def trace(s, x):
        error = 255 * (x - measured.clean).pow(2).mean().sqrt()
        print(f"crop {seed}: D told {255 * s:6.2f}/255, input RMSE {error:6.2f}/255")

    last = max(sigma_y, factor / 255 if factor > 1 else sigma_y)
    noise = NoiseSource.from_seeds([seed]).randn_like(start)
    levels = grid(schedule, start_sigma, int(str(request.steps)[6:]))
    return run_variant(variant, denoise, prox, start, noise, levels, last, trace if tracing else None).clamp(0, 1)


def mean_psnr(outs, measured) -> float:
    return sum(psnr(x[0], m.clean[0]) for x, m in zip(outs, measured)) / len(outs)


def pnp_request(base: dict, n: int, lam: float, start_sigma: float):
    """The preset's pnp with FFDNet (its [pnp_prior] table merged first, so these settings win over it)."""
    model = ['model="ffdnet"']
    sets = [*model, 'method="pnp"', f'methods.pnp.steps="logsnr{n}"', f"methods.pnp.lam={lam}",
            f"methods.pnp.start_sigma={start_sigma}"]
    return parse_request(apply_overrides(prior_section_first(base, model), sets, "pnp_pairing"), "pnp_pairing")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="deblur-motion,deblur-gauss,superres4")
    parser.add_argument("--steps", default="8,10,20")
    parser.add_argument("--lam", default="0.3", help="one value or several, comma-separated")
    parser.add_argument("--start-sigma", type=float, default=0.35, help="model range (0.175 on [0, 1])")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=", ".join(VARIANTS))
    parser.add_argument("--trace", default=None, help="TASK:N:VARIANT: per-step levels and the noise D sees")
    parser.add_argument("--no-check", action="store_true", help="skip the check against restore()")
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/train/bsd200"))
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--crop", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(1)
    prior = load_prior("ffdnet", device="cpu")
    core = prior.net.core

    def denoise(z, s):
        with torch.no_grad():
            return core(z, torch.full((z.shape[0],), s)).clamp(0, 1)  # the sampler clips x0 to the model range

    files, crops = tuning_crops(args.data, args.images, args.crop)
    steps = [int(n) for n in args.steps.split(",")]
    variants = args.variants.split(",")
    if any(v not in VARIANTS for v in variants):
        parser.error(f"variants are {', '.join(VARIANTS)}")
    tasks = args.tasks.split(",")
    if args.trace:
        task, n, variant = args.trace.split(":")
        tasks, steps, variants, args.no_check = [task], [int(n)], [variant], True
    lams = [float(v) for v in args.lam.split(",")]
    table: dict[tuple[str, str, int], float] = {}
    print(f"PSNR (dB), mean of {len(crops)} centre crops of {args.crop} px, FFDNet, lam {args.lam}, "
          f"start_sigma {args.start_sigma} (model range)\n", flush=True)
    for name in tasks:
        base = task_recipe(TASKS[name])
        measured = [degrade(TASKS[name], x[None], seed=i)[1] for i, x in enumerate(crops)]
        first = pnp_request(base, steps[0], lams[0], args.start_sigma)
        starts = [run_classical(first, m.y, m.mask, method=first.settings["init"]) for m in measured]
        start_scores = [psnr(s[0], m.clean[0]) for s, m in zip(starts, measured)]
        table[(name, "classical start (tv_deconv / lanczos)", 0)] = sum(start_scores) / len(crops)
        for n, lam in ((n, lam) for n in steps for lam in lams):
            request = pnp_request(base, n, lam, args.start_sigma)
            tag = "" if len(lams) == 1 else f", lam {lam:g}"
            if not args.no_check:
                real = [restore(prior, request, m.y, mask=m.mask, seeds=[i]) for i, m in enumerate(measured)]
                table[(name, "pnp through restore()" + tag, n)] = mean_psnr(real, measured)
            for variant in variants:
                outs = [loop(variant, request, denoise, prior.schedule, args.start_sigma, s0, m, i, args.trace)
                        for i, (s0, m) in enumerate(zip(starts, measured))]
                table[(name, variant + tag, n)] = mean_psnr(outs, measured)
            print(f"{name} N={n}: " + ", ".join(f"{v} {s:.2f}" for (t, v, k), s in table.items() if t == name and k == n),
                  flush=True)
    rows = list(dict.fromkeys(v for _, v, _ in table))
    cols = [(t, n) for t in tasks for n in steps]
    print("\n| loop | " + " | ".join(f"{t} {n}" for t, n in cols) + " |")
    print("|---|" + "---|" * len(cols))
    for v in rows:
        cells = [table.get((t, v, n), table.get((t, v, 0))) for t, n in cols]
        print(f"| {v} | " + " | ".join("" if c is None else f"{c:.2f}" for c in cells) + " |")


if __name__ == "__main__":
    main()
