"""The building blocks of the ADM networks (see :mod:`guidedinv.models.adm`), with the numerics of
guided-diffusion for the same weights:

* timestep embedding: cos first, then sin, frequencies exp(-ln(10000) i / half);
* GroupNorm (32 groups, eps 1e-5) computed in float32 (float64 stays float64) and cast back;
* scale-shift conditioning: the first half of the embedding projection is the scale, h = GN(h)(1 + s) + b;
* up/down ResBlocks resample with parameterless nearest x2 / 2x2 average pooling;
* attention qkv channel order: "legacy" = per head [q, k, v]; "new" = [all q | all k | all v];
  the classifier's attention pool always uses the new order.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "AttentionOrder",
    "timestep_embedding",
    "GroupNorm32",
    "Downsample",
    "Upsample",
    "ResBlock",
    "split_qkv",
    "attention",
    "AttentionBlock",
    "AttentionPool2d",
    "EmbedSequential",
    "zero_init",
]

AttentionOrder = Literal["legacy", "new"]


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding (B,) -> (B, dim): [cos(t f_i), sin(t f_i)], f_i = max_period^(-i/half).

    Cos first and division by half (not half - 1) are ADM's convention; t may be fractional.
    An odd ``dim`` gets a trailing zero column.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class GroupNorm32(nn.GroupNorm):
    """GroupNorm(32 groups, eps 1e-5) computed in at least float32, whatever the activations' dtype."""

    def __init__(self, channels: int) -> None:
        super().__init__(32, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = torch.promote_types(x.dtype, torch.float32)
        w, b = self.weight.to(dtype), self.bias.to(dtype)
        return F.group_norm(x.to(dtype), self.num_groups, w, b, self.eps).to(x.dtype)


def zero_init(module: nn.Module) -> nn.Module:
    """Zero-initialise (as the reference does for every residual branch's last layer)."""
    for p in module.parameters():
        p.detach().zero_()
    return module


class Downsample(nn.Module):
    """x2 downsampling: 3x3 stride-2 conv (key ``op``) or, without conv, 2x2 average pooling."""

    def __init__(self, channels: int, use_conv: bool) -> None:
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1) if use_conv else nn.AvgPool2d(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """x2 nearest-neighbour upsampling, then an optional 3x3 conv (key ``conv``)."""

    def __init__(self, channels: int, use_conv: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1) if use_conv else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return x if self.conv is None else self.conv(x)


class ResBlock(nn.Module):
    """Residual block conditioned on the timestep embedding; ``resample`` = "up"/"down" makes it the
    level's resampler (nearest x2 / 2x2 average pooling of both branches, no parameters)."""

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        out_channels: int | None = None,
        scale_shift: bool = True,
        dropout: float = 0.0,
        resample: Literal["up", "down"] | None = None,
    ) -> None:
        super().__init__()
        out_channels = out_channels or channels
        self.scale_shift = scale_shift
        self.in_layers = nn.Sequential(
            GroupNorm32(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )
        if resample == "up":
            self.resample: nn.Module | None = Upsample(channels, use_conv=False)
        elif resample == "down":
            self.resample = Downsample(channels, use_conv=False)
        else:
            self.resample = None
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, (2 if scale_shift else 1) * out_channels))
        self.out_layers = nn.Sequential(
            GroupNorm32(out_channels),
            nn.SiLU(),
            nn.Dropout(dropout),
            zero_init(nn.Conv2d(out_channels, out_channels, 3, padding=1)),
        )
        self.skip_connection = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.resample is not None:
            h = self.in_layers[1](self.in_layers[0](x))
            h, x = self.resample(h), self.resample(x)
            h = self.in_layers[2](h)
        else:
            h = self.in_layers(x)
        e = self.emb_layers(emb).to(h.dtype)[..., None, None]
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            for layer in self.out_layers[1:]:
                h = layer(h)
        else:
            h = self.out_layers(h + e)
        return self.skip_connection(x) + h


def split_qkv(qkv: torch.Tensor, heads: int, order: AttentionOrder) -> tuple[torch.Tensor, ...]:
    """(B, 3C, T) -> q, k, v each (B, heads, T, C/heads).

    legacy: channels grouped per head as [q k v] of width ch; new: [q (all heads) | k | v].
    """
    b, width, t = qkv.shape
    ch = width // (3 * heads)
    if order == "legacy":
        parts = qkv.reshape(b, heads, 3, ch, t).unbind(2)
    else:
        parts = qkv.reshape(b, 3, heads, ch, t).unbind(1)
    return tuple(p.transpose(-1, -2) for p in parts)


def attention(qkv: torch.Tensor, heads: int, order: AttentionOrder) -> torch.Tensor:
    """softmax(q k^T / sqrt(ch)) v per head, heads concatenated back head-major: (B, 3C, T) -> (B, C, T).

    Uses fused scaled-dot-product attention (the same math as the reference's einsum with
    ch^-1/4 on q and k; memory stays linear in T on backends that support it).
    """
    q, k, v = split_qkv(qkv, heads, order)
    out = F.scaled_dot_product_attention(q, k, v)
    b, _, t, _ = out.shape
    return out.transpose(-1, -2).reshape(b, -1, t)


class AttentionBlock(nn.Module):
    """Spatial self-attention with a residual: x + proj_out(attn(qkv(norm(x))))."""

    def __init__(self, channels: int, heads: int, order: AttentionOrder) -> None:
        super().__init__()
        self.heads, self.order = heads, order
        self.norm = GroupNorm32(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = zero_init(nn.Conv1d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        h = self.proj_out(attention(self.qkv(self.norm(x)), self.heads, self.order))
        return (x + h).reshape(b, c, *spatial)


class AttentionPool2d(nn.Module):
    """CLIP-style pooling: the spatial mean is prepended as token 0, a learned positional embedding
    is added, one multi-head attention layer (new qkv order) runs, token 0 is projected to logits."""

    def __init__(self, grid: int, channels: int, head_channels: int, out_channels: int) -> None:
        super().__init__()
        self.grid = grid
        self.positional_embedding = nn.Parameter(torch.randn(channels, grid * grid + 1) / channels**0.5)
        self.qkv_proj = nn.Conv1d(channels, 3 * channels, 1)
        self.c_proj = nn.Conv1d(channels, out_channels, 1)
        self.heads = channels // head_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *spatial = x.shape
        if list(spatial) != [self.grid, self.grid]:
            raise ValueError(
                f"this classifier's attention pool expects {self.grid}x{self.grid} features "
                f"(its training image size); got {spatial[0]}x{spatial[1]}"
            )
        x = x.reshape(b, c, -1)
        x = torch.cat([x.mean(dim=-1, keepdim=True), x], dim=-1)
        x = x + self.positional_embedding[None].to(x.dtype)
        x = self.c_proj(attention(self.qkv_proj(x), self.heads, "new"))
        return x[:, :, 0]


class EmbedSequential(nn.Sequential):
    """A sequence of layers; ResBlocks also receive the timestep embedding."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x
