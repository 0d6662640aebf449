"""Step rules: x_t -> x_{t_next} given the (guided) x0 estimate. Small pure functions of
(x, x0, alpha_bar, alpha_bar_next), with per-run state only for multistep solvers.

DDNM+'s noisy step (:class:`NoisyProjectionStep`, which needs the operator and the noise level, so it
has no name in :data:`RULES`) lives in :mod:`guidedinv.projection_step` and is re-exported here.

Notation: a = alpha_bar_t, a' = alpha_bar_{t_next} (a' = 1 at the clean end), eps_hat the noise implied
by x0: eps_hat = (x - sqrt(a) x0) / sqrt(1 - a). The effective one-step beta between the two
(possibly respaced) levels is beta = 1 - a / a'.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Literal

import torch

from .denoiser import Prediction
from .noise import NoiseSource

if TYPE_CHECKING:
    from .projection_step import NoisyProjectionStep

__all__ = ["StepRule", "DDPM", "DDIM", "DPMSolverPP2M", "Renoise", "PlugAndPlay", "NoisyProjectionStep", "RULES", "make_rule"]


class StepRule:
    """Base class. ``step`` returns x at the next level; ``state`` is a dict the rule may keep per run."""

    name = "rule"

    def new_state(self) -> dict[str, Any]:
        return {}

    def step(
        self, x: torch.Tensor, pred: Prediction, a: float, a_next: float, rng: NoiseSource, state: dict[str, Any]
    ) -> torch.Tensor:
        raise NotImplementedError


def _finite(value: Any, what: str, accepted: str) -> float:
    """``value`` as a finite float, else ValueError naming ``what`` and the ``accepted`` range."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be {accepted}, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{what} must be {accepted}, got {value!r}")
    return number


def _eps_hat(x: torch.Tensor, x0: torch.Tensor, a: float) -> torch.Tensor:
    return (x - math.sqrt(a) * x0) / math.sqrt(1 - a)


@dataclass
class DDPM(StepRule):
    """Ancestral sampling, Ho et al. (2020) eq. 6-7: x' = c1 x0 + c2 x + std z.

    c1 = beta sqrt(a') / (1 - a), c2 = (1 - a') sqrt(1 - beta) / (1 - a).
    variance: "small" beta_tilde = beta (1 - a')/(1 - a); "large" beta; "learned" interpolates
    log beta_tilde .. log beta with the denoiser's var_interp (Nichol & Dhariwal 2021, eq. 15);
    a denoiser without learned variance falls back to "small". No noise on the final step.
    """

    variance: Literal["small", "large", "learned"] = "small"
    name = "ddpm"

    def __post_init__(self) -> None:
        if self.variance not in ("small", "large", "learned"):
            raise ValueError(f"DDPM variance must be 'small', 'large' or 'learned', got {self.variance!r}")

    def step(self, x, pred, a, a_next, rng, state):
        beta = 1 - a / a_next
        mean = (beta * math.sqrt(a_next) * pred.x0 + (1 - a_next) * math.sqrt(1 - beta) * x) / (1 - a)
        if a_next >= 1.0:
            return mean
        beta_tilde = beta * (1 - a_next) / (1 - a)
        if self.variance == "large":
            std: float | torch.Tensor = math.sqrt(beta)
        elif self.variance == "learned" and pred.var_interp is not None:
            frac = (pred.var_interp + 1) / 2
            std = torch.exp(0.5 * (frac * math.log(beta) + (1 - frac) * math.log(beta_tilde)))
        else:
            std = math.sqrt(beta_tilde)
        return mean + std * rng.randn_like(x)


@dataclass
class DDIM(StepRule):
    """Song et al. (2021) eq. 12: x' = sqrt(a') x0 + sqrt(1 - a' - s^2) eps_hat + s z,
    s = eta sqrt((1 - a')/(1 - a)) sqrt(1 - a/a'). eta = 0 is deterministic (probability flow),
    eta = 1 matches DDPM with the small variance."""

    eta: float = 0.0
    name = "ddim"

    def __post_init__(self) -> None:
        self.eta = _finite(self.eta, "DDIM eta", "a finite number >= 0")
        if not self.eta >= 0:
            raise ValueError(f"DDIM eta must be a finite number >= 0, got {self.eta}")

    def step(self, x, pred, a, a_next, rng, state):
        eps = _eps_hat(x, pred.x0, a)
        s = self.eta * math.sqrt((1 - a_next) / (1 - a) * (1 - a / a_next)) if self.eta > 0 else 0.0  # eta 0 also runs upwards
        out = math.sqrt(a_next) * pred.x0 + math.sqrt(max(1 - a_next - s * s, 0.0)) * eps
        if s > 0:
            out = out + s * rng.randn_like(x)
        return out


