"""DnCNN (Zhang et al., "Beyond a Gaussian denoiser: residual learning of deep CNN for image
denoising", IEEE TIP 2017), written here from the paper: a plain stack of 3x3 convolutions with ReLU
(and batch normalisation while training) predicts the noise, D(z) = z - f(z). Blind: no noise-level
input. The layout is KAIR's ``model.N`` sequence (``dncnn_color_blind.pth``: 20 convolutions of 64
channels with biases, batch normalisation merged into them; a layer index with no weights is a
ReLU); a file that keeps its batch normalisation (``running_mean`` keys) loads too. CDnCNN-B was
trained on noise levels [0, 55]/255 of [0, 1] images.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn

from ...errors import ModelError

__all__ = ["DnCNN", "dncnn_layers"]


class DnCNN(nn.Module):
    """layers: the ``model`` sequence as (kind, shape) pairs, kind "conv" (shape (out, in, k, k), with
    a bias), "conv-nobias", "bn" (shape (C,)) or "relu". forward(z, sigma ignored) -> denoised z."""

    multiple = 1

    def __init__(self, layers: list[tuple[str, tuple[int, ...]]]) -> None:
        super().__init__()
        modules: list[nn.Module] = []
        for kind, shape in layers:
            if kind.startswith("conv"):
                out, cin, k, _ = shape
                modules.append(nn.Conv2d(cin, out, k, padding=k // 2, bias=kind == "conv"))
            elif kind == "bn":
                modules.append(nn.BatchNorm2d(shape[0]))
            else:
                modules.append(nn.ReLU())
        self.model = nn.Sequential(*modules)
        self.channels = layers[0][1][1]

    def forward(self, z: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
        return z - self.model(z)


def dncnn_layers(shapes: Mapping[str, tuple[int, ...]]) -> list[tuple[str, tuple[int, ...]]]:
    """The ``model`` sequence implied by a state dict's keys (indices without weights are ReLUs)."""
    index = {int(m.group(1)) for k in shapes if (m := re.fullmatch(r"model\.(\d+)\.\w+", k))}
    if not index:
        raise ModelError("not a DnCNN state dict: no model.N keys")
    layers: list[tuple[str, tuple[int, ...]]] = []
    for i in range(max(index) + 1):
        weight = shapes.get(f"model.{i}.weight")
        if weight is None:
            layers.append(("relu", ()))
        elif len(weight) == 4:
            layers.append(("conv" if f"model.{i}.bias" in shapes else "conv-nobias", tuple(weight)))
        elif f"model.{i}.running_mean" in shapes:
            layers.append(("bn", tuple(weight)))
        else:
            raise ModelError(f"not a DnCNN state dict: model.{i}.weight has shape {tuple(weight)}")
    first, last = layers[0][1], layers[-1][1]
    if not (layers[0][0].startswith("conv") and layers[-1][0].startswith("conv") and last[0] == first[1]):
        raise ModelError("not a DnCNN state dict: it must start and end with a convolution, image channels in and out")
    return layers
