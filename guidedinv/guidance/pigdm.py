"""Pseudoinverse-guided diffusion (PiGDM; Song, Vahdat, Mardani & Kautz, ICLR 2023). With x0(x_t) the
denoiser's estimate and p(x0 | x_t) taken as N(x0(x_t), r_t^2 I), the likelihood of y = A x0 + sigma n
is p(y | x_t) ~ N(A x0(x_t), r_t^2 A A^T + sigma^2 I), whose score is the vector-Jacobian product

    grad_{x_t} log p(y | x_t) ~ (d x0 / d x_t)^T A^T (r_t^2 A A^T + sigma^2 I)^{-1} (y - A x0),

r_t^2 = 1 - alpha_bar_t (the variance of x0 given x_t for unit-variance Gaussian data; the paper's
sigma_t^2 / (1 + sigma_t^2) in VE terms) and sigma the measurement noise on the model range
(2 sigma_y). After the run's step (the paper's DDIM(eta), from x_t to x_t') this term adds

    x_t' <- x_t' + scale sqrt(alpha_bar_t') sqrt(alpha_bar_t) g,     g = (d x0 / d x_t)^T h,
    h = r_t^2 A^T (r_t^2 A A^T + sigma^2 I)^{-1} (y - A x0) = A^T (A A^T + (sigma^2 / r_t^2) I)^{-1} (y - A x0),

i.e. the correction sqrt(alpha_bar_t) g made to x0, entering the step through DDIM's x0 weight
sqrt(alpha_bar_t') (eps_hat is not recomputed): NVlabs/RED-diff's implementation (algos/pgdm.py, its
default weighting). g is r_t^2 times the score above; noiseless, h = A^+ (y - A x0), the paper's
pseudo-inverse form, and r_t^2 keeps the noisy form continuous with it as sigma -> 0. InverseBench
adds sqrt(alpha_bar_t) g to x_t' itself (no sqrt(alpha_bar_t')): on 64 px training crops at 20 steps
that overshoots where alpha_bar_t' is small (box inpainting 18.1 dB against 21.3 here, one crop at
15.1; scale 2 diverges to 12-14 dB on super-resolution and deblurring where this form gives 21-22).

h is the proximal point argmin_x ||y - A x||^2 + (sigma^2 / r_t^2) ||x - x0||^2 minus x0 (the
push-through identity A^T (A A^T + rho I)^{-1} = (A^T A + rho I)^{-1} A^T), so it goes through
``operator.prox_l2``: elementwise for inpainting, FFT for circular blur and for blur followed by block
averaging, closed forms through the axis factors for downsampling, conjugate gradients otherwise.
One backward pass through the network per step (``needs_grad``), like DPS.

The weight does not shrink with the step's size, so the total pull grows with the number of steps
(as DPS's); on the exact Gaussian prior the result is a close but not exact posterior sample
(tests/test_pigdm_ddrm.py has the figures). ``scale`` = 0 switches the term off.
"""
from __future__ import annotations

import math

import torch

from .base import StepContext
from .measurement import MeasurementTerm

__all__ = ["PiGDM"]


class PiGDM(MeasurementTerm):
    """operator A, measurement y (model range), sigma_y ([0, 1] scale), scale >= 0 (1: the paper's weight)."""

    needs_grad = True

    def pseudo_inverse_residual(self, x0: torch.Tensor, alpha_bar: float) -> torch.Tensor:
        """h = r_t^2 A^T (r_t^2 A A^T + sigma^2 I)^{-1} (y - A x0), r_t^2 = 1 - alpha_bar, without gradients."""
        with torch.no_grad():
            x0 = x0.detach()
            rho = self.sigma**2 / (1 - alpha_bar)
            return self.operator.prox_l2(x0, self.measurement(x0), rho) - x0

    def correct_sample(self, ctx: StepContext, x_next: torch.Tensor) -> torch.Tensor:
        h = self.pseudo_inverse_residual(ctx.pred.x0, ctx.alpha_bar)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(ctx.pred.x0, ctx.x, grad_outputs=h.to(ctx.pred.x0.dtype))
        return x_next + self.scale * math.sqrt(ctx.alpha_bar * ctx.alpha_bar_next) * grad.detach()
