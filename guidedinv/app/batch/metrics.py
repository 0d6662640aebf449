"""Per-item quality numbers for the batch report, through guidedinv.metrics (the benchmark's
metrics), so a batch report and a benchmark give the same numbers. Only the report's edge cases
live here: identical images and images too small for SSIM give None, and for inpainting only the
observed pixels of y count as the measurement.
"""
from __future__ import annotations

import math

import torch

from ...metrics import SSIM_MIN_SIDE, consistency as _consistency, psnr, ssim
from ...operators import Inpainting, LinearOperator

__all__ = ["quality", "consistency", "SSIM_MIN_SIDE"]


def quality(x: torch.Tensor, reference: torch.Tensor) -> dict[str, float | None]:
    """PSNR (dB, None when x equals the reference) and SSIM (None under 11 px a side); (C, H, W) in [0, 1]."""
    p = float(psnr(x.detach().cpu(), reference.detach().cpu()))
    s = float(ssim(x.detach().cpu(), reference.detach().cpu())) if min(x.shape[-2:]) >= SSIM_MIN_SIDE else None
    return {"psnr": p if math.isfinite(p) else None, "ssim": s}


def consistency(operator: LinearOperator, x: torch.Tensor, y: torch.Tensor) -> float | None:
    """||A x - y|| / ||y|| for one result x (C, H, W) and its measurement y (C, h, w), both [0, 1]."""
    x, y = x[None].double(), y[None].double()
    if isinstance(operator, Inpainting):
        y = operator.A(y)  # the unobserved pixels of the file are not a measurement
    if float(y.norm()) == 0:
        return None
    return _consistency(operator, x, y)[0]
