"""A K-class toy image dataset made by our own code: small images of one shape or texture each.

Classes (``TOY.classes``), each at a random position / phase and size / period:

    disc       a filled disc                    cross      two thick bars, one across, one down
    hstripes   horizontal stripes               vstripes   vertical stripes
    checker    a checkerboard

The shape is white on black (RGB), edges anti-aliased (``supersample``^2 samples per pixel). The
classes differ in their coarse layout, which is what a diffusion model learns first, so that
models small enough to train in about a minute each on one CPU core can draw them. Two harder
variants were tried and dropped: random colours (``colour=True``, a minimum contrast between
foreground and background) and small shapes (disc / square / small plus sign). With 32 channels
the ADM networks' GroupNorm (32 groups) normalises each channel on its own, so they carry colour
levels poorly, and in that budget their samples came out multi-coloured or muddy and the shapes
blurred into discs: unguided samples were mush and classifier guidance could not rescue them.

Deterministic from a seed: image i of ``make_dataset(n, seed)`` is drawn from its own
``numpy.random.default_rng([seed, i])``, so it is the same for every n and on every platform.
Labels cycle 0, 1, ..., K-1 (balanced). Images are uint8 (N, 3, H, W); ``images / 127.5 - 1``
is what the networks see.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

__all__ = ["ToyConfig", "TOY", "make_dataset", "render"]


@dataclass(frozen=True)
class ToyConfig:
    """Everything that defines the toy data (recorded in every toy model's card).

    size: image side in pixels; radius: disc radius range (pixels); bar: half-width of the cross's
    bars; margin: least distance of the cross's centre from the border; period: stripe period and
    checker cell-pair size (pixels); colour: random foreground and background colours instead of white on black, at least
    ``contrast`` apart (Euclidean, in [0, 1]^3); supersample: anti-aliasing.
    """

    classes: tuple[str, ...] = ("disc", "cross", "hstripes", "vstripes", "checker")
    size: int = 16
    radius: tuple[float, float] = (3.5, 6.5)
    bar: tuple[float, float] = (1.5, 2.5)
    margin: float = 4.0
    period: tuple[float, float] = (4.0, 7.0)
    colour: bool = False
    contrast: float = 0.5
    supersample: int = 4

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict:
        return asdict(self)


TOY = ToyConfig()


def _colours(rng: np.random.Generator, config: ToyConfig) -> tuple[np.ndarray, np.ndarray]:
    if not config.colour:
        return np.zeros(3), np.ones(3)
    while True:
        bg, fg = rng.random(3), rng.random(3)
        if np.linalg.norm(fg - bg) >= config.contrast:
            return bg, fg


def render(label: int, rng: np.random.Generator, config: ToyConfig = TOY) -> np.ndarray:
    """One (3, size, size) float image in [0, 1] of class ``label``."""
    s, k = config.size, config.supersample
    y, x = (np.mgrid[0 : s * k, 0 : s * k] + 0.5) / k  # sample positions in pixel units
    if not 0 <= label < config.num_classes:
        raise ValueError(f"unknown toy class {label}; the classes are 0..{config.num_classes - 1}")
    bg, fg = _colours(rng, config)
    name = config.classes[label]
    if name == "disc":
        r = rng.uniform(*config.radius)
        cy, cx = rng.uniform(r, s - r, size=2)
        mask = (y - cy) ** 2 + (x - cx) ** 2 <= r * r
    elif name == "cross":
        bar = rng.uniform(*config.bar)
        cy, cx = rng.uniform(config.margin, s - config.margin, size=2)
        mask = (np.abs(y - cy) <= bar) | (np.abs(x - cx) <= bar)
    elif name in ("hstripes", "vstripes"):
        period, phase = rng.uniform(*config.period), rng.uniform(0, 2 * np.pi)
        coord = y if name == "hstripes" else x
        mask = np.sin(2 * np.pi * coord / period + phase) > 0
    elif name == "checker":
        period, py, px = rng.uniform(*config.period), *rng.uniform(0, 2 * np.pi, size=2)
        mask = np.sin(2 * np.pi * y / period + py) * np.sin(2 * np.pi * x / period + px) > 0
    else:
        raise ValueError(f"toy class {name!r} has no drawing rule")
    cover = mask.reshape(s, k, s, k).mean((1, 3))  # fraction of each pixel inside the shape
    return cover[None] * fg[:, None, None] + (1 - cover[None]) * bg[:, None, None]


def make_dataset(n: int, seed: int, config: ToyConfig = TOY) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images (uint8 (n, 3, size, size)) and their labels (long (n,)), balanced over the classes."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    k = config.num_classes
    labels = np.arange(n) % k
    images = np.stack([render(int(c), np.random.default_rng([seed, i]), config) for i, c in enumerate(labels)]) if n else \
        np.zeros((0, 3, config.size, config.size))
    return torch.from_numpy(np.round(images * 255).astype(np.uint8)), torch.from_numpy(labels).long()
