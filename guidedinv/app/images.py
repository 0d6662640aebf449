"""What a job writes besides the sampler's output: the result PNG with its metadata (alpha and bit
depth of the input kept), the recipe beside it, the posterior's spread and samples, the comparison
strip (labelled: what each panel is, the method and its steps) and the trajectory GIF. Used by
:func:`guidedinv.app.job.write_job_outputs`, which the restore and edit commands and the web page
(guidedinv.ui) write through."""
from __future__ import annotations

import io as _io
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .. import __version__
from ..io import atomic_write_bytes, write_image

__all__ = ["side_by_side", "labelled_strip", "compare_label", "write_gif", "write_result", "write_posterior"]


def side_by_side(panels: list[torch.Tensor], upscale_small: bool = False) -> torch.Tensor:
    """Panels (C, h, w) in [0, 1] brought to the tallest height and joined with a 4 px gap; a smaller
    panel is resized bicubic (a low-resolution input then compares like with like), nearest otherwise."""
    height = max(p.shape[-2] for p in panels)
    resized = []
    for p in panels:
        if p.shape[-2] != height:
            w = round(p.shape[-1] * height / p.shape[-2])
            mode = "bicubic" if upscale_small else "nearest"
            p = F.interpolate(p[None].float(), size=(height, w), mode=mode, **({"align_corners": False} if mode == "bicubic" else {}))[0]
        resized.append(p.expand(3, -1, -1) if p.shape[0] == 1 else p)
        resized.append(torch.ones(3, height, 4))
    return torch.cat(resized[:-1], dim=-1).clamp(0, 1)


def labelled_strip(panels: list[tuple[str, torch.Tensor]], upscale_small: bool = False) -> torch.Tensor:
    """:func:`side_by_side` of (label, panel) pairs with each label written in a white band above its
    panel (the font shrinks to fit the panel's width, down to 8 px, then the text is cut with '...')."""
    import numpy as np
    from PIL import Image, ImageDraw

    strip = side_by_side([p for _, p in panels], upscale_small=upscale_small)
    height = strip.shape[-2]
    widths = [round(p.shape[-1] * height / p.shape[-2]) if p.shape[-2] != height else p.shape[-1] for _, p in panels]
    size = int(min(max(height // 16, 10), 20))
    band = Image.new("L", (strip.shape[-1], size + 6), 255)
    draw, left = ImageDraw.Draw(band), 0
    for (label, _), width in zip(panels, widths):
        text, font = label, _font(size)
        while draw.textlength(text, font=font) > width - 4 and getattr(font, "size", 8) > 8:
            font = _font(font.size - 1)
        while draw.textlength(text, font=font) > width - 4 and len(text) > 1:
            text = text[:-2] + "\u2026"
        draw.text((left + 2, 3), text, fill=0, font=font)
        left += width + 4
    top = torch.from_numpy(np.asarray(band, dtype=np.float32) / 255.0)[None].expand(3, -1, -1)
    return torch.cat([top, strip], dim=-2)


def compare_label(request: Any) -> str:
    """The result panel's label: the method and its steps ('pnp, logsnr20 steps'), an edit's strength,
    how many posterior samples the result is the mean of."""
    if request.task == "edit":
        strength = request.settings["strength"]
        return f"sdedit strength {strength}, {request.steps} steps" if strength > 0 else "sdedit strength 0 (the input)"
    label = f"{request.method}, {request.steps} steps" if request.steps else f"{request.method} (no network)"
    return label + (f", mean of {request.samples} samples" if getattr(request, "samples", 1) > 1 else "")


def _font(size: int):  # type: ignore[no-untyped-def]
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType: a scalable font
    except (TypeError, ImportError, OSError):  # pragma: no cover - older Pillow: the fixed bitmap font
        return ImageFont.load_default()


def write_gif(path: Path, frames: list[torch.Tensor]) -> None:
    """Frames (C, H, W) in [0, 1] as a looping GIF, written atomically."""
    from PIL import Image

    images = [Image.fromarray((f.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype("uint8").squeeze()) for f in frames]
    buffer = _io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=120, loop=0)
    atomic_write_bytes(path, buffer.getvalue())


def write_result(out: Path, x: torch.Tensor, data: Any, request: Any, recipe_text: str) -> list[Path]:
    """The result PNG (the input's channels, alpha and bit depth; the recipe in its text chunks) and
    ``OUT.recipe.toml`` beside it; returns both paths."""
    alpha = data.alpha
    if alpha is not None and alpha.shape[-2:] != x.shape[-2:]:
        alpha = F.interpolate(alpha[None], size=x.shape[-2:], mode="bicubic", align_corners=False)[0].clamp(0, 1)
    if x.shape[0] != data.channels:
        x = x.mean(0, keepdim=True) if data.channels == 1 else x.expand(3, -1, -1)
    meta = {"Software": f"guidedinv {__version__}", "guidedinv:task": request.task, "guidedinv:model": request.model,
            "guidedinv:method": request.method, "guidedinv:steps": str(request.steps or 0),
            "guidedinv:seed": str(request.seed), "guidedinv:recipe": recipe_text}
    write_image(out, x, alpha=alpha, metadata=meta, bit_depth=16 if data.bit_depth == 16 else 8)
    recipe_path = out.with_suffix(".recipe.toml")
    atomic_write_bytes(recipe_path, recipe_text.encode())
    return [out, recipe_path]


def write_posterior(post: Any, data: Any, request: Any, uncertainty: Path | None, sample_paths: list[Path]) -> list[Path]:
    """With --samples: the uncertainty map (:meth:`~guidedinv.app.posterior.Posterior.uncertainty`
    of image 0, colour-mapped with a scale bar) and the kept samples of image 0 to ``sample_paths``."""
    from ..io.colormap import write_colour_map

    written = []
    meta = {"guidedinv:method": request.method, "guidedinv:seed": str(request.seed), "guidedinv:samples": str(post.count)}
    if uncertainty is not None:
        meta_std = {**meta, "guidedinv:map": "posterior standard deviation per pixel ([0, 1] scale; RMS over channels)"}
        written.append(write_colour_map(uncertainty, post.uncertainty()[0].cpu(), meta_std))
    if sample_paths and post.samples is not None:
        for k, (path, x) in enumerate(zip(sample_paths, post.samples[0])):
            x = x.mean(0, keepdim=True) if data.channels == 1 and x.shape[0] != 1 else x
            written.append(write_image(path, x.clamp(0, 1), metadata={**meta, "guidedinv:sample": str(k)},
                                       bit_depth=16 if data.bit_depth == 16 else 8))
    return written
