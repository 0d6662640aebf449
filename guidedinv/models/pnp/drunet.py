"""DRUNet (Zhang et al., "Plug-and-play image restoration with deep denoiser prior", IEEE TPAMI 2021,
DPIR), written here from the paper: a four-scale UNet whose levels are residual blocks (conv-ReLU-conv
plus the input), joined by 2x2 stride-2 convolutions down and 2x2 transposed convolutions up,
additive skips, no biases, a noise-level map as an extra input channel; it outputs the clean image.

Key names and shapes are those of the files KAIR and deepinv release (``m_head``, ``m_down1..3``,
``m_body``, ``m_up3..1``, ``m_tail``; ``drunet_color.pth``: widths 64-128-256-512, 4 blocks per
level, 4 input channels = RGB + noise map). Trained on noise levels [0, 50]/255 of [0, 1] images.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn

from ...errors import ModelError

__all__ = ["DRUNet", "drunet_config", "unet_levels"]


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1, bias=False)


def unet_levels(net: nn.Module, x1: torch.Tensor) -> torch.Tensor:
    """KAIR's four-level U-Net body after the head (DRUNet, SCUNet): three strided downs, the body,
    three transposed-conv ups with additive skips, the tail."""
    x2 = net.m_down1(x1)
    x3 = net.m_down2(x2)
    x4 = net.m_down3(x3)
    x = net.m_body(x4)
    x = net.m_up3(x + x4)
    x = net.m_up2(x + x3)
    x = net.m_up1(x + x2)
    return net.m_tail(x + x1)


class ResBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.res = nn.Sequential(_conv(width, width), nn.ReLU(), _conv(width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res(x)


class DRUNet(nn.Module):
    """channels: image channels (1 or 3); widths: the four levels' channels; blocks: residual blocks
    per level. forward(z (B, C, H, W) with H, W multiples of 8, sigma (B,), [0, 1] scale) -> denoised z."""

    multiple = 8

    def __init__(self, channels: int = 3, widths: tuple[int, ...] = (64, 128, 256, 512), blocks: int = 4) -> None:
        super().__init__()
        w0, w1, w2, w3 = widths
        self.channels, self.widths, self.blocks = channels, tuple(widths), blocks
        self.m_head = _conv(channels + 1, w0)
        for i, (a, b) in enumerate(((w0, w1), (w1, w2), (w2, w3)), start=1):
            setattr(self, f"m_down{i}", nn.Sequential(*(ResBlock(a) for _ in range(blocks)),
                                                      nn.Conv2d(a, b, 2, stride=2, bias=False)))
            setattr(self, f"m_up{i}", nn.Sequential(nn.ConvTranspose2d(b, a, 2, stride=2, bias=False),
                                                    *(ResBlock(a) for _ in range(blocks))))
        self.m_body = nn.Sequential(*(ResBlock(w3) for _ in range(blocks)))
        self.m_tail = _conv(w0, channels)

    def forward(self, z: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        level = sigma.to(z.dtype).view(-1, 1, 1, 1).expand(z.shape[0], 1, *z.shape[-2:])
        return unet_levels(self, self.m_head(torch.cat([z, level], 1)))


def drunet_config(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, object]:
    """channels, widths and blocks from a state dict's shapes."""
    try:
        blocks = len({m.group(1) for k in shapes if (m := re.fullmatch(r"m_body\.(\d+)\.res\.0\.weight", k))})
        widths = (shapes["m_head.weight"][0], *(shapes[f"m_down{i}.{blocks}.weight"][0] for i in (1, 2, 3)))
        channels = shapes["m_tail.weight"][0]
    except KeyError as exc:
        raise ModelError(f"not a DRUNet state dict: no {exc.args[0]}") from None
    if shapes["m_head.weight"][1] != channels + 1:
        raise ModelError(f"DRUNet m_head takes {shapes['m_head.weight'][1]} channels; a noise-level-map DRUNet "
                         f"of {channels} channels takes {channels + 1}")
    return {"channels": channels, "widths": widths, "blocks": blocks}
