"""Diffusion posterior sampling (Chung et al., ICLR 2023, Algorithm 1):

    x_next <- x_next - zeta (t - t_next) (1000 / T) * grad_{x_t} sum_i ||y_i - A x0_i(x_t)||,

with x0(x_t) the denoiser's estimate (the gradient runs back through the network), y, x0 and x_t
on the model's [-1, 1] range, and the norm NOT squared, as in the official code
(condition_methods.py, PosteriorSampling). That is the paper's step zeta_t = zeta' / ||y - A x0|| on
the squared norm with zeta' = zeta / 2.

zeta is per unit of a 1000-step schedule: a step from timestep t to t_next (-1 at the clean end) of
a T-step schedule moves by zeta (t - t_next) 1000 / T. On the paper's 1000 DDPM steps of a
1000-step model that is its zeta on every step; on a respaced grid of N steps each step moves about
1000 / N times as far, so the guidance summed over the run is zeta's whatever N is. (With zeta
applied per step, as the official code does on its 1000 steps, 100 steps got a tenth of the
guidance: 16.5 dB on an SR x4 crop, 64 px; normalised, 21.1 dB; benchmarks/peers.py.)

Unlike the official code, the norm is taken per image and summed, so an image's update does not
depend on the batch it shares. The code's zeta per task: 0.3 for SR x4 and Gaussian or motion
deblurring, 0.5 for inpainting, 1.0 for phase retrieval, all with 1000 DDPM steps, 256 px and
sigma_y = 0.025 on [0, 1]. sigma_y does not enter the update (the normalised step absorbs it); it is
kept for reporting and for uniformity.

deepinv's DPS (``weight`` w, guidance "norm") differentiates the same norm on the [0, 1] scale and adds
it to the score, so in these units its step is zeta_t = (w / 2) sqrt(a a') (sigma_t^2 - sigma_t'^2)
(about w / 2 times the step's beta): it falls with the noise level, where this one is constant per
unit of time.
"""
from __future__ import annotations

import torch

from .base import StepContext
from .measurement import MeasurementTerm

__all__ = ["DPS"]


class DPS(MeasurementTerm):
    """operator A, measurement y (model range), sigma_y ([0, 1] scale), scale = zeta >= 0 per unit of a
    1000-step schedule (the step from t to t_next moves by zeta (t - t_next) 1000 / T)."""

    needs_grad = True

    def step_size(self, ctx: StepContext) -> float:
        """zeta (t - t_next) 1000 / T: this step's multiple of the gradient (T: the denoiser's schedule)."""
        return self.scale * (ctx.t - ctx.t_next) * 1000.0 / ctx.denoiser.schedule.num_steps

    def correct_sample(self, ctx: StepContext, x_next: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            residual = self.residual(ctx.pred.x0).flatten(1)
            (grad,) = torch.autograd.grad(residual.norm(dim=1).sum(), ctx.x)
        return x_next - self.step_size(ctx) * grad.detach()
