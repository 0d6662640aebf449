"""Every registry entry, built on the meta device (nothing allocated), has exactly the keys and shapes
of the released file, derived here independently from the block listings of the checkpoint fact
sheet (reference/checkpoints.md §1.4, §2.2); and the configuration inferred from those shapes is the
registry's own."""

from __future__ import annotations

import math
import re
from functools import cache

import pytest

from guidedinv.errors import ModelError
from guidedinv.models import ADMConfig, build_network
from guidedinv.models.adm import SHAPE_FIELDS
from guidedinv.models.config import expected_shapes, infer_config
from guidedinv.models.registry import REGISTRY

# ------------------------------------------------- expected layouts written from the fact sheet
# Block listings: R<c> ResBlock to c channels, A attention, D ResBlock downsampler, U ResBlock
# upsampler (at .1, or .2 after attention); *n repeats. The middle block is R A R.
LISTINGS = {
    "64": (192, 192, "R192*3 D RA384*3 D RA576*3 D RA768*3", "RA768*3 RAU768 RA576*3 RAU576 RA384*3 RAU384 R192*4"),
    "128": (
        256,
        256,
        "R256*2 D R256*2 D RA512*2 D RA768*2 D RA1024*2",
        "RA1024*2 RAU1024 RA768*2 RAU768 RA512*2 RAU512 R256*2 RU256 R256*3",
    ),
    "256": (
        256,
        256,
        "R256*2 D R256*2 D R512*2 D RA512*2 D RA1024*2 D RA1024*2",
        "RA1024*2 RAU1024 RA1024*2 RAU1024 RA512*2 RAU512 R512*2 RU512 R256*2 RU256 R256*3",
    ),
    "512": (
        256,
        128,
        "R128*2 D R256*2 D R256*2 D R512*2 D RA512*2 D RA1024*2 D RA1024*2",
        "RA1024*2 RAU1024 RA1024*2 RAU1024 RA512*2 RAU512 R512*2 RU512 R256*2 RU256 R256*2 RU256 R128*3",
    ),
    "ffhq": (
        128,
        128,
        "R128 D R128 D R256 D R256 D RA512 D R512",
        "R512 RU512 RA512 RAU512 R256 RU256 R256 RU256 R128 RU128 R128*2",
    ),
    "c64": (128, 128, "R128*4 D RA256*4 D RA384*4 D RA512*4", None),
    "c128": (128, 128, "R128*2 D R128*2 D RA256*2 D RA384*2 D RA512*2", None),
    "c256": (128, 128, "R128*2 D R128*2 D R256*2 D RA256*2 D RA512*2 D RA512*2", None),
    "c512": (128, 64, "R64*2 D R128*2 D R128*2 D R256*2 D RA256*2 D RA512*2 D RA512*2", None),
}
# (listing, class-conditional, keys, parameters in millions) from the fact sheet's tables
ENTRIES = {
    "64x64_diffusion": ("64", True, 541, 295.9),
    "128x128_diffusion": ("128", True, 493, 421.5),
    "256x256_diffusion": ("256", True, 567, 553.8),
    "256x256_diffusion_uncond": ("256", False, 566, 552.8),
    "lsun_bedroom": ("256", False, 566, 552.8),
    "lsun_cat": ("256", False, 566, 552.8),
    "lsun_horse": ("256", False, 566, 552.8),
    "lsun_horse_nodropout": ("256", False, 566, 552.8),
    "512x512_diffusion": ("512", True, 645, 559.0),
    "ffhq_10m": ("ffhq", False, 362, 93.6),
    "64x64_classifier": ("c64", False, 307, 65.4),
    "128x128_classifier": ("c128", False, 221, 42.6),
    "256x256_classifier": ("c256", False, 249, 54.1),
    "512x512_classifier": ("c512", False, 281, 54.4),
}
DIFFUSERS = {"ddpm-cifar10-32": (328, 35.7), "ddpm-ema-celebahq-256": (450, 113.7), "ddpm-ema-church-256": (450, 113.7)}


def _expand(listing: str) -> list[str]:
    out = []
    for token in listing.split():
        name, _, n = token.partition("*")
        out += [name] * int(n or 1)
    return out


