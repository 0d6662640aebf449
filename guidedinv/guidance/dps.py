"""Diffusion posterior sampling (Chung et al., ICLR 2023, Algorithm 1):

    x_next <- x_next - zeta * grad_{x_t} sum_i ||y_i - A x0_i(x_t)||,

with x0(x_t) the denoiser's estimate (the gradient runs back through the network) and the norm
NOT squared, as in the official code (condition_methods.py, PosteriorSampling). That is the
paper's step zeta_t = zeta' / ||y - A x0|| on the squared norm with zeta' = zeta / 2.
Unlike the official code, the norm is taken per image and summed, so an image's update does not
depend on the batch it shares. The code's zeta (``scale``) per task: 0.3 for SR x4 and Gaussian or
motion deblurring, 0.5 for inpainting, 1.0 for phase retrieval, all with 1000 DDPM steps and
sigma_y = 0.025 on [0, 1]; with fewer steps zeta usually has to grow. sigma_y does not enter the
update (the normalised step absorbs it); it is kept for reporting and for uniformity.
"""
from __future__ import annotations

import torch

from .base import StepContext
from .measurement import MeasurementTerm

__all__ = ["DPS"]


class DPS(MeasurementTerm):
    """operator A, measurement y (model range), sigma_y ([0, 1] scale), scale = zeta >= 0."""

    needs_grad = True

    def correct_sample(self, ctx: StepContext, x_next: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            residual = self.residual(ctx.pred.x0).flatten(1)
            (grad,) = torch.autograd.grad(residual.norm(dim=1).sum(), ctx.x)
        return x_next - self.scale * grad.detach()
