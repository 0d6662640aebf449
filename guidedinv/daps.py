"""DAPS, decoupled annealing posterior sampling (Zhang et al., CVPR 2025), on the one sampler loop.

For annealing levels t_1 > ... > t_N (a grid of the model's timesteps, sigma_i = sqrt((1 - ab)/ab)
the VE level on the model's [-1, 1] range), starting from x ~ N(0, I) at t_1, each level does

    (a) x0_hat = the probability-flow ODE from x_{t_i} down to clean, ``ode_steps`` network calls
    (b) x0_y  ~ p(x0 | x0_hat, y) prop. to N(x0; x0_hat, r_i^2 I) N(y; A x0, sigma^2 I)^scale,
              r_i = tether sigma_i (the paper's r_t = sigma_t at tether 1), or with a cap
              r_max > 0: r_i = tether sigma_i r_max / sqrt(sigma_i^2 + r_max^2), the standard deviation
              of x0 given x_t for data of standard deviation r_max (PiGDM's r_t at r_max = 1), which
              keeps the early levels' draws from adding more than r_max of white noise
    (c) x_{t_{i+1}} = sqrt(ab_{i+1}) x0_y + sqrt(1 - ab_{i+1}) z       (fresh noise, no network call)

and the last level's x0_y is the result. How it maps on :func:`guidedinv.sampler.sample`:

* the path (:class:`Annealing`, handed over as the sampler's ``resample``): for every level, its
  timestep t_i, then ``ode_steps - 1`` lower timesteps evenly spaced in log-SNR between t_i and 0
  (t = 0 itself left out: a call there would barely move x0), then -1 (clean); the next level's
  timestep follows, an upward pair, which the sampler already takes as forward noising from clean,
  i.e. step (c). A level at a timestep t < ode_steps - 1 has only t + 1 integer steps below it.
* the rule (:class:`DAPSStep`): DDIM(0) (or DPM-Solver++(2M)) on the ODE steps, step (a); on the
  step that lands at clean (a' = 1, where DDIM returns the network's x0), step (b) around that x0.
  The level's sigma_i is the one seen on the level's first step (kept in the rule's per-run state,
  which the sampler resets after each upward pair).

Step (b) for a linear operator and Gaussian noise is Gaussian: precision M = scale A^T A / sigma^2 +
I / r^2, mean M^-1 (scale A^T y / sigma^2 + x0_hat / r^2) (the proximal point, DiffPIR's with rho =
sigma^2 / (scale r^2)). ``inner = "exact"`` draws it exactly: where ``operator.spectral`` gives
A = U diag(s) V^T (inpainting, circular blur, both downsamplings) per spectral coordinate, with
mean (s r^2 scale (U^T y) + sigma^2 V^T x0_hat) / (s^2 r^2 scale + sigma^2) and variance
r^2 sigma^2 / (s^2 r^2 scale + sigma^2), the noise drawn as V diag(sqrt(var)) V^T z for one image of
z; for any other operator by perturb-and-MAP, x = prox(x0_hat + r z1, y + sigma' z2) with
sigma' = sigma / sqrt(scale), through ``operator.prox_l2`` (closed form or conjugate gradients),
whose output has exactly that mean and covariance. sigma = 0 puts the measured coordinates on
A^+ y. ``inner = "langevin"`` is the paper's sampler: ``langevin_steps`` unadjusted Langevin
steps of size ``lr`` (capped where it would diverge) on the same log-density, started at x0_hat
(sigma > 0 only; the paper also lowers lr over the levels, to lr_min_ratio = 0.01 of it, which is
left out here); at the paper's 100 steps of 1e-4 it stays near x0_hat rather than reaching the
Gaussian's spread.

With ode_steps = 1 a level is DiffPIR's step (guidedinv.guidance.proximal) with fresh noise (its
zeta = 1) and lam = 1 / tether^2 while r is below its cap, plus the draw's noise around the
proximal point: that noise is what makes the run a posterior sample rather than a smoothed estimate.

Exactness (tests/test_daps.py): on a Gaussian prior with ode_steps = 1 (x0_hat is then E[x0 | x_t])
the chain at a fixed level is a Gibbs-like kernel whose stationary law tends to p(x0 | y) as
sigma_i -> 0 (it is an unadjusted Langevin step of size sigma_i^2), so the output approaches the
closed-form posterior as the levels grow denser; the ODE's x0_hat (ode_steps > 1) moves x_t by half
the score, which halves the prior's pull in that limit: a better image estimate per call at few
levels, not an exact sampler.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .errors import InputError
from .guidance.measurement import MeasurementTerm
from .noise import NoiseSource
from .operators.base import LinearOperator
from .operators.noise import GaussianNoise
from .rules import DDIM, DPMSolverPP2M, StepRule
from .schedule import VPSchedule, logsnr_spacing

__all__ = ["Annealing", "DAPSStep", "ode_timesteps", "posterior_sample", "INNER", "ODE_RULES"]

INNER = ("exact", "langevin")
ODE_RULES = {"ddim": lambda: DDIM(0.0), "dpm++2m": DPMSolverPP2M}


def ode_timesteps(t: int, ode_steps: int, schedule: VPSchedule) -> list[int]:
    """The timesteps of one level's ODE calls, descending from t: t and ode_steps - 1 lower ones,
    evenly spaced in log-SNR between t and 0 with 0 left out (fewer where t is too small)."""
    count = min(ode_steps + 1, t + 1)
    if count < 2:
        return [t]
    return logsnr_spacing(count, schedule, t_max=t)[1:][::-1]


@dataclass(frozen=True)
class Annealing:
    """The sampler's path for DAPS: every level of the grid walked down to clean by the ODE, then
    the next level (see the module docstring). Passed to ``sample(..., resample=Annealing(k))``."""

    ode_steps: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.ode_steps, bool) or not isinstance(self.ode_steps, int) or self.ode_steps < 1:
            raise InputError(f"DAPS ode_steps must be a whole number >= 1, got {self.ode_steps!r}")

    def walk(self, grid: Sequence[int], schedule: VPSchedule) -> list[int]:
        """The path (timesteps, -1 = clean) over the ascending ``grid`` of levels."""
        path: list[int] = []
        for t in reversed(list(grid)):
            path += [*ode_timesteps(int(t), self.ode_steps, schedule), -1]
        return path

    def calls(self, grid: Sequence[int], schedule: VPSchedule) -> int:
        """Network calls of a run over ``grid``: sum over levels of min(ode_steps, t + 1)."""
        return sum(len(ode_timesteps(int(t), self.ode_steps, schedule)) for t in grid)


def _spectral_sample(spec: Any, x0: torch.Tensor, y: torch.Tensor, r: float, sigma: float, scale: float,
                     z: torch.Tensor) -> torch.Tensor:
    """The exact draw in the spectral coordinates of A = U diag(s) V^T (module docstring)."""
    s, c, yb = spec.s, spec.to_spectral(x0), spec.ut(y)
    denom = s * s * (r * r * scale) + sigma * sigma
    ok = denom > 0
    safe = torch.where(ok, denom, 1)
    mean = torch.where(ok, (s * (r * r * scale) * yb + sigma * sigma * c) / safe, c)
    var = torch.where(ok, (r * r * sigma * sigma) / safe, r * r)
    return spec.from_spectral(mean) + spec.filter(z, var.sqrt())


def posterior_sample(operator: LinearOperator | None, x0: torch.Tensor, y: torch.Tensor | None, r: float, sigma: float,
                     scale: float, rng: NoiseSource) -> torch.Tensor:
    """One exact draw of N(x0; x0_hat, r^2 I) N(y; A x0, sigma^2 I)^scale per item (model range);
    operator None or scale 0: x0_hat + r z. Draws one image of noise, plus one measurement of
    noise for operators without a spectral form."""
    z = rng.randn_like(x0)
    if operator is None or y is None or scale == 0:
        return x0 + r * z
    spec = operator.spectral(x0)
    if spec is not None:
        return _spectral_sample(spec, x0, y, r, sigma, scale, z)
    sig = sigma / math.sqrt(scale)
    y_pert = y + sig * rng.randn_like(y) if sig > 0 else y
    return operator.prox_l2(x0 + r * z, y_pert, sig * sig / (r * r))


def _langevin(operator: LinearOperator, x0: torch.Tensor, y: torch.Tensor, r: float, sigma: float, scale: float,
              steps: int, lr: float, rng: NoiseSource) -> torch.Tensor:
    """The paper's inner sampler: x <- x - h grad U(x) + sqrt(2 h) z, U = scale ||A x - y||^2 / (2 sigma^2)
    + ||x - x0_hat||^2 / (2 r^2), from x = x0_hat, with h = min(lr, 0.5 / (1 / r^2 + scale / sigma^2)):
    the step diverges once h exceeds 2 / (largest curvature of U), which is at most that sum for an
    operator of norm <= 1, and this package's levels go down to r = tether x 0.01 (the paper's stop at
    sigma = 0.1, where its lr = 1e-4 is stable)."""
    lr = min(lr, 0.5 / (1 / r**2 + scale / sigma**2))
    x = x0
    for _ in range(steps):
        grad = operator.AT(operator.A(x) - y) * (scale / sigma**2) + (x - x0) / r**2
        x = x - lr * grad + math.sqrt(2 * lr) * rng.randn_like(x)
    return x


class DAPSStep(StepRule):
    """DAPS's step rule (module docstring): ODE steps within a level, the posterior draw on the step
    that lands at clean. Pair it with ``Annealing(ode_steps)`` as the sampler's path.

    operator, y (model range), sigma_y ([0, 1] scale) as for every measurement term; operator None
    is the unguided annealing (x0_y = x0_hat + r z); tether > 0 (r_i = tether sigma_i), r_max >= 0 its
    cap (0: none); scale >= 0
    weights the likelihood (0: unguided, the same draws); inner: "exact" or "langevin" (with
    langevin_steps and lr); ode: "ddim" (DDIM eta 0) or "dpm++2m"."""

    name = "daps"

    def __init__(self, operator: LinearOperator | None, y: torch.Tensor | None = None,
                 sigma_y: float | GaussianNoise = 0.0, *, tether: float = 1.0, r_max: float = 0.0, scale: float = 1.0,
                 inner: str = "exact", langevin_steps: int = 100, lr: float = 1e-4, ode: str = "ddim") -> None:
        self.data = None if operator is None else MeasurementTerm(operator, y, sigma_y, scale)  # type: ignore[arg-type]
        self.tether = _positive(tether, "tether")
        self.r_max = 0.0 if r_max == 0 else _positive(r_max, "r_max")
        self.scale = 1.0 if self.data is None else self.data.scale
        if inner not in INNER:
            raise InputError(f"DAPS inner must be one of {', '.join(INNER)}, got {inner!r}")
        if ode not in ODE_RULES:
            raise InputError(f"DAPS ode must be one of {', '.join(ODE_RULES)}, got {ode!r}")
        if inner == "langevin" and self.data is not None and self.data.sigma == 0 and self.scale > 0:
            raise InputError("DAPS inner = \"langevin\" needs measurement noise sigma_y > 0 (its log-density has "
                             "1 / sigma_y^2); use inner = \"exact\" for noiseless measurements")
        self.inner, self.langevin_steps, self.lr = inner, int(langevin_steps), _positive(lr, "lr")
        if self.langevin_steps < 1:
            raise InputError(f"DAPS langevin_steps must be a whole number >= 1, got {langevin_steps!r}")
        self.ode = ode
        self._ode = ODE_RULES[ode]()

    def __repr__(self) -> str:
        sigma = None if self.data is None else self.data.noise.sigma_y
        return (f"DAPSStep(sigma_y={sigma}, tether={self.tether:g}, scale={self.scale:g}, inner={self.inner!r}, "
                f"ode={self.ode!r})")

    def tether_scale(self, sigma: float) -> float:
        """r for a level of VE noise sigma (model range)."""
        if self.r_max == 0:
            return self.tether * sigma
        return self.tether * sigma * self.r_max / math.sqrt(sigma * sigma + self.r_max**2)

    def new_state(self) -> dict[str, Any]:
        return self._ode.new_state()

    def step(self, x, pred, a, a_next, rng, state):
        level_a = state.setdefault("level_a", a)
        if a_next < 1.0:
            return self._ode.step(x, pred, a, a_next, rng, state)
        state.clear()  # the level ends here; the next step starts a new one
        r = self.tether_scale(math.sqrt((1 - level_a) / level_a))
        x0 = pred.x0
        if self.data is None or self.scale == 0:
            return posterior_sample(None, x0, None, r, 0.0, 0.0, rng)
        y = self.data.measurement(x0)
        if self.inner == "langevin":
            return _langevin(self.data.operator, x0, y, r, self.data.sigma, self.scale, self.langevin_steps, self.lr, rng)
        return posterior_sample(self.data.operator, x0, y, r, self.data.sigma, self.scale, rng)


def _positive(value: Any, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"DAPS {what} must be a finite number > 0, got {value!r}") from None
    if not (number > 0 and math.isfinite(number)):
        raise InputError(f"DAPS {what} must be a finite number > 0, got {value!r}")
    return number
