"""Discrete variance-preserving noise schedules, respacing, and noise-level conversions.

Symbols (Ho et al. 2020; Nichol & Dhariwal 2021):
    t          integer timestep of the *original* schedule, 0 .. T-1 (what networks are trained on)
    beta_t     per-step variance, alpha_bar_t = prod_{s<=t} (1 - beta_s)
    x_t        = sqrt(alpha_bar_t) * x0 + sqrt(1 - alpha_bar_t) * eps        (VP convention)
    sigma_t    = sqrt((1 - alpha_bar_t) / alpha_bar_t)   the equivalent VE noise level: x_t / sqrt(alpha_bar_t)
                 is x0 plus Gaussian noise of standard deviation sigma_t, in the model's data range [-1, 1].
    t = -1     stands for "no noise": alpha_bar = 1, sigma = 0 (the end of every reverse path).

Everything is computed in float64, as guided-diffusion does, and handed out as Python floats or
float64 tensors; the sampler casts per step.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

__all__ = [
    "VPSchedule",
    "linear_betas",
    "cosine_betas",
    "respace",
    "logsnr_spacing",
    "alpha_bar_to_sigma",
    "sigma_to_alpha_bar",
]


def linear_betas(num_steps: int = 1000) -> torch.Tensor:
    """Ho et al. (2020) linear schedule, scaled by 1000/T so any T spans the same noise range."""
    scale = 1000.0 / num_steps
    return torch.linspace(scale * 1e-4, scale * 0.02, num_steps, dtype=torch.float64)


def cosine_betas(num_steps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal (2021) eq. 17: alpha_bar(u) = cos^2(((u + s)/(1 + s)) pi/2), betas clipped at 0.999."""

    def alpha_bar(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    betas = [
        min(1 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), max_beta) for i in range(num_steps)
    ]
    return torch.tensor(betas, dtype=torch.float64)


def alpha_bar_to_sigma(alpha_bar: float | torch.Tensor) -> float | torch.Tensor:
    """VE-equivalent noise level sigma = sqrt((1 - alpha_bar) / alpha_bar)."""
    if isinstance(alpha_bar, torch.Tensor):
        return ((1 - alpha_bar) / alpha_bar).sqrt()
    return math.sqrt((1 - alpha_bar) / alpha_bar)


def sigma_to_alpha_bar(sigma: float | torch.Tensor) -> float | torch.Tensor:
    """Inverse of :func:`alpha_bar_to_sigma`: alpha_bar = 1 / (1 + sigma^2)."""
    return 1 / (1 + sigma**2)


@dataclass(frozen=True)
class VPSchedule:
    """A discrete VP schedule of T steps. ``alpha_bar(t)`` accepts t = -1 (clean) .. T-1.

    Build one with :meth:`linear` or :meth:`cosine`, or from any betas. Fractional t interpolates
    log-SNR linearly between the neighbouring integer steps (used by solvers and the classifier
    window checks, never by the default integer grids).
    """

    betas: torch.Tensor
    name: str = "custom"
    alphas_cumprod: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        betas = torch.as_tensor(self.betas, dtype=torch.float64)
        if betas.ndim != 1 or len(betas) == 0 or not bool(((betas > 0) & (betas <= 1)).all()):
            raise ValueError("betas must be a non-empty 1-D sequence in (0, 1]")
        object.__setattr__(self, "betas", betas)
        object.__setattr__(self, "alphas_cumprod", torch.cumprod(1 - betas, 0))

    @classmethod
    def linear(cls, num_steps: int = 1000) -> VPSchedule:
        return cls(linear_betas(num_steps), name="linear")

    @classmethod
    def cosine(cls, num_steps: int = 1000) -> VPSchedule:
        return cls(cosine_betas(num_steps), name="cosine")

    @classmethod
    def named(cls, name: str, num_steps: int = 1000) -> VPSchedule:
        """'linear' or 'cosine', the two schedules of the released checkpoints."""
        if name not in ("linear", "cosine"):
            raise ValueError(f"unknown schedule {name!r}; expected 'linear' or 'cosine'")
        return getattr(cls, name)(num_steps)

    @property
    def num_steps(self) -> int:
        return len(self.betas)

    def alpha_bar(self, t: int | float) -> float:
        """alpha_bar at timestep t; t = -1 gives 1.0 (clean)."""
        if t < -1 or t > self.num_steps - 1:
            raise ValueError(f"timestep {t} outside [-1, {self.num_steps - 1}]")
        if float(t).is_integer():
            return 1.0 if t == -1 else float(self.alphas_cumprod[int(t)])
        lo = math.floor(t)
        a_lo, a_hi = self.alpha_bar(lo), self.alpha_bar(lo + 1)
        if lo == -1:  # between clean and the first step: interpolate in alpha_bar itself
            return a_lo + (t - lo) * (a_hi - a_lo)
        snr = lambda a: math.log(a / (1 - a))  # noqa: E731
        log_snr = snr(a_lo) + (t - lo) * (snr(a_hi) - snr(a_lo))
        return 1 / (1 + math.exp(-log_snr))

    def alpha_bar_tensor(self, t: torch.Tensor) -> torch.Tensor:
        """Vectorised :meth:`alpha_bar` for a tensor of timesteps (float64, on t's device)."""
        tt = t.detach().to(torch.float64)
        if bool(((tt < -1) | (tt > self.num_steps - 1)).any()):
            raise ValueError(f"timesteps outside [-1, {self.num_steps - 1}]")
        table = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod]).to(tt.device)
        lo = tt.floor().clamp(max=self.num_steps - 1)
        frac = tt - lo
        a_lo = table[(lo + 1).long()]
        a_hi = table[(lo + 2).clamp(max=self.num_steps).long()]
        if not bool((frac > 0).any()):
            return a_lo
        logit = lambda a: (a / (1 - a)).log()  # noqa: E731
        from_snr = torch.sigmoid(logit(a_lo) + frac * (logit(a_hi) - logit(a_lo)))
        linear = a_lo + frac * (a_hi - a_lo)  # between clean (t = -1) and t = 0, log-SNR is infinite
        return torch.where(frac == 0, a_lo, torch.where(lo < 0, linear, from_snr))

    def sigma(self, t: int | float) -> float:
        """VE-equivalent noise level sqrt((1 - alpha_bar)/alpha_bar) at t, in the model's [-1, 1] range."""
        return alpha_bar_to_sigma(self.alpha_bar(t))

    def t_from_sigma(self, sigma: float) -> int:
        """The integer timestep whose sigma is nearest to ``sigma`` in log space (sigma = 0 gives -1)."""
        if sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}")
        if sigma == 0:
            return -1
        sigmas = ((1 - self.alphas_cumprod) / self.alphas_cumprod).sqrt()
        return int((sigmas.log() - math.log(sigma)).abs().argmin())


