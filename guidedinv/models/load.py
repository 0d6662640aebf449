"""Safe, lean loading of checkpoints into denoisers and classifiers.

Safe: a file is read with ``torch.load(weights_only=True)`` (tensors and plain containers only; a
pickle that asks for any other Python object is refused before anything runs) or as safetensors.
Lean: tensors are memory-mapped where the format allows, the network is built on the meta device
and the weights are assigned straight onto the target device in their final dtype, one tensor at a
time, so no second copy of the model is ever allocated.

Typical use::

    from guidedinv.models import load_denoiser, load_classifier
    prior = load_denoiser("256x256_diffusion_uncond")          # or a local path
    clf = load_classifier("256x256_classifier", device="cuda", dtype="fp16")
    prior.net                                                  # the raw torch module
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..denoiser import NetworkDenoiser
from ..errors import ModelError
from ..schedule import VPSchedule
from ..tiling import Tiling, recommended_tiling, tiles_of
from . import diffusers_unet as du
from .adm import ADMConfig, build_network
from .config import Inferred, detect_format, infer_config
from .download import download
from .registry import ModelEntry, lookup

__all__ = [
    "Checkpoint",
    "open_checkpoint",
    "load_model",
    "load_denoiser",
    "load_classifier",
    "resolve_dtype",
    "network_size_multiple",
]

TRAINING_FORMAT = "guidedinv-adm-1"  # the metadata format of guidedinv/training/export.py
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
NESTED_KEYS = ("ema", "model_ema", "state_dict", "model", "net")  # wrappers training scripts put around a state dict
DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
}


class Checkpoint:
    """A weights file opened for reading: ``shapes`` (key -> shape) without reading any data,
    ``tensor(key)`` one CPU tensor at a time, ``metadata`` (guidedinv's training record, if any)."""

    def __init__(self, path: Path, shapes: dict[str, tuple[int, ...]], get: Any, metadata: dict[str, Any]) -> None:
        self.path, self.shapes, self._get, self.metadata = path, shapes, get, metadata
        self.file_keys = {k: k for k in shapes}

    def tensor(self, key: str) -> torch.Tensor:
        return self._get(self.file_keys[key])

    def rename(self, mapping: Mapping[str, str]) -> None:
        """Expose file key ``old`` as ``mapping[old]`` (e.g. legacy diffusers attention names)."""
        self.file_keys = {mapping.get(k, k): v for k, v in self.file_keys.items()}
        self.shapes = {mapping.get(k, k): s for k, s in self.shapes.items()}


def _weights_file(path: Path) -> Path:
    """The weights file of ``path``: itself, or the one weights file inside a model directory."""
    if not path.is_dir():
        return path
    for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"):
        if (path / name).is_file():
            return path / name
    found = sorted(p for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file())
    if len(found) != 1:
        raise ModelError(f"{path} is a directory with {len(found)} weight files; pass the file itself")
    return found[0]


def _sniff(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"PK\x03\x04"):
        return "torch-zip"
    # safetensors: a little-endian u64 header length, then the JSON header. Checked before the pickle
    # marker: a header length whose low byte is 0x80 (e.g. 0x8380) starts the file like a pickle.
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    if head[:1] == b"\x80":
        return "torch-legacy"
    if not head:
        raise ModelError(f"{path} is empty")
    raise ModelError(f"{path} is not a checkpoint guidedinv can read (expected a torch .pt/.bin file or safetensors)")


@contextmanager
def open_checkpoint(path: str | os.PathLike) -> Iterator[Checkpoint]:
    """Open a weights file (or model directory) safely; a ModelError explains any failure."""
    path = _weights_file(Path(path).expanduser())
    if not path.is_file():
        raise ModelError(f"no such file: {path}")
    kind = _sniff(path)
    if kind == "safetensors":
        with _safetensors(path) as ckpt:
            yield ckpt
    else:
        yield _torch_checkpoint(path, mmap=kind == "torch-zip")


@contextmanager
def _safetensors(path: Path) -> Iterator[Checkpoint]:
    from safetensors import SafetensorError, safe_open

    try:
        handle = safe_open(str(path), framework="pt", device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(
            f"cannot read {path}: {exc} (the file is corrupt or truncated; delete it and download again)"
        ) from exc
    with handle as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        metadata = _training_record(f.metadata() or {}, path)
        yield _strip_prefix(Checkpoint(path, shapes, f.get_tensor, metadata))


def _training_record(raw: Mapping[str, str], path: Path) -> dict[str, Any]:
    """The metadata guidedinv's training export writes (guidedinv/training/export.py), parsed;
    empty for any other file."""
    if raw.get("format") != TRAINING_FORMAT:
        return {}
    try:
        return {
            "format": "adm",
            "config": json.loads(raw["config"]),
            "schedule": raw.get("schedule", "linear"),
            "prediction": raw.get("prediction", "eps"),
            "null_label": int(raw["null_label"]) if raw.get("null_label") else None,
            "train_crop": _train_crop(json.loads(raw.get("card") or "{}")),
        }
    except (KeyError, ValueError) as exc:
        raise ModelError(f"{path} has unreadable guidedinv metadata ({exc})") from exc


def _train_crop(card: Any) -> int | None:
    crop = card.get("crop") if isinstance(card, dict) else None
    return int(crop) if isinstance(crop, int) and crop > 0 else None


def _torch_checkpoint(path: Path, mmap: bool) -> Checkpoint:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        parts = [p.strip() for p in str(exc).split("\n\n") if p.strip()]
        reason = next((p for p in parts[1:] if not p.startswith("Check the documentation")), parts[0] if parts else "")
        raise ModelError(
            f"refusing to load {path}: it holds Python objects other than tensors, which could run code when "
            f"unpickled ({reason.splitlines()[0][:200]}); guidedinv loads only plain weights "
            "(torch.load weights_only=True) or safetensors"
        ) from exc
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"cannot read {path}: {first} (the file is corrupt or truncated; delete it and download again)"
        ) from exc
    state = _unwrap(obj, path)
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    return _strip_prefix(Checkpoint(path, shapes, state.__getitem__, {}))


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(obj, Mapping):
        raise ModelError(f"{path} holds a {type(obj).__name__}, not a state dict")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if tensors:
        return tensors
    for key in NESTED_KEYS:
        if isinstance(obj.get(key), Mapping):
            return _unwrap(obj[key], path)
    raise ModelError(f"{path} holds no tensors (top-level keys: {', '.join(map(str, list(obj)[:8]))})")


def _strip_prefix(ckpt: Checkpoint) -> Checkpoint:
    """DataParallel / DistributedDataParallel save every key with a "module." prefix."""
    if ckpt.shapes and all(k.startswith("module.") for k in ckpt.shapes):
        ckpt.rename({k: k[len("module.") :] for k in ckpt.shapes})
    return ckpt


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype.lower() in DTYPES:
        return DTYPES[dtype.lower()]
    raise ModelError(f"unsupported dtype {dtype!r}; choose fp32, fp16 or bf16")


def _check_device(device: str | torch.device | None, dtype: torch.dtype) -> torch.device:
    try:
        dev = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
        probe = torch.zeros(1, 32, 4, 4, device=dev, dtype=dtype)
    except (RuntimeError, ValueError, AssertionError) as exc:
        raise ModelError(f"cannot use device {device!r}: {str(exc).splitlines()[0]}") from exc
    if dtype != torch.float32:
        try:
            F.conv2d(probe, torch.zeros(32, 32, 3, 3, device=dev, dtype=dtype), padding=1)
            q = probe.reshape(1, 1, 32, 16)
            F.scaled_dot_product_attention(q, q, q)
        except (RuntimeError, NotImplementedError) as exc:
            raise ModelError(
                f"{dtype} inference is not supported on {dev} ({str(exc).splitlines()[0]}); use fp32"
            ) from exc
    return dev


def _materialize(inferred: Inferred, ckpt: Checkpoint, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """Build on the meta device, then assign each tensor on ``device`` in its final dtype."""
    cfg = inferred.config
    if isinstance(cfg, du.DiffusersUNetConfig):
        wrapper = du.build_diffusers_unet(cfg)
        module, reduced = wrapper.unet, set(ckpt.shapes)
    else:
        wrapper = module = build_network(cfg, "meta")
        reduced = module.reduced_precision_keys()
    state = {}
    for key in module.state_dict():
        target = dtype if key in reduced else torch.float32
        state[key] = ckpt.tensor(key).to(device=device, dtype=target)
    try:
        module.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise ModelError(f"{ckpt.path}: {str(exc).splitlines()[0]}") from exc
    return wrapper.eval().requires_grad_(False)


def _resolve(source: str | os.PathLike, progress: bool) -> tuple[Path, ModelEntry | None]:
    """(local path, registry entry or None for a local file)."""
    path = download(source, progress=progress)
    return path, None if Path(source).expanduser().exists() else lookup(str(source))


def inspect_checkpoint(source: str | os.PathLike, progress: bool = True) -> tuple[Inferred, ModelEntry | None, Path]:
    """The inferred configuration of a file or named model (downloading a name if needed)."""
    path, entry = _resolve(source, progress)
    with open_checkpoint(path) as ckpt:
        return infer_config(ckpt.shapes, entry, ckpt.metadata), entry, path


def load_model(
    source: str | os.PathLike,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    schedule: str | None = None,
    attention_order: str | None = None,
    progress: bool = True,
    tile: int | str | None = "auto",
) -> NetworkDenoiser | nn.Module:
    """Load a named model or a local checkpoint, configured from its own state dict.

    Returns a :class:`~guidedinv.denoiser.NetworkDenoiser` for a diffusion model (eps prediction,
    or v / x0 where guidedinv's own exported models record it; the checkpoint's own schedule;
    learned sigma split off once into ``var_interp``; x0 clipped to [-1, 1]; a null label for
    classifier-free guidance where the file names one) or the classifier module
    ``(x_t, t) -> logits`` for a classifier. The raw network
    is ``denoiser.net`` (an :class:`~guidedinv.models.adm.ADMUNet`, or for diffusers checkpoints a
    wrapper whose ``.unet`` is the UNet2DModel); call it as ``net(x, t)`` or ``net(x, t, y)`` to
    compare with other code. The inferred configuration is ``.inferred`` and the registry entry
    (or None) ``.entry`` on what is returned.

    device: default CUDA when available, else CPU. dtype: "fp32" (default), "fp16" or "bf16": the
    convolutions of the UNet's torso run in that dtype, embeddings and norms in float32, as
    guided-diffusion's use_fp16 does; refused with a ModelError where the device cannot run it.
    schedule / attention_order: override what the registry or the defaults say (only needed for
    checkpoints that are not in the registry and differ from guided-diffusion's defaults).
    tile: how a diffusion model's network sees large images (guidedinv.tiling): "auto" (default) tiles
    of 4/3 of the training crop where the file records one (guidedinv's own priors), else the whole
    image; an int N > 0: N px tiles sharing N/8 px; 0 or None: the whole image in one call.
    """
    target_dtype = resolve_dtype(dtype)
    dev = _check_device(device, target_dtype)
    path, entry = _resolve(source, progress)
    with open_checkpoint(path) as ckpt:
        if detect_format(ckpt.shapes) == "diffusers":
            ckpt.rename({k: du.current_key(k) for k in ckpt.shapes})
        inferred = infer_config(ckpt.shapes, entry, ckpt.metadata)
        if attention_order is not None:
            if not isinstance(inferred.config, ADMConfig):
                raise ModelError("attention_order applies to ADM checkpoints only")
            if attention_order not in ("legacy", "new"):
                raise ModelError(f"attention_order must be 'legacy' or 'new', got {attention_order!r}")
            inferred = replace(inferred, config=replace(inferred.config, attention_order=attention_order))
        if schedule is not None:
            inferred = replace(inferred, schedule=schedule)
        net = _materialize(inferred, ckpt, dev, target_dtype)
    cfg = inferred.config
    if isinstance(cfg, ADMConfig) and cfg.kind == "classifier":
        out: nn.Module = net
    else:
        try:
            sched = VPSchedule.named(inferred.schedule)
        except ValueError as exc:
            raise ModelError(str(exc)) from exc
        classes = getattr(cfg, "num_classes", 0) - (inferred.null_label is not None)
        try:
            out = NetworkDenoiser(
                net,
                sched,
                inferred.prediction,  # type: ignore[arg-type]
                learned_sigma=bool(getattr(cfg, "learned_sigma", False)),
                num_classes=classes,
                null_label_index=inferred.null_label,
                clip=True,
                tiling=_tiling(tile, inferred, net),
            )
        except ValueError as exc:
            raise ModelError(f"{path}: {exc}") from exc
    out.inferred, out.entry = inferred, entry
    return out


def network_size_multiple(net: Any) -> int:
    """Side lengths ``net`` accepts must be multiples of this: 2 ** (resolution levels - 1); 1 for a
    module without a UNet configuration."""
    cfg = getattr(net, "config", None)
    return 2 ** ((getattr(cfg, "levels", None) or len(getattr(cfg, "channel_mult", ()) or (1,))) - 1)


def _tiling(tile: int | str | None, inferred: Inferred, net: nn.Module) -> Tiling | None:
    multiple = network_size_multiple(net)
    if tile == "auto":
        return recommended_tiling(inferred.train_crop, multiple)
    if tile is None or tile == 0:
        return None
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 0 or tile % multiple:
        raise ModelError(f"tile must be 'auto', 0 (whole image) or a positive multiple of {multiple} px, got {tile!r}")
    return tiles_of(tile)


def load_denoiser(source: str | os.PathLike, **kwargs: Any) -> NetworkDenoiser:
    """:func:`load_model` for a diffusion model; a ModelError if ``source`` is a classifier."""
    model = load_model(source, **kwargs)
    if not isinstance(model, NetworkDenoiser):
        raise ModelError(f"{source} is a classifier, not a diffusion model")
    return model


def load_classifier(source: str | os.PathLike, **kwargs: Any) -> nn.Module:
    """:func:`load_model` for a noisy classifier; a ModelError if ``source`` is a diffusion model."""
    model = load_model(source, **kwargs)
    if isinstance(model, NetworkDenoiser):
        raise ModelError(f"{source} is a diffusion model, not a classifier")
    return model
