"""A scalar map (a posterior's per-pixel standard deviation, say) as a colour picture with a scale bar.

Colours: a viridis-like map (dark blue -> teal -> yellow; perceptually ordered and readable in grey
and by most colour-blind eyes), linear interpolation between nine anchor colours sampled from
viridis (van der Walt & Smith, CC0), so no plotting library is needed. Values map linearly from 0
(the first colour) to ``vmax`` (the last; default the map's maximum).

Picture: the map at its own size, then to its right a vertical bar of the colours (``vmax`` at the
top, 0 at the bottom) with ticks labelled in the map's own units (0, vmax / 2, vmax) drawn with
Pillow's default font. The canvas is at least :data:`MIN_HEIGHT` px tall so the labels fit under a
tiny map; the area the map does not cover is white.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from .write import write_image

__all__ = ["VIRIDIS", "colormap", "scale_bar_picture", "write_colour_map", "MIN_HEIGHT", "BAR_GAP", "BAR_WIDTH"]

# viridis at 0, 1/8, ..., 1 (8-bit sRGB)
VIRIDIS = np.array([[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141], [39, 173, 129],
                    [92, 200, 99], [170, 220, 50], [253, 231, 37]], dtype=np.float64) / 255.0
MIN_HEIGHT = 80  # px: room for three labels beside a small map
BAR_GAP, BAR_WIDTH = 8, 14  # px between map and bar, bar width


def colormap(values: torch.Tensor | np.ndarray) -> torch.Tensor:
    """(H, W) values in [0, 1] (outside: clipped) -> (3, H, W) float32 colours in [0, 1]."""
    v = np.clip(np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, np.float64), 0.0, 1.0)
    pos = v * (len(VIRIDIS) - 1)
    lo = np.minimum(np.floor(pos).astype(np.int64), len(VIRIDIS) - 2)
    frac = (pos - lo)[..., None]
    rgb = VIRIDIS[lo] * (1 - frac) + VIRIDIS[lo + 1] * frac
    return torch.from_numpy(np.moveaxis(rgb, -1, 0).astype(np.float32))


def _label(v: float) -> str:
    return "0" if v == 0 else f"{v:.3g}"


def scale_bar_picture(values: torch.Tensor, vmax: float | None = None) -> tuple[torch.Tensor, float]:
    """(3, H', W') picture of the (H, W) map ``values`` (>= 0) with its scale bar, and the vmax used
    (the map's maximum unless given; a map of zeros gets a scale up to 1e-6, drawn dark)."""
    from PIL import Image, ImageDraw, ImageFont

    v = values.detach().to("cpu", torch.float64)
    if v.ndim != 2:
        raise ValueError(f"a colour map needs an (H, W) map, got shape {tuple(v.shape)}")
    if not torch.isfinite(v).all() or float(v.min()) < 0:
        raise ValueError("a colour map's values must be finite and >= 0")
    top = float(v.max()) if vmax is None else float(vmax)
    top = top if top > 0 else 1e-6
    h, w = v.shape
    size = max(10, min(32, max(h, MIN_HEIGHT) // 24))
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: its bitmap font, one size
        font = ImageFont.load_default()
    labels = [(_label(top * f), f) for f in (1.0, 0.5, 0.0)]
    text_w = max(int(font.getbbox(t)[2]) for t, _ in labels)
    pad = size  # half a label above the bar's top and below its bottom
    height = max(h, MIN_HEIGHT, 6 * size)
    width = w + BAR_GAP + BAR_WIDTH + 4 + text_w + 4
    canvas = np.ones((height, width, 3), np.float64)
    canvas[:h, :w] = colormap(v / top).permute(1, 2, 0).numpy()
    bar_h = height - 2 * pad
    ramp = np.linspace(1.0, 0.0, bar_h)[:, None].repeat(BAR_WIDTH, 1)
    x0 = w + BAR_GAP
    canvas[pad : pad + bar_h, x0 : x0 + BAR_WIDTH] = colormap(ramp).permute(1, 2, 0).numpy()
    picture = Image.fromarray((canvas * 255).round().astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    for text, frac in labels:
        y = pad + round((1 - frac) * (bar_h - 1))
        draw.line([(x0 + BAR_WIDTH, y), (x0 + BAR_WIDTH + 3, y)], fill=(0, 0, 0))
        box = font.getbbox(text)
        draw.text((x0 + BAR_WIDTH + 5, y - (box[1] + box[3]) // 2), text, fill=(0, 0, 0), font=font)
    out = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()
    return out, top


def write_colour_map(path: str | Path, values: torch.Tensor, metadata: Mapping[str, str] | None = None,
                     vmax: float | None = None) -> Path:
    """:func:`scale_bar_picture` of ``values`` written as a PNG (atomically); the scale's top value
    is also in the text chunk ``guidedinv:scale-max``."""
    picture, top = scale_bar_picture(values, vmax)
    return write_image(path, picture, metadata={**(metadata or {}), "guidedinv:scale-max": f"{top:.6g}"})
