"""Metrics against known values, and each classical baseline beating the trivial answer on a
synthetic case it should win; the baselines as recipe methods through restore() and the CLI."""
from __future__ import annotations

import math
import sys
import warnings

import pytest
import torch

from guidedinv import metrics
from guidedinv.app.recipes import apply_overrides, load_recipe, method_settings
from guidedinv.app.solve import restore, simulate
from guidedinv.errors import InputError
from guidedinv.metrics import consistency, hf_ratio, lpips_distance, psnr, score, ssim
from guidedinv.operators import Blur, Downsample, Identity, Inpainting, gaussian_kernel


def smooth_image(h: int = 64, w: int = 64, channels: int = 3) -> torch.Tensor:
    """(1, C, H, W) in [0.1, 0.9]: a few low-frequency waves, different per channel."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h, dtype=torch.float64), torch.linspace(0, 1, w, dtype=torch.float64), indexing="ij")
    chans = [0.5 + 0.2 * torch.sin(2 * math.pi * (xx * (1 + c) * 0.7 + yy * 0.9)) + 0.15 * torch.cos(2 * math.pi * yy * (1.3 - 0.3 * c))
             for c in range(channels)]
    return torch.stack(chans)[None].float()


def blocks_image(h: int = 64, w: int = 64) -> torch.Tensor:
    """(1, 3, H, W): piecewise-constant rectangles (what TV is made for)."""
    x = torch.full((1, 3, h, w), 0.2)
    x[:, 0, 8:40, 10:50] = 0.8
    x[:, 1, 20:60, 5:30] = 0.7
    x[:, 2, 30:50, 30:60] = 0.9
    return x


def noise(shape, sigma: float, seed: int = 0) -> torch.Tensor:
    return sigma * torch.randn(shape, generator=torch.Generator().manual_seed(seed))


# -- metrics ----------------------------------------------------------------------------------------
def test_psnr_of_a_known_mse_and_of_identical_images():
    ref = torch.full((3, 16, 16), 0.5, dtype=torch.float64)
    assert psnr(ref + 0.1, ref) == pytest.approx(20.0, abs=1e-9)  # MSE 0.01 -> 10 log10(1 / 0.01)
    assert psnr(ref + 0.01, ref) == pytest.approx(40.0, abs=1e-9)
    assert psnr(ref, ref) == math.inf
    batch = psnr(torch.stack([ref + 0.1, ref + 0.01]), torch.stack([ref, ref]))
    assert batch == pytest.approx([20.0, 40.0])


def test_psnr_clips_the_estimate_to_the_unit_range():
    ref = torch.ones(1, 12, 12)
    assert psnr(ref + 5.0, ref) == math.inf  # clipped back to 1


def test_ssim_is_one_for_identical_images_and_drops_with_noise():
    x = smooth_image(32, 32)[0]
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    grey = x[:1]
    assert ssim(grey, grey) == pytest.approx(1.0, abs=1e-12)
    noisy = (x + noise(x.shape, 0.1)).clamp(0, 1)
    assert 0 < ssim(noisy, x) < 0.9
    assert ssim(noisy, x) > ssim((x + noise(x.shape, 0.3)).clamp(0, 1), x)


def test_metrics_refuse_mismatched_or_tiny_images():
    with pytest.raises(InputError, match="differ in shape"):
        psnr(torch.zeros(3, 16, 16), torch.zeros(3, 16, 8))
    with pytest.raises(InputError, match="at least 11"):
        ssim(torch.zeros(3, 8, 8), torch.zeros(3, 8, 8))


def test_consistency_is_the_relative_residual():
    op = Downsample(2, "average")
    x = smooth_image(16, 16)
    y = op.A(x)
    assert consistency(op, x, y) == pytest.approx([0.0], abs=1e-7)
    e = noise(y.shape, 0.05)
    assert consistency(op, x, y + e)[0] == pytest.approx(float(e.norm() / (y + e).norm()), rel=1e-5)


def test_detail_ratio_is_one_for_the_reference_below_for_a_blur_above_for_noise():
    ref = blocks_image() * 0.8 + 0.1 * smooth_image()
    assert hf_ratio(ref[0], ref[0]) == pytest.approx(1.0)
    blurred = Blur(gaussian_kernel(13, 2.0)).A(ref)
    noisy = ref + 0.05 * torch.randn(ref.shape, generator=torch.Generator().manual_seed(0))
    assert hf_ratio(blurred[0], ref[0]) < 0.5
    assert hf_ratio(noisy[0].clamp(0, 1), ref[0]) > 1.5
    # a contrast change by c scales the detail energy by c^2 exactly (the filter is linear)
    half = 0.5 + 0.5 * (ref - 0.5)
    assert hf_ratio(half[0], ref[0]) == pytest.approx(0.25, rel=1e-6)
    assert score(noisy.clamp(0, 1), ref)[0]["hf_ratio"] == pytest.approx(hf_ratio(noisy[0].clamp(0, 1), ref[0]))


def test_lpips_missing_is_said_once_and_reported_as_none(monkeypatch):
    monkeypatch.setitem(sys.modules, "lpips", None)  # an import of lpips now fails, whatever is installed
    monkeypatch.setattr(metrics, "_LPIPS", {})
    x = torch.rand(3, 16, 16)
    with pytest.warns(RuntimeWarning, match="LPIPS skipped"):
        assert lpips_distance(x, x) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second call must not warn again
        assert lpips_distance(x, x) is None
        row = score(x, x)[0]
    assert row["lpips"] is None and row["psnr"] == math.inf and row["consistency"] is None


# -- baselines --------------------------------------------------------------------------------------
def run(task: str, method: str, y: torch.Tensor, *sets: str, mask=None) -> torch.Tensor:
    recipe = apply_overrides(load_recipe(task), [f'method="{method}"', *sets])
    return restore(None, recipe, y, mask=mask)


@pytest.mark.parametrize("method", ["bicubic", "lanczos"])
def test_upsampling_of_a_smooth_image_is_close_and_beats_pixel_repetition(method):
    x = smooth_image(64, 64)
    y = Downsample(4, "bicubic").A(x)
    out = run("superres", method, y, "operator.scale=4", "noise.sigma_y=0.0")
    assert out.shape == x.shape and 0 <= float(out.min()) and float(out.max()) <= 1
    nearest = y.repeat_interleave(4, -2).repeat_interleave(4, -1)
    assert psnr(out[0], x[0]) > 32
    assert psnr(out[0], x[0]) > psnr(nearest[0], x[0]) + 5


@pytest.mark.parametrize("method", ["wiener", "richardson_lucy", "tv_deconv"])
@pytest.mark.parametrize("boundary", ["reflect", "circular"])
def test_deconvolution_improves_on_the_blurred_input(method, boundary):
    x = blocks_image(48, 48)
    op = Blur.gaussian(15, 2.0, boundary=boundary)
    y = simulate(x, op, 0.01, seed=1)
    out = run("deblur", method, y, 'operator.kernel="gaussian:2.0"', "operator.size=15", f'operator.boundary="{boundary}"',
              "noise.sigma_y=0.01")
    assert out.shape == x.shape
    assert psnr(out[0], x[0]) > psnr(y[0], x[0]) + 1.0


def test_wiener_undoes_a_motion_blur_in_its_own_orientation():
    """An asymmetric kernel: a flipped convention would blur again instead of sharpening."""
    x = blocks_image(48, 48)
    op = Blur.motion(15, 0.5, seed=3, boundary="circular")
    y = simulate(x, op, 0.002, seed=2)
    out = run("deblur", "wiener", y, 'operator.kernel="motion:3"', "operator.size=15", 'operator.boundary="circular"',
              "noise.sigma_y=0.002")
    assert psnr(out[0], x[0]) > psnr(y[0], x[0]) + 3.0


def test_biharmonic_fills_a_smooth_gradient_almost_exactly():
    yy, xx = torch.meshgrid(torch.linspace(0.1, 0.9, 48), torch.linspace(0.2, 0.7, 48), indexing="ij")
    x = torch.stack([0.5 * xx + 0.5 * yy, xx, yy])[None]
    fill = torch.zeros(48, 48, dtype=torch.bool)
    fill[16:32, 12:36] = True
    y = Inpainting.from_fill_mask(fill).A(x)
    out = run("inpaint", "biharmonic", y, mask=fill)
    assert psnr(out[0], x[0]) > 50
    assert psnr(out[0], x[0]) > psnr(y[0], x[0]) + 30
    per_image = run("inpaint", "biharmonic", torch.cat([y, y]), mask=torch.stack([fill, fill]))
    assert torch.equal(per_image[0], out[0]) and torch.equal(per_image[1], out[0])


def test_tv_denoising_improves_on_the_noisy_input():
    x = blocks_image(48, 48)
    y = simulate(x, Identity(), 0.05, seed=3)
    out = run("denoise", "tv_denoise", y, "noise.sigma_y=0.05")
    assert psnr(out[0], x[0]) > psnr(y[0], x[0]) + 3.0


def test_grey_measurements_keep_one_channel():
    x = smooth_image(32, 32, channels=1)
    y = Downsample(4, "bicubic").A(x)
    out = run("superres", "bicubic", y)
    assert out.shape == (1, 1, 32, 32)


def test_baselines_are_recipe_methods_with_checked_settings():
    recipe = apply_overrides(load_recipe("deblur"), ['method="wiener"', "methods.wiener.balance=0.02"])
    assert method_settings(recipe) == {"balance": 0.02, "steps": 0}  # steps 0: no network evaluation
    with pytest.raises(InputError, match="works for superres only"):
        method_settings(apply_overrides(load_recipe("deblur"), ['method="bicubic"']))
    with pytest.raises(InputError, match="methods.wiener has no key 'steps'"):
        method_settings(apply_overrides(load_recipe("deblur"), ['method="wiener"', "methods.wiener.steps=\"20\""]))
    out_default = run("deblur", "wiener", torch.rand(1, 3, 24, 24), "operator.size=9")
    out_strong = run("deblur", "wiener", torch.rand(1, 3, 24, 24), "operator.size=9", "methods.wiener.balance=10.0")
    assert not torch.equal(out_default, out_strong)


def test_superres_command_runs_a_baseline(tmp_path, monkeypatch):
    """`guidedinv superres --method bicubic`: the CLI's own path (its model argument is still loaded)."""
    from typer.testing import CliRunner

    from guidedinv.cli import app
    from guidedinv.io import write_image
    from guidedinv.models.adm import ADMConfig, build_network
    from guidedinv.training import export_safetensors

    cfg = ADMConfig(model_channels=32, num_res_blocks=1, channel_mult=(1, 2), attention_ds=(), out_channels=3, head_channels=None)
    export_safetensors(build_network(cfg), cfg, tmp_path / "tiny.safetensors", schedule="linear", prediction="v", kind="prior")
    x = smooth_image(32, 32)
    write_image(tmp_path / "big.png", x[0])
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["superres", "big.png", "--simulate", "--method", "lanczos", "--model", "tiny.safetensors",
                                      "-q", "-o", "out.png"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out.png").is_file()
    assert 'method = "lanczos"' in (tmp_path / "out.recipe.toml").read_text()


def test_wiener_takes_a_circular_kernel_larger_than_the_image():
    x = blocks_image(40, 40)
    op = Blur.gaussian(61, 1.5, boundary="circular")
    y = simulate(x, op, 0.005, seed=4)
    out = run("deblur", "wiener", y, 'operator.kernel="gaussian:1.5"', "operator.size=61", 'operator.boundary="circular"',
              "noise.sigma_y=0.005")
    assert psnr(out[0], x[0]) > psnr(y[0], x[0]) + 1.0
