"""Identity: A x = x, the denoising problem (y = x + noise)."""
from __future__ import annotations

import torch

from .base import LinearOperator, check_image
from .spectral import Elementwise

__all__ = ["Identity"]


class Identity(LinearOperator):
    """A = AT = A^+ = I; the proximal step is the weighted mean (y + rho z) / (1 + rho)."""

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return check_image(x)

    def AT(self, y: torch.Tensor) -> torch.Tensor:
        return check_image(y)

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        return check_image(y)

    def spectral(self, x: torch.Tensor) -> Elementwise:
        """U = V = I, s = 1."""
        check_image(x)
        return Elementwise(torch.ones((), dtype=x.dtype, device=x.device))

    def _prox_l2(self, z: torch.Tensor, y: torch.Tensor, rho: float) -> torch.Tensor:
        return (y + rho * z) / (1 + rho)

    def __repr__(self) -> str:
        return "Identity()"
