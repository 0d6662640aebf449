"""Posterior samples and their uncertainty map (guidedinv.app.posterior, restore(samples=N), the
restore commands' --samples / --uncertainty / --save-samples, batch --uncertainty).

Exactness: on the Gaussian prior with the exact likelihood term the sampler draws p(x | y) itself, so
the per-pixel standard deviation of N samples must match the closed form sqrt(diag Cov[x | y]). For
Gaussian samples the relative standard error of a sample std is 1 / sqrt(2 (N - 1)): 3.2 % at
N = 500, so over 64 pixels the largest relative error is about 3 of those (10 %) and the mean
absolute one 2.5 %. Bounds: max 15 %, mean 5 % (measured 0.069-0.095 / 0.021-0.031 over three seed
sets, DDPM 100 steps and DDIM(0) 250 steps alike: Monte Carlo error only at these step counts).
"""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from conftest import save_tiny_prior
from PIL import Image
from test_measurement_guidance import SIGMA_Y, problem

from guidedinv import DDIM, DDPM, NoiseSource, sample
from guidedinv.app import build_request, posterior as posterior_module, restore
from guidedinv.app.methods import METHODS, get_method
from guidedinv.app.posterior import Posterior, RunningMoments, draw_samples, sample_seed
from guidedinv.app.solve import build_operator
from guidedinv.cli import run
from guidedinv.errors import InputError
from guidedinv.guidance import ExactLikelihood, gaussian_posterior, operator_matrix
from guidedinv.io import read_image, to_model_range
from guidedinv.io.colormap import BAR_GAP, BAR_WIDTH, MIN_HEIGHT, VIRIDIS, colormap, scale_bar_picture
from guidedinv.models import load_denoiser
from guidedinv.priors import GaussianPrior

F64 = torch.float64


# -- seeds and moments -------------------------------------------------------------------------
def test_sample_seeds_start_at_the_image_seed_and_never_repeat():
    assert sample_seed(123, 0) == 123
    seeds = {sample_seed(s, k) for s in range(50) for k in range(1, 50)}
    assert len(seeds) == 49 * 50 and all(0 <= s < 2**63 for s in seeds)
    assert not seeds & set(range(100))  # sample k >= 1 of an image is not another image's seed s + i


@pytest.mark.parametrize("groups", [[10], [1] * 10, [3, 3, 4], [7, 1, 2]])
def test_running_moments_equal_the_two_pass_ones_whatever_the_grouping(groups):
    x = torch.randn(3, sum(groups), 2, 5, generator=torch.Generator().manual_seed(0), dtype=F64) * 4 + 100
    moments, start = RunningMoments(), 0
    for m in groups:
        moments.update(x[:, start : start + m])
        start += m
    assert moments.count == 10
    torch.testing.assert_close(moments.mean, x.mean(1), rtol=0, atol=1e-12)
    torch.testing.assert_close(moments.variance(), x.var(1), rtol=1e-12, atol=0)  # unbiased, N - 1


# -- the exact sampler ---------------------------------------------------------------------------
@pytest.mark.parametrize("rule, steps", [(DDPM("large"), "100"), (DDIM(0.0), "250")], ids=["ddpm", "ddim-eta0"])
def test_std_of_exact_posterior_samples_is_the_closed_form_posterior_std(rule, steps):
    """DDIM with eta = 0 too: the probability-flow ODE carries x_T's spread onto the posterior's, which
    is why the method registry counts it as stochastic (only the pnp rule gives one estimate)."""
    prior, op, y = problem("sr4-average")
    mean, cov = gaussian_posterior(prior, op, y, 2 * SIGMA_Y)
    closed = cov.diag().sqrt().reshape(prior.event_shape)

    def run_one(ys, seeds, mask, callback):
        return sample(prior, (len(seeds), *prior.event_shape), NoiseSource.from_seeds(seeds), steps=steps, rule=rule,
                      terms=[ExactLikelihood(prior, op, y, SIGMA_Y)], dtype=F64)

    post = draw_samples(run_one, torch.zeros(1, *prior.event_shape), [7], 500, group=125)
    rel = (post.std[0] / closed - 1).abs()
    assert post.count == 500 and float(rel.max()) < 0.15 and float(rel.mean()) < 0.05, (float(rel.max()), float(rel.mean()))
    assert float(((post.mean[0] - mean[0]) / closed).abs().max()) < 0.25  # 4 standard errors of the mean at N = 500


