"""DDRM's step (Kawar, Elad, Ermon & Song, NeurIPS 2022, Sec. 4, eq. 7-8) with the paper's own eta and
eta_b: a step rule, paired with the term :class:`guidedinv.guidance.DDRM` that corrects x0.

In the spectral coordinates of an exact SVD A = U diag(s_i) V^T (:mod:`guidedinv.operators.spectral`),
xb = V^T x on the VE scale (x / sqrt(a)), with yb_i = (U^T y)_i / s_i the measurement seen in x-space,
rho_i = sigma / s_i its noise (sigma = 2 sigma_y, the model range), x0 the network's estimate from
x_t, eps_hat = (xb_t - x0) / sigma_t and sigma' = sqrt((1 - a')/a') the next level, one step is

    s_i = 0 (null space):  xb'_i = x0_i + sqrt(1 - eta^2) sigma' eps_hat_i + eta sigma' z_i
    rho_i > sigma':        xb'_i = x0_i + sqrt(1 - eta^2) sigma' (yb_i - x0_i) / rho_i + eta sigma' z_i
    rho_i <= sigma':       xb'_i = (1 - eta_b) x0_i + eta_b yb_i + sqrt(sigma'^2 - eta_b^2 rho_i^2) z_i

and x' = sqrt(a') V xb'. On the last step sigma' = 0: the result is x0 itself (with sigma_y = 0, its
measured part (1 - eta_b) x0 + eta_b yb). The term makes the x0 correction (lambda_i: eta_b, or
sqrt(1 - eta^2) sigma' / rho_i, or 0) and this rule draws the fresh noise, both from
:func:`guidedinv.projection_step.spectral_split`, the function DDNM+'s SVD rule uses too.

How it differs from ``ddnm``'s SVD rule (:class:`guidedinv.rules.NoisyProjectionStep`, sigma_y > 0):
the three cases are the same, but there eta is DDIM's, so the fraction of fresh noise changes from
step to step, eta_t = eta sqrt((1 - a/a')/(1 - a)) (DDIM's eta = 1: the DDPM posterior's fraction,
which shrinks with the step), and its ``scale`` multiplies the blend case too. Here eta is that
fraction itself, the same on every step (DDRM's default 0.85), and eta_b weighs the third case only.
The two are the same step exactly at eta = 0 (ddnm with DDIM's eta = 0 is DDRM with eta = 0,
eta_b = 1; tested bit for bit); no other constant DDIM eta gives a constant fraction. With
sigma_y = 0 ddnm steps with plain DDIM(eta), which keeps x_t's noise on the measured coordinates
where DDRM draws it fresh. On the null space DDRM's step is DiffPIR's re-noising
(:class:`guidedinv.rules.Renoise`) with zeta = eta^2.

Where it is exact (tests/test_pigdm_ddrm.py, on Gaussian priors): with a noiseless measurement, a
prior whose range and null-space parts are independent, and eta = 0 (the null space then follows
DDIM's probability-flow ODE), it samples the posterior as the steps grow (200 steps: mean and
variance within Monte Carlo error). With eta > 0 each step replaces the fraction eta^2 of x_t's noise
by fresh noise around x0 = E[x0 | x_t], which drops Cov[x0 | x_t] (as Renoise does): variances come
out too small however many steps are taken (eta = 1: 0.46 of the posterior's). With sigma_y > 0 the
blend takes its direction from the measurement's noise (yb - x0) / rho_i instead of x_t's, so the
measured components become a deterministic function of y as the steps grow (their spread is lost).
It is a few-step method (the paper's 20 steps).

Against deepinv 0.5.0's DDRM (eta 0.85, eta_b 1) on the same logsnr20 grid, SVD, network and
measurements (3 sample-image crops of 64 px, sigma_y 0.01, guidedinv.bench.peers_run): SR x4 24.86 vs
25.87 dB, Gaussian deblurring 25.36 vs 25.30, random inpainting 19.88 vs 21.29, box 17.65 vs 19.34.
deepinv draws std randn / sqrt(2) on real SVD coordinates (not on the FFT's, where the two agree);
with that halving ours gives 25.63 / 21.31 / 19.35: the gap is that noise, not the step.

DDRM starts from pure noise here; the paper starts from p(x_T | y), which differs by
sqrt(alpha_bar_T) yb ~ 6e-3 yb on the 1000-step linear schedule.

``scale`` (the term's, 1 = DDRM) multiplies every lambda_i; at 0 the term is off and this rule is
exactly ``Renoise(eta^2)``, the unguided run.
"""
from __future__ import annotations

import math

import torch

