"""Exact Gaussian prior N(mu, Sigma): its denoiser at every noise level, noisy density and
probability-flow solution, in closed form. Ground truth for tests, and a fast way to try a new
guidance term without a network.

For x_t = a x0 + s eps with a = sqrt(ab), s^2 = 1 - ab and Sigma = U diag(lam) U^T:
    p(x_t)        = N(a mu, U diag(a^2 lam + s^2) U^T)
    E[x0 | x_t]   = mu + U diag(a lam / (a^2 lam + s^2)) U^T (x_t - a mu)
    Cov[x0 | x_t] = U diag(lam s^2 / (a^2 lam + s^2)) U^T
The probability-flow ODE keeps each eigen-coordinate of x_t - a mu proportional to its standard
deviation sqrt(a^2 lam + s^2) (Song et al. 2021, with Gaussian data the ODE is linear).
"""
from __future__ import annotations

import math

import torch

from ..denoiser import Denoiser, Prediction
from ..schedule import VPSchedule

__all__ = ["GaussianPrior"]


class GaussianPrior(Denoiser):
    """N(mean, cov) over tensors of ``event_shape`` (default: mean's shape, flattened for cov).

    mean: (d,) or event-shaped; cov: (d, d) symmetric positive semi-definite, or (d,) for a diagonal.
    dtype follows ``mean`` (use float64 for tests). Works on any device via ``.to()``.
    """

    def __init__(
        self,
        mean: torch.Tensor,
        cov: torch.Tensor,
        schedule: VPSchedule | None = None,
        event_shape: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        mean = torch.as_tensor(mean)
        self.event_shape = tuple(event_shape) if event_shape is not None else tuple(mean.shape)
        mean = mean.reshape(-1)
        d = mean.numel()
        if math.prod(self.event_shape) != d:
            raise ValueError(f"event_shape {self.event_shape} does not hold {d} values")
        cov = torch.as_tensor(cov, dtype=mean.dtype)
        if cov.ndim == 1:
            cov = torch.diag(cov)
        if cov.shape != (d, d):
            raise ValueError(f"cov must be ({d}, {d}) or ({d},), got {tuple(cov.shape)}")
        if not torch.allclose(cov, cov.T, atol=1e-10 * float(cov.abs().max().clamp(min=1))):
            raise ValueError("cov must be symmetric")
        lam, U = torch.linalg.eigh(cov)
        if float(lam.min()) < -1e-9 * float(lam.abs().max().clamp(min=1)):
            raise ValueError(f"cov must be positive semi-definite (smallest eigenvalue {float(lam.min()):.3g})")
        self.register_buffer("mean", mean)
        self.register_buffer("cov", cov)
        self.register_buffer("eigvals", lam.clamp(min=0))
        self.register_buffer("eigvecs", U)
        self.schedule = schedule if schedule is not None else VPSchedule.linear()

    @property
    def dim(self) -> int:
        return self.mean.numel()

    # -- closed forms -------------------------------------------------------------------------
    def _coords(self, x: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        """Eigen-coordinates of x_t - a mu, shape (B, d)."""
        flat = x.reshape(x.shape[0], -1).to(self.mean.dtype)
        return (flat - ab.sqrt() * self.mean) @ self.eigvecs

    def _ab(self, t: torch.Tensor, batch: int) -> torch.Tensor:
        ab = self.schedule.alpha_bar_tensor(t.to(self.mean.device)).to(self.mean.dtype)
        return ab.expand(batch).reshape(batch, 1) if ab.numel() == 1 else ab.reshape(batch, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> Prediction:
        ab = self._ab(t, x.shape[0])
        gain = ab.sqrt() * self.eigvals / (ab * self.eigvals + (1 - ab))
        x0 = self.mean + (self._coords(x, ab) * gain) @ self.eigvecs.T
        return Prediction(x0.reshape(x.shape).to(x.dtype))

    def posterior_cov(self, t: float) -> torch.Tensor:
        """Cov[x0 | x_t] (d, d) at timestep t; it does not depend on x_t."""
        ab = self.schedule.alpha_bar(t)
        var = self.eigvals * (1 - ab) / (ab * self.eigvals + (1 - ab))
        return (self.eigvecs * var) @ self.eigvecs.T

    def log_prob_noisy(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """log p_t(x_t) per item, (B,); t = -1 is the clean density (needs a full-rank cov)."""
        ab = self._ab(t, x.shape[0])
        var = ab * self.eigvals + (1 - ab)
        z = self._coords(x, ab)
        return -0.5 * ((z**2 / var).sum(1) + var.log().sum(1) + self.dim * math.log(2 * math.pi))

    def pf_ode_solution(self, x_start: torch.Tensor, t_start: float, t_end: float = -1) -> torch.Tensor:
        """Exact probability-flow ODE map of x at t_start to t_end (default: the clean end)."""
        a0, a1 = self.schedule.alpha_bar(t_start), self.schedule.alpha_bar(t_end)
        var0 = a0 * self.eigvals + (1 - a0)
        var1 = a1 * self.eigvals + (1 - a1)
        z = self._coords(x_start, torch.full((x_start.shape[0], 1), a0, dtype=self.mean.dtype, device=self.mean.device))
        out = math.sqrt(a1) * self.mean + (z * (var1 / var0).sqrt()) @ self.eigvecs.T
        return out.reshape(x_start.shape).to(x_start.dtype)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n exact samples of x0, shape (n, *event_shape)."""
        z = torch.randn(n, self.dim, dtype=self.mean.dtype, generator=generator, device=self.mean.device)
        return (self.mean + (z * self.eigvals.sqrt()) @ self.eigvecs.T).reshape(n, *self.event_shape)
