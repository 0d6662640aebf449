"""Rebuild sample_images/ from scikit-image's bundled photos (licences in README.md).

    python sample_images/make_samples.py

Each photo is centre-cropped to the target aspect ratio, resized with Lanczos, and saved as an
8-bit PNG with its source and licence in the PNG text chunks; each gets an inpainting mask
(white = fill). Deterministic: the same scikit-image data gives the same files.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import skimage
import skimage.data
import torch
from PIL import Image, ImageDraw

from guidedinv.app.measure import simulate
from guidedinv.io import make_mask, read_image, write_image
from guidedinv.operators import Blur, Downsample, Identity

HERE = Path(__file__).resolve().parent

# name: (skimage.data function, (width, height), licence as scikit-image's documentation states it, mask)
SAMPLES = {
    "astronaut": ("astronaut", (256, 256), "public domain (NASA; no known copyright restrictions)", "box"),
    "coffee": ("coffee", (320, 240), "CC0 (photographer Rachel Michetti)", "strokes"),
    "chelsea": ("chelsea", (256, 256), "CC0 (photographer Stefan van der Walt)", "strokes"),
    "rocket": ("rocket", (256, 256), "public domain (SpaceX)", "strokes"),
    "camera": ("camera", (256, 256), "CC0 (photographer Lav Varshney)", "box"),
}


def crop_resize(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Centre crop to the aspect ratio of size = (width, height), then Lanczos resize."""
    h, w = pixels.shape[:2]
    tw, th = size
    cw, ch = min(w, round(h * tw / th)), min(h, round(w * th / tw))
    left, top = (w - cw) // 2, (h - ch) // 2
    box = (left, top, left + cw, top + ch)
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.LANCZOS, box=box))


def strokes(size: tuple[int, int], seed: int) -> torch.Tensor:
    """Free-form brush strokes (a few thick random polylines), the usual irregular inpainting hole."""
    rng = np.random.default_rng(seed)
    w, h = size
    canvas = Image.new("L", size, 0)
    draw = ImageDraw.Draw(canvas)
    for _ in range(4):
        points = [(float(rng.uniform(0.15, 0.85) * w), float(rng.uniform(0.15, 0.85) * h))]
        for _ in range(4):
            angle, length = rng.uniform(0, 2 * np.pi), rng.uniform(0.08, 0.2) * min(w, h)
            x, y = points[-1]
            points.append((float(np.clip(x + length * np.cos(angle), 0, w - 1)), float(np.clip(y + length * np.sin(angle), 0, h - 1))))
        draw.line(points, fill=255, width=int(rng.integers(14, 24)), joint="curve")
    return torch.from_numpy(np.asarray(canvas) >= 128)


# degraded versions, each a measurement made by our own operators (sigma_y on the [0, 1] scale)
DEGRADED = {
    "coffee_x4": ("coffee", Downsample(4, "bicubic"), 0.01, "guidedinv superres sample_images/coffee_x4.png --scale 4"),
    "astronaut_blur": ("astronaut", Blur.gaussian(61, 3.0), 0.01,
                       "guidedinv deblur sample_images/astronaut_blur.png --kernel gaussian:3.0"),
    "chelsea_noisy": ("chelsea", Identity(), 0.05, "guidedinv denoise sample_images/chelsea_noisy.png --sigma 0.05"),
}


def degrade() -> None:
    for name, (source, operator, sigma_y, command) in DEGRADED.items():
        clean = read_image(HERE / f"{source}.png").image[None]
        y = simulate(clean, operator, sigma_y, seed=0)[0].clamp(0, 1)
        meta = {"Source": f"{source}.png degraded by {operator!r}, noise sigma_y = {sigma_y} on [0, 1], seed 0",
                "Restore": command}
        write_image(HERE / f"{name}.png", y, metadata=meta)
        print(f"{name}: {y.shape[-1]}x{y.shape[-2]} from {source} ({command})")


def main() -> None:
    for index, (name, (source, size, licence, mask_kind)) in enumerate(SAMPLES.items()):
        pixels = crop_resize(getattr(skimage.data, source)(), size)
        image = torch.from_numpy(pixels.astype(np.float32) / 255)
        image = image.permute(2, 0, 1) if image.dim() == 3 else image.unsqueeze(0)
        meta = {"Source": f"skimage.data.{source}() from scikit-image {skimage.__version__}, cropped and resized",
                "License": licence}
        write_image(HERE / f"{name}.png", image, metadata=meta)
        mask = make_mask(mask_kind, (size[1], size[0])) if mask_kind != "strokes" else strokes(size, seed=index)
        write_image(HERE / f"{name}_mask.png", mask.float().unsqueeze(0), metadata={"Mask": "white = fill", **meta})
        print(f"{name}: {size[0]}x{size[1]}, mask {mask_kind} ({mask.float().mean():.0%} to fill)")
    degrade()


if __name__ == "__main__":
    main()
