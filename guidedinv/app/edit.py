"""Editing on the one sampler: the image to edit is where sampling starts (SDEdit), not a
measurement. :func:`run_edit` is what :func:`guidedinv.app.restore` does for the "edit" task; the
method (``sdedit``) plans the start, the rule and the terms (mask, ILVR, and the request's class
guidance); the loop is the same as restoration's.

Conventions: images in [0, 1] outside, model range inside; a mask holds edit weights in [0, 1]
(white = edit, black = keep, grey blends); the pixels a binary mask keeps come back exactly as
given (the last step replaces them by the input itself, and the result is composited once more in
[0, 1], so 8-bit files keep them bit for bit).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..denoiser import Denoiser
from ..errors import InputError
from ..io import from_model_range, pad_to_multiple, read_image, to_model_range
from ..models.load import network_size_multiple
from ..noise import NoiseSource
from ..operators import Identity
from ..sampler import StepInfo, sample
from .guided import class_guidance
from .measure import pad_measurement
from .methods import GuidedMethod, PlanInput, get_method
from .request import Request

__all__ = ["run_edit", "edit_weights"]


def edit_weights(spec: str | Path, hw: tuple[int, int], seed: int = 0) -> torch.Tensor:
    """An edit mask as float weights (H, W) in [0, 1]: a file's grey level (white = edit; the mean of
    the channels of a colour file), or a generated mask spec (box, half, random:F, ...)."""
    from ..io import IMAGE_SUFFIXES, make_mask

    text = str(spec)
    if not text.lower().endswith(IMAGE_SUFFIXES):
        return make_mask(text, hw, seed=seed).float()
    data = read_image(text)
    if data.size != tuple(hw):
        raise InputError(f"{text}: the mask is {data.width}x{data.height} but the image is {hw[1]}x{hw[0]}; "
                         "a mask must have the image's size")
    weights = data.image.mean(0)
    if not bool((weights > 0).any()):
        raise InputError(f"{text}: the mask is black everywhere: it marks nothing to edit (white = edit)")
    return weights


def run_edit(denoiser: Denoiser, request: Request, y: torch.Tensor, *, mask: torch.Tensor | None = None,
             reference: torch.Tensor | None = None, seeds: Sequence[int], callback: Callable[[StepInfo], None] | None = None,
             classifier: Any = None) -> torch.Tensor:
    """Edit images ``y`` ((B, C, H, W) in [0, 1]) by the request; (B, C, H, W) in [0, 1].

    mask: edit weights (H, W) or (B, H, W) in [0, 1] (else the request's operator.mask, else everywhere);
    reference: (1 or B, C, H, W) in [0, 1], y's size, for ILVR (else the request's operator.reference).
    """
    batch, channels, h, w = y.shape
    device = next((p.device for p in denoiser.parameters()), y.device)
    y = y.to(device, torch.float32)
    if mask is None and request.operator.mask:
        mask = edit_weights(request.operator.mask, (h, w), request.seed)
    if mask is not None:
        mask = mask.to(device, torch.float32)
        if tuple(mask.shape[-2:]) != (h, w):
            raise InputError(f"the edit mask is {mask.shape[-1]}x{mask.shape[-2]} but the image is {w}x{h}")
    if reference is None and request.operator.reference:
        reference = read_image(request.operator.reference).image[None]
    if reference is not None:
        if tuple(reference.shape[-2:]) != (h, w):
            raise InputError(f"the reference is {reference.shape[-1]}x{reference.shape[-2]} but the image is {w}x{h}; "
                             "ILVR needs a reference of the image's size")
        reference = reference.to(device, torch.float32)
        if reference.shape[1] != 3:
            reference = reference.mean(1, keepdim=True).expand(-1, 3, -1, -1)
    method = get_method(request.method)
    assert isinstance(method, GuidedMethod)
    multiple = network_size_multiple(getattr(denoiser, "net", None))
    factor = int(request.settings.get("ilvr", 0)) or 1  # ILVR's low-pass needs sides that are multiples of N
    step = multiple * factor // _gcd(multiple, factor)
    y_pad, mask_pad, crop, _ = pad_measurement(request, y, mask, step)
    ref_pad = None if reference is None else pad_to_multiple(reference, step, mode="reflect")[0]
    x_in = to_model_range(y_pad if channels == 3 else y_pad.expand(-1, 3, -1, -1))
    weights = None
    if mask_pad is not None:
        weights = mask_pad[:, None] if mask_pad.ndim == 3 else mask_pad[None, None]
    images = {"mask": weights, "reference": None if ref_pad is None else to_model_range(ref_pad)}
    plan = method.plan(PlanInput(Identity(), x_in, 0.0, request.settings, denoiser.schedule.num_steps, images))
    if plan.start is not None and plan.start[1] < 0:
        return y.clone()  # strength 0: the input itself, no network call
    prior, extra, labels = class_guidance(request, denoiser, batch, classifier)
    init, init_t = plan.start if plan.start is not None else (None, None)
    try:
        x = sample(prior, tuple(x_in.shape), NoiseSource.from_seeds(seeds), steps=plan.steps, rule=plan.rule,
                   terms=[*plan.terms, *extra], labels=labels, callback=callback, device=device, init=init, init_t=init_t)
    except ValueError as exc:  # e.g. a grid with no step below the strength's level
        raise InputError(f"methods.{request.method}: {exc}") from None
    x = crop(from_model_range(x).clamp(0, 1))
    if channels == 1:
        x = x.mean(1, keepdim=True)
    if mask is not None:  # the kept pixels (weight 0) exactly as given, whatever the float rounding
        m = mask if mask.ndim == 2 else mask[:, None]
        x = torch.where(m > 0, x, y)
    return x


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a
