"""SDEdit on photos with the embedded prior (issue 14): faithfulness against realism, in the style of
SDEdit's evaluation (Meng et al. 2022, Table 1 / Fig. 4), on centre crops of validation photos.

Inputs: the crops themselves, and crude "stroke paintings" made from them (SDEdit's stroke-input
simulation: a median filter, then the colours quantised to a few flat ones). For each strength:
distance to the input (PSNR, SSIM; LPIPS when the optional lpips package runs offline) and a realism
proxy. Then the step rules (ddpm, ddim, dpm++2m) at one strength.

Realism proxy (no reference, computable offline): the prior's own denoising loss, an ELBO-like score.
The image x (model range) is noised to K levels evenly spaced in log-SNR lambda, x_t = sqrt(ab) x +
sqrt(1 - ab) eps with fixed noise, and D = mean over levels of mean((eps_hat - eps)^2). With the VP
ELBO's weighting, -ELBO = 1/2 int E||eps_hat - eps||^2 d(lambda) + const, so D is the diffusion
term of the prior's negative ELBO up to a constant factor: lower D = more probable under the prior.
It is the prior's judgement, so it measures "looks like what this prior learnt" (a small prior
rewards smooth, simple images too: anchors are printed for the photos and the paintings).

    OMP_NUM_THREADS=1 python benchmarks/edit_photos.py ../shared/data/val/cbsd68 --limit 4 --crop 128
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

from guidedinv.app import build_request, restore
from guidedinv.bench.harness import centre_crop, image_seed, list_images
from guidedinv.defaults import load_prior
from guidedinv.io import read_image
from guidedinv.metrics import lpips_distance, psnr, ssim
from guidedinv.noise import NoiseSource
from guidedinv.schedule import logsnr_spacing


def stroke_painting(x: torch.Tensor, median: int = 9, colours: int = 6) -> torch.Tensor:
    """SDEdit's stroke simulation on a (3, H, W) image in [0, 1]: median filter, then ``colours`` flat colours."""
    arr = (x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    im = Image.fromarray(arr).filter(ImageFilter.MedianFilter(median))
    im = im.quantize(colors=colours, method=Image.Quantize.MEDIANCUT).convert("RGB")
    return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).float() / 255


@torch.no_grad()
def denoising_loss(prior, x: torch.Tensor, levels: int = 8, seed: int = 0) -> list[float]:
    """The realism proxy D per image (module docstring); x (B, 3, H, W) in [0, 1]."""
    x = x * 2 - 1
    ts = logsnr_spacing(levels, prior.schedule)
    total = torch.zeros(x.shape[0], dtype=torch.float64)
    for k, t in enumerate(ts):
        eps = NoiseSource.from_seeds([seed + k] * x.shape[0]).randn(x.shape[1:], x.dtype, x.device)
        ab = prior.schedule.alpha_bar(t)
        xt = ab**0.5 * x + (1 - ab) ** 0.5 * eps
        eps_hat = prior.eps(xt, torch.full((x.shape[0],), float(t)))
        total += ((eps_hat - eps) ** 2).mean((1, 2, 3)).double()
    return (total / len(ts)).tolist()


def edit(prior, x: torch.Tensor, seeds: list[int], strength: float, rule: str, steps: str) -> torch.Tensor:
    request = build_request("edit", sets=[f"methods.sdedit.strength={strength}", f'methods.sdedit.rule="{rule}"',
                                          f'methods.sdedit.steps="{steps}"'])
    return restore(prior, request, x, seeds=seeds)


def row(name: str, out: torch.Tensor, ref: torch.Tensor, proxy: list[float], seconds: float | None) -> str:
    p = float(np.mean(psnr(out, ref))) if not torch.equal(out, ref) else float("inf")
    s = float(np.mean(ssim(out, ref)))
    lp = lpips_distance(out, ref)
    lp_text = "n/a" if lp is None else f"{float(np.mean(lp)):.3f}"
    sec = "" if seconds is None else f"{seconds:.1f}"
    return f"| {name} | {p:.2f} | {s:.3f} | {lp_text} | {float(np.mean(proxy)):.4f} | {sec} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--limit", type=int, default=4)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--strengths", default="0.2,0.4,0.6,0.8")
    ap.add_argument("--rules", default="ddpm,ddim,dpm++2m")
    ap.add_argument("--rule-strength", type=float, default=0.5)
    ap.add_argument("--steps", default="logsnr20")
    ap.add_argument("--model", default="default")
    args = ap.parse_args()
    prior = load_prior(args.model)
    files = list_images(args.folders, args.limit)
    photos = torch.stack([centre_crop(read_image(f).image[:3] if read_image(f).channels == 3
                                      else read_image(f).image.expand(3, -1, -1), args.crop)[0] for _, f in files])
    paintings = torch.stack([stroke_painting(p) for p in photos])
    seeds = [image_seed(d, f.name) for d, f in files]
    print(f"# {len(files)} centre crops of {args.crop} px ({', '.join(f'{d}/{f.name}' for d, f in files)}); "
          f"steps {args.steps}; {torch.get_num_threads()} thread(s); model {args.model}")
    print("# realism proxy D: the prior's mean eps-MSE over 8 log-SNR-uniform levels (ELBO-like; lower = more probable)")
    print(f"# anchors: D(photos) = {np.mean(denoising_loss(prior, photos)):.4f}, "
          f"D(stroke paintings) = {np.mean(denoising_loss(prior, paintings)):.4f}; "
          f"painting vs photo PSNR {float(np.mean(psnr(paintings, photos))):.2f} dB")
    strengths = [float(s) for s in args.strengths.split(",")]
    for kind, inputs in (("photo", photos), ("stroke painting", paintings)):
        print()
        print(f"## input: {kind} (rule ddpm); distances to the input {kind}; for paintings also PSNR to the photo")
        print("| strength | PSNR to input (dB) | SSIM to input | LPIPS to input | realism D | seconds |")
        print("|---|---|---|---|---|---|")
        print(row("0 (input)", inputs, inputs, denoising_loss(prior, inputs), None))
        for s in strengths:
            start = time.perf_counter()
            out = edit(prior, inputs, seeds, s, "ddpm", args.steps)
            sec = time.perf_counter() - start
            line = row(f"{s:g}", out, inputs, denoising_loss(prior, out), sec)
            if kind != "photo":
                line += f" PSNR to photo {float(np.mean(psnr(out, photos))):.2f}"
            print(line, flush=True)
    print()
    print(f"## rules at strength {args.rule_strength:g}, {args.steps}")
    print("| input | rule | PSNR to input (dB) | SSIM to input | LPIPS to input | realism D | seconds |")
    print("|---|---|---|---|---|---|---|")
    for kind, inputs in (("photo", photos), ("stroke painting", paintings)):
        for rule in args.rules.split(","):
            start = time.perf_counter()
            out = edit(prior, inputs, seeds, args.rule_strength, rule, args.steps)
            print(row(f"{kind} | {rule}", out, inputs, denoising_loss(prior, out), time.perf_counter() - start), flush=True)


if __name__ == "__main__":
    main()
