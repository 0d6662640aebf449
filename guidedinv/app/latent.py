"""Noise latents of images (DDIM inversion) in a file, and decoding them with another class or
guidance (DDIB-style translation, Su et al. 2023). A latent file is safetensors with one tensor
"latent" (1, 3, H', W') (the image padded to the network's multiple, in the model's noise space at
the grid's top timestep) and metadata: format "guidedinv-latent-1", the image's size, the grid,
the rule and the model it was made with, so decoding uses the same ones."""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..denoiser import Denoiser
from ..errors import InputError
from ..io import atomic_write_bytes, from_model_range, pad_to_multiple, to_model_range
from ..models.load import network_size_multiple
from ..rules import make_rule
from ..sampler import StepInfo, decode, invert
from .guided import class_guidance
from .request import Request

__all__ = ["Latent", "encode_image", "read_latent", "decode_latent", "FORMAT"]

FORMAT = "guidedinv-latent-1"


@dataclass
class Latent:
    tensor: torch.Tensor  # (1, 3, H', W')
    size: tuple[int, int]  # the image's (H, W)
    channels: int
    steps: str
    rule: str
    model: str


def encode_image(denoiser: Denoiser, image: torch.Tensor, out: str | Path, *, steps: str, rule: str, model: str,
                 label: int | None = None) -> float:
    """Invert ``image`` ((C, H, W) in [0, 1]) and write its latent to ``out``; returns the PSNR (dB) of
    decoding it back against the image (the round trip's error)."""
    from safetensors.torch import save

    from ..metrics import psnr

    channels, h, w = image.shape
    x = image[None].float()
    x = x if channels == 3 else x.expand(-1, 3, -1, -1)
    padded, crop = pad_to_multiple(x, network_size_multiple(getattr(denoiser, "net", None)), mode="reflect")
    device = next((p.device for p in denoiser.parameters()), torch.device("cpu"))
    labels = None if label is None else torch.tensor([label])
    z = invert(denoiser, to_model_range(padded).to(device), steps=steps, rule=make_rule(rule), labels=labels)
    back = crop(from_model_range(decode(denoiser, z, steps=steps, rule=make_rule(rule), labels=labels)).clamp(0, 1)).cpu()
    back = back if channels == 3 else back.mean(1, keepdim=True)
    meta = {"format": FORMAT, "size": json.dumps([h, w]), "channels": str(channels), "steps": steps, "rule": rule,
            "model": model}
    atomic_write_bytes(Path(out), save({"latent": z.detach().cpu().contiguous()}, metadata=meta))
    return float(psnr(back[0], image.float()))


def read_latent(path: str | Path, size: tuple[int, int]) -> Latent:
    """A latent file made by :func:`encode_image` for an image of ``size`` (H, W); an InputError for
    anything else (not safetensors, another format, a shape that does not fit)."""
    from safetensors import safe_open
    from safetensors.torch import load

    path = Path(path)
    try:
        raw = path.read_bytes()
        tensors = load(raw)
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
    except FileNotFoundError:
        raise InputError(f"--from-latent {path}: no such file") from None
    except Exception as exc:  # noqa: BLE001 - any decoding failure is a file that is not a latent
        raise InputError(f"--from-latent {path}: not a latent file made by guidedinv invert ({type(exc).__name__})") from None
    if meta.get("format") != FORMAT or set(tensors) != {"latent"}:
        raise InputError(f"--from-latent {path}: not a latent file made by guidedinv invert (format {meta.get('format')!r})")
    z = tensors["latent"]
    try:
        h, w = (int(v) for v in json.loads(meta["size"]))
        channels = int(meta["channels"])
    except (KeyError, ValueError, TypeError):
        raise InputError(f"--from-latent {path}: its metadata is damaged") from None
    if (h, w) != tuple(size):
        raise InputError(f"--from-latent {path}: made from a {w}x{h} image, but IMAGE is {size[1]}x{size[0]}")
    if z.ndim != 4 or z.shape[:2] != (1, 3) or z.shape[2] < h or z.shape[3] < w or not torch.isfinite(z).all() \
            or not z.is_floating_point():
        raise InputError(f"--from-latent {path}: the latent has shape {tuple(z.shape)}, which does not fit a {w}x{h} image")
    return Latent(z.float(), (h, w), channels, meta.get("steps", "logsnr50"), meta.get("rule", "ddim"), meta.get("model", ""))


def decode_latent(denoiser: Denoiser, request: Request, latent: Latent, *, classifier: Any = None,
                  callback: Callable[[StepInfo], None] | None = None) -> torch.Tensor:
    """Decode a latent with the request's class guidance (if any), on the latent's own grid and rule;
    (1, C, H, W) in [0, 1]."""
    prior, terms, labels = class_guidance(request, denoiser, 1, classifier)
    device = next((p.device for p in denoiser.parameters()), torch.device("cpu"))
    x = decode(prior, latent.tensor.to(device), steps=latent.steps, rule=make_rule(latent.rule), terms=terms, labels=labels,
               callback=callback)
    h, w = latent.size
    top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2  # pad_to_multiple centres the image
    x = from_model_range(x).clamp(0, 1)[..., top:top + h, left:left + w]
    return x if latent.channels == 3 else x.mean(1, keepdim=True)
