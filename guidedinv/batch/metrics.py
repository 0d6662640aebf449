"""Per-item quality numbers for the batch report: PSNR and SSIM against a reference (scikit-image,
data range 1) and the measurement consistency ||A x - y|| / ||y|| of the result x.

The conventions (PSNR over all channels at once, SSIM with Wang et al.'s Gaussian window) are the
ones guidedinv's benchmark metrics use, so numbers from a batch report and from a benchmark agree.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..operators import Inpainting, LinearOperator

__all__ = ["quality", "consistency", "SSIM_MIN_SIDE"]

SSIM_MIN_SIDE = 11  # Wang et al.'s 11x11 Gaussian window


def quality(x: torch.Tensor, reference: torch.Tensor) -> dict[str, float | None]:
    """PSNR (dB) and SSIM of x against ``reference``, both (C, H, W) in [0, 1].

    PSNR: 10 log10(1 / MSE) over every pixel and channel; None when x equals the reference.
    SSIM: Wang et al. (2004)'s settings (11x11 Gaussian window, sigma 1.5, population covariances),
    per channel averaged; None for images under 11 pixels a side.
    """
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    a = np.moveaxis(reference.detach().to("cpu", torch.float64).numpy(), 0, -1)
    b = np.moveaxis(x.detach().to("cpu", torch.float64).numpy(), 0, -1)
    psnr = float(peak_signal_noise_ratio(a, b, data_range=1.0)) if not np.array_equal(a, b) else math.inf
    ssim = None
    if min(a.shape[:2]) >= SSIM_MIN_SIDE:
        ssim = float(structural_similarity(a, b, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                           use_sample_covariance=False, channel_axis=-1))
    return {"psnr": psnr if math.isfinite(psnr) else None, "ssim": ssim}


def consistency(operator: LinearOperator, x: torch.Tensor, y: torch.Tensor) -> float | None:
    """||A x - y|| / ||y|| for one result x (C, H, W) and its measurement y (C, h, w), both [0, 1].

    For inpainting only the observed pixels of y are a measurement (the rest is whatever the file
    held), so y is masked first.
    """
    x, y = x[None].double(), y[None].double()
    if isinstance(operator, Inpainting):
        y = operator.A(y)
    norm = float(y.norm())
    return float((operator.A(x) - y).norm()) / norm if norm > 0 else None
