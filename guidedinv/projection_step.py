"""DDNM+'s noisy step (Wang, Yu & Zhang, ICLR 2023, eq. 17-19), which on an exact SVD is DDRM's
(Kawar et al. 2022, Sec. 4, eq. 7-8): a step rule, plus the pure functions that split a noisy
measurement's correction between the x0 estimate and the step's fresh noise.

The split is needed twice: by the guidance term :class:`guidedinv.guidance.Projection`, which
corrects x0 by the weights lambda, and by :class:`NoisyProjectionStep`, which draws only the fresh
noise that the correction's own noise (lambda times the measurement noise) leaves to fill. Both call
:func:`scalar_split` / :func:`svd_split` here, so the weights exist once; the term reads ``eta`` from
the run's rule (``StepContext.rule``) and the rule refuses a term whose settings differ from its own
(:meth:`NoisyProjectionStep.check_projection`).

Symbols (every function): a = alpha_bar_t, a' = alpha_bar_{t_next} (1 at the clean end), eta is DDIM's
(Song et al. 2021), sigma the measurement noise on the model's [-1, 1] range (2 sigma_y of the [0, 1]
value, :mod:`guidedinv.operators.noise`), scale >= 0 multiplies every weight.
"""
from __future__ import annotations

import math

import torch

from .errors import InputError
from .noise import NoiseSource
from .operators.base import LinearOperator
from .operators.noise import GaussianNoise, as_noise
from .operators.spectral import Spectral
from .rules import DDIM, StepRule

__all__ = ["NoisyProjectionStep", "NOISE_RULES", "ddim_noise", "scalar_split", "svd_split", "spectral_split", "spectral_step"]

NOISE_RULES = ("svd", "scalar")


def ddim_noise(eta: float, a: float, a_next: float) -> float:
    """DDIM(eta)'s fresh noise s = eta sqrt((1 - a')/(1 - a)) sqrt(1 - a/a') on a step from a to a'."""
    return eta * math.sqrt((1 - a_next) / (1 - a) * (1 - a / a_next))


def scalar_split(eta: float, a: float, a_next: float, sigma: float, scale: float) -> tuple[float, float, float]:
    """The paper's eq. 19: (lambda_t, gamma_t, s): the correction's weight, the fresh noise DDNM+ adds
    instead of DDIM's s, and s. With sigma = 0: (scale, s, s) whatever eta is."""
    s = ddim_noise(eta, a, a_next)
    if sigma == 0:
        return scale, s, s
    c = math.sqrt(a_next) - math.sqrt(max(1 - a_next - s * s, 0.0)) * math.sqrt(a / (1 - a))
    carried = abs(c) * sigma
    lam = 1.0 if s >= carried else s / carried
    lam *= scale
    return lam, math.sqrt(max(s * s - (lam * carried) ** 2, 0.0)), s


def svd_split(eta: float, a: float, a_next: float, sigma: float, scale: float, spec: Spectral) -> tuple[torch.Tensor, torch.Tensor]:
    """Per singular value (DDRM): (lambda_i, g_i) broadcastable like spec.s: the correction's weight
    and the fresh noise of the VP sample x_next per spectral coordinate (sqrt(a') times the VE noise
    of :class:`NoisyProjectionStep`'s docstring; DDIM's s on the null space). With sigma = 0,
    lambda_i = scale on every s_i > 0 whatever eta is."""
    s_ddim = ddim_noise(eta, a, a_next)
    eta_t = min(s_ddim / math.sqrt(1 - a_next), 1.0) if a_next < 1 else 0.0
    lam, fresh = spectral_split(eta_t, a_next, sigma, spec, scale, scale)
    return lam, torch.where(spec.measured, fresh, s_ddim)


def spectral_split(eta_t: float, a_next: float, sigma: float, spec: Spectral, replace: float,
                   blend: float) -> tuple[torch.Tensor, torch.Tensor]:
    """DDRM's three cases per singular value, for a step whose fresh noise is the fraction eta_t of the
    next level's sigma' (on the null space): (lambda_i, g_i), the correction's weight (``replace``
    where rho_i <= sigma', ``blend`` times sqrt(1 - eta_t^2) sigma' / rho_i where rho_i > sigma', 0 on
    the null space) and the fresh noise of the VP sample on the measured coordinates,
    sqrt((1 - a') - a' (lambda_i rho_i)^2) (clipped at 0; meaningless where s_i = 0)."""
    sigma_next = math.sqrt((1 - a_next) / a_next)
    sv, measured = spec.s, spec.measured
    replace_here = measured & (sigma <= sigma_next * sv)  # rho_i <= sigma'
    gain = math.sqrt(1 - eta_t**2) * sigma_next * sv / sigma if sigma > 0 else torch.ones_like(sv)
    lam = torch.where(replace_here, replace, torch.where(measured, blend * gain, 0.0))
    carried = lam * sigma / torch.where(measured, sv, 1)  # lambda_i rho_i
    return lam, torch.sqrt(torch.clamp((1 - a_next) - a_next * carried**2, min=0.0))


