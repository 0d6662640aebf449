"""DiffPIR's data step (Zhu et al., CVPR 2023 workshops, eq. 13 and Algorithm 1, step 4):

    x0 <- argmin_x ||y - A x||^2 + rho_t ||x - x0||^2,      rho_t = lambda sigma_y^2 / sigma_t^2,

i.e. the MAP estimate when x0 is read as x seen through Gaussian noise of variance sigma_t^2 / lambda,
with sigma_t = sqrt((1 - ab_t)/ab_t) the VE level and sigma_y the measurement noise, both on the
model's [-1, 1] range (sigma_y = 2 x the [0, 1] value). Then x0 <- x0 + scale (x_prox - x0)
(scale = 1 is DiffPIR). sigma_y = 0 gives rho = 0, the limit: the projection x0 + A^+ (y - A x0).

Solvers, all through ``operator.prox_l2``: elementwise for inpainting, FFT for circular blur and
for circular blur followed by block averaging (USRNet's formula), closed forms through the axis
factors for both downsampling kernels, conjugate gradients otherwise.
DiffPIR's code puts the [0, 1] noise level into rho_t while the noise is added on [-1, 1], so its
rho_t is 4 times smaller than this one: its lambda corresponds to lambda / 4 here. Its
re-noising with zeta, x_next = sqrt(ab') x0 + sqrt(1 - ab') (sqrt(1 - zeta) eps_hat + sqrt(zeta) z),
is a step rule, not part of this term: ``guidedinv.rules.Renoise(zeta)``.
"""
from __future__ import annotations

import math

import torch

from ..errors import InputError
from .base import StepContext
from .measurement import MeasurementTerm

__all__ = ["Proximal"]


class Proximal(MeasurementTerm):
    """operator A, y (model range), sigma_y ([0, 1] scale), lam = lambda > 0, scale >= 0."""

    def __init__(self, operator, y, sigma_y=0.0, lam: float = 1.0, scale=1.0, sigma_window=None) -> None:
        super().__init__(operator, y, sigma_y, scale, sigma_window)
        if not (lam > 0 and math.isfinite(lam)):
            raise InputError(f"Proximal lam (DiffPIR's lambda) must be a finite number > 0, got {lam}")
        self.lam = float(lam)

    def rho(self, ctx: StepContext) -> float:
        """rho_t = lambda sigma_y^2 / sigma_t^2, both on the model range."""
        return self.lam * self.sigma**2 / ctx.sigma**2

    def correct_x0(self, ctx: StepContext, x0: torch.Tensor) -> torch.Tensor:
        x = self.operator.prox_l2(x0, self.measurement(x0), self.rho(ctx))
        return x0 + self.scale * (x - x0)
