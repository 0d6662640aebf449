"""Null-space projection, DDNM and DDNM+ (Wang, Yu & Zhang, ICLR 2023, eq. 13 and eq. 17-19):

    x0 <- x0 + lambda_t A^+ (y - A x0)            (lambda_t = 1: DDNM, noiseless y)

keeps the network's null-space content and takes the range-space content from y.

Noisy y, two rules (``noise_rule``). sigma_y is on the model's [-1, 1] range below (2 sigma_y of
the [0, 1] value; DDNM's code doubles its input too). A step goes from level a = alpha_bar_t to
a' = alpha_bar_{t_next}; sigma' = sqrt((1 - a')/a') is the next level's VE noise. DDIM(eta) (Song
et al. 2021) writes it x_next = c x0 + (terms in x_t) + s z with fresh noise
s = eta sqrt((1 - a')/(1 - a)) sqrt(1 - a/a') and x0 weight c = sqrt(a') - sqrt(1 - a' - s^2)
sqrt(a/(1 - a)); eta = 1 is the DDPM posterior (c = sqrt(a') beta / (1 - a), s^2 = beta_tilde).

"svd" (the default, where the operator has an exact SVD A = U diag(s_i) V^T, see
:mod:`guidedinv.operators.spectral`: circular Blur, Inpainting, Identity, Downsample): DDNM+ with
Sigma_t = V diag(lambda_i) V^T and Phi_t diagonal in V too (eq. 17-18 with per-singular-value
weights; the official code's SVD loop, its "Eq. 51", functions/svd_operators.py Lambda /
Lambda_noise), which is DDRM's step (Kawar et al. 2022, Sec. 4, eq. 7-8) with eta_b = 1. In the
spectral coordinates xb = V^T x, with yb_i = (U^T y)_i / s_i the measurement seen in x-space and
rho_i = sigma_y / s_i its noise there, and DDRM's eta_t = s / sqrt(1 - a') (the fraction of the
next level's noise that DDIM(eta) draws fresh; min 1, 0 on the last step), the next sample is
x_next = sqrt(a') V xb' with, per coordinate (z ~ N(0, 1), eps_hat = (x_t - sqrt(a) x0) / sqrt(1 - a)
the noise x0 implies):

    s_i = 0 (null space):  xb'_i = x0_i + sqrt(1 - eta_t^2) sigma' eps_hat_i + eta_t sigma' z_i
                                   (exactly DDIM(eta): the prior's component, untouched)
    rho_i <= sigma':       lambda_i = 1,                           x0h_i = x0_i + lambda_i (yb_i - x0_i)
                           xb'_i = x0h_i + sqrt(sigma'^2 - (lambda_i rho_i)^2) z_i
                           (the measurement's component, plus just the fresh noise that brings
                           its own noise rho_i up to sigma'; DDRM's third case)
    rho_i >  sigma':       lambda_i = sqrt(1 - eta_t^2) sigma' s_i / sigma_y,
                           xb'_i = x0h_i + sqrt(sigma'^2 - (lambda_i rho_i)^2) z_i = x0h_i + eta_t sigma' z_i
                           (blend: the measurement's noise, lambda_i rho_i = sqrt(1 - eta_t^2) sigma',
                           stands in for DDIM's deterministic part; DDRM's second case)

so every coordinate reaches the total noise sigma' and A^+ n is never amplified beyond it:
the pseudo-inverse's 1/s_i only enters as rho_i, which sets lambda_i. ``scale`` multiplies every
lambda_i (eta_b = scale in DDRM's third case) and the fresh noise still fills sigma'^2 (clipped at 0).
On the last step sigma' = 0, so every lambda_i = 0 and the final x0 is left unprojected, as in both
papers. With sigma_y = 0 the rule is lambda_i = 1 on every s_i > 0: exactly DDNM's projection
(eq. 13), computed in spectral coordinates, and the run's rule takes the step. Like DDRM, the blend
pulls toward yb by lambda_i on every step whatever the step's size, so its bias grows with the
number of steps (Gaussian-prior tests, circular blur: 0.16 of the prior-to-posterior gap at 20
steps, 0.31 at 50, 0.64 at 200); it is meant for DDRM's 10-50 steps. On Gaussian deblurring
(sigma 3, sigma_y 0.01, 64 px, 20 steps) it gives 24.7 dB where the scalar rule gives 4.7.

"scalar" (the paper's eq. 19; also the fallback for an operator without an exact SVD, e.g. a
reflect-boundary Blur or a Compose): the correction carries lambda_t c A^+ n into x_next, and DDNM+
makes that noise part of DDIM's fresh noise, treating A^+ n as white of standard deviation sigma_y:
    s >= c sigma_y:  lambda_t = 1,                gamma_t = sqrt(s^2 - (c sigma_y)^2)
    s <  c sigma_y:  lambda_t = s / (c sigma_y),  gamma_t = 0
and the step adds gamma_t z instead of s z (the paper's rule, not the simplified loop of the
official code, which mixes up alpha_bar and its square root). Exact for inpainting and denoising
(every s_i = 1); for operators whose pseudo-inverse colours the noise it under-counts it by 1/s_i,
and on an ill-conditioned blur A^+ n swamps the result (4.7 dB on Gaussian blur sigma 3, see
docs/peers.md). With scale s_c, lambda_t -> s_c lambda_t and gamma_t follows from it.

Because the fresh noise belongs to the step, with sigma_y > 0 this term performs the step itself
in ``correct_sample`` (the sampler's rule output is replaced); pass ``eta`` here (1: the DDPM
posterior). With sigma_y = 0 it only corrects x0 and works with every rule.
"""
from __future__ import annotations

