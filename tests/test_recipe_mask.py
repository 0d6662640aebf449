"""The recipe of an inpainting names the MASK file given on the command line (as typed, found from
the working directory like a --kernel file), so ``--task THAT.recipe.toml`` alone fills the same
region again, pixel for pixel; a recipe whose mask file is gone fails in one line before any model
loads and writes nothing."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from guidedinv import defaults
from guidedinv.app.request import load_preset
from guidedinv.cli import run


@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / "img.png")
    hole = np.zeros((20, 24), np.uint8)
    hole[2:7, 15:22] = 255  # off centre, unlike the default "box"
    (tmp_path / "masks").mkdir()
    Image.fromarray(hole).save(tmp_path / "masks" / "hole.png")
    (tmp_path / "out").mkdir()
    refuse_models(monkeypatch)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def refuse_models(monkeypatch) -> None:
    """defaults.load_prior raises: a test passes only if the command stops (or finishes) without a model."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the inputs were checked")

    monkeypatch.setattr(defaults, "load_prior", refuse)


def invoke(capsys, *args: str) -> tuple[int, str]:
    """Run ``guidedinv ARGS`` in this process: (exit code, stderr)."""
    argv = sys.argv
    sys.argv = ["guidedinv", *args]
    try:
        with pytest.raises(SystemExit) as stop:
            run()
    finally:
        sys.argv = argv
    return int(stop.value.code or 0), capsys.readouterr().err


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def test_the_recipe_names_the_mask_file_and_reproduces_the_run_alone(work, capsys):
    code, err = invoke(capsys, "inpaint", "img.png", "masks/hole.png", "--method", "biharmonic", "-q", "-o", "out/first.png")
    assert code == 0, err
    recipe = load_preset(work / "out" / "first.recipe.toml")
    assert recipe["operator"] == {"kind": "inpaint", "mask": "masks/hole.png"}  # as typed: from the working directory
    code, err = invoke(capsys, "inpaint", "img.png", "--task", "out/first.recipe.toml", "-q", "-o", "out/again.png")
    assert code == 0, err
    first = pixels(work / "out" / "first.png")
    assert np.array_equal(first, pixels(work / "out" / "again.png"))
    assert load_preset(work / "out" / "again.recipe.toml") == recipe
    code, err = invoke(capsys, "inpaint", "img.png", "--method", "biharmonic", "-q", "-o", "out/box.png")
    assert code == 0, err
    assert not np.array_equal(first, pixels(work / "out" / "box.png"))  # the default box fills another region


def test_a_recipe_naming_a_missing_mask_fails_in_one_line_before_any_model_loads(work, capsys):
    code, err = invoke(capsys, "inpaint", "img.png", "masks/hole.png", "--method", "biharmonic", "-q", "-o", "out/first.png")
    assert code == 0, err
    (work / "masks" / "hole.png").rename(work / "masks" / "moved.png")
    before = sorted(str(p.relative_to(work)) for p in work.rglob("*"))
    # a guided method: load_prior (patched to raise) would be called after the checks
    code, err = invoke(capsys, "inpaint", "img.png", "--task", "out/first.recipe.toml", "--method", "pnp", "-o", "out/again.png")
    assert code == 2
    assert err.strip().splitlines() == ["guidedinv: error: --task out/first.recipe.toml: operator.mask = "
                                        "'masks/hole.png': no such mask file"]
    assert sorted(str(p.relative_to(work)) for p in work.rglob("*")) == before  # nothing written


def test_a_missing_or_unnamed_mask_file_on_the_command_line_is_one_line(work, capsys):
    (work / "hole.dat").write_bytes((work / "masks" / "hole.png").read_bytes())
    before = sorted(os.listdir(work))
    code, err = invoke(capsys, "inpaint", "img.png", "gone.png", "--method", "pnp", "-o", "o.png")
    assert code == 2
    assert err.strip().splitlines() == ["guidedinv: error: MASK gone.png: operator.mask = 'gone.png': no such mask file"]
    code, err = invoke(capsys, "inpaint", "img.png", "hole.dat", "--method", "pnp", "-o", "o.png")
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("guidedinv: error: MASK hole.dat: expected an image file"), err
    assert sorted(os.listdir(work)) == before