def _resblock(keys: dict, p: str, cin: int, cout: int, emb: int) -> None:
    keys.update(
        {
            f"{p}.in_layers.0.weight": (cin,),
            f"{p}.in_layers.0.bias": (cin,),
            f"{p}.in_layers.2.weight": (cout, cin, 3, 3),
            f"{p}.in_layers.2.bias": (cout,),
            f"{p}.emb_layers.1.weight": (2 * cout, emb),
            f"{p}.emb_layers.1.bias": (2 * cout,),
            f"{p}.out_layers.0.weight": (cout,),
            f"{p}.out_layers.0.bias": (cout,),
            f"{p}.out_layers.3.weight": (cout, cout, 3, 3),
            f"{p}.out_layers.3.bias": (cout,),
        }
    )
    if cin != cout:
        keys.update({f"{p}.skip_connection.weight": (cout, cin, 1, 1), f"{p}.skip_connection.bias": (cout,)})


def _attention(keys: dict, p: str, c: int) -> None:
    keys.update(
        {
            f"{p}.norm.weight": (c,),
            f"{p}.norm.bias": (c,),
            f"{p}.qkv.weight": (3 * c, c, 1),
            f"{p}.qkv.bias": (3 * c,),
            f"{p}.proj_out.weight": (c, c, 1),
            f"{p}.proj_out.bias": (c,),
        }
    )


def fact_sheet_layout(listing: str, class_cond: bool) -> dict[str, tuple[int, ...]]:
    mc, ch, inputs, outputs = LISTINGS[listing]
    emb = 4 * mc
    keys: dict[str, tuple[int, ...]] = {
        "time_embed.0.weight": (emb, mc),
        "time_embed.0.bias": (emb,),
        "time_embed.2.weight": (emb, emb),
        "time_embed.2.bias": (emb,),
        "input_blocks.0.0.weight": (ch, 3, 3, 3),
        "input_blocks.0.0.bias": (ch,),
    }
    if class_cond:
        keys["label_emb.weight"] = (1000, emb)
    skips = [ch]
    for n, block in enumerate(_expand(inputs), start=1):
        cout = ch if block == "D" else int(re.sub(r"\D", "", block))
        _resblock(keys, f"input_blocks.{n}.0", ch, cout, emb)
        ch = cout
        if "A" in block:
            _attention(keys, f"input_blocks.{n}.1", ch)
        skips.append(ch)
    _resblock(keys, "middle_block.0", ch, ch, emb), _attention(keys, "middle_block.1", ch)
    _resblock(keys, "middle_block.2", ch, ch, emb)
    if outputs is None:  # classifier: GroupNorm, then the attention pool over an 8x8 grid
        keys.update(
            {
                "out.0.weight": (ch,),
                "out.0.bias": (ch,),
                "out.2.positional_embedding": (ch, 65),
                "out.2.qkv_proj.weight": (3 * ch, ch, 1),
                "out.2.qkv_proj.bias": (3 * ch,),
                "out.2.c_proj.weight": (1000, ch, 1),
                "out.2.c_proj.bias": (1000,),
            }
        )
        return keys
    for n, block in enumerate(_expand(outputs)):
        cout = int(re.sub(r"\D", "", block))
        _resblock(keys, f"output_blocks.{n}.0", ch + skips.pop(), cout, emb)
        ch = cout
        if "A" in block:
            _attention(keys, f"output_blocks.{n}.1", ch)
        if "U" in block:
            _resblock(keys, f"output_blocks.{n}.{2 if 'A' in block else 1}", ch, ch, emb)
    assert not skips
    keys.update({"out.0.weight": (ch,), "out.0.bias": (ch,), "out.2.weight": (6, ch, 3, 3), "out.2.bias": (6,)})
    return keys


@cache
def built_shapes(name: str) -> dict[str, tuple[int, ...]]:
    return expected_shapes(REGISTRY[name].config)