import math

import torch

from ..errors import InputError
from ..operators.spectral import Spectral
from ..rules import DDIM
from .base import StepContext
from .measurement import MeasurementTerm

__all__ = ["Projection", "NOISE_RULES"]

NOISE_RULES = ("svd", "scalar")


class _ScaledNoise:
    """A NoiseSource stand-in whose draws are ``factor`` times the item streams' draws."""

    def __init__(self, rng, factor: float) -> None:
        self.rng, self.factor = rng, factor

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        return self.factor * self.rng.randn_like(x)


def _ddim_noise(eta: float, a: float, a_next: float) -> float:
    """DDIM(eta)'s fresh noise s on a step from alpha_bar a to a_next."""
    return eta * math.sqrt((1 - a_next) / (1 - a) * (1 - a / a_next))


class Projection(MeasurementTerm):
    """operator A, y (model range), sigma_y ([0, 1] scale), scale >= 0, eta >= 0 (DDNM+ only);
    noise_rule: "svd" (per singular value where the operator has an exact SVD, else "scalar") or
    "scalar" (the paper's eq. 19 everywhere)."""

    def __init__(self, operator, y, sigma_y=0.0, scale=1.0, eta: float = 1.0, sigma_window=None, noise_rule: str = "svd") -> None:
        super().__init__(operator, y, sigma_y, scale, sigma_window)
        if not (eta >= 0 and math.isfinite(eta)):
            raise InputError(f"Projection eta must be a finite number >= 0, got {eta}")
        if noise_rule not in NOISE_RULES:
            raise InputError(f"Projection noise_rule must be one of {', '.join(NOISE_RULES)}, got {noise_rule!r}")
        self.eta = float(eta)
        self.noise_rule = noise_rule
        self._pending: tuple | None = None

    def spectral(self, x: torch.Tensor) -> Spectral | None:
        """The decomposition the "svd" rule uses for images like x, or None (the scalar rule applies)."""
        return self.operator.spectral(x) if self.noise_rule == "svd" else None

    def noise_split(self, ctx: StepContext) -> tuple[float, float, float]:
        """Scalar rule: (lambda_t, gamma_t, s): the correction's weight, the fresh noise DDNM+ adds, DDIM's s."""
        a, a_next = ctx.alpha_bar, ctx.alpha_bar_next
        s = _ddim_noise(self.eta, a, a_next)
        if self.sigma == 0:
            return self.scale, s, s
        c = math.sqrt(a_next) - math.sqrt(max(1 - a_next - s * s, 0.0)) * math.sqrt(a / (1 - a))
        carried = abs(c) * self.sigma
        lam = 1.0 if s >= carried else s / carried
        lam *= self.scale
        return lam, math.sqrt(max(s * s - (lam * carried) ** 2, 0.0)), s

    def svd_split(self, ctx: StepContext, spec: Spectral) -> tuple[torch.Tensor, torch.Tensor]:
        """SVD rule: (lambda_i, g_i) broadcastable like spec.s: the correction's weight per singular
        value and the fresh noise of the VP sample x_next per spectral coordinate (sqrt(a') times the
        VE noise of the module docstring)."""
        a, a_next = ctx.alpha_bar, ctx.alpha_bar_next
        s_ddim = _ddim_noise(self.eta, a, a_next)
        sigma_next = ctx.sigma_next
        eta_t = min(s_ddim / math.sqrt(1 - a_next), 1.0) if a_next < 1 else 0.0
        sv, measured = spec.s, spec.measured
        replace = measured & (self.sigma <= sigma_next * sv)  # rho_i <= sigma'
        blend = math.sqrt(1 - eta_t**2) * sigma_next * sv / self.sigma if self.sigma > 0 else torch.ones_like(sv)
        lam = self.scale * torch.where(replace, 1.0, torch.where(measured, blend, 0.0))
        carried = lam * self.sigma / torch.where(measured, sv, 1)  # lambda_i rho_i
        fresh = torch.sqrt(torch.clamp((1 - a_next) - a_next * carried**2, min=0.0))
        return lam, torch.where(measured, fresh, s_ddim)

    def correct_x0(self, ctx: StepContext, x0: torch.Tensor) -> torch.Tensor:
        spec = self.spectral(x0)
        if spec is None:
            lam, gamma, s = self.noise_split(ctx)
            x0 = x0 + lam * self.operator.pinv(self.residual(x0))
            if self.sigma > 0:
                self._pending = (ctx, x0, gamma, s)
            return x0
        lam, fresh = self.svd_split(ctx, spec)
        x0 = x0 + spec.from_spectral(lam * (spec.y_spec(self.measurement(x0)) - spec.to_spectral(x0)))
        if self.sigma > 0:
            self._pending = (ctx, x0, spec, fresh)
        return x0

    def correct_sample(self, ctx: StepContext, x_next: torch.Tensor) -> torch.Tensor:
        if self.sigma == 0:
            return x_next
        if self._pending is None or self._pending[0] is not ctx:
            raise RuntimeError("Projection.correct_sample called without correct_x0 on the same step")
        _, x0, third, fourth = self._pending
        self._pending = None
        if isinstance(third, Spectral):
            return self._svd_step(ctx, x0, third, fourth)
        gamma, s = third, fourth
        noise = _ScaledNoise(ctx.rng, gamma / s if s > 0 else 0.0)
        return DDIM(self.eta).step(ctx.x.detach(), ctx.pred.with_x0(x0), ctx.alpha_bar, ctx.alpha_bar_next, noise, {})

    def _svd_step(self, ctx: StepContext, x0: torch.Tensor, spec: Spectral, fresh: torch.Tensor) -> torch.Tensor:
        """x_next = sqrt(a') x0h + V [k eps_hat on the null space + fresh z], k = sqrt(1 - a' - s^2)."""
        a, a_next = ctx.alpha_bar, ctx.alpha_bar_next
        x_t = ctx.x.detach()
        eps = (x_t - math.sqrt(a) * x0) / math.sqrt(1 - a)
        k = math.sqrt(max(1 - a_next - _ddim_noise(self.eta, a, a_next) ** 2, 0.0))
        spectral = (k * (~spec.measured).to(spec.s.dtype)) * spec.to_spectral(eps)
        if a_next < 1:  # one draw per step before the last, whatever the gains (per-item streams stay aligned)
            spectral = spectral + fresh * spec.to_spectral(ctx.rng.randn_like(x_t))
        return math.sqrt(a_next) * x0 + spec.from_spectral(spectral)
