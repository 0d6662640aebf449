"""DDRM's x0 correction (Kawar et al. 2022, eq. 7-8), in the spectral coordinates of an exact SVD:

    x0b_i <- x0b_i + lambda_i (yb_i - x0b_i),
    lambda_i = eta_b where rho_i <= sigma', sqrt(1 - eta^2) sigma' / rho_i where rho_i > sigma', 0 on the null space,

times ``scale``. The step and its fresh noise are the rule's: :class:`guidedinv.ddrm_step.DDRMStep`,
built from the same operator, sigma_y and scale (checked on every step), which owns eta and eta_b and
whose docstring has the whole step and how it differs from ddnm's SVD rule.
"""
from __future__ import annotations

import torch

from ..errors import InputError
from .base import StepContext
from .measurement import MeasurementTerm

__all__ = ["DDRM"]


class DDRM(MeasurementTerm):
    """operator A (with an exact SVD), y (model range), sigma_y ([0, 1] scale), scale >= 0 (1: DDRM).
    The sampler's rule must be ``DDRMStep(operator, sigma_y, eta, eta_b, scale=scale)``."""

    def correct_x0(self, ctx: StepContext, x0: torch.Tensor) -> torch.Tensor:
        check = getattr(ctx.rule, "check_ddrm", None)
        if check is None:
            raise InputError(f"the DDRM term needs the step rule guidedinv.ddrm_step.DDRMStep(operator, sigma_y, eta, eta_b, "
                             f"scale) built with its settings; the run's rule is {ctx.rule!r}")
        check(self.operator, self.noise.sigma_y, self.scale)
        spec = ctx.rule.spectral(x0)  # type: ignore[union-attr]
        lam, _ = ctx.rule.split(ctx.alpha_bar_next, spec)  # type: ignore[union-attr]
        return x0 + spec.from_spectral(lam * (spec.y_spec(self.measurement(x0)) - spec.to_spectral(x0)))
