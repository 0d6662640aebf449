"""The restorations do not change: the four restore commands and ``batch`` at fixed seeds, on small
crops of the sample images with the embedded prior, against PNGs recorded before the application
layer was reshaped (tests/golden/). A change that moves any pixel by more than one 8-bit level
fails here; a deliberate change of results (a fix) regenerates them with

    GUIDEDINV_REGEN_GOLDEN=1 python -m pytest tests/test_golden.py

and names itself in the commit.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from guidedinv.cli import app

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
REGEN = os.environ.get("GUIDEDINV_REGEN_GOLDEN") == "1"


def _crop(name: str, box: tuple[int, int, int, int], out: Path, size: tuple[int, int] | None = None) -> Path:
    with Image.open(ROOT / "sample_images" / name) as im:
        im = im.crop(box)
        if size is not None:
            im = im.resize(size, Image.Resampling.LANCZOS)
        im.save(out)
    return out


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("golden")
    _crop("coffee_x4.png", (30, 20, 46, 36), d / "low.png")  # 16 x 16 low-resolution input
    _crop("astronaut.png", (32, 32, 96, 96), d / "photo.png")  # 64 x 64, a quarter of it masked
    _crop("astronaut_mask.png", (32, 32, 96, 96), d / "photo_mask.png")
    _crop("chelsea.png", (100, 80, 148, 128), d / "clean.png")  # 48 x 48
    return d


CASES = {
    "superres-pnp": ["superres", "low.png", "--scale", "4"],
    "superres-ddnm": ["superres", "low.png", "--scale", "4", "--method", "ddnm", "--steps", "logsnr10"],
    "superres-lanczos": ["superres", "low.png", "--scale", "4", "--method", "lanczos"],
    "inpaint-pnp": ["inpaint", "photo.png", "photo_mask.png"],
    "inpaint-repaint": ["inpaint", "photo.png", "photo_mask.png", "--method", "repaint", "--steps", "8"],
    "deblur-pnp": ["deblur", "clean.png", "--simulate", "--kernel", "gaussian:2.0", "--kernel-size", "15"],
    "deblur-dps": ["deblur", "clean.png", "--simulate", "--kernel", "gaussian:2.0", "--kernel-size", "15",
                   "--method", "dps", "--steps", "6", "--seed", "3"],
    "denoise-pnp": ["denoise", "clean.png", "--simulate", "--sigma", "0.05"],
    "denoise-diffpir": ["denoise", "clean.png", "--simulate", "--sigma", "0.1", "--method", "diffpir", "--steps",
                        "logsnr8", "--seed", "5"],
}


def _check(result_png: Path, name: str) -> None:
    got = np.asarray(Image.open(result_png).convert("RGB"), dtype=np.int16)
    ref_path = GOLDEN / f"{name}.png"
    if REGEN:
        GOLDEN.mkdir(exist_ok=True)
        Image.open(result_png).convert("RGB").save(ref_path)
        return
    ref = np.asarray(Image.open(ref_path).convert("RGB"), dtype=np.int16)
    assert got.shape == ref.shape
    diff = np.abs(got - ref).max()
    assert diff <= 1, f"{name}: the result moved by up to {diff} levels of 255 from tests/golden/{name}.png"


@pytest.mark.parametrize("name", list(CASES))
def test_restore_commands_unchanged(inputs, name, monkeypatch):
    monkeypatch.chdir(inputs)
    out = inputs / f"{name}.out.png"
    done = CliRunner().invoke(app, [*CASES[name], "-q", "-o", str(out)])
    assert done.exit_code == 0, done.output
    _check(out, name)


def test_batch_unchanged(inputs, monkeypatch, tmp_path):
    monkeypatch.chdir(inputs)
    (inputs / "items").mkdir(exist_ok=True)
    for n in ("photo.png", "clean.png"):
        (inputs / "items" / n).write_bytes((inputs / n).read_bytes())
    done = CliRunner().invoke(app, ["batch", "denoise", "items", "-o", str(tmp_path / "out"), "--simulate", "-q",
                                    "--set", "noise.sigma_y=0.1", "-b", "2"])
    assert done.exit_code == 0, done.output
    for n in ("photo", "clean"):
        _check(tmp_path / "out" / f"{n}.png", f"batch-{n}")
