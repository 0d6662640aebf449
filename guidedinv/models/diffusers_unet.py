"""diffusers ``UNet2DModel`` checkpoints (the google/ddpm-* models of Ho et al. 2020), through the
optional ``diffusers`` package (``pip install 'guidedinv[diffusers]'``).

What does not need diffusers lives here too: the layout's configuration, the exact key names and
shapes it implies (so ``guidedinv models info`` can check a file without diffusers), and the
renaming of the old attention keys (query/key/value/proj_attn) stored in early .bin files.

Differences from ADM worth knowing: sin-first timestep embedding dividing by half - 1
(freq_shift 1), GroupNorm eps 1e-6, asymmetric (0, 1, 0, 1) padding before the stride-2 conv,
additive time embedding, single-head attention, no learned variance.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from ..errors import ModelError

__all__ = [
    "DiffusersUNetConfig",
    "DiffusersUNet",
    "expected_shapes",
    "current_key",
    "rename_legacy_keys",
    "build_diffusers_unet",
]

ATTN_DOWN, PLAIN_DOWN, ATTN_UP, PLAIN_UP = "AttnDownBlock2D", "DownBlock2D", "AttnUpBlock2D", "UpBlock2D"
LEGACY_ATTENTION_NAMES = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


@dataclass(frozen=True)
class DiffusersUNetConfig:
    """The UNet2DModel arguments of the DDPM checkpoints. The last five are not visible in a state
    dict; the defaults are those of all three google/ddpm-* models."""

    block_out_channels: tuple[int, ...]
    layers_per_block: int
    down_block_types: tuple[str, ...]
    up_block_types: tuple[str, ...]
    in_channels: int = 3
    out_channels: int = 3
    sample_size: int | None = None
    norm_eps: float = 1e-6
    freq_shift: int = 1
    flip_sin_to_cos: bool = False
    downsample_padding: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "block_out_channels", tuple(self.block_out_channels))
        object.__setattr__(self, "down_block_types", tuple(self.down_block_types))
        object.__setattr__(self, "up_block_types", tuple(self.up_block_types))
        n = len(self.block_out_channels)
        if len(self.down_block_types) != n or len(self.up_block_types) != n:
            raise ValueError("block_out_channels, down_block_types and up_block_types must have equal lengths")
        if set(self.down_block_types) - {ATTN_DOWN, PLAIN_DOWN} or set(self.up_block_types) - {ATTN_UP, PLAIN_UP}:
            raise ValueError("only (Attn)DownBlock2D / (Attn)UpBlock2D blocks are supported")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DiffusersUNetConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def unet_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``diffusers.UNet2DModel``."""
        kw = self.to_dict()
        kw.update(attention_head_dim=None, norm_num_groups=32, act_fn="silu", time_embedding_type="positional")
        kw["block_out_channels"] = tuple(self.block_out_channels)
        return kw


def expected_shapes(cfg: DiffusersUNetConfig) -> dict[str, tuple[int, ...]]:
    """Every state-dict key of ``UNet2DModel(cfg)`` with its shape, without diffusers."""
    shapes: dict[str, tuple[int, ...]] = {}
    c0 = cfg.block_out_channels[0]
    emb = 4 * c0

    def conv(p: str, cin: int, cout: int, k: int) -> None:
        shapes[f"{p}.weight"], shapes[f"{p}.bias"] = (cout, cin, k, k), (cout,)

    def vec(p: str, cin: int, cout: int | None = None) -> None:  # Linear (cout given) or GroupNorm
        shapes[f"{p}.weight"] = (cin,) if cout is None else (cout, cin)
        shapes[f"{p}.bias"] = (cin if cout is None else cout,)

    def resnet(p: str, cin: int, cout: int) -> None:
        vec(f"{p}.norm1", cin), conv(f"{p}.conv1", cin, cout, 3), vec(f"{p}.time_emb_proj", emb, cout)
        vec(f"{p}.norm2", cout), conv(f"{p}.conv2", cout, cout, 3)
        if cin != cout:
            conv(f"{p}.conv_shortcut", cin, cout, 1)

    def attn(p: str, c: int) -> None:
        vec(f"{p}.group_norm", c)
        for name in ("to_q", "to_k", "to_v", "to_out.0"):
            vec(f"{p}.{name}", c, c)

    conv("conv_in", cfg.in_channels, c0, 3)
    vec("time_embedding.linear_1", c0, emb), vec("time_embedding.linear_2", emb, emb)
    skips, ch, last = [c0], c0, len(cfg.block_out_channels) - 1
    for i, (kind, out) in enumerate(zip(cfg.down_block_types, cfg.block_out_channels, strict=True)):
        for j in range(cfg.layers_per_block):
            resnet(f"down_blocks.{i}.resnets.{j}", ch, out)
            ch = out
            if kind == ATTN_DOWN:
                attn(f"down_blocks.{i}.attentions.{j}", out)
            skips.append(out)
        if i != last:
            conv(f"down_blocks.{i}.downsamplers.0.conv", out, out, 3)
            skips.append(out)
    resnet("mid_block.resnets.0", ch, ch), attn("mid_block.attentions.0", ch), resnet("mid_block.resnets.1", ch, ch)
    for i, (kind, out) in enumerate(zip(cfg.up_block_types, reversed(cfg.block_out_channels), strict=True)):
        for j in range(cfg.layers_per_block + 1):
            resnet(f"up_blocks.{i}.resnets.{j}", ch + skips.pop(), out)
            ch = out
            if kind == ATTN_UP:
                attn(f"up_blocks.{i}.attentions.{j}", out)
        if i != last:
            conv(f"up_blocks.{i}.upsamplers.0.conv", out, out, 3)
    vec("conv_norm_out", c0), conv("conv_out", c0, cfg.out_channels, 3)
    return shapes


def current_key(key: str) -> str:
    """The current name of a key: old attention names (``attentions.j.query`` ...) become ``to_q`` ...."""
    parts = key.split(".")
    if ".attentions." in f".{key}" and len(parts) >= 2 and parts[-2] in LEGACY_ATTENTION_NAMES:
        return ".".join(parts[:-2] + [LEGACY_ATTENTION_NAMES[parts[-2]], parts[-1]])
    return key


def rename_legacy_keys(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with every key under its current name (see :func:`current_key`)."""
    return {current_key(k): v for k, v in state.items()}


class DiffusersUNet(nn.Module):
    """``net(x, timesteps)`` -> eps for a diffusers UNet2DModel (reachable as ``.unet``)."""

    def __init__(self, unet: nn.Module, config: DiffusersUNetConfig) -> None:
        super().__init__()
        self.unet = unet
        self.config = config

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        dtype = next(self.unet.parameters()).dtype
        return self.unet(x.to(dtype), timesteps).sample.to(x.dtype)


def build_diffusers_unet(cfg: DiffusersUNetConfig) -> DiffusersUNet:
    """An empty (meta-device) UNet2DModel for ``cfg``; raises ModelError without diffusers."""
    try:
        from diffusers import UNet2DModel
    except ImportError as exc:
        raise ModelError(
            "this checkpoint is a diffusers UNet2DModel; loading it needs the optional diffusers package: "
            "pip install 'guidedinv[diffusers]'"
        ) from exc
    with torch.device("meta"):
        return DiffusersUNet(UNet2DModel(**cfg.unet_kwargs()), cfg)
