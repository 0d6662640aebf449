"""Classifier-free guidance (Ho & Salimans 2022) as a denoiser combinator.

Convention (one scale, written down once): with w the guidance scale,
    x0_guided = x0_uncond + w (x0_cond - x0_uncond)
(equivalently in eps, since both are affine in the network output at the same x_t).
    w = 1  the plain conditional model;  w = 0  the unconditional model;  w > 1  stronger guidance.
This is the ``guidance_scale`` of diffusers and Imagen. Ho & Salimans write (1 + w_ho) eps_c - w_ho eps_u,
so their w_ho = w - 1 (use :meth:`ClassifierFreeGuidance.from_ho`). With exact models, CFG at scale w
is classifier guidance at scale w with the exact noisy classifier: score_u + w (score_c - score_u).
Both predictions come from ONE batched call of the conditional denoiser (labels and NULL_LABEL).
"""
from __future__ import annotations

import math

import torch

from ..denoiser import NULL_LABEL, Denoiser, Prediction

__all__ = ["ClassifierFreeGuidance"]


class ClassifierFreeGuidance(Denoiser):
    """Wraps a class-conditional denoiser (one that accepts NULL_LABEL for "no class")."""

    def __init__(self, denoiser: Denoiser, scale: float) -> None:
        super().__init__()
        if not math.isfinite(scale):
            raise ValueError(f"CFG scale must be finite, got {scale}")
        if denoiser.num_classes == 0:
            raise ValueError("classifier-free guidance needs a class-conditional denoiser")
        self.inner = denoiser
        self.scale = float(scale)
        self.schedule = denoiser.schedule
        self.num_classes = denoiser.num_classes

    @classmethod
    def from_ho(cls, denoiser: Denoiser, w_ho: float) -> ClassifierFreeGuidance:
        """Build from Ho & Salimans' w (0 = plain conditional): scale = 1 + w_ho."""
        return cls(denoiser, 1.0 + w_ho)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> Prediction:
        if labels is None:
            raise ValueError("classifier-free guidance needs class labels")
        null = torch.full_like(labels, NULL_LABEL)
        both = self.inner(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, null]))
        cond, uncond = both.x0.chunk(2)
        var = None if both.var_interp is None else both.var_interp.chunk(2)[0]
        return Prediction(uncond + self.scale * (cond - uncond), var)
