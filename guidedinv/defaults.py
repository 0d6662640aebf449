"""The embedded models and how a model argument is resolved: "default" (the natural-image prior
shipped inside the package), a registry name, or a checkpoint path, on the device asked for."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .denoiser import Denoiser
from .errors import InputError, ModelError

__all__ = ["WEIGHTS_DIR", "EMBEDDED", "embedded_path", "resolve_model", "pick_device", "load_prior"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
EMBEDDED = {
    "default": "natural-prior.safetensors",
    "toy-prior": "toy-prior.safetensors",
    "toy-classifier": "toy-classifier.safetensors",
    "toy-cond-prior": "toy-cond-prior.safetensors",
    "toy-clean-classifier": "toy-clean-classifier.safetensors",
}


def embedded_path(name: str = "default") -> Path:
    """Path of an embedded model file; a ModelError when this install does not carry it."""
    path = WEIGHTS_DIR / EMBEDDED[name]
    if not path.is_file():
        raise ModelError(f"the embedded model {name!r} is not in this install ({path}); pass --model FILE or a registry name")
    return path


def resolve_model(model: str) -> str | Path:
    """An embedded model's file for its name ('default', 'toy-classifier', ...); anything else as given
    (a registry name, a plug-and-play denoiser's name or a checkpoint path, resolved by the loaders)."""
    return embedded_path(model) if model in EMBEDDED else model


def pick_device(name: str = "auto") -> torch.device:
    """'auto' (CUDA if available, else MPS, else CPU), 'cpu', 'cuda', 'cuda:N' or 'mps'."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name}: no CUDA device is available")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"--device {name}: MPS is not available")
    return device


def parse_tile(text: str | int) -> str | int:
    """A --tile value: 'auto', or a whole number of pixels (0: the whole image in one network call)."""
    value = str(text).strip().lower()
    if value == "auto":
        return "auto"
    if not (value.isascii() and value.isdigit()):
        raise InputError(f"--tile must be 'auto' or a whole number of pixels (0 = no tiling), got {text!r}")
    return int(value)


def load_prior(
    model: str = "default", device: str | torch.device = "auto", dtype: str | None = None, tile: str | int = "auto",
    flags: str | Mapping[str, Any] | None = None, flags_from: str = "flags",
) -> Denoiser:
    """The prior named by ``model``: 'default', a registry name or a file path; a plug-and-play Gaussian
    denoiser ('ffdnet', 'ffdnet-grey', 'drunet_color', ..., or an FFDNet / DRUNet / DnCNN / SCUNet weights file,
    guidedinv.models.pnp) becomes an x0-predictor with ``max_sigma``, its trained noise range. ``tile``: how the network
    sees a large image (guidedinv.models.load_model): 'auto', 0 (whole image) or tiles of N px.
    ``flags``: model flags for a checkpoint the registry does not know (guidedinv.models.flags), a dict
    or text such as "num_heads=4 use_new_attention_order=true"; ``flags_from`` names where they came
    from in errors and in ``denoiser.inferred`` (e.g. "--model-flags")."""
    from .models import load_denoiser

    dev = pick_device(device) if isinstance(device, str) else device
    source = resolve_model(model)
    if model not in EMBEDDED:
        from .models.pnp import is_pnp, load_pnp

        if is_pnp(source):  # a plug-and-play Gaussian denoiser: ffdnet, or a DRUNet / DnCNN name or file
            if flags:
                raise InputError(f"{flags_from}: model flags are for guided-diffusion checkpoints, not the denoiser {model}")
            return load_pnp(source, device=dev, dtype=dtype, tile=parse_tile(tile))
    return load_denoiser(source, device=dev, dtype=dtype, tile=parse_tile(tile), flags=flags, flags_from=flags_from)
