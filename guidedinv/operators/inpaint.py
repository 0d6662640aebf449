"""Inpainting: A x = m * x with a binary mask m, 1 = observed, 0 = missing.

The measurement keeps the image's size with zeros where nothing is observed (DPS, DDNM, RePaint
all do this), so A is an orthogonal projection: AT = A = A^+ and every solver is elementwise.
The mask is per pixel (broadcast over channels: (H, W) or (1, H, W)) or per channel ((C, H, W)),
optionally with a leading batch axis of 1 or B for one mask per image. guidedinv.io's masks
mark the region to FILL (True = fill); :meth:`Inpainting.from_fill_mask` takes those.
"""
from __future__ import annotations

import torch

from ..errors import InputError
from .base import LinearOperator, check_image
from .spectral import Elementwise

__all__ = ["Inpainting"]


class Inpainting(LinearOperator):
    """mask: (H, W), (C, H, W) or (B, C, H, W) of 0/1 or bool, 1 = observed."""

    def __init__(self, mask: torch.Tensor) -> None:
        m = torch.as_tensor(mask)
        if m.ndim not in (2, 3, 4):
            raise InputError(f"mask must be (H, W), (C, H, W) or (B, C, H, W), got shape {tuple(m.shape)}")
        m = m.reshape((1,) * (4 - m.ndim) + tuple(m.shape))
        if m.dtype != torch.bool:
            if m.is_complex() or not bool(((m == 0) | (m == 1)).all()):
                raise InputError("mask must hold only 0 (missing) and 1 (observed), or be a bool tensor")
        self.mask = m.to(torch.bool)

    @classmethod
    def from_fill_mask(cls, fill: torch.Tensor) -> Inpainting:
        """From a mask that marks the region to fill (True = fill, guidedinv.io's convention)."""
        return cls(~torch.as_tensor(fill, dtype=torch.bool))

    def _mask(self, x: torch.Tensor) -> torch.Tensor:
        check_image(x)
        m = self.mask
        if tuple(m.shape[-2:]) != tuple(x.shape[-2:]):
            raise InputError(
                f"mask is {m.shape[-1]}x{m.shape[-2]} (width x height) but the image is "
                f"{x.shape[-1]}x{x.shape[-2]}; the mask must have the image's size"
            )
        if m.shape[1] not in (1, x.shape[1]):
            raise InputError(f"mask has {m.shape[1]} channels but the image has {x.shape[1]}; give 1 or {x.shape[1]}")
        if m.shape[0] not in (1, x.shape[0]):
            raise InputError(f"mask has a batch of {m.shape[0]} but the images a batch of {x.shape[0]}; give 1 or {x.shape[0]}")
        return m.to(device=x.device, dtype=x.dtype)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return self._mask(x) * x

    def AT(self, y: torch.Tensor) -> torch.Tensor:
        return self.A(y)

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        return self.A(y)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return self.A(x)

    def spectral(self, x: torch.Tensor) -> Elementwise:
        """U = V = I, s = the mask (1 observed, 0 missing)."""
        return Elementwise(self._mask(x))

    def _prox_l2(self, z: torch.Tensor, y: torch.Tensor, rho: float) -> torch.Tensor:
        """Elementwise (DiffPIR's inpainting step): (y + rho z)/(1 + rho) where observed, z elsewhere."""
        m = self._mask(z)
        return m * (y + rho * z) / (1 + rho) + (1 - m) * z

    def __repr__(self) -> str:
        return f"Inpainting(mask {tuple(self.mask.shape)}, {float(self.mask.float().mean()):.0%} observed)"
