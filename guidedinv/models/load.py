"""Safe, lean loading of checkpoints into denoisers and classifiers.

Safe: a file is read with ``torch.load(weights_only=True)`` (tensors and plain containers only; a
pickle that asks for any other Python object is refused before anything runs) or as safetensors.
Lean: tensors are memory-mapped where the format allows, the network is built on the meta device
and the weights are assigned straight onto the target device in their final dtype, one tensor at a
time, so no second copy of the model is ever allocated.

Every problem with a file is one ModelError line naming it (:mod:`guidedinv.models.checkpoint`);
weights that are not floating point or not finite are refused as each tensor is read. What the
shapes cannot show (attention heads, qkv order, schedule) comes from the registry, the file's
metadata, or model flags (:mod:`guidedinv.models.flags`), else it is guessed with a
:class:`ModelFlagsWarning`.

Typical use::

    from guidedinv.models import load_denoiser, load_classifier
    prior = load_denoiser("256x256_diffusion_uncond")          # or a local path
    clf = load_classifier("256x256_classifier", device="cuda", dtype="fp16")
    prior.net                                                  # the raw torch module
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
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
from .adm import build_network
from .checkpoint import Checkpoint, check_weight, open_checkpoint
from .config import Inferred, detect_format, infer_config
from .download import download
from .flags import apply_flags, check_model_flags, describe_guess, flags_file, merge_flags, parse_model_flags, read_flags_file
from .registry import ModelEntry, lookup

__all__ = [
    "Checkpoint",
    "open_checkpoint",
    "load_model",
    "load_denoiser",
    "load_classifier",
    "resolve_dtype",
    "network_size_multiple",
    "inspect_checkpoint",
    "ModelFlagsWarning",
]

Flags = str | Mapping[str, Any] | None


class ModelFlagsWarning(UserWarning):
    """A checkpoint loaded with guessed attention heads / qkv order / schedule (see guidedinv.models.flags)."""

DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
}


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
    """Build on the meta device, then assign each tensor on ``device`` in its final dtype, refusing
    non-floating or non-finite weights as each one is read (no second copy of the model)."""
    cfg = inferred.config
    if isinstance(cfg, du.DiffusersUNetConfig):
        wrapper = du.build_diffusers_unet(cfg)
        module, reduced = wrapper.unet, set(ckpt.shapes)
    else:
        wrapper = module = build_network(cfg, "meta")
        reduced = module.reduced_precision_keys()
    state = {}
    for key, expected in module.state_dict().items():
        target = dtype if key in reduced else torch.float32
        stored = ckpt.tensor(key)
        if not expected.is_floating_point():  # no such buffer in these networks; kept as stored if one appears
            state[key] = stored.to(device=device)
            continue
        state[key] = stored.to(device=device, dtype=target) if stored.is_floating_point() else stored
        check_weight(ckpt.path, key, stored, state[key])
    try:
        module.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise ModelError(f"{ckpt.path}: {str(exc).splitlines()[0]}") from exc
    return wrapper.eval().requires_grad_(False)


def _resolve(source: str | os.PathLike, progress: bool) -> tuple[Path, ModelEntry | None]:
    """(local path, registry entry or None for a local file)."""
    path = download(source, progress=progress)
    try:
        local = Path(source).expanduser().exists()
    except OSError:  # a name too long to be a path, a folder that cannot be searched: download() said which
        local = False
    return path, None if local else lookup(str(source))


def _given_flags(flags: Flags, schedule: str | None, attention_order: str | None, where: str) -> dict[str, Any]:
    """The caller's flags, typed and checked (an InputError naming ``where``)."""
    given = parse_model_flags(flags, where) if isinstance(flags, str) else check_model_flags(flags or {}, where)
    extra: dict[str, Any] = {}
    if schedule is not None:
        extra["noise_schedule"] = schedule
    if attention_order is not None:
        if attention_order not in ("legacy", "new"):
            raise ModelError(f"attention_order must be 'legacy' or 'new', got {attention_order!r}")
        extra["use_new_attention_order"] = attention_order == "new"
    for key, value in check_model_flags(extra, "schedule / attention_order").items():
        if key in given and given[key] != value:
            raise ModelError(f"{key} is given twice: {given[key]!r} in flags and {value!r} as a keyword argument")
        given[key] = value
    return given


