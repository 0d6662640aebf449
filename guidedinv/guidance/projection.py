"""Null-space projection, DDNM and DDNM+ (Wang, Yu & Zhang, ICLR 2023, eq. 13 and eq. 17-19):

    x0 <- x0 + lambda_t A^+ (y - A x0)            (lambda_t = 1: DDNM, noiseless y)

keeps the network's null-space content and takes the range-space content from y. This term only
corrects x0; the run's step rule takes the step.

Noiseless y (sigma_y = 0): lambda = ``scale`` (1 by default) on the whole range of A, on every step
including the last: exactly DDNM's projection (eq. 13), and any rule steps (DDPM, DDIM, ...).

Noisy y (sigma_y > 0, DDNM+): the correction carries lambda A^+ n into x_next, so lambda must be
chosen against the step's fresh noise, and the step must draw only what that carried noise leaves
to fill. The step is :class:`guidedinv.rules.NoisyProjectionStep` (DDIM(eta) with that noise budget;
on an exact SVD it is DDRM's step, Kawar et al. 2022, with DDRM's eta the per-step fraction of fresh
noise that DDIM's eta gives and DDRM's eta_b = ``scale``; its docstring has the maths). Pass it as
the sampler's rule, built from the same operator, sigma_y, scale and noise_rule: this term reads its
eta through ``ctx.rule`` and asks it to check the pairing, and a run with sigma_y > 0 under any other
rule is refused. The weights, from :func:`guidedinv.projection_step.svd_split` /
:func:`~guidedinv.projection_step.scalar_split` (one implementation for the term and the rule):

    "svd" (the default, where the operator has an exact SVD A = U diag(s_i) V^T, see
    :mod:`guidedinv.operators.spectral`), per singular value, in the spectral coordinates x0b = V^T x0
    with yb_i = (U^T y)_i / s_i and rho_i = sigma / s_i its noise (sigma = 2 sigma_y, the model range)
    and sigma' the next level's VE noise:
        x0b_i <- x0b_i + lambda_i (yb_i - x0b_i),
        lambda_i = 1 where rho_i <= sigma', sqrt(1 - eta_t^2) sigma' / rho_i where rho_i > sigma'
        (DDRM's third and second cases), 0 on the null space, times ``scale``; 0 on the last step.
    "scalar" (the paper's eq. 19; also the fallback for an operator without an exact SVD):
        lambda_t = 1 where DDIM's fresh noise s >= c sigma, s / (c sigma) below (c: the step's x0
        weight), times ``scale``.
"""
from __future__ import annotations

import torch

from ..errors import InputError
from ..operators.spectral import Spectral
from ..projection_step import NOISE_RULES, scalar_split, svd_split
from .base import StepContext
from .measurement import MeasurementTerm

__all__ = ["Projection", "NOISE_RULES"]


class Projection(MeasurementTerm):
    """operator A, y (model range), sigma_y ([0, 1] scale), scale >= 0; noise_rule: "svd" (per
    singular value where the operator has an exact SVD, else "scalar") or "scalar" (the paper's
    eq. 19 everywhere). With sigma_y > 0 the sampler's rule must be
    ``NoisyProjectionStep(operator, sigma_y, eta, scale=scale, noise_rule=noise_rule)``, and the term
    takes no sigma_window (that rule budgets for the correction on every step)."""

    def __init__(self, operator, y, sigma_y=0.0, scale=1.0, sigma_window=None, noise_rule: str = "svd") -> None:
        super().__init__(operator, y, sigma_y, scale, sigma_window)
        if noise_rule not in NOISE_RULES:
            raise InputError(f"Projection noise_rule must be one of {', '.join(NOISE_RULES)}, got {noise_rule!r}")
        if self.sigma > 0 and sigma_window is not None:
            raise InputError("Projection sigma_window needs sigma_y = 0: with sigma_y > 0 the DDNM+ step rule "
                             "counts on the correction at every step")
        self.noise_rule = noise_rule

    def spectral(self, x: torch.Tensor) -> Spectral | None:
        """The decomposition the "svd" weights use for images like x, or None (the scalar weight applies)."""
        return self.operator.spectral(x) if self.noise_rule == "svd" else None

    def step_eta(self, ctx: StepContext) -> float:
        """DDIM's eta of the step that takes this x0 (the weights depend on it only when sigma_y > 0),
        after the run's rule has checked that it budgets for this term's noise."""
        check = getattr(ctx.rule, "check_projection", None)
        if check is None:
            if self.sigma > 0:
                raise InputError(
                    f"Projection with sigma_y = {self.noise.sigma_y:g} > 0 needs the step rule "
                    f"guidedinv.rules.NoisyProjectionStep(operator, sigma_y, eta, scale, noise_rule) built with its "
                    f"settings (the measurement's noise becomes part of the step's fresh noise); the run's rule is {ctx.rule!r}"
                )
            return 0.0
        check(self.operator, self.noise.sigma_y, self.scale, self.noise_rule)
        return float(ctx.rule.eta)  # type: ignore[union-attr]

    def correct_x0(self, ctx: StepContext, x0: torch.Tensor) -> torch.Tensor:
        eta, a, a_next = self.step_eta(ctx), ctx.alpha_bar, ctx.alpha_bar_next
        spec = self.spectral(x0)
        if spec is None:
            lam, _, _ = scalar_split(eta, a, a_next, self.sigma, self.scale)
            return x0 + lam * self.operator.pinv(self.residual(x0))
        lam, _ = svd_split(eta, a, a_next, self.sigma, self.scale, spec)
        return x0 + spec.from_spectral(lam * (spec.y_spec(self.measurement(x0)) - spec.to_spectral(x0)))
