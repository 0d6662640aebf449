"""Masked local edits (SDEdit's masked variant, Meng et al. 2022, sec. 4.3; Blended Diffusion,
Avrahami et al. 2022): after every step the region to keep is replaced by the input noised to the
next level,

    x_next <- m x_next + (1 - m) (sqrt(ab_next) x_in + sqrt(1 - ab_next) z),   z ~ N(0, I),

with m the edit weight in [0, 1] (1 = regenerate, 0 = keep; a soft or feathered mask blends). On
the last step (ab_next = 1) the kept region is x_in itself, so a binary mask keeps the outside
pixels exactly. With a binary m this is RePaint's replacement (:class:`Replacement` with an
Inpainting operator) without resampling; the blend is written here for soft masks.
"""
from __future__ import annotations

import math

import torch

from ..errors import InputError
from .base import GuidanceTerm, StepContext, check_window

__all__ = ["MaskedBlend"]


class MaskedBlend(GuidanceTerm):
    """mask: edit weights in [0, 1], (H, W), (1, H, W) or (B, 1, H, W); x_in: the image to keep
    (model range, (1 or B, C, H, W)); sigma_window: where the blend acts (always by default)."""

    def __init__(self, mask: torch.Tensor, x_in: torch.Tensor, sigma_window: tuple[float, float] | None = None) -> None:
        mask = torch.as_tensor(mask)
        if mask.dtype == torch.bool:
            mask = mask.float()
        while mask.ndim < 4:
            mask = mask[None]
        if not torch.isfinite(mask).all() or float(mask.min()) < 0 or float(mask.max()) > 1:
            raise InputError("an edit mask's weights must lie in [0, 1] (1 = edit, 0 = keep)")
        if tuple(mask.shape[-2:]) != tuple(x_in.shape[-2:]):
            raise InputError(f"the edit mask is {mask.shape[-1]}x{mask.shape[-2]} but the image is "
                             f"{x_in.shape[-1]}x{x_in.shape[-2]}")
        self.mask = mask
        self.x_in = x_in
        self.sigma_window = check_window(sigma_window)

    def correct_sample(self, ctx: StepContext, x_next: torch.Tensor) -> torch.Tensor:
        a = ctx.alpha_bar_next
        m = self.mask.to(device=x_next.device, dtype=x_next.dtype)
        known = self.x_in.to(device=x_next.device, dtype=x_next.dtype).expand_as(x_next)
        if not ctx.is_last:
            known = math.sqrt(a) * known + math.sqrt(1 - a) * ctx.rng.randn_like(x_next)
        return m * x_next + (1 - m) * known