@dataclass
class DPMSolverPP2M(StepRule):
    """DPM-Solver++(2M), Lu et al. (2022) Algorithm 2: second-order multistep in the data
    prediction, one network call per step. With lambda = log(sqrt(a)/sqrt(1 - a)), h = lambda' - lambda:
        x' = (sigma'/sigma) x - alpha' (e^{-h} - 1) D,
        D = (1 + 1/(2r)) x0 - 1/(2r) x0_prev,  r = h_prev / h   (first step and last step: D = x0).
    Deterministic; the history resets after a resampling jump."""

    name = "dpm++2m"

    def step(self, x, pred, a, a_next, rng, state):
        if a_next >= 1.0:
            return pred.x0
        lam = 0.5 * math.log(a / (1 - a))
        lam_next = 0.5 * math.log(a_next / (1 - a_next))
        h = lam_next - lam
        d = pred.x0
        if state.get("x0_prev") is not None:
            r = state["h_prev"] / h
            d = (1 + 1 / (2 * r)) * pred.x0 - (1 / (2 * r)) * state["x0_prev"]
        state["x0_prev"], state["h_prev"] = pred.x0, h
        ratio = math.sqrt((1 - a_next) / (1 - a))
        return ratio * x - math.sqrt(a_next) * math.expm1(-h) * d


@dataclass
class Renoise(StepRule):
    """DiffPIR's re-noising (Zhu et al. 2023, Alg. 1 step 6), zeta in [0, 1]:
        x' = sqrt(a') x0 + sqrt(1 - a') (sqrt(1 - zeta) eps_hat + sqrt(zeta) z).
    zeta = 0 is DDIM(eta=0); zeta = 1 forgets x_t's noise entirely (fresh noise at every level),
    which helps a data step that moved x0 far from what x_t implies. Only zeta = 0 is an exact
    sampler: with zeta > 0 each step drops the spread of p(x0 | x_t) (x0 is its mean), so samples
    come out too smooth however many steps are taken; a restoration heuristic, not a sampler."""

    zeta: float = 0.3
    name = "renoise"

    def __post_init__(self) -> None:
        self.zeta = _finite(self.zeta, "renoise zeta", "a number in [0, 1]")
        if not 0 <= self.zeta <= 1:
            raise ValueError(f"renoise zeta must be a number in [0, 1], got {self.zeta}")

    def step(self, x, pred, a, a_next, rng, state):
        out = math.sqrt(a_next) * pred.x0
        if a_next >= 1.0:
            return out
        noise = math.sqrt(1 - self.zeta) * _eps_hat(x, pred.x0, a)
        if self.zeta > 0:
            noise = noise + math.sqrt(self.zeta) * rng.randn_like(x)
        return out + math.sqrt(1 - a_next) * noise


@dataclass
class PlugAndPlay(StepRule):
    """Plug-and-play half-quadratic splitting (Zhang et al.'s DPIR, 2021) on the diffusion grid:
        x' = sqrt(a') x0.
    No noise is added: the next network call denoises the current estimate as if its error were
    Gaussian at the next, lower level (the plug-and-play assumption), so a run is a deterministic
    sequence of denoise / data steps with a falling noise level. With a proximal or projection term
    this maximises PSNR rather than drawing a posterior sample; without one it only smooths."""

    name = "pnp"

    def step(self, x, pred, a, a_next, rng, state):
        return math.sqrt(a_next) * pred.x0


# name -> constructor with the settings the name fixes; make_rule passes the user's options on
RULES = {
    "ddpm": functools.partial(DDPM, variance="small"),
    "ddpm-large": functools.partial(DDPM, variance="large"),
    "ddpm-learned": functools.partial(DDPM, variance="learned"),
    "ddim": DDIM,
    "dpm++2m": DPMSolverPP2M,
    "renoise": Renoise,
    "pnp": PlugAndPlay,
}


def rule_options(name: str) -> tuple[str, ...]:
    """The options ``make_rule(name, ...)`` accepts (the rule's fields that its name does not fix)."""
    make = RULES[name]
    cls, fixed = (make.func, make.keywords) if isinstance(make, functools.partial) else (make, {})
    return tuple(f.name for f in fields(cls) if f.init and f.name not in fixed)


def make_rule(name: str, **options: Any) -> StepRule:
    """A step rule by name: 'ddpm', 'ddpm-large', 'ddpm-learned', 'ddim' (eta=...), 'dpm++2m', 'renoise'
    (zeta=...), 'pnp'. Built through the rule's constructor, so its checks run: ValueError for an
    unknown name, an option the rule does not have (naming the ones it has) or a value out of range."""
    if name not in RULES:
        raise ValueError(f"unknown step rule {name!r}; choose from {', '.join(RULES)}")
    accepted = rule_options(name)
    for key in options:
        if key not in accepted:
            has = f"its options are {', '.join(accepted)}" if accepted else "it has no options"
            raise ValueError(f"step rule {name!r} has no option {key!r}; {has}")
    return RULES[name](**options)


def __getattr__(name: str) -> Any:
    # projection_step imports this module (StepRule, DDIM), so its rule is re-exported lazily
    if name == "NoisyProjectionStep":
        from .projection_step import NoisyProjectionStep

        return NoisyProjectionStep
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
