"""Inpainting masks: read from a file or generated from a spec; True marks the region to FILL.

A mask file is any image ``read_image`` accepts, of the image's size:

- grey or colour: white = fill. The grey level (the mean of the channels for colour) is
  thresholded: >= 0.5 is fill, below is known.
- with a varying alpha channel and constant colour (an "alpha-only" mask, e.g. a photo editor's
  selection exported as transparency): transparent (alpha < 0.5) = fill. When both the alpha and
  the colour vary, the mask is ambiguous and rejected.

The EXIF orientation is applied, as for images, so a mask matches the image a viewer shows.
Generated masks (``make_mask``), with H x W the image size:

- ``box``: a centred square of side min(H, W) // 2; ``box:SIZE``: a centred square of SIZE pixels;
- ``random:F``: exactly round(F * H * W) pixels chosen uniformly at random from the seed, 0 < F < 1;
- ``half``: the right half, columns W // 2 onwards;
- ``lines`` (also ``every-second-line``): every second row, starting with the second (1, 3, 5, ...).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from ..errors import InputError
from .read import read_image

__all__ = ["read_mask", "check_mask", "make_mask", "MASK_SPECS"]

MASK_SPECS = "box, box:SIZE (pixels), random:F (fraction to fill, 0 < F < 1), half, lines (or every-second-line)"


def read_mask(path: str | Path, shape: Sequence[int]) -> torch.Tensor:
    """Read a mask file as a bool (H, W) tensor, True = fill; shape: the image's (..., H, W)."""
    data = read_image(path)
    h, w = int(shape[-2]), int(shape[-1])
    if data.size != (h, w):
        raise InputError(f"{data.path}: mask is {data.width}x{data.height} pixels but the image is {w}x{h}; "
                         "a mask must have the image's size (width x height)")
    alpha = data.alpha
    if alpha is None or bool(alpha.min() == alpha.max()):
        return data.image.mean(0) >= 0.5
    if bool((data.image == data.image.flatten(1)[:, :1, None]).all()):
        return alpha[0] < 0.5
    raise InputError(f"{data.path}: mask is ambiguous: both its alpha and its grey levels vary; accepted: a grey "
                     "mask (white = fill) or an alpha-only mask of one colour (transparent = fill)")


def check_mask(mask: torch.Tensor, name: str | Path = "mask") -> torch.Tensor:
    """Raise InputError if ``mask`` (True = fill) fills nothing or everything; return it otherwise.

    name: how the message refers to the mask (its file or its spec).
    """
    if not bool(mask.any()):
        raise InputError(f"{name}: mask is empty: it marks nothing to fill (white = fill)")
    if bool(mask.all()):
        raise InputError(f"{name}: mask marks every pixel to fill: nothing of the image is known (black = keep)")
    return mask


def make_mask(spec: str, shape: Sequence[int], seed: int = 0) -> torch.Tensor:
    """A generated bool (H, W) mask, True = fill, from a spec (module docstring); shape: (..., H, W).

    seed is used by ``random:F`` only (its own CPU generator: the same seed gives the same mask).
    """
    h, w = int(shape[-2]), int(shape[-1])
    name, _, arg = spec.strip().lower().partition(":")
    mask = torch.zeros(h, w, dtype=torch.bool)
    if name == "box":
        side = min(h, w) // 2 if not arg else _number(spec, arg, int)
        if not 1 <= side <= min(h, w):
            raise InputError(f"mask spec {spec!r}: box side must be between 1 and {min(h, w)} pixels for a {w}x{h} image")
        top, left = (h - side) // 2, (w - side) // 2
        mask[top : top + side, left : left + side] = True
    elif name == "random" and arg:
        fraction = _number(spec, arg, float)
        if not 0 < fraction < 1:
            raise InputError(f"mask spec {spec!r}: random:F needs a fraction 0 < F < 1")
        count = round(fraction * h * w)
        chosen = torch.randperm(h * w, generator=torch.Generator().manual_seed(int(seed)))[:count]
        mask.view(-1)[chosen] = True
    elif name == "half" and not arg:
        mask[:, w // 2 :] = True
    elif name in ("lines", "every-second-line") and not arg:
        mask[1::2] = True
    else:
        raise InputError(f"unknown mask spec {spec!r}; accepted: {MASK_SPECS}")
    return mask


def _number(spec: str, text: str, kind: type) -> int | float:
    try:
        return kind(text)
    except ValueError:
        raise InputError(f"mask spec {spec!r}: {text!r} is not a{'n integer' if kind is int else ' number'}; "
                         f"accepted: {MASK_SPECS}") from None
