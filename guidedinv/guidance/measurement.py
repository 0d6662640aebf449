"""What every measurement-consistency term holds: an operator A, a measurement y, a noise level, a
scale and an optional window of noise levels.

Conventions shared by DPS, Projection (DDNM), Replacement (RePaint), Proximal (DiffPIR) and
ExactLikelihood:
    y        the measurement of the image in the MODEL's [-1, 1] range, y = A(x) + sigma_model n,
             shaped (1 or B, C', H', W') like A's output (a [0, 1] measurement converts with
             ``operator.to_model_range``).
    sigma_y  the noise standard deviation on the [0, 1] image scale, or a GaussianNoise; terms use
             sigma_model = 2 sigma_y (the one conversion lives in guidedinv.operators.noise).
    scale    >= 0; 0 switches the term off, so the run is exactly the unguided one.
"""
from __future__ import annotations

import math

import torch

from ..errors import InputError
from ..operators.base import LinearOperator, check_image
from ..operators.noise import GaussianNoise, as_noise
from .base import GuidanceTerm, StepContext, check_window

__all__ = ["MeasurementTerm"]


class MeasurementTerm(GuidanceTerm):
    """Base class: operator A, measurement y (model range), sigma_y ([0, 1] scale), scale, sigma_window."""

    def __init__(
        self,
        operator: LinearOperator,
        y: torch.Tensor,
        sigma_y: float | GaussianNoise = 0.0,
        scale: float = 1.0,
        sigma_window: tuple[float, float] | None = None,
    ) -> None:
        if not isinstance(operator, LinearOperator):
            raise InputError(f"operator must be a guidedinv.operators.LinearOperator, got {type(operator).__name__}")
        self.operator = operator
        self.y = check_image(y, "measurement y")
        self.noise = as_noise(sigma_y)
        scale = float(scale)
        if not (scale >= 0 and math.isfinite(scale)):
            raise InputError(f"{type(self).__name__} scale must be a finite number >= 0, got {scale}")
        self.scale = scale
        self.sigma_window = check_window(sigma_window)

    @property
    def sigma(self) -> float:
        """Measurement noise standard deviation on the model's [-1, 1] range."""
        return self.noise.sigma_model

    def active(self, ctx: StepContext) -> bool:
        return self.scale > 0 and super().active(ctx)

    def measurement(self, x: torch.Tensor) -> torch.Tensor:
        """y on x's device and dtype, expanded to x's batch; InputError if it does not fit A(x)."""
        expected = self.operator.out_shape(x.shape)
        y = self.y
        if tuple(y.shape[1:]) != tuple(expected[1:]):
            raise InputError(
                f"measurement y has shape {tuple(y.shape[1:])} per image but {self.operator!r} maps an image of "
                f"shape {tuple(x.shape[1:])} to {tuple(expected[1:])}"
            )
        if y.shape[0] not in (1, x.shape[0]):
            raise InputError(f"measurement y has a batch of {y.shape[0]} for {x.shape[0]} images; give 1 or {x.shape[0]}")
        return y.to(device=x.device, dtype=x.dtype).expand(x.shape[0], *y.shape[1:])

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """y - A x."""
        return self.measurement(x) - self.operator.A(x)
