"""Measurement noise y = A x + n, n ~ N(0, sigma^2 I): the one place where its scale changes range.

guidedinv states sigma_y on the [0, 1] image scale (what a user sees). Inside the model, images live
in [-1, 1] (x_model = 2 x - 1), so the same noise has standard deviation

    sigma_model = 2 * sigma_y.

What the papers' "sigma = 0.05" means, in our sigma_y:
    DPS (configs, noise added to [-1, 1] images):        sigma_y = 0.05 / 2 = 0.025
                                                          -> GaussianNoise.from_model_range(0.05)
    DDRM, DDNM (sigma_0 on [0, 1], doubled in the code):  sigma_y = sigma_0
    DiffPIR (noise_level_img = 12.75/255 on [0, 1], added
             to [-1, 1] images as 2 * noise_level_img):   sigma_y = noise_level_img
             (its rho_t then uses the [0, 1] value against the [-1, 1] sigma_t; see
             guidedinv.guidance.proximal for what that does to its lambda)
    DAPS (0.05 on [-1, 1]), InverseBench (0.05):          sigma_y = 0.025
"""
from __future__ import annotations

import math

import torch

from ..errors import InputError
from ..noise import NoiseSource

__all__ = ["GaussianNoise", "as_noise"]


class GaussianNoise:
    """sigma_y: standard deviation on the [0, 1] image scale (>= 0)."""

    def __init__(self, sigma_y: float = 0.0) -> None:
        sigma_y = float(sigma_y)
        if not (sigma_y >= 0 and math.isfinite(sigma_y)):
            raise InputError(f"noise sigma_y must be a finite number >= 0 (on the [0, 1] image scale), got {sigma_y}")
        self.sigma_y = sigma_y

    @classmethod
    def from_model_range(cls, sigma: float) -> GaussianNoise:
        """From a standard deviation stated on the model's [-1, 1] range (DPS's convention)."""
        return cls(float(sigma) / 2)

    @property
    def sigma_model(self) -> float:
        """The standard deviation on the model's [-1, 1] range: 2 sigma_y."""
        return 2 * self.sigma_y

    def __call__(self, y: torch.Tensor, rng: NoiseSource) -> torch.Tensor:
        """y + sigma_model * n for a measurement y in the model's range, with one stream per item."""
        if self.sigma_y == 0:
            return y
        return y + self.sigma_model * rng.randn_like(y)

    def __repr__(self) -> str:
        return f"GaussianNoise(sigma_y={self.sigma_y:g} on [0, 1], {self.sigma_model:g} on [-1, 1])"


def as_noise(noise: GaussianNoise | float) -> GaussianNoise:
    """A GaussianNoise as given, or one built from a sigma_y on the [0, 1] scale."""
    return noise if isinstance(noise, GaussianNoise) else GaussianNoise(noise)
