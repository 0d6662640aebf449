"""Shared fixtures: small analytic priors whose every answer is known in closed form."""
from __future__ import annotations

import pytest
import torch

# Tiny tensors everywhere: one thread is faster than two (no thread hand-offs), and it keeps the
# suite quick when other processes share the cores.
torch.set_num_threads(1)

from guidedinv.priors import GaussianMixturePrior, GaussianPrior


@pytest.fixture(scope="session")
def gaussian3() -> GaussianPrior:
    """A correlated 3-D Gaussian, eigenvalues between ~0.05 and ~1."""
    root = torch.tensor([[0.8, 0.0, 0.0], [0.3, 0.5, 0.0], [-0.2, 0.1, 0.3]], dtype=torch.float64)
    cov = root @ root.T + 0.02 * torch.eye(3, dtype=torch.float64)
    return GaussianPrior(torch.tensor([0.5, -0.3, 0.2], dtype=torch.float64), cov)


@pytest.fixture(scope="session")
def mixture3() -> GaussianMixturePrior:
    """Three well-separated 2-D components with unequal weights and covariances."""
    means = torch.tensor([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.5]], dtype=torch.float64)
    covs = torch.tensor(
        [[[0.30, 0.10], [0.10, 0.20]], [[0.20, 0.00], [0.00, 0.40]], [[0.25, -0.05], [-0.05, 0.15]]],
        dtype=torch.float64,
    )
    return GaussianMixturePrior([0.5, 0.3, 0.2], means, covs)


def save_tiny_prior(path) -> None:
    """A tiny untrained v-prediction ADM prior in the embedded models' file format (seeded)."""
    from guidedinv.models.adm import ADMConfig, build_network
    from guidedinv.training import export_safetensors

    cfg = ADMConfig(model_channels=32, num_res_blocks=1, channel_mult=(1, 2), attention_ds=(), out_channels=3, head_channels=None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = build_network(cfg)
    export_safetensors(net, cfg, path, schedule="linear", prediction="v", kind="prior")


def empirical_cov(x: torch.Tensor) -> torch.Tensor:
    x = x.reshape(x.shape[0], -1)
    centred = x - x.mean(0)
    return centred.T @ centred / (x.shape[0] - 1)


def component_of(prior: GaussianMixturePrior, x: torch.Tensor) -> torch.Tensor:
    """Most probable clean component of each sample (exact posterior at t = -1)."""
    return prior.class_posterior(x, torch.full((x.shape[0],), -1.0)).argmax(1)
