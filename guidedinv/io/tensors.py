"""Tensor conventions at the package boundary: the data range and sizes that models require.

Images are [0, 1] outside the package and [-1, 1] inside the model (README, "Conventions"); this
file is the one place that converts between the two. Models that need a height and width divisible
by 8 or 32 get padding (and an exact crop back), not an error.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["to_model_range", "from_model_range", "pad_to_multiple", "Crop", "PAD_MODES"]

PAD_MODES = ("reflect", "replicate", "constant")


def to_model_range(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] image -> the model's [-1, 1] range: 2x - 1."""
    return x * 2 - 1


def from_model_range(x: torch.Tensor) -> torch.Tensor:
    """The model's [-1, 1] range -> a [0, 1] image, clamped: (x + 1) / 2 cut to [0, 1].

    Clamping is the standard last step of a sampler (x0 estimates leave the data range slightly);
    it happens here, once, so that written images are always valid.
    """
    return ((x + 1) / 2).clamp(0, 1)


@dataclass(frozen=True)
class Crop:
    """A box (top, left, height, width) that undoes ``pad_to_multiple``: ``crop(padded)`` is the input."""

    top: int
    left: int
    height: int
    width: int

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Cut the box out of the last two dimensions of x (..., H', W')."""
        return x[..., self.top : self.top + self.height, self.left : self.left + self.width]

    def scaled(self, factor: int) -> Crop:
        """The same box on a grid ``factor`` times finer (e.g. the output of x``factor`` super-resolution)."""
        return Crop(self.top * factor, self.left * factor, self.height * factor, self.width * factor)


def _reflect_index(n: int, before: int, after: int, mode: str) -> torch.Tensor:
    """Source index of each padded position along one axis of length n (reflection repeats as needed)."""
    i = torch.arange(-before, n + after)
    if mode == "replicate" or n == 1:
        return i.clamp(0, n - 1)
    period = 2 * (n - 1)  # reflect without repeating the edge sample, like torch's 'reflect'
    i = i.remainder(period)
    return torch.where(i < n, i, period - i)


def pad_to_multiple(x: torch.Tensor, multiple: int, mode: str = "reflect") -> tuple[torch.Tensor, Crop]:
    """Pad the last two dimensions of x (..., H, W) up to the next multiple of ``multiple``.

    The padding is split evenly (the extra pixel, if any, goes bottom/right) so the content stays
    centred. mode: 'reflect' (mirror without repeating the edge; mirrors again when the padding is
    wider than the image), 'replicate' (repeat the edge) or 'constant' (zeros). Returns the padded
    tensor and the ``Crop`` that gives x back exactly.
    """
    if multiple < 1:
        raise ValueError(f"multiple must be a positive integer, got {multiple}")
    if mode not in PAD_MODES:
        raise ValueError(f"unknown padding mode {mode!r}; accepted: {', '.join(PAD_MODES)}")
    if x.dim() < 2 or x.shape[-1] == 0 or x.shape[-2] == 0:
        raise ValueError(f"pad_to_multiple needs a non-empty (..., H, W) tensor, got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    top, left = ph // 2, pw // 2
    crop = Crop(top, left, h, w)
    if ph == 0 and pw == 0:
        return x, crop
    return pad_sides(x, top, ph - top, left, pw - left, mode)[0], crop


def pad_sides(
    x: torch.Tensor, top: int, bottom: int, left: int, right: int, mode: str = "reflect"
) -> tuple[torch.Tensor, Crop]:
    """Pad the last two dimensions of x by the given margins (same modes as :func:`pad_to_multiple`);
    returns the padded tensor and the ``Crop`` that gives x back exactly."""
    if mode not in PAD_MODES:
        raise ValueError(f"unknown padding mode {mode!r}; accepted: {', '.join(PAD_MODES)}")
    h, w = x.shape[-2:]
    crop = Crop(top, left, h, w)
    if mode == "constant":
        out = x.new_zeros((*x.shape[:-2], h + top + bottom, w + left + right))  # any dtype, bool masks included
        out[..., top : top + h, left : left + w] = x
        return out, crop
    rows = _reflect_index(h, top, bottom, mode).to(x.device)
    cols = _reflect_index(w, left, right, mode).to(x.device)
    return x.index_select(-2, rows).index_select(-1, cols), crop