def test_every_registry_entry_is_covered():
    assert set(REGISTRY) == set(ENTRIES) | set(DIFFUSERS)


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_meta_module_has_the_released_keys_and_shapes(name):
    listing, class_cond, n_keys, params_m = ENTRIES[name]
    shapes = built_shapes(name)
    assert shapes == fact_sheet_layout(listing, class_cond)
    assert len(shapes) == n_keys
    assert round(sum(math.prod(s) for s in shapes.values()) / 1e6, 1) == params_m


@pytest.mark.parametrize("name", sorted(DIFFUSERS))
def test_diffusers_layouts_have_the_expected_size(name):
    n_keys, params_m = DIFFUSERS[name]
    shapes = built_shapes(name)
    assert len(shapes) == n_keys
    assert round(sum(math.prod(s) for s in shapes.values()) / 1e6, 1) == params_m  # file size / 4 bytes
    assert shapes["conv_in.weight"] == (128, 3, 3, 3) and shapes["conv_out.weight"] == (3, 128, 3, 3)
    assert shapes["time_embedding.linear_1.weight"] == (512, 128)
    assert shapes["mid_block.attentions.0.to_out.0.weight"][0] == shapes["mid_block.attentions.0.to_q.weight"][0]


def test_fact_sheet_spot_checks():
    s64 = built_shapes("64x64_diffusion")
    assert s64["time_embed.0.weight"] == (768, 192)
    assert "input_blocks.12.0.in_layers.0.weight" in s64  # GD issue #8
    assert s64["output_blocks.11.2.in_layers.2.weight"] == (384, 384, 3, 3)  # R+A+U@2
    assert s64["out.2.weight"] == (6, 192, 3, 3)
    for c in ("64x64_classifier", "128x128_classifier", "256x256_classifier", "512x512_classifier"):
        assert built_shapes(c)["out.2.positional_embedding"] == (512, 65)
    s512 = built_shapes("512x512_diffusion")
    assert s512["input_blocks.0.0.weight"] == (128, 3, 3, 3) and "input_blocks.20.0.in_layers.0.weight" in s512
    assert "output_blocks.20.0.in_layers.0.weight" in s512 and "output_blocks.21.0.in_layers.0.weight" not in s512
    assert built_shapes("256x256_diffusion")["label_emb.weight"] == (1000, 1024)
    assert "label_emb.weight" not in built_shapes("256x256_diffusion_uncond")


def test_registry_facts():
    r = REGISTRY
    assert r["64x64_diffusion"].schedule == "cosine" and r["64x64_diffusion"].config.attention_order == "new"
    assert all(
        e.config.attention_order == "legacy" for n, e in r.items() if e.format == "adm" and n != "64x64_diffusion"
    )
    assert r["128x128_diffusion"].config.head_channels is None and r["128x128_diffusion"].config.num_heads == 4
    scales = {n: e.classifier_scale for n, e in r.items() if e.classifier_scale is not None}
    assert scales == {
        "64x64_diffusion": 1.0,
        "128x128_diffusion": 0.5,
        "256x256_diffusion": 1.0,
        "256x256_diffusion_uncond": 10.0,
        "512x512_diffusion": 4.0,
    }
    assert {e.kind for e in r.values()} == {"prior", "conditional prior", "classifier"}
    assert r["ddpm-cifar10-32"].variance == "large" and r["ddpm-ema-church-256"].variance == "small"
    assert all(e.url.startswith("https://") and e.licence for e in r.values())
    assert len({e.file_name for e in r.values()}) == len(r)  # no two entries share a cache file