def logsnr_spacing(count: int, schedule: VPSchedule, t_max: int | None = None) -> list[int]:
    """``count`` timesteps evenly spaced in log-SNR between t = 0 and ``t_max`` (default T-1; nearest
    integer steps, nudged apart so there are exactly ``count``). Our extension, not guided-diffusion's:
    at 10-25 steps it cuts the probability-flow error of DPM-Solver++(2M) about tenfold against "N".
    A run that starts from an image at ``t_max`` (a warm start) spends all ``count`` steps below it."""
    top = schedule.num_steps - 1 if t_max is None else int(t_max)
    if not 0 <= top < schedule.num_steps:
        raise ValueError(f"t_max must be in [0, {schedule.num_steps - 1}], got {t_max}")
    if not 2 <= count <= top + 1:
        raise ValueError(f"logsnr spacing needs 2 <= N <= {top + 1}, got {count}")
    lo, hi = math.log(schedule.sigma(0)), math.log(schedule.sigma(top))
    steps: list[int] = []
    for i in range(count):
        t = schedule.t_from_sigma(math.exp(lo + (hi - lo) * i / (count - 1)))
        steps.append(max(t, steps[-1] + 1) if steps else t)
    for i in range(count - 1, -1, -1):  # pushes past t_max come back down, keeping steps distinct
        steps[i] = min(steps[i], top - (count - 1 - i))
    return steps


def respace(
    spec: str | int | Sequence[int], num_steps: int = 1000, schedule: VPSchedule | None = None
) -> list[int]:
    """The timesteps guided-diffusion keeps for a respacing spec, ascending.

    ``"ddimN"``: the smallest stride k with len(range(0, T, k)) == N, giving 0, k, 2k, ...
    ``"N"`` or ``"N1,N2,..."``: T is cut into equal sections (the first T mod K sections one step
    longer); section i yields N_i steps evenly spaced between its two ends, rounded half-to-even.
    An int is taken as ``"N"``; a sequence of ints is validated and returned sorted.
    (guided_diffusion/respace.py, space_timesteps.)
    ``"logsnrN"`` (ours, needs ``schedule``): N steps evenly spaced in log-SNR, see :func:`logsnr_spacing`.
    """
    if not isinstance(spec, (str, int)):
        steps = sorted({int(t) for t in spec})
        if not steps or steps[0] < 0 or steps[-1] >= num_steps:
            raise ValueError(f"explicit timesteps must lie in [0, {num_steps - 1}]")
        return steps
    text = str(spec).strip()
    if text.startswith("logsnr"):
        if schedule is None:
            raise ValueError("'logsnrN' spacing needs the schedule")
        try:
            return logsnr_spacing(int(text[6:]), schedule)
        except ValueError as exc:
            raise ValueError(f"bad respacing {spec!r}: {exc}") from None
    if text.startswith("ddim"):
        try:
            count = int(text[4:])
        except ValueError:
            raise ValueError(f"bad respacing {spec!r}: expected 'ddimN' with an integer N") from None
        for stride in range(1, num_steps):
            if len(range(0, num_steps, stride)) == count:
                return list(range(0, num_steps, stride))
        raise ValueError(f"cannot take exactly {count} evenly strided steps out of {num_steps}")
    try:
        counts = [int(c) for c in text.split(",")]
    except ValueError:
        raise ValueError(f"bad respacing {spec!r}: expected 'N', 'N1,N2,...' or 'ddimN'") from None
    size_per, extra = divmod(num_steps, len(counts))
    start, kept = 0, []
    for i, count in enumerate(counts):
        size = size_per + (1 if i < extra else 0)
        if count < 1 or count > size:
            raise ValueError(f"cannot take {count} steps from a section of {size} (spec {spec!r})")
        stride = 1 if count <= 1 else (size - 1) / (count - 1)
        pos = 0.0
        for _ in range(count):
            kept.append(start + round(pos))
            pos += stride
        start += size
    return sorted(set(kept))