def spectral_step(x: torch.Tensor, x0: torch.Tensor, a: float, a_next: float, k: float, fresh: torch.Tensor,
                  spec: Spectral, rng: NoiseSource) -> torch.Tensor:
    """x_next = sqrt(a') x0 + V [k eps_hat on the null space + fresh z] (one draw of z per call before
    the last step), with eps_hat = (x - sqrt(a) x0) / sqrt(1 - a) and x0 the corrected estimate."""
    eps = (x - math.sqrt(a) * x0) / math.sqrt(1 - a)
    spectral = (k * (~spec.measured).to(spec.s.dtype)) * spec.to_spectral(eps)
    if a_next < 1:
        spectral = spectral + fresh * spec.to_spectral(rng.randn_like(x))
    return math.sqrt(a_next) * x0 + spec.from_spectral(spectral)


class _ScaledNoise:
    """A NoiseSource stand-in whose draws are ``factor`` times the item streams' draws."""

    def __init__(self, rng: NoiseSource, factor: float) -> None:
        self.rng, self.factor = rng, factor

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        return self.factor * self.rng.randn_like(x)


class NoisyProjectionStep(StepRule):
    """DDNM+'s step for a noisy measurement y = A x + n: DDIM(eta) whose fresh noise is reduced by
    the noise that the x0 correction x0h = x0 + lambda A^+ (y - A x0) carries into x_next.

    Pair it with ``Projection(operator, y, sigma_y, scale=scale, noise_rule=noise_rule)`` (same
    settings, checked on every step): the term corrects x0 (``pred.x0`` here is x0h), this rule steps.
    DDIM(eta) writes the step x_next = c x0 + (terms in x_t) + s z with s = ddim_noise(eta, a, a')
    and x0 weight c = sqrt(a') - sqrt(1 - a' - s^2) sqrt(a/(1 - a)); eta = 1 is the DDPM posterior
    (c = sqrt(a') beta / (1 - a), s^2 = beta_tilde). sigma' = sqrt((1 - a')/a') is the next level's VE
    noise.

    noise_rule "svd" (the default, where ``operator.spectral`` gives an exact SVD A = U diag(s_i) V^T,
    see :mod:`guidedinv.operators.spectral`: circular Blur, Inpainting, Identity, Downsample): DDNM+
    with Sigma_t = V diag(lambda_i) V^T and Phi_t diagonal in V too (eq. 17-18 with per-singular-value
    weights; the official code's SVD loop, its "Eq. 51", functions/svd_operators.py Lambda /
    Lambda_noise). In the spectral coordinates xb = V^T x, with yb_i = (U^T y)_i / s_i the measurement
    seen in x-space, rho_i = sigma / s_i its noise there, eta_t = s / sqrt(1 - a') the fraction of the
    next level's noise that DDIM(eta) draws fresh (at most 1, 0 on the last step), the next sample is
    x_next = sqrt(a') V xb' with, per coordinate (z ~ N(0, 1), eps_hat = (x_t - sqrt(a) x0h) / sqrt(1 - a)):

        s_i = 0 (null space):  xb'_i = x0_i + sqrt(1 - eta_t^2) sigma' eps_hat_i + eta_t sigma' z_i
                               (exactly DDIM(eta): the prior's component, untouched)
        rho_i <= sigma':       lambda_i = 1,          x0h_i = x0_i + lambda_i (yb_i - x0_i)
                               xb'_i = x0h_i + sqrt(sigma'^2 - (lambda_i rho_i)^2) z_i
                               (the measurement's component plus just the fresh noise that brings
                               its own noise rho_i up to sigma')
        rho_i >  sigma':       lambda_i = sqrt(1 - eta_t^2) sigma' s_i / sigma,
                               xb'_i = x0h_i + sqrt(sigma'^2 - (lambda_i rho_i)^2) z_i = x0h_i + eta_t sigma' z_i
                               (blend: the measurement's noise, lambda_i rho_i = sqrt(1 - eta_t^2) sigma',
                               stands in for DDIM's deterministic part)

    so every coordinate reaches the total noise sigma' and A^+ n is never amplified beyond it: the
    pseudo-inverse's 1/s_i only enters as rho_i, which sets lambda_i. This is DDRM's step: its three
    cases are these three, its eta (constant over the run in DDRM's VE parametrisation) is our
    per-step eta_t = eta sqrt((1 - a/a')/(1 - a)) (DDIM's eta = 1 makes eta_t the DDPM posterior's
    fraction), and its eta_b (third case) is ``scale``, 1 by default: ``scale`` multiplies every
    lambda_i (the blend's too, where DDRM has no such weight) and the fresh noise still fills sigma'^2
    (clipped at 0). On the last step sigma' = 0, so every lambda_i = 0 and the final x0 is left
    unprojected, as in both papers. Like DDRM, the blend pulls toward yb by lambda_i on every step
    whatever the step's size, so its bias grows with the number of steps
    (Gaussian-prior tests, circular blur: 0.16 of the prior-to-posterior gap at 20 steps, 0.31 at 50,
    0.64 at 200, tests/test_ddnm_svd.py); it is meant for DDRM's 10-50 steps. On Gaussian deblurring
    (sigma 3, sigma_y 0.01, 64 px, 20 steps) it gives 24.7 dB where the scalar rule gives 4.7.

    noise_rule "scalar" (the paper's eq. 19; also the fallback for an operator without an exact SVD,
    e.g. a reflect-boundary Blur or a Compose): the correction carries lambda_t c A^+ n into x_next, and
    DDNM+ makes that noise part of DDIM's fresh noise, treating A^+ n as white of standard deviation sigma:
        s >= c sigma:  lambda_t = 1,              gamma_t = sqrt(s^2 - (c sigma)^2)
        s <  c sigma:  lambda_t = s / (c sigma),  gamma_t = 0
    and the step adds gamma_t z instead of s z (the paper's rule, not the simplified loop of the
    official code, which mixes up alpha_bar and its square root). Exact for inpainting and denoising
    (every s_i = 1); for operators whose pseudo-inverse colours the noise it under-counts it by 1/s_i,
    and on an ill-conditioned blur A^+ n swamps the result (4.7 dB on Gaussian blur sigma 3, see
    docs/peers.md). With scale s_c, lambda_t -> s_c lambda_t and gamma_t follows from it.

    Draws: the svd rule draws once per step before the last (even where every gain is 0, so per-item
    streams stay aligned); the scalar rule once per step where DDIM's s > 0, as DDIM(eta) does. sigma_y = 0 gives DDRM's
    noiseless step (fresh noise on the measured
    coordinates; the scalar rule is then DDIM(eta) on x0h); scale = 0 switches the correction off
    (the Projection term is then inactive) and the rule is exactly DDIM(eta).

    operator: the term's LinearOperator (the same object); sigma_y: [0, 1] scale, or a GaussianNoise;
    eta >= 0: DDIM's; scale >= 0; noise_rule: "svd" or "scalar".
    """

    name = "ddnm+"

    def __init__(
        self,
        operator: LinearOperator,
        sigma_y: float | GaussianNoise,
        eta: float = 1.0,
        scale: float = 1.0,
        noise_rule: str = "svd",
    ) -> None:
        if not isinstance(operator, LinearOperator):
            raise InputError(f"NoisyProjectionStep operator must be a guidedinv.operators.LinearOperator, got {type(operator).__name__}")
        self.operator = operator
        self.noise = as_noise(sigma_y)
        self.eta = _number(eta, "eta")
        self.scale = _number(scale, "scale")
        if noise_rule not in NOISE_RULES:
            raise InputError(f"NoisyProjectionStep noise_rule must be one of {', '.join(NOISE_RULES)}, got {noise_rule!r}")
        self.noise_rule = noise_rule
        self._ddim = DDIM(self.eta)

    @property
    def sigma(self) -> float:
        """Measurement noise standard deviation on the model's [-1, 1] range (converted once, here)."""
        return self.noise.sigma_model

    def __repr__(self) -> str:
        return (f"NoisyProjectionStep({self.operator!r}, sigma_y={self.noise.sigma_y:g}, eta={self.eta:g}, "
                f"scale={self.scale:g}, noise_rule={self.noise_rule!r})")

    def spectral(self, x: torch.Tensor) -> Spectral | None:
        """The decomposition the "svd" rule uses for images like x, or None (the scalar rule applies)."""
        return self.operator.spectral(x) if self.noise_rule == "svd" else None

    def check_projection(self, operator: LinearOperator, sigma_y: float, scale: float, noise_rule: str) -> None:
        """InputError unless a Projection term with these settings is the one this step budgets for."""
        mine = {"operator": self.operator, "sigma_y": self.noise.sigma_y, "scale": self.scale, "noise_rule": self.noise_rule}
        theirs = {"operator": operator, "sigma_y": sigma_y, "scale": scale, "noise_rule": noise_rule}
        for key, value in mine.items():
            if key == "operator" and operator is not value:
                raise InputError(f"the Projection term's operator {operator!r} is not the step rule's object {value!r}; "
                                 f"build both from the same operator")
            if key != "operator" and theirs[key] != value:
                raise InputError(f"the Projection term's {key} ({theirs[key]!r}) differs from the step rule's ({value!r}); "
                                 f"build both from the same settings: {self!r}")

    def step(self, x, pred, a, a_next, rng, state):
        if self.scale == 0:
            return self._ddim.step(x, pred, a, a_next, rng, state)
        spec = self.spectral(x)
        if spec is None:
            _, gamma, s = scalar_split(self.eta, a, a_next, self.sigma, self.scale)
            return self._ddim.step(x, pred, a, a_next, _ScaledNoise(rng, gamma / s if s > 0 else 0.0), state)
        _, fresh = svd_split(self.eta, a, a_next, self.sigma, self.scale, spec)
        k = math.sqrt(max(1 - a_next - ddim_noise(self.eta, a, a_next) ** 2, 0.0))
        return spectral_step(x, pred.x0, a, a_next, k, fresh, spec, rng)


def _number(value: float, name: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InputError(f"NoisyProjectionStep {name} must be a finite number >= 0, got {value!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise InputError(f"NoisyProjectionStep {name} must be a finite number >= 0, got {value}")
    return value
