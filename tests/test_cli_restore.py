"""The restoration commands end to end on tiny images with a tiny (untrained) model: outputs,
metadata, reproducibility through the written recipe, and the bad-input matrix (one line, non-zero
exit, nothing written)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import save_tiny_prior
from PIL import Image

from guidedinv.cli import run

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cli")
    save_tiny_prior(d / "tiny.safetensors")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(d / "rgb.png")
    Image.fromarray(rng.integers(0, 256, (20, 24), dtype=np.uint8)).save(d / "grey.png")
    Image.fromarray(rng.integers(0, 256, (20, 24, 4), dtype=np.uint8), "RGBA").save(d / "rgba.png")
    Image.fromarray((rng.integers(0, 65536, (20, 24))).astype(np.uint16)).save(d / "deep.png")
    mask = np.zeros((20, 24), np.uint8)
    mask[5:12, 6:15] = 255
    Image.fromarray(mask).save(d / "mask.png")
    Image.fromarray(np.zeros((20, 24), np.uint8)).save(d / "empty_mask.png")
    Image.fromarray(np.full((20, 24), 255, np.uint8)).save(d / "full_mask.png")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(d / "small_mask.png")
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 10)
    return d


def cli(work: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "guidedinv", *args], cwd=work, env=ENV, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize(
    "args, size",
    [
        (["inpaint", "rgb.png", "mask.png"], (24, 20)),
        (["superres", "rgb.png", "--scale", "2"], (48, 40)),
        (["deblur", "rgb.png", "--kernel", "gaussian:1.0", "--kernel-size", "7", "--simulate"], (24, 20)),
        (["denoise", "rgb.png", "--sigma", "0.1", "--simulate"], (24, 20)),
    ],
    ids=["inpaint", "superres", "deblur", "denoise"],
)
def test_each_command_writes_a_result_with_its_recipe(work, args, size):
    out = work / f"{args[0]}.out.png"
    done = cli(work, *args, "--model", "tiny.safetensors", "--steps", "3", "-q", "-o", out.name)
    assert done.returncode == 0, done.stderr
    with Image.open(out) as im:
        assert im.size == size and im.mode == "RGB"
        assert im.text["guidedinv:task"] == args[0] and "guidedinv:recipe" in im.text
    recipe = out.with_suffix(".recipe.toml")
    assert recipe.exists()
    # the written recipe reproduces the result exactly
    again = work / f"{args[0]}.again.png"
    redo = cli(work, *args, "--model", "tiny.safetensors", "--task", recipe.name, "-q", "-o", again.name)
    assert redo.returncode == 0, redo.stderr
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(again)))


def invoke(monkeypatch, capsys, work: Path, *args: str) -> tuple[int, str]:
    monkeypatch.chdir(work)
    monkeypatch.setattr(sys, "argv", ["guidedinv", *args])
    with pytest.raises(SystemExit) as stop:
        run()
    return int(stop.value.code or 0), capsys.readouterr().err


BAD = [
    (["inpaint", "missing.png", "mask.png"], "missing.png"),
    (["inpaint", "corrupt.png", "mask.png"], "corrupt.png"),
    (["inpaint", "rgb.png", "small_mask.png"], "mask is 10x10"),
    (["inpaint", "rgb.png", "empty_mask.png"], "empty"),
    (["inpaint", "rgb.png", "full_mask.png"], "every pixel"),
    (["inpaint", "rgb.png", "mask.png", "--mask", "box"], "not both"),
    (["inpaint", "rgb.png", "--mask", "blob"], "mask"),
    (["superres", "rgb.png", "--scale", "100", "--simulate"], "<= 32"),
    (["superres", "rgb.png", "--scale", "0"], "--scale 0"),
    (["deblur", "rgb.png", "--kernel", "nofile.npy"], "nofile.npy"),
    (["denoise", "rgb.png", "--method", "magic"], "unknown method"),
    (["denoise", "rgb.png", "--set", "noise.sigmay=3"], "no key 'sigmay'"),
    (["denoise", "rgb.png", "--model", "no-such-model"], "no-such-model"),
    (["denoise", "rgb.png", "-o", "blocker/out.png"], "blocker"),
    (["denoise", "rgb.png", "--device", "cuda:7"], "cuda"),
    (["denoise", "rgb.png", "--tile", "big"], "--tile"),
    (["denoise", "rgb.png", "--tile", "13"], "multiple of 2"),
]


@pytest.mark.parametrize("args, needle", BAD, ids=[" ".join(a[:1] + a[2:3]) + f"-{i}" for i, (a, _) in enumerate(BAD)])
def test_bad_input_is_one_line_and_a_nonzero_exit(work, monkeypatch, capsys, args, needle):
    (work / "blocker").write_text("a file where a folder should be")
    before = set(os.listdir(work))
    code, err = invoke(monkeypatch, capsys, work, *args, "--model" if "--model" not in args else "--quiet",
                       "tiny.safetensors" if "--model" not in args else "--quiet", "--steps", "2", "-q")
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("guidedinv: error:"), err
    assert needle.lower() in lines[0].lower(), lines[0]
    assert set(os.listdir(work)) == before  # nothing written


def test_a_terminal_sees_a_step_bar_with_eta_on_stderr_and_quiet_hides_it(work, monkeypatch, capsys):
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich draws its live bar as on a terminal
    monkeypatch.setenv("TTY_INTERACTIVE", "1")
    args = ("denoise", "rgb.png", "--simulate", "--model", "tiny.safetensors", "--steps", "3", "-o", "bar.png")
    code, err = invoke(monkeypatch, capsys, work, *args)
    assert code == 0, err
    assert "sampling" in err and "/3" in err and "-:--:--" in err  # steps done of 3, then the time remaining
    code, err = invoke(monkeypatch, capsys, work, *args, "-q")
    assert code == 0 and err == ""


@pytest.mark.parametrize("name, channels", [("grey.png", 1), ("rgba.png", 4), ("deep.png", 1)])
def test_grey_rgba_and_16_bit_inputs_are_restored_in_their_own_format(work, monkeypatch, capsys, name, channels):
    out = f"{name}.denoised.png"
    code, err = invoke(monkeypatch, capsys, work, "denoise", name, "--model", "tiny.safetensors", "--steps", "2", "-q", "-o", out)
    assert code == 0, err
    with Image.open(work / out) as im:
        assert len(im.getbands()) == channels and im.size == (24, 20)
        if name == "rgba.png":  # alpha is kept out of the restoration and put back unchanged
            assert np.array_equal(np.asarray(im)[..., 3], np.asarray(Image.open(work / name))[..., 3])
        if name == "deep.png":
            assert im.mode.startswith("I;16") or im.mode == "I"


def test_padded_blur_is_the_reflect_model_for_simulation_and_fft_for_the_solver(work):
    from guidedinv.app.recipes import apply_overrides, load_recipe
    from guidedinv.app.solve import build_operator

    recipe = apply_overrides(load_recipe("deblur"), ['operator.boundary="padded"', "operator.size=7"])
    assert build_operator(recipe, (20, 24)).boundary == "reflect"
    assert build_operator(recipe, (20, 24), for_solver=True).boundary == "circular"