def test_restore_samples_match_the_closed_form_where_ddnm_is_exact():
    """Through restore(): noiseless inpainting on a prior whose measured and unmeasured parts are
    independent (DDNM is exact there). Known pixels have no spread (exactly 0); the filled ones the
    prior's conditional std. DDIM(0) at logsnr50 under-spreads by its first-order error: measured
    mean ratio 0.957 and largest deviation 0.071 at N = 1000 (0.975 / 0.062 at logsnr200)."""
    shape = (3, 4, 4)
    mask = torch.rand(4, 4, generator=torch.Generator().manual_seed(1)) > 0.5
    request = build_request("inpaint", sets=['method="ddnm"', "noise.sigma_y=0.0", "tile=0", "methods.ddnm.eta=0.0"])
    op = build_operator(request, (4, 4), mask)
    amat = operator_matrix(op, shape)
    proj = torch.linalg.pinv(amat) @ amat
    prior = GaussianPrior(torch.zeros(48, dtype=F64), 0.06 * proj + 0.03 * (torch.eye(48, dtype=F64) - proj), event_shape=shape)
    x = torch.rand((1, *shape), generator=torch.Generator().manual_seed(2)) * 0.4 + 0.3
    _, cov = gaussian_posterior(prior, op, op.A(to_model_range(x).double()), 0.0)
    closed = (cov.diag().clamp(min=0).sqrt() / 2).reshape(shape)  # [0, 1] scale: half the model range's
    post = restore(prior, request, x * ~mask, mask=mask, samples=1000)
    assert isinstance(post, Posterior) and post.mean.shape == post.std.shape == (1, *shape)
    fill = mask.expand(shape)
    assert float(post.std[0][~fill].abs().max()) == 0.0
    ratio = post.std[0][fill] / closed[fill]
    assert 0.92 < float(ratio.mean()) < 1.03 and float((ratio - 1).abs().max()) < 0.12, ratio


# -- batch independence, API shape, refusals ------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("unc") / "tiny.safetensors"
    save_tiny_prior(path)
    return load_denoiser(path, device="cpu")


def sr_request(method="diffpir", *sets):
    return build_request("superres", sets=[f'method="{method}"', f'methods.{method}.steps="logsnr3"', "operator.scale=2",
                                           "tile=0", *sets])


def test_sample_k_is_the_same_alone_beside_others_and_in_any_group(tiny, monkeypatch):
    request = sr_request()
    y = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    both = restore(tiny, request, y, seeds=[3, 4], samples=4, keep_samples=True)
    assert both.samples.shape == (2, 4, 3, 16, 16)
    single = restore(tiny, request, y[1:], seeds=[sample_seed(4, 2)])[0]  # one plain run at sample 2's seed
    torch.testing.assert_close(both.samples[1, 2], single, rtol=0, atol=1e-6)
    torch.testing.assert_close(both.samples[0, 0], restore(tiny, request, y[:1], seeds=[3])[0], rtol=0, atol=1e-6)
    monkeypatch.setattr(posterior_module, "GROUP_VALUES", 1)  # one sample per call
    alone = restore(tiny, request, y[1:], seeds=[4], samples=4, keep_samples=True)
    torch.testing.assert_close(alone.samples[0], both.samples[1], rtol=0, atol=1e-6)
    torch.testing.assert_close(alone.std[0], both.std[1], rtol=0, atol=1e-6)
    assert float(both.std.mean()) > 1e-3  # the samples differ


