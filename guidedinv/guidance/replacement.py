"""RePaint's known-region replacement (Lugmayr et al., CVPR 2022, Algorithm 1, line 5-8):

    x_next <- (1 - m) x_next + m (sqrt(ab_next) y + sqrt(1 - ab_next) z),   z ~ N(0, I),

the measured pixels of the next sample replaced by the measurement noised to the next level
(forward process, fresh noise from the item's own stream). The RePaint code merges before each
network call instead of after each step, which is the same sequence of operations. Resampling
("jump_length", "jump_n_sample") is the sampler's :class:`guidedinv.Resampling`.

For a general operator the same step replaces the row-space part P = A^+ A of x_next by that of
the noised clean image: P x_next <- sqrt(ab_next) A^+ y + sqrt(1 - ab_next) P z (the "projection"
conditioning of Song et al. 2022); for a mask, P = m and this is RePaint exactly. RePaint assumes
a noiseless y: with sigma_y > 0 the final image keeps the noisy measured pixels as they are.
``scale`` in [0, 1] blends: x_next + scale (replaced - x_next); 1 is RePaint.
"""
from __future__ import annotations

import math

import torch

from ..errors import InputError
from .base import StepContext
from .measurement import MeasurementTerm

__all__ = ["Replacement"]


class Replacement(MeasurementTerm):
    """operator A (RePaint: an Inpainting mask), measurement y (model range), scale in [0, 1]."""

    def __init__(self, operator, y, sigma_y=0.0, scale=1.0, sigma_window=None) -> None:
        super().__init__(operator, y, sigma_y, scale, sigma_window)
        if self.scale > 1:
            raise InputError(f"Replacement scale must be in [0, 1] (1 = replace), got {self.scale}")

    def correct_sample(self, ctx: StepContext, x_next: torch.Tensor) -> torch.Tensor:
        a = ctx.alpha_bar_next
        known = math.sqrt(a) * self.operator.pinv(self.measurement(x_next))
        if not ctx.is_last:
            known = known + math.sqrt(1 - a) * self.operator.project(ctx.rng.randn_like(x_next))
        return x_next + self.scale * (known - self.operator.project(x_next))
