"""A grey measurement of a colour image: y = A (G x), G x = the mean of x's three channels, A a
task's operator applied to the one grey channel. A grey photo is this measurement of the colour
image the prior models, with its noise on the grey values; restoring it as three equal channels
would show the prior perfectly correlated noise across channels, which it reads as structure.

With l = G x (1 channel) and c = x - l (the chroma, three channels summing to zero), ||x - z||^2 =
||c - c_z||^2 + 3 ||l - l_z||^2 and the data sees l only, so every solver reduces to the inner
operator's on the grey channel:

    AT(y)     = broadcast(A^T y) / 3                 (G^T = broadcast / 3)
    pinv(y)   = broadcast(A^+ y)                     (G^+ = broadcast: G G^T = I / 3)
    project   = broadcast(A^+ A G x)
    prox_l2   = z + broadcast(prox_A(l_z, y, 3 rho) - l_z)   (the chroma of z kept as it is)
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import InputError
from .base import LinearOperator, check_image

__all__ = ["ColourToGrey"]


class ColourToGrey(LinearOperator):
    """inner: the operator acting on the grey channel (any LinearOperator that works per channel)."""

    def __init__(self, inner: LinearOperator) -> None:
        if not isinstance(inner, LinearOperator):
            raise InputError(f"ColourToGrey takes a linear operator, got {type(inner).__name__}")
        self.inner = inner

    @staticmethod
    def _grey(x: torch.Tensor) -> torch.Tensor:
        if check_image(x).shape[1] != 3:
            raise InputError(f"ColourToGrey maps colour images (B, 3, H, W), got {tuple(x.shape)}")
        return x.mean(1, keepdim=True)

    @staticmethod
    def _colour(g: torch.Tensor) -> torch.Tensor:
        return g.expand(-1, 3, *g.shape[2:]).contiguous()

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner.A(self._grey(x))

    def AT(self, y: torch.Tensor) -> torch.Tensor:
        return self._colour(self.inner.AT(y)) / 3

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        return self._colour(self.inner.pinv(y))

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return self._colour(self.inner.project(self._grey(x)))

    def _prox_l2(self, z: torch.Tensor, y: torch.Tensor, rho: float) -> torch.Tensor:
        grey = self._grey(z)
        return z + self._colour(self.inner.prox_l2(grey, y, 3 * rho) - grey)

    def out_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        shape = tuple(int(s) for s in shape)
        return self.inner.out_shape((*shape[:-3], 1, *shape[-2:]))

    def in_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        shape = self.inner.in_shape(shape)
        return (*shape[:-3], 3, *shape[-2:])

    def __repr__(self) -> str:
        return f"{self.inner!r} @ ColourToGrey()"
