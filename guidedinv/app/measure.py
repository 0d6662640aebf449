"""Measurements: the operator of a request on an image grid, and the one way a measurement is
simulated from a clean image (CLI ``--simulate``, ``batch --simulate`` and the benchmark).

Seeding, written once: a request's seed drives the sampler; the simulated measurement's noise uses
:func:`measurement_seed` of it (derived, so the measurement noise and the sampler's first draw are
not the same numbers); a generated random mask uses the seed itself.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import InputError
from ..io import make_mask, pad_to_multiple
from ..noise import NoiseSource
from ..operators import Blur, Downsample, Identity, Inpainting, LinearOperator, crop_to_multiple
from .operator_spec import OperatorSpec, kernel_path
from .request import Request, parse_request

__all__ = ["build_operator", "simulate", "measurement_seed", "Measurement", "simulate_measurement", "operator_spec",
           "default_mask", "pad_measurement", "check_kernel_size"]

SEED_RANGE = 2**53  # derived seeds stay exact in JSON readers that use doubles


def measurement_seed(seed: int) -> int:
    """Seed of a simulated measurement's noise, derived from (not equal to) the sampling seed."""
    digest = hashlib.sha256("\x00".join(("measurement", str(int(seed)))).encode()).digest()
    return int.from_bytes(digest[:8], "big") % SEED_RANGE


def operator_spec(what: Request | OperatorSpec | dict[str, Any]) -> OperatorSpec:
    if isinstance(what, Request):
        return what.operator
    if isinstance(what, OperatorSpec):
        return what
    return parse_request(what).operator


def _kernel(spec: OperatorSpec, boundary: str) -> Blur:
    name, _, arg = str(spec.kernel).partition(":")
    size = int(spec.size or 61)
    if name == "gaussian":
        return Blur.gaussian(size, float(arg or 3.0), boundary=boundary)
    if name == "motion":
        return Blur.motion(size, 0.5, seed=int(arg or 0), boundary=boundary)
    path = kernel_path(str(spec.kernel))
    key = str(spec.kernel)[len(str(path)) + 1:] or None
    return Blur.from_file(path, key, boundary=boundary)


def check_kernel_size(request: Request, hw: tuple[int, int]) -> None:
    """A blur kernel larger than the (H, W) image it blurs is refused (meaningless and slow), except a
    circular one, which folds onto the image (a defined periodic blur). The commands call it before any
    model loads; restore() itself accepts any kernel (the benchmark's small crops use large ones)."""
    if request.operator.kind == "blur" and request.operator.boundary != "circular":
        from ..operators import check_kernel_fits

        check_kernel_fits(build_operator(request, (1, 1)).kernel.shape, hw, f"--kernel {request.operator.kernel}")


def default_mask(request: Request, hw: tuple[int, int]) -> torch.Tensor:
    """The request's mask (inpainting): its mask file, or its generated spec seeded by the request's seed."""
    from ..io import IMAGE_SUFFIXES, read_mask

    spec = str(request.operator.mask)
    if spec.lower().endswith(IMAGE_SUFFIXES):
        return read_mask(spec, hw)
    return make_mask(spec, hw, seed=request.seed)


def build_operator(what: Request | OperatorSpec | dict[str, Any], hw: tuple[int, int], mask: torch.Tensor | None = None,
                   for_solver: bool = False) -> LinearOperator:
    """The operator for an unknown image of size ``hw`` = (H, W), on the [0, 1] scale.

    A blur with boundary "padded" is the physical reflect-boundary blur (what simulation, metrics and
    classical baselines use), except with ``for_solver`` (restore() only): there it is the circular
    model of a canvas that restore() has reflect-padded by the kernel radius.
    mask: inpainting, bool (H, W) or (B, 1, H, W), True = fill; None: the spec's generated mask (seed 0).
    """
    spec = operator_spec(what)
    if spec.kind == "inpaint":
        if mask is None:
            mask = make_mask(str(spec.mask), hw, seed=what.seed if isinstance(what, Request) else 0)
        if tuple(mask.shape[-2:]) != tuple(hw):
            raise InputError(f"mask is {mask.shape[-1]}x{mask.shape[-2]} but the image is {hw[1]}x{hw[0]}")
        return Inpainting.from_fill_mask(mask)
    if spec.kind == "downsample":
        return Downsample(int(spec.scale), str(spec.mode))
    if spec.kind == "blur":
        boundary = str(spec.boundary)
        if boundary == "padded":
            boundary = "circular" if for_solver else "reflect"
        return _kernel(spec, boundary)
    return Identity()


def simulate(x: torch.Tensor, operator: LinearOperator, sigma_y: float, seed: int = 0) -> torch.Tensor:
    """A x plus Gaussian noise of std sigma_y ([0, 1] scale), image i's noise from seed + i. Not
    clipped: clipping would bias the noise model."""
    y = operator.A(x)
    if sigma_y > 0:
        noise = NoiseSource.from_seeds([seed + i for i in range(x.shape[0])]).randn(y.shape[1:], y.dtype, y.device)
        y = y + sigma_y * noise
    return y


@dataclass
class Measurement:
    """A simulated measurement: ``y`` (1, C, h, w) in [0, 1] as a user would have it (inpainting: the
    hole zeroed), the fill ``mask`` (H, W) or None, the ``operator`` on the clean grid and the
    ``clean`` image it was made from (cropped to the SR factor's multiple), (1, C, H, W)."""

    y: torch.Tensor
    mask: torch.Tensor | None
    operator: LinearOperator
    clean: torch.Tensor


def simulate_measurement(request: Request, clean: torch.Tensor, mask: torch.Tensor | None = None) -> Measurement:
    """Degrade a clean image ((1, C, H, W) or (C, H, W), [0, 1]) by the request (module docstring)."""
    x = clean[None] if clean.ndim == 3 else clean
    factor = request.operator.factor
    if factor > 1:
        x = crop_to_multiple(x, factor)
    hw = (int(x.shape[-2]), int(x.shape[-1]))
    if request.operator.kind == "inpaint" and mask is None:
        mask = default_mask(request, hw)
    if mask is not None and factor > 1:
        mask = crop_to_multiple(mask, factor)
    operator = build_operator(request, hw, mask)
    y = simulate(x, operator, request.sigma_y, seed=measurement_seed(request.seed))
    if mask is not None:
        y = operator.AT(y)  # the visible image with the hole zeroed, as a user would have it
    return Measurement(y, mask, operator, x)


def pad_measurement(request: Request, y: torch.Tensor, mask: torch.Tensor | None, multiple: int):
    """Reflect-pad y (and the mask) so the unknown image's sides are multiples of ``multiple``;
    returns (y, mask, crop, factor)."""
    factor = request.operator.factor
    step = multiple // math.gcd(multiple, factor)  # LR sides must be multiples of this
    y_pad, crop = pad_to_multiple(y, step, mode="reflect")
    mask_pad = None if mask is None else pad_to_multiple(mask, step, mode="reflect")[0]
    return y_pad, mask_pad, crop, factor