def test_a_list_of_images_gives_one_posterior_each(tiny):
    outs = restore(tiny, sr_request(), [torch.rand(3, 8, 8), torch.rand(1, 8, 12)], samples=2)
    assert [tuple(o.mean.shape) for o in outs] == [(3, 16, 16), (1, 16, 24)]
    assert [tuple(o.uncertainty().shape) for o in outs] == [(16, 16), (16, 24)]


def test_the_registry_says_which_methods_spread():
    spread = {name for name, m in METHODS.items() if m.is_stochastic(m.defaults())}
    assert spread == {"diffpir", "ddnm", "repaint", "dps", "pigdm", "ddrm", "daps", "sdedit"}
    assert spread == {name for name, m in METHODS.items() if m.stochastic}
    assert all("stochastic" in vars(type(m)) for m in METHODS.values() if m.uses_network)  # each declares it
    assert not get_method("diffpir").is_stochastic({**get_method("diffpir").defaults(), "rule": "pnp"})
    assert get_method("pigdm").is_stochastic({**get_method("pigdm").defaults(), "eta": 0.0})  # x_T's spread


@pytest.mark.parametrize("sets, needle", [
    (['method="pnp"', "samples=4"], "samples = 4: method pnp is deterministic (no posterior spread); use a sampling method: diffpir"),
    (['method="lanczos"', "samples=2"], "method lanczos is deterministic"),
    (['method="diffpir"', "samples=0"], "samples = 0: expected a whole number >= 1"),
    (['method="diffpir"', "samples=1.5"], "samples = 1.5: expected a whole number"),
])
def test_bad_sample_counts_are_one_line_input_errors(sets, needle):
    with pytest.raises(InputError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        build_request("superres", sets=sets)


def test_restore_refuses_samples_of_a_deterministic_method(tiny):
    with pytest.raises(InputError, match="method pnp is deterministic"):
        restore(tiny, sr_request("pnp"), torch.rand(1, 3, 8, 8), samples=3)


def test_a_recipe_of_one_sample_is_unchanged_and_samples_are_recorded():
    assert "samples" not in sr_request().recipe
    assert sr_request("diffpir", "samples=5").recipe["samples"] == 5


# -- the colour map --------------------------------------------------------------------------------
def test_colour_map_ends_and_scale_bar():
    ends = colormap(torch.tensor([[0.0, 1.0, 2.0]]))
    torch.testing.assert_close(ends[:, 0, 0], torch.tensor(VIRIDIS[0], dtype=torch.float32))
    torch.testing.assert_close(ends[:, 0, 2], torch.tensor(VIRIDIS[-1], dtype=torch.float32))  # clipped
    grey = (torch.tensor([0.299, 0.587, 0.114]) @ colormap(torch.linspace(0, 1, 50)[None]).reshape(3, -1))
    assert bool((grey.diff() > 0).all())  # brightness rises with the value
    values = torch.linspace(0, 0.2, 12 * 10).reshape(12, 10)
    picture, top = scale_bar_picture(values)
    assert top == pytest.approx(0.2) and picture.shape[1] == MIN_HEIGHT and picture.shape[2] > 10 + BAR_GAP + BAR_WIDTH
    torch.testing.assert_close(picture[:, :12, :10], colormap(values / 0.2), rtol=0, atol=1 / 255)
    with pytest.raises(ValueError, match=">= 0"):
        scale_bar_picture(-values)


# -- the command line ------------------------------------------------------------------------------
@pytest.fixture()
def folder(tmp_path, monkeypatch, tiny):
    save_tiny_prior(tmp_path / "tiny.safetensors")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(tmp_path / "low.png")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def cli(monkeypatch, *args):
    common = ["--scale", "2", "--model", "tiny.safetensors", "--tile", "0", "--steps", "logsnr3", "-q"]
    monkeypatch.setattr(sys, "argv", ["guidedinv", "superres", "low.png", *common, *args])
    with pytest.raises(SystemExit) as stop:
        run()
    return stop.value.code or 0


def test_cli_writes_the_mean_the_samples_and_the_uncertainty_map(folder, monkeypatch, capsys):
    code = cli(monkeypatch, "--method", "diffpir", "--samples", "3", "--save-samples", "--uncertainty", "std.png", "-o", "m.png")
    assert code == 0, capsys.readouterr().err
    mean = read_image(folder / "m.png").image
    samples = torch.stack([read_image(folder / f"m.sample-{k}.png").image for k in range(3)])
    assert mean.shape == (3, 20, 24) and (samples.mean(0) - mean).abs().max() <= 1.5 / 255  # 8-bit files
    assert 'samples = 3' in (folder / "m.recipe.toml").read_text()
    std = read_image(folder / "std.png")
    assert std.image.shape[-2] == MIN_HEIGHT and std.image.shape[-1] > 24 + BAR_GAP + BAR_WIDTH
    top = float(std.metadata["guidedinv:scale-max"])
    spread = samples.std(0).square().mean(0).sqrt()  # from the 8-bit samples: within quantisation of the map's
    assert abs(top - float(spread.max())) < 0.01
    bar = std.image[:, :, 24 + BAR_GAP + BAR_WIDTH // 2]  # the bar's middle column: the map's top colour above its bottom one
    colours = bar[:, (bar - 1).abs().sum(0) > 0.05]
    torch.testing.assert_close(colours[:, 0], torch.tensor(VIRIDIS[-1], dtype=torch.float32), rtol=0, atol=2 / 255)
    torch.testing.assert_close(colours[:, -1], torch.tensor(VIRIDIS[0], dtype=torch.float32), rtol=0, atol=2 / 255)


def test_cli_refuses_samples_of_pnp_and_an_uncertainty_map_over_the_input(folder, monkeypatch, capsys):
    before = sorted(p.name for p in folder.iterdir())
    assert cli(monkeypatch, "--method", "pnp", "--samples", "4", "--uncertainty", "std.png") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--samples 4: samples = 4: method pnp is deterministic (no posterior spread)" in err
    original = (folder / "low.png").read_bytes()
    assert cli(monkeypatch, "--method", "diffpir", "--samples", "2", "--uncertainty", "low.png") == 2
    assert "--uncertainty low.png is also IMAGE" in capsys.readouterr().err
    assert cli(monkeypatch, "--method", "diffpir", "--uncertainty", "std.png") == 2
    assert "--uncertainty needs --samples N with N >= 2" in capsys.readouterr().err
    assert (folder / "low.png").read_bytes() == original and sorted(p.name for p in folder.iterdir()) == before


def test_batch_writes_an_uncertainty_map_per_item_and_resumes(folder, monkeypatch, capsys):
    (folder / "in").mkdir()
    for name in ("a.png", "b.png"):
        (folder / "in" / name).write_bytes((folder / "low.png").read_bytes())
    args = ["guidedinv", "batch", "superres", "in", "-o", "out", "--model", "tiny.safetensors", "--tile", "0", "-q",
            "--set", "operator.scale=2", "--set", 'method="ddnm"', "--set", 'methods.ddnm.steps="logsnr3"', "--samples", "2",
            "--uncertainty"]
    for expected in ("done", "skipped"):
        monkeypatch.setattr(sys, "argv", args)
        with pytest.raises(SystemExit) as stop:
            run()
        assert stop.value.code == 0, capsys.readouterr().err
        items = json.loads((folder / "out" / "report.json").read_text())["items"]
        assert [(i["status"], i["uncertainty"]) for i in items] == [(expected, "a.std.png"), (expected, "b.std.png")]
    assert read_image(folder / "out" / "a.std.png").image.shape[-2] == MIN_HEIGHT