def _configure(ckpt: Checkpoint, entry: ModelEntry | None, given: dict[str, Any], where: str) -> Inferred:
    """The inferred configuration with the given flags and those of the file beside the checkpoint
    applied; one warning line (ModelFlagsWarning) when heads, order or schedule remain guesses."""
    side = flags_file(ckpt.path)
    try:
        if detect_format(ckpt.shapes) == "diffusers":
            ckpt.rename({k: du.current_key(k) for k in ckpt.shapes})
        inferred = infer_config(ckpt.shapes, entry, ckpt.metadata)
        flags, sources = merge_flags(given, where, read_flags_file(ckpt.path), str(side))
        inferred = apply_flags(inferred, flags, sources)
    except ModelError as exc:  # about the layout or the flags: say which file, on one line
        text = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(text if text.startswith(str(ckpt.path)) else f"{ckpt.path}: {text}") from exc
    if inferred.guessed:
        warnings.warn(
            f"{ckpt.path} matches no registry model and records no settings: guessing {_and(inferred.guessed)} "
            f"({describe_guess(inferred)}); a network trained otherwise computes something else. State them as model "
            f"flags (e.g. num_heads=4 use_new_attention_order=true) or in {side.name}",
            ModelFlagsWarning,
            stacklevel=3,
        )
    return inferred


def _and(items: tuple[str, ...]) -> str:
    return " and ".join(items) if len(items) < 3 else ", ".join(items[:-1]) + " and " + items[-1]


def inspect_checkpoint(
    source: str | os.PathLike, progress: bool = True, flags: Flags = None, flags_from: str = "flags"
) -> tuple[Inferred, ModelEntry | None, Path]:
    """The inferred configuration of a file or named model (downloading a name if needed), with the
    model flags applied as :func:`load_model` applies them."""
    where = flags_from
    given = _given_flags(flags, None, None, where)
    path, entry = _resolve(source, progress)
    with open_checkpoint(path) as ckpt:
        return _configure(ckpt, entry, given, where), entry, path


def load_model(
    source: str | os.PathLike,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    schedule: str | None = None,
    attention_order: str | None = None,
    progress: bool = True,
    tile: int | str | None = "auto",
    flags: Flags = None,
    flags_from: str = "flags",
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
    flags: what the tensor shapes cannot show, for checkpoints that are neither in the registry nor
    exported by guidedinv (:mod:`guidedinv.models.flags`): a dict such as ``{"num_heads": 4,
    "use_new_attention_order": True}`` or the same as text (``"num_heads=4
    use_new_attention_order=true"`` or ``"--num_heads 4 --use_new_attention_order True"``); merged
    with ``STEM.flags.json`` beside the file. Without them such a checkpoint loads with guessed heads,
    order and schedule and a :class:`ModelFlagsWarning`. flags_from: how errors and ``models info``
    name where they came from (e.g. "--model-flags"). schedule / attention_order ("legacy" / "new"):
    the same as the flags noise_schedule / use_new_attention_order.
    tile: how a diffusion model's network sees large images (guidedinv.tiling): "auto" (default) tiles
    of 4/3 of the training crop where the file records one (guidedinv's own priors), else the whole
    image; an int N > 0: N px tiles sharing N/8 px; 0 or None: the whole image in one call.

    Refused with a ModelError naming the file: unreadable, empty, corrupt or truncated files, pickles
    of anything but tensors, unknown layouts, and weights that are not floating point or not finite
    (each tensor is checked as it is read).
    """
    where = flags_from
    given = _given_flags(flags, schedule, attention_order, where)
    target_dtype = resolve_dtype(dtype)
    dev = _check_device(device, target_dtype)
    path, entry = _resolve(source, progress)
    with open_checkpoint(path) as ckpt:
        inferred = _configure(ckpt, entry, given, where)
        net = _materialize(inferred, ckpt, dev, target_dtype)
    cfg = inferred.config
    if getattr(cfg, "kind", None) == "classifier":
        out: nn.Module = net
    else:
        try:
            sched = VPSchedule.named(inferred.schedule)
        except ValueError as exc:
            raise ModelError(f"{path}: {exc}") from exc
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
        return recommended_tiling(inferred.train_crop, multiple, inferred.tile)
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
