"""SCUNet (Zhang et al., "Practical blind image denoising via Swin-Conv-UNet and data synthesis",
Machine Intelligence Research 2023), written here from the paper: DRUNet's four-scale UNet (2x2 stride-2
convolutions down, 2x2 transposed convolutions up, additive skips, no biases outside the blocks) whose
blocks are Swin-Conv blocks: a 1x1 convolution splits the channels in half, one half goes through a
residual conv-ReLU-conv, the other through a Swin transformer block (LayerNorm, window attention on
8 x 8 windows with a learned relative-position bias, alternately shifted by 4 px with the wrapped
pairs masked; LayerNorm, a 4x MLP with GELU), and a second 1x1 convolution merges them, plus the input.
Blind: no noise-level input; it outputs the clean image.

Key names and shapes are those of KAIR's released files (``m_head.0``, ``m_down1..3``, ``m_body``,
``m_up3..1``, ``m_tail.0``; blocks ``conv1_1``, ``conv1_2``, ``conv_block``, ``trans_block.ln1`` /
``msa.embedding_layer`` / ``msa.relative_position_params`` (heads, 2w-1, 2w-1) / ``msa.linear`` /
``ln2`` / ``mlp``). The released colour models: width 64, 4 blocks per stage, 32 channels per head.
A block whose stage resolution at training (256 px crops) is no larger than the window never shifts.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn

from ...errors import ModelError
from .drunet import unet_levels

__all__ = ["SCUNet", "WindowAttention", "scunet_config", "STAGES"]

STAGES = ("m_down1", "m_down2", "m_down3", "m_body", "m_up3", "m_up2", "m_up1")
TRAIN_CROP = 256  # the released models' training crop: it decides which blocks may shift


class WindowAttention(nn.Module):
    """Multi-head self-attention inside non-overlapping ``window`` x ``window`` windows of (B, H, W, C);
    ``shifted``: the image is rolled by window // 2 first (and back after), pairs that the roll
    brought together across the border are masked."""

    def __init__(self, dim: int, head_dim: int, window: int, shifted: bool) -> None:
        super().__init__()
        self.heads, self.head_dim, self.window, self.shifted = dim // head_dim, head_dim, window, shifted
        self.embedding_layer = nn.Linear(dim, 3 * dim)
        self.relative_position_params = nn.Parameter(torch.zeros(self.heads, 2 * window - 1, 2 * window - 1))
        self.linear = nn.Linear(dim, dim)
        ij = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij"), -1).view(-1, 2)
        self.register_buffer("offsets", ij[:, None, :] - ij[None, :, :] + window - 1, persistent=False)

    def _mask(self, rows: int, cols: int, device: torch.device) -> torch.Tensor:
        """(1, 1, windows, P, P): True where query and key come from opposite sides of the roll's seam."""
        p = self.window
        s = p - p // 2
        mask = torch.zeros(rows, cols, p, p, p, p, dtype=torch.bool, device=device)
        mask[-1, :, :s, :, s:, :] = mask[-1, :, s:, :, :s, :] = True  # last window row: top vs bottom part
        mask[:, -1, :, :s, :, s:] = mask[:, -1, :, s:, :, :s] = True  # last window column: left vs right part
        return mask.view(1, 1, rows * cols, p * p, p * p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p, half = self.window, self.window // 2
        if self.shifted:
            x = torch.roll(x, (-half, -half), (1, 2))
        b, h, w, c = x.shape
        rows, cols = h // p, w // p
        windows = x.view(b, rows, p, cols, p, c).transpose(2, 3).reshape(b, rows * cols, p * p, c)
        qkv = self.embedding_layer(windows).view(b, rows * cols, p * p, 3 * self.heads, self.head_dim)
        q, k, v = qkv.permute(3, 0, 1, 2, 4).chunk(3, dim=0)  # each (heads, B, windows, P, head_dim)
        bias = self.relative_position_params[:, self.offsets[..., 0], self.offsets[..., 1]]
        sim = q @ k.transpose(-1, -2) * self.head_dim**-0.5 + bias[:, None, None]
        if self.shifted:
            sim = sim.masked_fill(self._mask(rows, cols, x.device), float("-inf"))
        out = (sim.softmax(-1) @ v).permute(1, 2, 3, 0, 4).reshape(b, rows * cols, p * p, c)
        out = self.linear(out).view(b, rows, cols, p, p, c).transpose(2, 3).reshape(b, h, w, c)
        return torch.roll(out, (half, half), (1, 2)) if self.shifted else out


class SwinBlock(nn.Module):
    def __init__(self, dim: int, head_dim: int, window: int, shifted: bool) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.msa = WindowAttention(dim, head_dim, window, shifted)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.msa(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class SwinConvBlock(nn.Module):
    def __init__(self, half: int, head_dim: int, window: int, shifted: bool) -> None:
        super().__init__()
        self.half = half
        self.conv1_1 = nn.Conv2d(2 * half, 2 * half, 1)
        self.conv1_2 = nn.Conv2d(2 * half, 2 * half, 1)
        self.conv_block = nn.Sequential(nn.Conv2d(half, half, 3, padding=1, bias=False), nn.ReLU(),
                                        nn.Conv2d(half, half, 3, padding=1, bias=False))
        self.trans_block = SwinBlock(half, head_dim, window, shifted)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv, trans = self.conv1_1(x).split(self.half, dim=1)
        conv = conv + self.conv_block(conv)
        trans = self.trans_block(trans.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return x + self.conv1_2(torch.cat([conv, trans], 1))


class SCUNet(nn.Module):
    """channels: image channels; dim: width of the top level; config: blocks per stage (STAGES order);
    forward(z (B, C, H, W), H and W multiples of 8 x window, sigma ignored) -> denoised z."""

    def __init__(self, channels: int = 3, dim: int = 64, config: tuple[int, ...] = (4,) * 7, head_dim: int = 32,
                 window: int = 8) -> None:
        super().__init__()
        self.channels, self.dim, self.config, self.head_dim, self.window = channels, dim, tuple(config), head_dim, window
        self.multiple = 8 * window

        def blocks(stage: int, width: int, scale: int) -> list[nn.Module]:
            small = TRAIN_CROP // scale <= window
            return [SwinConvBlock(width // 2, head_dim, window, shifted=bool(i % 2) and not small) for i in range(config[stage])]

        self.m_head = nn.Sequential(nn.Conv2d(channels, dim, 3, padding=1, bias=False))
        for i, (width, scale) in enumerate(((dim, 1), (2 * dim, 2), (4 * dim, 4))):
            setattr(self, f"m_down{i + 1}", nn.Sequential(*blocks(i, width, scale),
                                                          nn.Conv2d(width, 2 * width, 2, stride=2, bias=False)))
            setattr(self, f"m_up{i + 1}", nn.Sequential(nn.ConvTranspose2d(2 * width, width, 2, stride=2, bias=False),
                                                        *blocks(6 - i, width, scale)))
        self.m_body = nn.Sequential(*blocks(3, 8 * dim, 8))
        self.m_tail = nn.Sequential(nn.Conv2d(dim, channels, 3, padding=1, bias=False))

    def forward(self, z: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
        return unet_levels(self, self.m_head(z))


def scunet_config(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, object]:
    """channels, dim, config (blocks per stage), head_dim and window from a state dict's shapes."""
    try:
        dim, channels = shapes["m_head.0.weight"][:2]
        rel = shapes["m_down1.0.trans_block.msa.relative_position_params"]
    except KeyError as exc:
        raise ModelError(f"not a SCUNet state dict: no {exc.args[0]}") from None
    config = tuple(len({m.group(1) for k in shapes if (m := re.fullmatch(rf"{s}\.(\d+)\.conv1_1\.weight", k))}) for s in STAGES)
    if (dim // 2) % rel[0] or rel[1] % 2 == 0:
        raise ModelError(f"SCUNet relative position table {tuple(rel)} does not fit {dim // 2} channels")
    return {"channels": channels, "dim": dim, "config": config, "head_dim": (dim // 2) // rel[0], "window": (rel[1] + 1) // 2}
