"""Loading through a path, the registry, the cache and the checksum, with no network: downloads go
through a fake ``_open_url`` (or a file:// URL). Every bad input ends in one clear error."""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import pickle
import sys
import urllib.error

import pytest
import torch
from typer.testing import CliRunner

from guidedinv.cli import app
from guidedinv.denoiser import NetworkDenoiser
from guidedinv.errors import DownloadError, ModelError
from guidedinv.models import (
    ADMConfig,
    build_network,
    download,
    load_classifier,
    load_denoiser,
    load_model,
)
from guidedinv.models.config import expected_shapes
from guidedinv.models.diffusers_unet import DiffusersUNetConfig, current_key
from guidedinv.models.registry import REGISTRY, ModelEntry
from guidedinv.tiling import Tiling
from guidedinv.training.export import export_safetensors

UNET = ADMConfig(32, 1, (1, 2), (2,), head_channels=None, num_heads=2, num_classes=4)
X, T, Y = torch.randn(2, 3, 8, 12), torch.tensor([10.0, 900.0]), torch.tensor([1, 3])
dl = importlib.import_module("guidedinv.models.download")  # the module (the package exports the function)
REAL_OPEN = dl._open_url  # the real urllib call, for the file:// test


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """A private cache, one thread, and no real network."""
    monkeypatch.setenv("GUIDEDINV_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(dl, "_open_url", _no_network)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def save(net, path, schedule="linear", dtype=torch.float32):
    """A tiny checkpoint as guidedinv's training exports it (weights + self-describing metadata)."""
    kind = "classifier" if net.config.kind == "classifier" else "conditional-prior"
    return export_safetensors(
        net, net.config, path, schedule=schedule, prediction="eps", kind=kind, num_classes=4, dtype=dtype
    )


def _no_network(url, start):
    raise urllib.error.URLError("network disabled in tests")


@pytest.fixture
def tiny_net():
    torch.manual_seed(0)
    net = build_network(UNET).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    return net


def test_saved_checkpoint_loads_back_exactly(tmp_path, tiny_net):
    path = save(tiny_net, tmp_path / "tiny.safetensors", schedule="cosine")
    denoiser = load_denoiser(path, device="cpu")
    assert isinstance(denoiser, NetworkDenoiser) and denoiser.schedule.name == "cosine"
    assert denoiser.inferred.config == UNET and denoiser.entry is None
    assert denoiser.learned_sigma and denoiser.num_classes == 4
    assert not any(p.is_meta or p.requires_grad for p in denoiser.net.parameters())
    with torch.no_grad():
        torch.testing.assert_close(denoiser.net(X, T, Y), tiny_net(X, T, Y), rtol=0, atol=0)
        pred = denoiser(X, T, Y)
        raw = tiny_net(X, T, Y)
    torch.testing.assert_close(pred.var_interp, raw[:, 3:])  # learned sigma split off once
    ab = denoiser.alpha_bar(T, X)
    torch.testing.assert_close(pred.x0, ((X - (1 - ab).sqrt() * raw[:, :3]) / ab.sqrt()).clamp(-1, 1))


def test_exported_v_prediction_prior_with_null_label(tmp_path):
    """guidedinv's own conditional priors: v-prediction, K classes plus a "no class" embedding."""
    cfg = ADMConfig(32, 1, (1, 2), (), out_channels=3, head_channels=None, num_classes=5)
    torch.manual_seed(2)
    net = build_network(cfg).eval()
    path = export_safetensors(
        net, cfg, tmp_path / "cond.safetensors", schedule="linear", prediction="v", kind="conditional-prior",
        num_classes=4, null_label=4,
    )  # fmt: skip
    denoiser = load_denoiser(path, device="cpu")
    assert denoiser.prediction == "v" and denoiser.num_classes == 4 and denoiser.null_label_index == 4
    assert not denoiser.learned_sigma
    with torch.no_grad():
        v = net(X, T, torch.tensor([4, 4]))
        ab = denoiser.alpha_bar(T, X)
        expected = (ab.sqrt() * X - (1 - ab).sqrt() * v).clamp(-1, 1)
        torch.testing.assert_close(denoiser(X, T).x0, expected)  # no labels: the null embedding


@pytest.mark.parametrize("low_byte", [0x80, 0x88])  # safetensors pads the header to 8 bytes
def test_safetensors_header_length_that_looks_like_a_pickle_keeps_its_metadata(tmp_path, low_byte):
    """A safetensors file starts with its header length (u64, little-endian); a length whose low
    byte is 0x80 made the file look like a pickle, and the training metadata (v-prediction) was
    lost: the embedded prior then ran as an eps-model. Pad the card until the length ends in the byte."""
    cfg = ADMConfig(32, 1, (1, 2), (), out_channels=3, head_channels=None)
    net = build_network(cfg).eval()
    for pad in range(256):
        path = export_safetensors(net, cfg, tmp_path / "v.safetensors", schedule="linear", prediction="v",
                                  kind="prior", card={"pad": "x" * pad})
        if path.read_bytes()[0] == low_byte:
            break
    else:
        pytest.fail(f"no padding gave a header length ending in {low_byte:#x}")
    assert load_denoiser(path, device="cpu").prediction == "v"


def test_embedded_default_prior_loads_as_the_v_prediction_model_it_was_trained_as():
    from guidedinv.defaults import load_prior

    prior = load_prior("default", device="cpu")
    assert prior.prediction == "v" and prior.schedule.num_steps == 1000
    assert prior.tiling == Tiling(64, 8)  # trained on 48 px crops: 64 px tiles (guidedinv/tiling.py)
    assert load_prior("default", device="cpu", tile=0).tiling is None


def test_tiling_comes_from_the_training_crop_the_file_records_or_the_caller(tmp_path):
    cfg = ADMConfig(32, 1, (1, 2, 2), (), out_channels=3, head_channels=None)
    net = build_network(cfg).eval()
    plain = export_safetensors(net, cfg, tmp_path / "plain.safetensors", schedule="linear", prediction="v", kind="prior")
    cropped = export_safetensors(net, cfg, tmp_path / "crop.safetensors", schedule="linear", prediction="v",
                                 kind="prior", card={"crop": 96})
    assert load_denoiser(plain, device="cpu").tiling is None  # no training crop recorded: the whole image
    assert load_denoiser(cropped, device="cpu").inferred.train_crop == 96
    assert load_denoiser(cropped, device="cpu").tiling == Tiling(128, 16)
    assert load_denoiser(cropped, device="cpu", tile=0).tiling is None
    assert load_denoiser(plain, device="cpu", tile=40).tiling == Tiling(40, 5)
    for bad in (42, -8, "big", True):
        with pytest.raises(ModelError, match="multiple of 4"):
            load_denoiser(plain, device="cpu", tile=bad)


def test_a_tile_the_card_names_overrides_the_one_its_crop_implies(tmp_path):
    """A prior fine-tuned on 64 px crops validated best on 64 px tiles (the model card), not the 96 px
    its crop implies: the card's "tile" sets the default tiling and the fallback over the budget."""
    from guidedinv.tiling import training_tiling

    cfg = ADMConfig(32, 1, (1, 2, 2), (), out_channels=3, head_channels=None)
    net = build_network(cfg).eval()
    both = export_safetensors(net, cfg, tmp_path / "tile.safetensors", schedule="linear", prediction="v",
                              kind="prior", card={"crop": 64, "tile": 64})
    crop_only = export_safetensors(net, cfg, tmp_path / "crop.safetensors", schedule="linear", prediction="v",
                                   kind="prior", card={"crop": 64})
    odd = export_safetensors(net, cfg, tmp_path / "odd.safetensors", schedule="linear", prediction="v",
                             kind="prior", card={"crop": 64, "tile": 66})  # not a multiple of the network's 4
    prior = load_denoiser(both, device="cpu")
    assert (prior.inferred.train_crop, prior.inferred.tile) == (64, 64)
    assert prior.tiling == training_tiling(prior) == Tiling(64, 8)
    assert load_denoiser(crop_only, device="cpu").tiling == Tiling(96, 12)
    assert load_denoiser(odd, device="cpu").tiling == Tiling(96, 12)  # an unusable tile falls back to the crop's
    assert load_denoiser(both, device="cpu", tile=0).tiling is None


def test_plain_torch_state_dict_loads_with_inferred_config(tmp_path, tiny_net):
    torch.save({"module." + k: v for k, v in tiny_net.state_dict().items()}, tmp_path / "plain.pt")
    model = load_model(tmp_path / "plain.pt", device="cpu", progress=False)
    cfg = model.inferred.config
    assert (cfg.model_channels, cfg.channel_mult, cfg.attention_ds, cfg.num_classes) == (32, (1, 2), (2,), 4)
    assert model.inferred.assumed["attention_order"] == "default" and model.schedule.name == "linear"
    nested = tmp_path / "nested.pt"
    torch.save({"ema": tiny_net.state_dict(), "step": 3}, nested)
    assert load_model(nested, device="cpu").inferred.config == cfg


def test_reduced_precision_loading(tmp_path, tiny_net):
    path = save(tiny_net, tmp_path / "tiny.safetensors", dtype=torch.float16)
    net = load_model(path, device="cpu", dtype="bf16").net
    assert net.dtype == torch.bfloat16 and net.time_embed[0].weight.dtype == torch.float32
    with torch.no_grad():
        out = net(X, T, Y)
        ref = tiny_net(X, T, Y)
    assert out.dtype == torch.float32 and (out - ref).abs().max() < 0.05 * ref.abs().max()
    with pytest.raises(ModelError, match="unsupported dtype"):
        load_model(path, device="cpu", dtype="int8")


def test_classifier_loads_as_a_module(tmp_path):
    cfg = ADMConfig(32, 1, (1, 2), (2,), kind="classifier", out_channels=5, head_channels=64, image_size=8)
    torch.manual_seed(1)
    clf = build_network(cfg).eval()
    torch.save(clf.state_dict(), tmp_path / "clf.pt")
    loaded = load_classifier(tmp_path / "clf.pt", device="cpu")
    assert loaded.inferred.config == cfg
    with torch.no_grad():
        torch.testing.assert_close(loaded(X[:, :, :8, :8], T), clf(X[:, :, :8, :8], T))
    with pytest.raises(ModelError, match="is a classifier"):
        load_denoiser(tmp_path / "clf.pt", device="cpu")


# --------------------------------------------------------------------- registry, cache, checksum


class FakeResponse(io.BytesIO):
    """What urlopen returns: a readable body with status and headers; honours a range start."""

    def __init__(self, data: bytes, start: int, claimed: int | None = None) -> None:
        super().__init__(data[start:])
        self.status = 206 if start else 200
        length = (claimed if claimed is not None else len(data)) - start
        self.headers = {"Content-Length": str(length)}
        if start:
            self.headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"


@pytest.fixture
def served(tmp_path, tiny_net, monkeypatch):
    """A registry entry whose 'server' is a local file; returns (name, file bytes, request log)."""
    source = save(tiny_net, tmp_path / "served.safetensors")
    data = source.read_bytes()
    entry = ModelEntry(
        "tiny-test",
        "https://models.invalid/tiny.safetensors",
        "conditional prior",
        8,
        "linear",
        "test",
        UNET,
        "a tiny test model",
        filename="tiny-test.safetensors",
    )
    monkeypatch.setitem(REGISTRY, entry.name, entry)
    requests: list[int] = []

    def serve(url, start):
        requests.append(start)
        return FakeResponse(data, start)

    monkeypatch.setattr(dl, "_open_url", serve)
    return entry.name, data, requests


def test_named_model_downloads_once_then_comes_from_the_verified_cache(served, tiny_net, monkeypatch):
    name, data, requests = served
    denoiser = load_denoiser(name, device="cpu", progress=False)
    assert requests == [0] and denoiser.entry.name == name
    cached = dl.cache_dir() / "tiny-test.safetensors"
    assert cached.read_bytes() == data and not cached.with_name(cached.name + ".part").exists()
    record = json.loads((dl.cache_dir() / "tiny-test.safetensors.json").read_text())
    assert record["sha256"] == hashlib.sha256(data).hexdigest() and record["size"] == len(data)
    monkeypatch.setattr(dl, "_open_url", _no_network)
    with torch.no_grad():
        torch.testing.assert_close(load_denoiser(name, device="cpu").net(X, T, Y), tiny_net(X, T, Y))
    assert download(name) == cached  # a name ...
    assert download(cached) == cached  # ... or a path


def test_checksum_mismatch_is_refused(served):
    name, data, _ = served
    path = download(name, progress=False)
    damaged = bytearray(data)
    damaged[-1] ^= 0xFF
    path.write_bytes(bytes(damaged))
    with pytest.raises(DownloadError, match="SHA-256"):
        load_model(name, device="cpu")


def test_truncated_download_is_an_error_and_resumes(served, monkeypatch):
    name, data, requests = served
    monkeypatch.setattr(
        dl, "_open_url", lambda url, start: FakeResponse(data[: len(data) // 2], start, claimed=len(data))
    )
    with pytest.raises(DownloadError, match=f"incomplete: {len(data) // 2} of {len(data)} bytes.*resumes"):
        download(name, progress=False)
    part = dl.cache_dir() / "tiny-test.safetensors.part"
    assert part.stat().st_size == len(data) // 2

    def serve(url, start):
        requests.append(start)
        return FakeResponse(data, start)

    monkeypatch.setattr(dl, "_open_url", serve)
    path = download(name, progress=False)
    assert requests == [len(data) // 2] and path.read_bytes() == data and not part.exists()
    assert json.loads(path.with_name(path.name + ".json").read_text())["sha256"] == hashlib.sha256(data).hexdigest()


def test_offline_gives_one_message_saying_where_to_put_the_file(served, monkeypatch):
    name, _, _ = served
    monkeypatch.setattr(dl, "_open_url", _no_network)
    with pytest.raises(DownloadError) as err:
        download(name, progress=False)
    msg = str(err.value)
    assert "offline" in msg and str(dl.cache_dir() / "tiny-test.safetensors") in msg and "models.invalid" in msg
    result = CliRunner().invoke(app, ["models", "download", name, "--no-progress"])
    assert result.exit_code == DownloadError.exit_code and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_file_url_download_through_urllib(tmp_path, tiny_net, monkeypatch):
    source = save(tiny_net, tmp_path / "src.safetensors")
    entry = ModelEntry("tiny-file", source.as_uri(), "prior", 8, "linear", "test", UNET, "file url")
    monkeypatch.setitem(REGISTRY, entry.name, entry)
    monkeypatch.setattr(dl, "_open_url", REAL_OPEN)
    assert download("tiny-file", progress=False).read_bytes() == source.read_bytes()


# ----------------------------------------------------------------------------------- bad files


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    for name, write in (
        ("zip.pt", lambda p: torch.save({"w": Payload()}, p)),
        ("legacy.pt", lambda p: p.write_bytes(pickle.dumps({"w": Payload()}, protocol=2))),
    ):
        path = tmp_path / name
        write(path)
        with pytest.raises(ModelError, match="refusing to load.*other than tensors"):
            load_model(path, device="cpu")
        assert not marker.exists()
    result = CliRunner().invoke(app, ["models", "info", str(tmp_path / "zip.pt")])
    assert result.exit_code == ModelError.exit_code and "refusing" in result.stderr and not marker.exists()


def test_corrupt_truncated_and_foreign_files_get_clear_errors(tmp_path, tiny_net):
    good_pt = tmp_path / "good.pt"
    torch.save(tiny_net.state_dict(), good_pt)
    good_st = save(tiny_net, tmp_path / "good.safetensors")
    cases = {
        "random.pt": (os.urandom(4096), "not a checkpoint"),
        "empty.pt": (b"", "is empty"),
        "truncated.pt": (good_pt.read_bytes()[:3000], "corrupt or truncated"),
        "truncated.safetensors": (good_st.read_bytes()[:3000], "corrupt or truncated"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ModelError, match=message):
            load_model(tmp_path / name, device="cpu")
    torch.save(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Linear(8, 2)).state_dict(), tmp_path / "other.pt")
    with pytest.raises(ModelError, match="unknown checkpoint layout"):
        load_model(tmp_path / "other.pt", device="cpu")
    state = tiny_net.state_dict()
    state["output_blocks.1.0.in_layers.2.weight"] = torch.zeros(1, 1, 3, 3)
    del state["middle_block.1.qkv.bias"]
    torch.save(state, tmp_path / "damaged.pt")
    with pytest.raises(
        ModelError, match=r"1 missing \(middle_block.1.qkv.bias\).*output_blocks.1.0.in_layers.2.weight"
    ):
        load_model(tmp_path / "damaged.pt", device="cpu")
    with pytest.raises(ModelError, match="neither an existing file nor a known model name"):
        load_model("no-such-model", device="cpu")


# ---------------------------------------------------------------------------------- diffusers

TINY_DDPM = DiffusersUNetConfig((32, 64), 1, ("DownBlock2D", "AttnDownBlock2D"), ("AttnUpBlock2D", "UpBlock2D"))


def _legacy_name(key: str) -> str:
    for new, old in (("to_q", "query"), ("to_k", "key"), ("to_v", "value"), ("to_out.0", "proj_attn")):
        key = key.replace(f".{new}.", f".{old}.")
    return key


def test_diffusers_legacy_attention_names_are_understood(tmp_path, monkeypatch):
    assert current_key("down_blocks.1.attentions.0.query.weight") == "down_blocks.1.attentions.0.to_q.weight"
    assert current_key("mid_block.attentions.0.proj_attn.bias") == "mid_block.attentions.0.to_out.0.bias"
    assert current_key("down_blocks.0.resnets.0.conv1.weight") == "down_blocks.0.resnets.0.conv1.weight"
    state = {_legacy_name(k): torch.zeros(s) for k, s in expected_shapes(TINY_DDPM).items()}
    assert any(".query." in k for k in state)
    torch.save(state, tmp_path / "ddpm.bin")
    result = CliRunner().invoke(app, ["models", "info", str(tmp_path / "ddpm.bin")])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["format"] == "diffusers" and report["config"]["block_out_channels"] == [32, 64]
    monkeypatch.setitem(sys.modules, "diffusers", None)  # as if the extra were not installed
    with pytest.raises(ModelError, match=r"pip install 'guidedinv\[diffusers\]'"):
        load_model(tmp_path / "ddpm.bin", device="cpu")


def test_diffusers_checkpoint_loads_through_diffusers(tmp_path):
    try:
        import diffusers

        _ = diffusers.UNet2DModel  # diffusers imports lazily: the attribute is where a broken install fails
    except Exception as exc:  # absent, or present but broken (a torchvision built for another torch)
        pytest.skip(f"diffusers cannot be imported: {type(exc).__name__}: {exc}")
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(**TINY_DDPM.unet_kwargs()).eval()
    assert {k: tuple(v.shape) for k, v in unet.state_dict().items()} == expected_shapes(TINY_DDPM)
    torch.save({_legacy_name(k): v for k, v in unet.state_dict().items()}, tmp_path / "ddpm.bin")
    denoiser = load_denoiser(tmp_path / "ddpm.bin", device="cpu")
    assert not denoiser.learned_sigma and denoiser.inferred.format == "diffusers"
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([5.0, 500.0])
    with torch.no_grad():
        torch.testing.assert_close(denoiser.net(x, t), unet(x, t).sample)
    for name in ("ddpm-cifar10-32", "ddpm-ema-celebahq-256"):
        with torch.device("meta"):
            real = diffusers.UNet2DModel(**REGISTRY[name].config.unet_kwargs())
        assert {k: tuple(v.shape) for k, v in real.state_dict().items()} == expected_shapes(REGISTRY[name].config)


# ------------------------------------------------------------------------------------------ CLI


def test_cli_list_and_info(tmp_path, tiny_net):
    result = CliRunner().invoke(app, ["models", "list"])
    assert result.exit_code == 0 and "256x256_diffusion_uncond" in result.stdout and "ffhq_10m" in result.stdout
    result = CliRunner().invoke(app, ["models", "info", "ffhq_10m"])  # not cached: the registry's view
    report = json.loads(result.stdout)
    assert report["tensors"] == 362 and round(report["parameters"] / 1e6, 1) == 93.6
    assert report["config"]["attention_ds"] == [16] and report["registry"]["kind"] == "prior"
    path = save(tiny_net, tmp_path / "tiny.safetensors")
    report = json.loads(CliRunner().invoke(app, ["models", "info", str(path)]).stdout)
    assert report["config"] == UNET.to_dict() and report["learned_sigma"] is True