def test_checkpoints_and_denoisers_share_one_weight_file_record():
    """ModelEntry and DenoiserEntry take name, cache file name, size and digest from WeightFile: one
    rule for the cache name (filename, else the URL's, else NAME.pth) and one lookup by name or file name."""
    from guidedinv.models.registry import DENOISERS, DenoiserEntry, ModelEntry, WeightFile, lookup, lookup_denoiser

    assert all(isinstance(e, WeightFile) for e in (*REGISTRY.values(), *DENOISERS.values()))
    assert REGISTRY["64x64_diffusion"].file_name == "64x64_diffusion.pt"
    assert REGISTRY["ffhq_10m"].file_name == "ffhq_10m.pt"  # filename over the URL's diffusion_ffhq_10m.pt
    assert DENOISERS["drunet_color"].file_name == "drunet_color.pth" and DENOISERS["drunet_color"].size == 130579305
    assert DenoiserEntry("d", "dncnn", 3, 0.2, "MIT", "no url").file_name == "d.pth"
    entry = ModelEntry("m", "https://x.invalid/a/w.bin", "prior", 8, "linear", "MIT", REGISTRY["lsun_cat"].config, "t")
    assert (entry.file_name, entry.sha256, entry.size) == ("w.bin", None, None)
    assert lookup("google/ddpm-cifar10-32").name == "ddpm-cifar10-32" and lookup("lsun_cat.pt").name == "lsun_cat"
    assert lookup("dir/lsun_cat.pt") is None and lookup_denoiser("dir/drunet_color.pth") is None
    assert lookup_denoiser("drunet_color.pth").name == "drunet_color" and lookup_denoiser("lsun_cat") is None


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_inference_round_trips_for_every_layout(name):
    entry = REGISTRY[name]
    by_layout = infer_config(built_shapes(name))  # no hint: matched to the registry by layout alone
    assert by_layout.config == entry.config and by_layout.schedule == entry.schedule
    assert name in by_layout.matches
    assert infer_config(built_shapes(name), entry).config == entry.config


TINY = [
    ADMConfig(32, 1, (1, 2), (2,)),
    ADMConfig(32, 2, (1, 1, 2), (), num_classes=7, resblock_updown=False, use_scale_shift_norm=False),
    ADMConfig(64, 1, (0.5, 1, 2), (1, 4), out_channels=3, head_channels=None, num_heads=2),
    ADMConfig(32, 1, (1, 2, 2), (2,), in_channels=1, out_channels=2),
    ADMConfig(32, 3, (1, 2), (2,), kind="classifier", out_channels=10, head_channels=32, image_size=16),
    ADMConfig(
        32,
        1,
        (1, 2, 3),
        (),
        kind="classifier",
        out_channels=5,
        pool="adaptive",
        resblock_updown=False,
        head_channels=32,
    ),
    ADMConfig(32, 1, (1, 3), (2,), kind="classifier", out_channels=4, head_channels=32, image_size=8),
]


@pytest.mark.parametrize("cfg", TINY, ids=lambda c: f"{c.kind}-{c.model_channels}x{c.channel_mult}")
def test_inference_round_trips_for_small_configs(cfg):
    inferred = infer_config(expected_shapes(cfg))
    assert {f: getattr(inferred.config, f) for f in SHAPE_FIELDS} == {f: getattr(cfg, f) for f in SHAPE_FIELDS}
    assert inferred.config.learned_sigma == cfg.learned_sigma
    assert "attention_order" in inferred.assumed and inferred.matches == ()


def test_a_damaged_layout_lists_the_offending_keys():
    shapes = dict(built_shapes("ffhq_10m"))
    del shapes["input_blocks.3.0.in_layers.2.weight"]
    shapes["input_blocks.9.1.extra.weight"] = (4,)
    shapes["output_blocks.2.1.qkv.weight"] = (1, 2, 3)
    with pytest.raises(ModelError) as err:
        infer_config(shapes)
    msg = str(err.value)
    assert "input_blocks.3.0.in_layers.2.weight" in msg and "input_blocks.9.1.extra.weight" in msg
    assert "output_blocks.2.1.qkv.weight (1, 2, 3)" in msg


def test_a_foreign_state_dict_is_named_not_traced():
    with pytest.raises(ModelError, match="unknown checkpoint layout.*0.weight"):
        infer_config({"0.weight": (8, 3, 3, 3), "0.bias": (8,), "2.weight": (10, 8)})
    with pytest.raises(ModelError, match="DDPM 'simple'"):
        infer_config({"temb.dense.0.weight": (512, 128), "conv_in.weight": (128, 3, 3, 3)})


def test_meta_build_allocates_nothing():
    net = build_network(REGISTRY["512x512_diffusion"].config, "meta")
    assert all(p.is_meta for p in net.parameters()) and not list(net.buffers())
