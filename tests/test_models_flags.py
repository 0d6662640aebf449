"""Model flags: the attention heads, qkv order and schedule a checkpoint's shapes cannot show.

The math: a guided-diffusion-layout network trained with num_heads=4 and the new qkv order, saved as
a plain state dict, computes something else under the guessed settings (64 channels per head, legacy
order) and exactly its own output once told, whichever of the three ways it is told."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from typer.testing import CliRunner

from guidedinv.cli import app
from guidedinv.defaults import load_prior
from guidedinv.errors import InputError, ModelError
from guidedinv.models import ADMConfig, build_network, load_classifier, load_denoiser, load_model
from guidedinv.models.config import expected_shapes, infer_config
from guidedinv.models.flags import apply_flags, parse_model_flags
from guidedinv.models.load import ModelFlagsWarning
from guidedinv.models.registry import REGISTRY
from guidedinv.training.export import export_safetensors

# improved-diffusion's num_heads=4 with guided-diffusion's use_new_attention_order=True; widths 64
# and 128 are multiples of 64, so the guess is 64 channels per head: 1 and 2 heads, legacy order
TRAINED = ADMConfig(64, 1, (1, 2), (1, 2), head_channels=None, num_heads=4, attention_order="new")
X, T = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1)), torch.tensor([10.0, 900.0])
FULL = {"num_heads": 4, "use_new_attention_order": True, "noise_schedule": "linear"}


@pytest.fixture(autouse=True)
def _one_thread(tmp_path, monkeypatch):
    monkeypatch.setenv("GUIDEDINV_HOME", str(tmp_path / "cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def trained(tmp_path):
    """(path of a torch.save'd state dict, the network it was made from, its output on X, T)."""
    torch.manual_seed(0)
    net = build_network(TRAINED).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
        out = net(X, T)
    path = tmp_path / "improved.pt"
    torch.save(net.state_dict(), path)
    return path, net, out


def _load(path, expect_warning: str | None = None, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        denoiser = load_denoiser(path, device="cpu", **kwargs)
    flags_warnings = [str(w.message) for w in caught if issubclass(w.category, ModelFlagsWarning)]
    if expect_warning is None:
        assert not flags_warnings, flags_warnings
    else:
        assert len(flags_warnings) == 1 and expect_warning in flags_warnings[0], flags_warnings
        assert "\n" not in flags_warnings[0] and str(path) in flags_warnings[0]
    with torch.no_grad():
        return denoiser, denoiser.net(X, T)


def test_unstated_heads_and_order_compute_something_else_and_warn(trained):
    path, _, out = trained
    denoiser, guessed = _load(path, expect_warning="guessing attention heads, attention order and noise schedule "
                                                    "(num_head_channels=64 use_new_attention_order=false noise_schedule=linear)")
    assert (guessed - out).abs().max() > 1e-2  # a different network, silently
    assert denoiser.inferred.guessed == ("attention heads", "attention order", "noise schedule")
    assert denoiser.inferred.config.head_channels == 64 and denoiser.inferred.config.attention_order == "legacy"


@pytest.mark.parametrize(
    "flags",
    [
        FULL,
        "num_heads=4 use_new_attention_order=true noise_schedule=linear",
        "--num_heads 4 --use_new_attention_order True --noise_schedule linear",
        "--num_heads=4 use_new_attention_order=1 --noise_schedule LINEAR --diffusion_steps 1000",
        {"num_head_channels": -1, "num_heads": "4", "num_heads_upsample": -1, "use_new_attention_order": "yes",
         "noise_schedule": "linear", "rescale_timesteps": True},
    ],
)
def test_stated_flags_give_back_the_network_it_was_made_from(trained, flags):
    path, net, out = trained
    denoiser, told = _load(path, flags=flags)
    torch.testing.assert_close(told, out, rtol=0, atol=1e-6)
    assert denoiser.inferred.config.num_heads == 4 and denoiser.inferred.config.head_channels is None
    assert denoiser.inferred.guessed == () and denoiser.inferred.flag_sources["num_heads"] == "flags"
    assert denoiser.inferred.assumed["attention_order"] == "model flags (flags)"


def test_flags_file_beside_the_checkpoint_is_read(trained):
    path, _, out = trained
    side = path.with_name("improved.flags.json")
    side.write_text(json.dumps({"num_heads": 4, "use_new_attention_order": True}))
    denoiser, told = _load(path, expect_warning="guessing noise schedule (noise_schedule=linear)")
    torch.testing.assert_close(told, out, rtol=0, atol=1e-6)
    assert denoiser.inferred.flag_sources == {"num_heads": str(side), "use_new_attention_order": str(side)}
    # given flags and the file's merge; the same flag with two values is one line naming both
    denoiser, told = _load(path, flags="noise_schedule=linear num_heads=4", flags_from="--model-flags")
    torch.testing.assert_close(told, out, rtol=0, atol=1e-6)
    assert denoiser.inferred.flag_sources == {"num_heads": "--model-flags", "noise_schedule": "--model-flags",
                                              "use_new_attention_order": str(side)}
    conflict = r"^\S*improved\.pt: num_heads=2 from --model-flags contradicts num_heads=4 in \S*improved\.flags\.json"
    with pytest.raises(ModelError, match=conflict):
        load_model(path, device="cpu", flags="num_heads=2", flags_from="--model-flags")
    for text, message in (
        ("{not json", "improved.flags.json is not valid JSON"),
        ("[4]", "expected an object of model flags"),
        ('{"num_heads": 0}', "num_heads must be a whole number >= 1, got 0"),
        ('{"num_channels": 64}', "num_channels is read from the checkpoint's tensor shapes"),
        ('{"num_head_channels": -1}', "num_head_channels=-1 .* give num_heads too"),
    ):
        side.write_text(text)
        with pytest.raises(ModelError, match=message) as info:
            load_model(path, device="cpu")
        assert "\n" not in str(info.value)


def test_load_prior_takes_flags(trained):
    path, _, out = trained
    prior = load_prior(str(path), device="cpu", flags=FULL, flags_from="--model-flags")
    with torch.no_grad():
        torch.testing.assert_close(prior.net(X, T), out, rtol=0, atol=1e-6)
    assert prior.inferred.flags == FULL and set(prior.inferred.flag_sources.values()) == {"--model-flags"}


def test_partly_stated_flags_still_warn_about_the_rest(trained):
    path, _, out = trained
    _, told = _load(path, flags={"num_heads": 4}, expect_warning="guessing attention order and noise schedule")
    assert (told - out).abs().max() > 1e-2  # the order still matters: 4 heads, legacy order is not the network
    _, told = _load(path, flags="use_new_attention_order=true noise_schedule=linear", expect_warning="guessing attention heads")


def test_decoder_heads_and_head_channels(tmp_path):
    cfg = ADMConfig(64, 1, (1, 2), (2,), head_channels=None, num_heads=2, num_heads_upsample=8)
    net = build_network(cfg).eval()
    torch.save(net.state_dict(), tmp_path / "up.pt")
    flags = "num_heads=2 num_heads_upsample=8 use_new_attention_order=false noise_schedule=cosine"
    denoiser, _ = _load(tmp_path / "up.pt", flags=flags)
    assert denoiser.inferred.config == cfg and denoiser.schedule.name == "cosine"
    denoiser, _ = _load(tmp_path / "up.pt", flags="num_head_channels=32 num_heads=2 use_new_attention_order=0 noise_schedule=linear")
    assert denoiser.inferred.config.heads(128) == 4  # head channels decide, as in guided-diffusion
    with pytest.raises(ModelError, match="3 heads do not divide the attention width 128"):
        load_model(tmp_path / "up.pt", device="cpu", flags="num_heads=3")
    with pytest.raises(ModelError, match="not divisible by head_channels 48"):
        load_model(tmp_path / "up.pt", device="cpu", flags="num_head_channels=48")


def test_predict_xstart_makes_an_x0_model(tmp_path):
    cfg = ADMConfig(32, 1, (1, 2), (), out_channels=3, head_channels=None)
    torch.save(build_network(cfg).state_dict(), tmp_path / "x0.pt")
    denoiser, _ = _load(tmp_path / "x0.pt", flags="predict_xstart=true num_heads=1 use_new_attention_order=false noise_schedule=linear")
    assert denoiser.prediction == "x0"


# ------------------------------------------------------------------------- known values stay known


def _registry_view(name: str):
    entry = REGISTRY[name]
    return infer_config(expected_shapes(entry.config), entry), entry


def test_registry_entries_keep_their_known_values():
    inferred, entry = _registry_view("256x256_diffusion_uncond")  # 64 channels per head, legacy order
    same = apply_flags(inferred, {"num_head_channels": 64, "use_new_attention_order": False}, {})
    assert same.config == entry.config and same.recorded_by == "registry entry 256x256_diffusion_uncond"
    assert same.flags == {"num_head_channels": 64, "use_new_attention_order": False}
    with pytest.raises(ModelError, match=r"num_heads=4 \(--model-flags\) contradict registry entry 256x256_diffusion_uncond, "
                                         r"which records attention heads of 64 channels"):
        apply_flags(inferred, {"num_heads": 4}, {"num_heads": "--model-flags"})
    with pytest.raises(ModelError, match="which records linear noise schedule"):
        apply_flags(inferred, {"noise_schedule": "cosine"}, {})
    inferred, _ = _registry_view("64x64_diffusion")  # the new attention order
    with pytest.raises(ModelError, match="which records new attention order"):
        apply_flags(inferred, {"use_new_attention_order": False}, {})
    inferred, _ = _registry_view("256x256_classifier")
    with pytest.raises(ModelError, match="predict_xstart applies to diffusion models"):
        apply_flags(inferred, {"predict_xstart": True}, {})
    inferred, _ = _registry_view("ddpm-cifar10-32")
    with pytest.raises(ModelError, match="attention flags apply to ADM"):
        apply_flags(inferred, {"num_heads": 4}, {})


def test_a_guidedinv_export_keeps_what_it_records(tmp_path):
    cfg = ADMConfig(32, 1, (1, 2), (2,), out_channels=3, head_channels=None, num_heads=2)
    path = export_safetensors(build_network(cfg), cfg, tmp_path / "own.safetensors", schedule="cosine",
                              prediction="v", kind="prior")
    denoiser, _ = _load(path, flags="num_heads=2 noise_schedule=cosine")  # agrees: fine, no warning
    assert denoiser.inferred.config == cfg and denoiser.prediction == "v"
    with pytest.raises(ModelError, match="contradict the file's guidedinv metadata, which records v prediction"):
        load_model(path, device="cpu", flags="predict_xstart=false")
    with pytest.raises(ModelError, match="which records attention heads 2 per block"):
        load_model(path, device="cpu", flags="num_heads=4")


def test_a_layout_match_is_not_a_guess(tmp_path):
    """A released checkpoint kept as a local file gets its registry entry's values, and no warning."""
    entry = REGISTRY["256x256_classifier"]
    inferred = infer_config(expected_shapes(entry.config))
    assert inferred.assumed["num_heads"] == "registry entry 256x256_classifier (same layout)"
    assert inferred.recorded_by is None and inferred.guessed == ()


def test_classifier_flags(tmp_path):
    cfg = ADMConfig(32, 1, (1, 2), (2,), kind="classifier", out_channels=4, pool="adaptive", head_channels=None,
                    num_heads=4, attention_order="new")
    net = build_network(cfg).eval()
    torch.save(net.state_dict(), tmp_path / "clf.pt")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf = load_classifier(tmp_path / "clf.pt", device="cpu", flags="num_heads=4 use_new_attention_order=true")
    assert clf.config == cfg and not [w for w in caught if issubclass(w.category, ModelFlagsWarning)]


# ------------------------------------------------------------------------------------ the text form


def test_parse_model_flags_reads_both_forms():
    expected = {"num_heads": 4, "use_new_attention_order": True}
    for text in ("num_heads=4 use_new_attention_order=true", "--num_heads 4 --use_new_attention_order True",
                 "--num_heads=4 use-new-attention-order=T", "  num_heads=4\tuse_new_attention_order=yes "):
        assert parse_model_flags(text) == expected, text
    assert parse_model_flags("") == {}
    assert parse_model_flags("num_head_channels=-1 num_heads=2 num_heads_upsample=-1 predict_xstart=no") == {
        "num_head_channels": -1, "num_heads": 2, "num_heads_upsample": -1, "predict_xstart": False}
    assert parse_model_flags("num_heads=4 num_heads=4") == {"num_heads": 4}


@pytest.mark.parametrize(
    "text, message",
    [
        ("num_head=4", "unknown flag num_head; leave it out (model flags: num_heads, num_head_channels"),
        ("--num_channels 256 --attention_resolutions 32,16,8 --num_heads 4",
         "num_channels, attention_resolutions are read from the checkpoint's tensor shapes"),
        ("--use_fp16 True", "use_fp16 is --dtype fp16"),
        ("--timestep_respacing 250", "timestep_respacing is --steps"),
        ("num_heads=0", "num_heads must be a whole number >= 1, got '0'"),
        ("num_heads=four", "num_heads must be a whole number >= 1, got 'four'"),
        ("num_heads=4.0", "num_heads must be a whole number >= 1"),
        ("num_head_channels=-2", "num_head_channels must be a whole number >= 1, or -1"),
        ("num_heads=--4", "num_heads=--4"),
        ("use_new_attention_order=maybe", "use_new_attention_order must be true or false, got 'maybe'"),
        ("noise_schedule=banana", "noise_schedule must be linear or cosine"),
        ("diffusion_steps=4000", "diffusion_steps must be 1000 (guidedinv runs T = 1000 schedules only), got '4000'"),
        ("num_heads=4 num_heads=2", "num_heads is given twice (4 and 2)"),
        ("--num_heads", "--num_heads has no value"),
        ("--num_heads --use_new_attention_order True", "--num_heads has no value"),
        ("num_heads", "expected key=value or --key value, got 'num_heads'"),
        ("=4", "expected key=value or --key value"),
        ("num_heads=", "expected key=value or --key value"),
    ],
)
def test_parse_model_flags_refuses_with_one_line(text, message):
    with pytest.raises(InputError) as info:
        parse_model_flags(text, "--model-flags")
    assert str(info.value).startswith(f"--model-flags {text!r}: ") and message in str(info.value), str(info.value)
    assert "\n" not in str(info.value) and info.value.exit_code == 2


def test_python_flags_are_checked_like_text(tmp_path):
    for flags, message in (({"num_heads": True}, "num_heads must be a whole number"), ({"heads": 4}, "unknown flag heads"),
                           ("num_heads=x", "flags 'num_heads=x': num_heads must be"), ([("num_heads", 4)], "expected an object")):
        with pytest.raises(InputError, match=message):
            load_model(tmp_path / "never-read.pt", device="cpu", flags=flags)  # checked before the file is looked at
    with pytest.raises(ModelError, match="use_new_attention_order is given twice"):
        load_model(tmp_path / "never-read.pt", device="cpu", flags="use_new_attention_order=true", attention_order="legacy")


# ---------------------------------------------------------------------------------- models info


def test_models_info_shows_the_flags_and_where_they_came_from(trained):
    path, _, _ = trained
    result = CliRunner().invoke(app, ["models", "info", str(path)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["guessed"] == ["attention heads", "attention order", "noise schedule"] and report["flags"] == {}
    assert report["config"]["head_channels"] == 64
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("guidedinv: warning: ") and "guessing attention heads" in lines[0]

    path.with_name("improved.flags.json").write_text('{"use_new_attention_order": true}')
    result = CliRunner().invoke(app, ["models", "info", str(path), "--flags", "--num_heads 4 --noise_schedule linear"])
    assert result.exit_code == 0 and not result.stderr, result.output
    report = json.loads(result.stdout)
    assert report["config"]["num_heads"] == 4 and report["config"]["head_channels"] is None
    assert report["config"]["attention_order"] == "new" and report["guessed"] == []
    assert report["flags"] == {"num_heads": {"value": 4, "from": "--flags"}, "noise_schedule": {"value": "linear", "from": "--flags"},
                               "use_new_attention_order": {"value": True, "from": str(path.with_name("improved.flags.json"))}}
    assert report["assumed"]["num_heads"] == "model flags (--flags)"

    result = CliRunner().invoke(app, ["models", "info", str(path), "--flags", "num_heads=four"])
    assert result.exit_code == 2 and result.stderr.strip() == (
        "guidedinv: error: --flags 'num_heads=four': num_heads must be a whole number >= 1, got 'four'")
    result = CliRunner().invoke(app, ["models", "info", "256x256_diffusion_uncond", "--flags", "num_heads=4"])
    assert result.exit_code == 3 and "contradict registry entry 256x256_diffusion_uncond" in result.stderr
    result = CliRunner().invoke(app, ["models", "info", "256x256_diffusion_uncond", "--flags", "num_head_channels=64"])
    assert result.exit_code == 0 and json.loads(result.stdout)["flags"]["num_head_channels"]["from"] == "--flags"
