"""The denoiser interface: (x_t, t, labels) -> Prediction(x0, ...). x0 (Tweedie's estimate) is the
common currency of the sampler; every network is adapted to it here, once.

Conventions
-----------
* ``x`` is a VP-noised sample, x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps, in the model's
  data range (images: [-1, 1]).
* ``t`` is a float tensor of shape (B,) holding timesteps of the denoiser's own schedule
  (``denoiser.schedule``), 0 .. T-1, the same integers the network was trained on (no 1000/T
  rescaling; guided-diffusion's respaced sampling also feeds original timesteps).
* ``labels`` is None (unconditional) or a long tensor (B,); the value :data:`NULL_LABEL` (-1) asks a
  class-conditional denoiser for its unconditional prediction (used by classifier-free guidance).
* Learned variance (guided-diffusion's 6-channel output, "learned range") is split off here and
  returned as ``Prediction.var_interp`` in [-1, 1]: log var = f log beta + (1 - f) log beta_tilde with
  f = (var_interp + 1)/2 (Nichol & Dhariwal 2021, eq. 15). Only the ancestral step rule reads it.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

import torch

from .schedule import VPSchedule
from .tiling import Tiling, tiled_call, training_tiling

__all__ = ["NULL_LABEL", "Prediction", "Denoiser", "NetworkDenoiser", "timestep_tensor"]

NULL_LABEL = -1


@dataclass
class Prediction:
    """What a denoiser returns. ``x0``: E[x0 | x_t] (B, ...); ``var_interp``: learned-variance output or None."""

    x0: torch.Tensor
    var_interp: torch.Tensor | None = None

    def with_x0(self, x0: torch.Tensor) -> Prediction:
        return replace(self, x0=x0)


def timestep_tensor(t: float, batch: int, device: torch.device | str) -> torch.Tensor:
    """The (B,) float32 timestep tensor the sampler hands to a denoiser."""
    return torch.full((batch,), float(t), dtype=torch.float32, device=device)


class Denoiser(torch.nn.Module):
    """Base class: subclasses implement :meth:`forward` and set ``self.schedule``.

    ``num_classes`` is 0 for an unconditional denoiser. ``clip`` clamps x0 to ``clip_range`` (the
    usual [-1, 1] for image models; analytic priors leave it off).
    """

    schedule: VPSchedule
    num_classes: int = 0
    # the largest noise level sigma_t (model range) the network was trained for; None: its whole schedule.
    # A plug-and-play Gaussian denoiser (guidedinv.models.pnp) has one; the request layer refuses or
    # warm-starts methods that would start above it (guidedinv.app.noise_range).
    max_sigma: float | None = None

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> Prediction:  # noqa: D102
        raise NotImplementedError

    def eps(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The implied noise estimate eps = (x - sqrt(ab) x0) / sqrt(1 - ab)."""
        ab = self.alpha_bar(t, x)
        return (x - ab.sqrt() * self(x, t, labels).x0) / (1 - ab).sqrt()

    def alpha_bar(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """alpha_bar per item, shaped to broadcast against ``like``."""
        ab = self.schedule.alpha_bar_tensor(t.to(like.device)).to(like.dtype)
        return ab.view(-1, *([1] * (like.ndim - 1)))


Parameterization = Literal["eps", "v", "x0"]


class NetworkDenoiser(Denoiser):
    """Adapts a raw network ``net(x, t)`` or ``net(x, t, labels)`` to the denoiser interface.

    prediction: what the network outputs: "eps" (Ho et al. 2020), "v" (Salimans & Ho 2022,
        v = sqrt(ab) eps - sqrt(1 - ab) x0) or "x0".
    learned_sigma: the network outputs 2C channels, the second half the learned-range variance
        (guided-diffusion); split off here so nothing downstream sees it.
    num_classes: number of classes of a class-conditional network (0: unconditional). Labels equal to
        NULL_LABEL are mapped to ``null_label_index`` (the network's "no class" embedding).
    clip: clamp x0 to [-1, 1] (guided-diffusion's clip_denoised).
    tiling: evaluate the network on overlapping tiles (:mod:`guidedinv.tiling`), or None for the whole
        image in one call; an attribute a caller may change between runs.
    max_sigma: the largest sigma_t (model range) the network was trained for (None: the whole schedule).
    """

    def __init__(
        self,
        net: Callable[..., torch.Tensor] | torch.nn.Module,
        schedule: VPSchedule,
        prediction: Parameterization = "eps",
        learned_sigma: bool = False,
        num_classes: int = 0,
        null_label_index: int | None = None,
        clip: bool = True,
        tiling: Tiling | None = None,
        max_sigma: float | None = None,
    ) -> None:
        super().__init__()
        if prediction not in ("eps", "v", "x0"):
            raise ValueError(f"prediction must be 'eps', 'v' or 'x0', got {prediction!r}")
        self.net = net
        self.schedule = schedule
        self.prediction = prediction
        self.learned_sigma = learned_sigma
        self.num_classes = num_classes
        self.null_label_index = null_label_index
        self.clip = clip
        self.tiling = tiling
        self.max_sigma = max_sigma

    def _call_net(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if self.num_classes == 0:
            return self.net(x, t)
        if labels is None:
            labels = torch.full((x.shape[0],), NULL_LABEL, dtype=torch.long, device=x.device)
        if bool((labels == NULL_LABEL).any()):
            if self.null_label_index is None:
                raise ValueError("this network has no unconditional mode (no null label); pass class labels")
            labels = torch.where(labels == NULL_LABEL, torch.full_like(labels, self.null_label_index), labels)
        return self.net(x, t, labels)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> Prediction:
        out = tiled_call(self._call_net, x, (t, labels), self.tiling, fallback=training_tiling(self)).to(x.dtype)
        var_interp = None
        if self.learned_sigma:
            if out.shape[1] != 2 * x.shape[1]:
                raise ValueError(f"learned_sigma expects {2 * x.shape[1]} output channels, got {out.shape[1]}")
            out, var_interp = out.split(x.shape[1], dim=1)
        ab = self.alpha_bar(t, x)
        if self.prediction == "eps":
            x0 = (x - (1 - ab).sqrt() * out) / ab.sqrt()
        elif self.prediction == "v":
            x0 = ab.sqrt() * x - (1 - ab).sqrt() * out
        else:
            x0 = out
        if self.clip:
            x0 = x0.clamp(-1, 1)
        return Prediction(x0, var_interp)
