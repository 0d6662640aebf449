"""Exact Gaussian-mixture prior sum_k w_k N(mu_k, Sigma_k): denoiser, noisy-class posterior
p(c | x_t) (a perfect noise-aware classifier), and class-conditional denoisers.

    p(c | x_t)  = w_c N(x_t; a mu_c, a^2 Sigma_c + s^2 I) / sum_k (same)
    E[x0 | x_t] = sum_k p(k | x_t) E_k[x0 | x_t]          (each E_k from :class:`GaussianPrior`)
Labels select a component (class-conditional denoiser); NULL_LABEL (-1) or no labels give the
whole mixture, so the prior also plays the part of a classifier-free-guidance model.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ..denoiser import NULL_LABEL, Denoiser, Prediction
from ..schedule import VPSchedule
from .gaussian import GaussianPrior

__all__ = ["GaussianMixturePrior", "MixtureNoisyClassifier"]


class GaussianMixturePrior(Denoiser):
    """K-component mixture. weights: (K,) positive (normalised here); means: (K, d); covs: (K, d, d) or (K, d)."""

    def __init__(
        self,
        weights: Sequence[float] | torch.Tensor,
        means: torch.Tensor,
        covs: torch.Tensor,
        schedule: VPSchedule | None = None,
        event_shape: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        means = torch.as_tensor(means)
        weights = torch.as_tensor(weights, dtype=means.dtype)
        if weights.ndim != 1 or len(weights) != len(means) or bool((weights <= 0).any()):
            raise ValueError("weights must be K positive numbers, one per mean")
        self.schedule = schedule if schedule is not None else VPSchedule.linear()
        shape = event_shape if event_shape is not None else tuple(means.shape[1:])
        self.components = torch.nn.ModuleList(
            GaussianPrior(m, c, self.schedule, shape) for m, c in zip(means, torch.as_tensor(covs, dtype=means.dtype))
        )
        self.register_buffer("log_weights", (weights / weights.sum()).log())
        self.event_shape = tuple(shape)
        self.num_classes = len(weights)

    @property
    def weights(self) -> torch.Tensor:
        return self.log_weights.exp()

    def log_joint(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """log w_k + log N_k(x_t), (B, K): unnormalised logits of p(k | x_t)."""
        return torch.stack([c.log_prob_noisy(x, t) for c in self.components], 1) + self.log_weights

    def class_posterior(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """p(k | x_t), (B, K)."""
        return self.log_joint(x, t).softmax(1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> Prediction:
        per_comp = torch.stack([c(x, t).x0.reshape(x.shape[0], -1) for c in self.components], 1)  # (B, K, d)
        resp = self.class_posterior(x, t).to(per_comp.dtype)
        x0 = (resp.unsqueeze(-1) * per_comp).sum(1)
        if labels is not None:
            labels = labels.to(x.device)
            if bool(((labels < NULL_LABEL) | (labels >= self.num_classes)).any()):
                raise ValueError(f"labels must be in [0, {self.num_classes - 1}] or {NULL_LABEL} (unconditional)")
            chosen = per_comp[torch.arange(x.shape[0], device=x.device), labels.clamp(min=0)]
            x0 = torch.where((labels == NULL_LABEL).unsqueeze(-1), x0, chosen)
        return Prediction(x0.reshape(x.shape).to(x.dtype))

    def classifier(self) -> MixtureNoisyClassifier:
        """The exact noise-aware classifier, as a module ``(x_t, t) -> logits`` like a trained one."""
        return MixtureNoisyClassifier(self)

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """n exact samples and their component labels."""
        labels = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        draws = torch.stack([c.sample(n, generator) for c in self.components], 1)  # (n, K, ...)
        return draws[torch.arange(n), labels.to(draws.device)], labels


class MixtureNoisyClassifier(torch.nn.Module):
    """logits(x_t, t) = log p(k | x_t) + const for a :class:`GaussianMixturePrior`."""

    def __init__(self, prior: GaussianMixturePrior) -> None:
        super().__init__()
        self.prior = prior

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.prior.log_joint(x, t)
