"""Infer a network's full configuration from its state dict, so loading needs no flags.

The shapes tell the layout: channels, channel multipliers, res blocks per level, where attention
sits (as downsample factors), class-conditional or not, learned sigma, ResBlock or conv
resampling, scale-shift conditioning, the classifier's depth and pool. They cannot tell the qkv
channel order, the number of heads or the noise schedule; those come, in order of preference, from
the file's own guidedinv metadata, the registry entry it was loaded by, a registry entry with the
same layout, or guided-diffusion's defaults, and :class:`Inferred` says which fields were assumed
and which are plain guesses. Model flags (:mod:`guidedinv.models.flags`) replace the guesses.

Every inference is checked by building the implied network on the meta device and comparing all
key names and shapes; a file that matches no known layout gets a ModelError naming the first
missing, unexpected or mis-shaped keys.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import ModelError
from . import diffusers_unet as du
from .adm import SHAPE_FIELDS, ADMConfig, build_network
from .registry import REGISTRY, ModelEntry

__all__ = ["Inferred", "infer_config", "expected_shapes", "check_shapes", "detect_format"]

Shapes = Mapping[str, Sequence[int]]


@dataclass(frozen=True)
class Inferred:
    """An inferred configuration. format: "adm" or "diffusers"; prediction: what the network outputs
    ("eps" for every public checkpoint; our own trained priors say "v" in their metadata);
    null_label: the label index meaning "no class" (classifier-free guidance), if the network has
    one; train_crop: the crop size (px) of guidedinv's training, where the file records it (it sets
    the default inference tiling, guidedinv.tiling); tile: the tile side the file's card chose by
    validation, which overrides the one its crop implies; assumed: fields not visible in the shapes and
    where their values came from; matches: registry entries with this exact layout; recorded_by:
    the source that knows the hidden fields (the file's metadata, the registry entry it was asked
    for by name), None where they are a layout match's or guesses; guessed: what is still a guess
    ("attention heads", "attention order", "noise schedule"); flags / flag_sources: the model flags
    applied (guidedinv.models.flags) and where each came from."""

    format: str
    config: ADMConfig | du.DiffusersUNetConfig
    schedule: str
    assumed: dict[str, str] = field(default_factory=dict)
    matches: tuple[str, ...] = ()
    prediction: str = "eps"
    null_label: int | None = None
    train_crop: int | None = None
    tile: int | None = None
    recorded_by: str | None = None
    guessed: tuple[str, ...] = ()
    flags: dict[str, Any] = field(default_factory=dict)
    flag_sources: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        kind = self.config.kind if isinstance(self.config, ADMConfig) else "unet"
        return {
            "format": self.format,
            "kind": kind,
            "schedule": self.schedule,
            "prediction": self.prediction,
            "null_label": self.null_label,
            "train_crop": self.train_crop,
            "tile": self.tile,
            "learned_sigma": bool(getattr(self.config, "learned_sigma", False)),
            "config": self.config.to_dict(),
            "assumed": dict(self.assumed),
            "registry_matches": list(self.matches),
            "recorded_by": self.recorded_by,
            "guessed": list(self.guessed),
            "flags": {k: {"value": v, "from": self.flag_sources.get(k, "")} for k, v in self.flags.items()},
        }


def expected_shapes(cfg: ADMConfig | du.DiffusersUNetConfig) -> dict[str, tuple[int, ...]]:
    """Every state-dict key of the network ``cfg`` describes, with its shape (nothing allocated)."""
    if isinstance(cfg, du.DiffusersUNetConfig):
        return du.expected_shapes(cfg)
    return {k: tuple(v.shape) for k, v in build_network(cfg, "meta").state_dict().items()}


def check_shapes(shapes: Shapes, expected: Mapping[str, Sequence[int]], what: str, limit: int = 5) -> None:
    """Raise ModelError listing the first missing / unexpected / mis-shaped keys, if any."""
    problems = _differences(shapes, expected, limit)
    if problems:
        raise ModelError(f"the state dict does not match {what}: {problems}")


def _differences(shapes: Shapes, expected: Mapping[str, Sequence[int]], limit: int = 5) -> str:
    missing = [k for k in expected if k not in shapes]
    unexpected = [k for k in shapes if k not in expected]
    wrong = [
        f"{k} {tuple(shapes[k])} != {tuple(expected[k])}"
        for k in expected
        if k in shapes and tuple(shapes[k]) != tuple(expected[k])
    ]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", wrong)):
        if items:
            more = f" and {len(items) - limit} more" if len(items) > limit else ""
            parts.append(f"{len(items)} {label} ({', '.join(items[:limit])}{more})")
    return "; ".join(parts)


def detect_format(keys: Sequence[str] | Mapping[str, Any]) -> str:
    """ "adm-unet", "adm-classifier" or "diffusers"; ModelError for anything else."""
    keys = set(keys)
    if {"time_embed.0.weight", "input_blocks.0.0.weight"} <= keys:
        return (
            "adm-unet"
            if "out.2.weight" in keys and any(k.startswith("output_blocks.") for k in keys)
            else "adm-classifier"
        )
    if {"conv_in.weight", "time_embedding.linear_1.weight"} <= keys:
        return "diffusers"
    if "temb.dense.0.weight" in keys:
        raise ModelError(
            "this is a DDPM 'simple' (pytorch_diffusion) checkpoint, e.g. SDEdit's celeba_hq.ckpt; that layout "
            "is not supported (use the diffusers conversion, e.g. google/ddpm-ema-celebahq-256)"
        )
    first = ", ".join(sorted(keys)[:8]) or "no tensors"
    raise ModelError(
        f"unknown checkpoint layout (not an ADM UNet, ADM classifier or diffusers UNet2DModel); first keys: {first}"
    )


def infer_config(
    shapes: Shapes, entry: ModelEntry | None = None, metadata: Mapping[str, Any] | None = None
) -> Inferred:
    """The configuration a state dict (key -> shape) implies, checked against its full layout.

    entry: the registry entry the file was asked for by name, if any; metadata: the record of a
    file exported by guidedinv's training (keys format, config, schedule, prediction, null_label),
    as parsed by :func:`guidedinv.models.load.open_checkpoint`, if any.
    """
    try:
        return _infer(shapes, entry, metadata)
    except ModelError:
        raise
    except (ValueError, KeyError, IndexError, TypeError, ArithmeticError, RuntimeError) as exc:  # shapes no network can have
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"the state dict does not describe a network guidedinv can build ({first})") from exc


def _infer(shapes: Shapes, entry: ModelEntry | None, metadata: Mapping[str, Any] | None) -> Inferred:
    shapes = {k: tuple(v) for k, v in shapes.items()}
    fmt = detect_format(shapes)
    if metadata and "config" in metadata:
        cfg = _config_from_dict(metadata.get("format", "adm"), metadata["config"])
        check_shapes(shapes, expected_shapes(cfg), "the configuration recorded in the file")
        matches = _registry_matches(cfg)
        schedule, prediction = str(metadata.get("schedule", "linear")), str(metadata.get("prediction", "eps"))
        null, crop = metadata.get("null_label"), metadata.get("train_crop")
        return Inferred(_family(cfg), cfg, schedule, {"all": "file metadata"}, matches, prediction, null, crop,
                        tile=metadata.get("tile"), recorded_by="the file's guidedinv metadata")
    if fmt == "diffusers":
        shapes = du.rename_legacy_keys(shapes)
        base = _parse_diffusers(shapes)
    elif fmt == "adm-unet":
        base = _parse_unet(shapes)
    else:
        return _complete_classifier(shapes, entry)
    return _complete(base, shapes, entry)


def _family(cfg: ADMConfig | du.DiffusersUNetConfig) -> str:
    return "diffusers" if isinstance(cfg, du.DiffusersUNetConfig) else "adm"


def _config_from_dict(fmt: str, d: Mapping[str, Any]) -> ADMConfig | du.DiffusersUNetConfig:
    try:
        return du.DiffusersUNetConfig.from_dict(dict(d)) if fmt == "diffusers" else ADMConfig.from_dict(dict(d))
    except (TypeError, ValueError, KeyError) as exc:
        raise ModelError(f"the configuration recorded in the file is invalid: {exc}") from exc


def _same_layout(a: ADMConfig | du.DiffusersUNetConfig, b: ADMConfig | du.DiffusersUNetConfig) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, du.DiffusersUNetConfig):
        names = (
            "block_out_channels",
            "layers_per_block",
            "down_block_types",
            "up_block_types",
            "in_channels",
            "out_channels",
        )
    else:
        pool_fixes_size = a.kind == "classifier" and a.pool == "attention"
        names = SHAPE_FIELDS + (("image_size",) if pool_fixes_size else ())
    return all(getattr(a, n) == getattr(b, n) for n in names)


def _registry_matches(cfg: ADMConfig | du.DiffusersUNetConfig) -> tuple[str, ...]:
    return tuple(name for name, e in REGISTRY.items() if _same_layout(e.config, cfg))


def _complete(base: ADMConfig | du.DiffusersUNetConfig, shapes: Shapes, entry: ModelEntry | None) -> Inferred:
    """Fill the fields shapes cannot show (registry entry, then a layout match, then defaults) and verify."""
    matches = _registry_matches(base)
    source = entry if entry is not None and _same_layout(entry.config, base) else None
    if source is None and matches:
        source = REGISTRY[matches[0]]
    if isinstance(base, ADMConfig):
        hidden = ("attention_order", "num_heads", "head_channels", "num_heads_upsample", "image_size")
    else:
        hidden = ("sample_size", "norm_eps", "freq_shift", "flip_sin_to_cos", "downsample_padding")
    recorded_by, guessed = None, ()
    if source is not None:
        cfg = replace(base, **{n: getattr(source.config, n) for n in hidden})
        origin, schedule = f"registry entry {source.name}", source.schedule
        if source is entry:
            recorded_by = origin
        else:
            origin += " (same layout)"
    else:
        cfg = _default_heads(base) if isinstance(base, ADMConfig) else base
        origin, schedule = "default", "linear"
        if isinstance(cfg, ADMConfig):  # an ADM network always has attention (its middle block)
            guessed = ("attention heads", "attention order") + (("noise schedule",) if cfg.kind == "unet" else ())
    assumed = {n: origin for n in hidden}
    assumed["schedule"] = origin
    what = f"the {_family(cfg)} layout inferred from it ({_summary(cfg)})"
    check_shapes(shapes, expected_shapes(cfg), what)
    return Inferred(_family(cfg), cfg, schedule, assumed, matches, recorded_by=recorded_by, guessed=guessed)


def _default_heads(cfg: ADMConfig) -> ADMConfig:
    """guided-diffusion's usual choice, 64 channels per head; where widths do not allow it, its
    script default of 4 heads (a UNet) or the widest head that divides them (the classifier's pool
    needs a head width)."""
    widths = {cfg.channels(lvl) for lvl in range(cfg.levels) if 2**lvl in cfg.attention_ds}
    widths.add(cfg.channels(cfg.levels - 1))
    if all(w % 64 == 0 for w in widths):
        return replace(cfg, head_channels=64)
    if cfg.kind == "classifier":
        return replace(cfg, head_channels=math.gcd(64, *widths))
    return replace(cfg, head_channels=None, num_heads=4 if all(w % 4 == 0 for w in widths) else 1)


def _summary(cfg: ADMConfig | du.DiffusersUNetConfig) -> str:
    if isinstance(cfg, du.DiffusersUNetConfig):
        return f"channels {list(cfg.block_out_channels)}, {cfg.layers_per_block} layers per block"
    return (
        f"{cfg.kind}, {cfg.model_channels} channels x {list(cfg.channel_mult)}, {cfg.num_res_blocks} res blocks, "
        f"attention at ds {list(cfg.attention_ds)}"
    )


def _entries(shapes: Shapes, prefix: str) -> dict[int, set[str]]:
    """{N: sub-keys} of ``prefix.N.*``."""
    out: dict[int, set[str]] = {}
    pattern = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.(.+)$")
    for key in shapes:
        m = pattern.match(key)
        if m:
            out.setdefault(int(m.group(1)), set()).add(m.group(2))
    return out


def _parse_unet(shapes: Shapes) -> ADMConfig:
    mc = shapes["time_embed.0.weight"][1]
    outs = _entries(shapes, "output_blocks")
    n_out = len(outs)
    if sorted(outs) != list(range(n_out)) or n_out == 0:
        raise ModelError("output_blocks are not numbered 0..N-1; not an ADM UNet state dict")
    ups = {i: sub for i, sub in outs.items() if any(re.match(r"^[12]\.(in_layers|conv)\.", s) for s in sub)}
    per_level = min(ups) + 1 if ups else n_out
    levels = n_out // per_level
    if per_level < 2 or n_out % per_level:
        raise ModelError(f"cannot split {n_out} output blocks into levels; not an ADM UNet state dict")
    # one level has no resampler to tell; ResBlock resampling is the default then
    updown = not ups or any(s.startswith(("1.in_layers", "2.in_layers")) for s in ups[per_level - 1])
    mult, attn = [], []
    for k in range(levels):
        level = levels - 1 - k
        first = k * per_level
        mult.append(_get(shapes, f"output_blocks.{first}.0.out_layers.3.weight")[0] / mc)
        if "1.qkv.weight" in outs[first]:
            attn.append(2**level)
    res = _get(shapes, "input_blocks.1.0.emb_layers.1.weight")[0]
    return ADMConfig(
        model_channels=mc,
        num_res_blocks=per_level - 1,
        channel_mult=tuple(reversed(mult)),
        attention_ds=tuple(attn),
        in_channels=_get(shapes, "input_blocks.0.0.weight")[1],
        out_channels=_get(shapes, "out.2.weight")[0],
        num_classes=shapes.get("label_emb.weight", (0,))[0],
        use_scale_shift_norm=res == 2 * _get(shapes, "input_blocks.1.0.out_layers.3.weight")[0],
        resblock_updown=updown,
    )


def _get(shapes: Shapes, key: str) -> Sequence[int]:
    if key not in shapes:
        raise ModelError(f"key {key} is missing; the state dict is not a complete ADM network")
    return shapes[key]


def _classifier_candidates(shapes: Shapes) -> list[ADMConfig]:
    """Every (levels, res blocks) split of the input blocks that fits; deepest first."""
    mc = _get(shapes, "time_embed.0.weight")[1]
    ins = _entries(shapes, "input_blocks")
    n_in = len(ins)
    if "out.2.positional_embedding" in shapes:
        width, tokens = _get(shapes, "out.2.positional_embedding")
        grid = math.isqrt(tokens - 1)
        pool, out_ch, head = "attention", _get(shapes, "out.2.c_proj.weight")[0], 64
    elif "out.3.weight" in shapes:
        pool, out_ch, grid, head = "adaptive", shapes["out.3.weight"][0], 0, 64
    else:
        raise ModelError("classifier head not recognised (expected out.2.positional_embedding or out.3.weight)")
    res = _get(shapes, "input_blocks.1.0.emb_layers.1.weight")[0]
    scale_shift = res == 2 * _get(shapes, "input_blocks.1.0.out_layers.3.weight")[0]
    found = []
    for levels in range(n_in // 2, 0, -1):
        if n_in % levels or n_in // levels < 2:
            continue
        per_level = n_in // levels
        mult, attn = [], []
        for level in range(levels):
            first = 1 + level * per_level
            key = f"input_blocks.{first}.0.out_layers.3.weight"
            if key not in shapes:
                break
            mult.append(shapes[key][0] / mc)
            if "1.qkv.weight" in ins.get(first, ()):
                attn.append(2**level)
        else:
            down = ins.get(per_level, set())
            found.append(
                ADMConfig(
                    model_channels=mc,
                    num_res_blocks=per_level - 1,
                    channel_mult=tuple(mult),
                    attention_ds=tuple(attn),
                    kind="classifier",
                    in_channels=_get(shapes, "input_blocks.0.0.weight")[1],
                    out_channels=out_ch,
                    use_scale_shift_norm=scale_shift,
                    resblock_updown=levels == 1 or "0.op.weight" not in down,
                    pool=pool,
                    head_channels=head,
                    image_size=grid * 2 ** (levels - 1) if pool == "attention" else None,
                )
            )
    return found


def _complete_classifier(shapes: Shapes, entry: ModelEntry | None) -> Inferred:
    candidates = _classifier_candidates(shapes)
    if not candidates:
        raise ModelError("cannot split the classifier's input blocks into levels; not an ADM classifier state dict")
    errors = []
    for base in candidates:
        try:
            return _complete(base, shapes, entry)
        except ModelError as exc:
            errors.append(str(exc))
    raise ModelError(min(errors, key=len))


def _parse_diffusers(shapes: Shapes) -> du.DiffusersUNetConfig:
    downs, ups = _entries(shapes, "down_blocks"), _entries(shapes, "up_blocks")
    n = len(downs)
    if n == 0 or len(ups) != n:
        raise ModelError("diffusers UNet2DModel state dict with unequal down and up blocks")
    channels = tuple(_get(shapes, f"down_blocks.{i}.resnets.0.conv1.weight")[0] for i in range(n))
    layers = len({s.split(".")[1] for s in downs[0] if s.startswith("resnets.")})
    return du.DiffusersUNetConfig(
        block_out_channels=channels,
        layers_per_block=layers,
        down_block_types=tuple(
            du.ATTN_DOWN if any(s.startswith("attentions.") for s in downs[i]) else du.PLAIN_DOWN for i in range(n)
        ),
        up_block_types=tuple(
            du.ATTN_UP if any(s.startswith("attentions.") for s in ups[i]) else du.PLAIN_UP for i in range(n)
        ),
        in_channels=_get(shapes, "conv_in.weight")[1],
        out_channels=_get(shapes, "conv_out.weight")[0],
    )
