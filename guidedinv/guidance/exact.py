"""The exact likelihood guidance for an analytic Gaussian prior: ground truth for the other terms.

With x0 ~ N(mu, Sigma) and y = A x0 + sigma n, everything is Gaussian. Given x_t, x0 ~ N(m_t, C_t)
with m_t the prior's denoiser and C_t = Cov[x0 | x_t] (:meth:`GaussianPrior.posterior_cov`), so

    p(y | x_t) = N(A m_t, S_t),   S_t = A C_t A^T + sigma^2 I,
    E[x0 | x_t, y] = m_t + C_t A^T S_t^+ (y - A m_t),

which is Tweedie's formula for p(x_t | y): m_t + (1 - ab)/sqrt(ab) grad log p(y | x_t). This term
makes that correction, so any step rule then samples the exact posterior p(x0 | y) (up to its own
discretisation error). :func:`gaussian_posterior` gives that posterior in closed form (t -> clean).
A is applied as a dense matrix built from the operator, so keep the event small (d up to a few
hundred). sigma is on the model's [-1, 1] range (2 sigma_y); sigma = 0 uses the pseudo-inverse of S.
``scale`` multiplies the correction (1 = exact).
"""
from __future__ import annotations

import math

import torch

from ..errors import InputError
from ..operators.base import LinearOperator
from ..priors.gaussian import GaussianPrior
from .base import StepContext
from .measurement import MeasurementTerm

__all__ = ["ExactLikelihood", "operator_matrix", "gaussian_posterior"]


def operator_matrix(operator: LinearOperator, event_shape: tuple[int, ...], dtype=torch.float64, device=None) -> torch.Tensor:
    """The (m, d) matrix of A on images of ``event_shape`` (C, H, W), one column per pixel."""
    d = math.prod(event_shape)
    basis = torch.eye(d, dtype=dtype, device=device).reshape(d, *event_shape)
    return operator.A(basis).reshape(d, -1).T


def _gain(cov: torch.Tensor, amat: torch.Tensor, sigma: float) -> torch.Tensor:
    """C A^T (A C A^T + sigma^2 I)^+, shape (d, m)."""
    s = amat @ cov @ amat.T + sigma**2 * torch.eye(amat.shape[0], dtype=cov.dtype, device=cov.device)
    return cov @ amat.T @ torch.linalg.pinv(s, hermitian=True)


def gaussian_posterior(prior: GaussianPrior, operator: LinearOperator, y: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (B, *event_shape) and covariance (d, d) of p(x0 | y) for y = A x0 + sigma n (sigma on the
    model range)."""
    amat = operator_matrix(operator, prior.event_shape, prior.mean.dtype, prior.mean.device)
    gain = _gain(prior.cov, amat, sigma)
    resid = y.reshape(y.shape[0], -1).to(prior.mean.dtype) - amat @ prior.mean
    mean = prior.mean + resid @ gain.T
    return mean.reshape(y.shape[0], *prior.event_shape), prior.cov - gain @ amat @ prior.cov


class ExactLikelihood(MeasurementTerm):
    """prior: the GaussianPrior being sampled; operator A, y (model range), sigma_y ([0, 1] scale)."""

    def __init__(self, prior: GaussianPrior, operator, y, sigma_y=0.0, scale=1.0, sigma_window=None) -> None:
        if not isinstance(prior, GaussianPrior):
            raise InputError(f"ExactLikelihood needs the GaussianPrior being sampled, got {type(prior).__name__}")
        super().__init__(operator, y, sigma_y, scale, sigma_window)
        self.prior = prior
        self._amat: torch.Tensor | None = None

    def correct_x0(self, ctx: StepContext, x0: torch.Tensor) -> torch.Tensor:
        if self._amat is None:
            self._amat = operator_matrix(self.operator, self.prior.event_shape, self.prior.mean.dtype, self.prior.mean.device)
        gain = _gain(self.prior.posterior_cov(ctx.t), self._amat, self.sigma).to(x0.dtype)
        resid = self.residual(x0).reshape(x0.shape[0], -1)
        return x0 + self.scale * (resid @ gain.T).reshape(x0.shape)
