"""ILVR, iterative latent variable refinement (Choi et al., ICCV 2021, eq. 8): after every step the
low-frequency part of the sample is replaced by that of the reference noised to the same level,

    x_next <- x_next - phi_N(x_next) + phi_N(sqrt(ab_next) ref + sqrt(1 - ab_next) z),

so the result shares the reference's coarse structure and the prior fills the detail. The paper's
phi_N resizes down by N and back up (bicubic); here phi_N = A^+ A with A this package's antialiased
``Downsample(N)``: the orthogonal projection onto what a factor-N downsampling sees (idempotent and
symmetric, so "the low-pass of the output equals the reference's" holds exactly on the last step).
That is the replacement step for the operator A with y = A ref (:class:`Replacement`), which this
term is. ``sigma_window`` is ILVR's conditioning range: the paper conditions from T down to a stop
time; (sigma_min, inf) here.
"""
from __future__ import annotations

import torch

from ..errors import InputError
from ..operators import Downsample
from .replacement import Replacement

__all__ = ["ILVR"]


class ILVR(Replacement):
    """reference: (1 or B, C, H, W) in model range, H and W multiples of ``factor``; factor: N >= 1;
    mode: the downsampling model ("bicubic" antialiased, or "average" blocks)."""

    def __init__(self, reference: torch.Tensor, factor: int, mode: str = "bicubic", scale: float = 1.0,
                 sigma_window: tuple[float, float] | None = None) -> None:
        factor = int(factor)
        if factor < 1:
            raise InputError(f"ILVR factor must be a whole number >= 1, got {factor}")
        if reference.shape[-1] % factor or reference.shape[-2] % factor:
            raise InputError(f"the ILVR reference is {reference.shape[-1]}x{reference.shape[-2]}: its sides must be "
                             f"multiples of the factor {factor}")
        operator = Downsample(factor, mode)
        super().__init__(operator, operator.A(reference), 0.0, scale, sigma_window)
        self.factor = factor

    def low_pass(self, x: torch.Tensor) -> torch.Tensor:
        """phi_N(x) = A^+ A x."""
        return self.operator.project(x)