from .errors import InputError
from .operators.base import LinearOperator
from .operators.noise import GaussianNoise, as_noise
from .operators.spectral import Spectral
from .projection_step import spectral_split, spectral_step
from .rules import Renoise, StepRule

__all__ = ["DDRMStep"]


class DDRMStep(StepRule):
    """DDRM's step. operator: the term's LinearOperator (the same object; it must have an exact SVD);
    sigma_y: [0, 1] scale, or a GaussianNoise; eta in [0, 1]: the fraction of the next level's noise
    drawn fresh on the null space and in the blend case; eta_b >= 0: the weight of the measurement
    where its noise is below the next level; scale >= 0: the term's weight (checked against it)."""

    name = "ddrm"

    def __init__(self, operator: LinearOperator, sigma_y: float | GaussianNoise, eta: float = 0.85, eta_b: float = 1.0,
                 scale: float = 1.0) -> None:
        if not isinstance(operator, LinearOperator):
            raise InputError(f"DDRMStep operator must be a guidedinv.operators.LinearOperator, got {type(operator).__name__}")
        self.operator = operator
        self.noise = as_noise(sigma_y)
        self.eta = _number(eta, "eta", high=1.0)
        self.eta_b = _number(eta_b, "eta_b")
        self.scale = _number(scale, "scale")
        self._renoise = Renoise(self.eta**2)

    @property
    def sigma(self) -> float:
        """Measurement noise standard deviation on the model's [-1, 1] range."""
        return self.noise.sigma_model

    def __repr__(self) -> str:
        return (f"DDRMStep({self.operator!r}, sigma_y={self.noise.sigma_y:g}, eta={self.eta:g}, eta_b={self.eta_b:g}, "
                f"scale={self.scale:g})")

    def spectral(self, x: torch.Tensor) -> Spectral:
        """The operator's exact SVD for images like x; an InputError where it has none."""
        spec = self.operator.spectral(x)
        if spec is None:
            raise InputError(f"DDRM needs an operator with an exact SVD (inpainting, downsampling, circular blur, identity); "
                             f"{self.operator!r} has none (a blur needs boundary \"padded\" or \"circular\"): use ddnm, pnp or dps")
        return spec

    def split(self, a_next: float, spec: Spectral) -> tuple[torch.Tensor, torch.Tensor]:
        """(lambda_i, g_i): the correction's weight and the fresh noise of the VP sample per spectral
        coordinate (eta sqrt(1 - a') on the null space), from spectral_split."""
        lam, fresh = spectral_split(self.eta, a_next, self.sigma, spec, self.scale * self.eta_b, self.scale)
        return lam, torch.where(spec.measured, fresh, self.eta * math.sqrt(1 - a_next))

    def check_ddrm(self, operator: LinearOperator, sigma_y: float, scale: float) -> None:
        """InputError unless a DDRM term with these settings is the one this step budgets for."""
        if operator is not self.operator:
            raise InputError(f"the DDRM term's operator {operator!r} is not the step rule's object {self.operator!r}; "
                             "build both from the same operator")
        for key, theirs, mine in (("sigma_y", sigma_y, self.noise.sigma_y), ("scale", scale, self.scale)):
            if theirs != mine:
                raise InputError(f"the DDRM term's {key} ({theirs!r}) differs from the step rule's ({mine!r}); "
                                 f"build both from the same settings: {self!r}")

    def check_projection(self, operator: LinearOperator, sigma_y: float, scale: float, noise_rule: str) -> None:
        """A Projection (ddnm) term reads DDIM's eta from its rule; DDRM's eta means something else."""
        raise InputError("DDRMStep steps with the DDRM term (guidedinv.guidance.DDRM), not with Projection; "
                         "pair Projection with guidedinv.rules.NoisyProjectionStep")

    def step(self, x, pred, a, a_next, rng, state):
        if self.scale == 0:
            return self._renoise.step(x, pred, a, a_next, rng, state)
        spec = self.spectral(x)
        _, fresh = self.split(a_next, spec)
        k = math.sqrt(1 - a_next) * math.sqrt(1 - self.eta**2)
        return spectral_step(x, pred.x0, a, a_next, k, fresh, spec, rng)


def _number(value: float, name: str, high: float = math.inf) -> float:
    accepted = f"a number in [0, {high:g}]" if math.isfinite(high) else "a finite number >= 0"
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InputError(f"DDRMStep {name} must be {accepted}, got {value!r}") from None
    if not (0 <= value <= high and math.isfinite(value)):
        raise InputError(f"DDRMStep {name} must be {accepted}, got {value}")
    return value
