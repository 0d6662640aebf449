"""Task presets: a recipe + a prior + a measurement -> a restored image. The command line, the batch
runner and Python scripts all come through here.

Ranges: images and measurements are [0, 1] here (B, C, H, W); the model sees [-1, 1] (the
conversion is guidedinv.io's). Grey images are restored as three equal channels and averaged back.
Sizes: the network needs sides divisible by its ``size_multiple``; the measurement is reflect-padded
to fit and the result cropped back, so any size works.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from ..denoiser import Denoiser
from ..errors import InputError
from ..guidance import DPS, GuidanceTerm, Projection, Proximal, Replacement
from ..io import from_model_range, make_mask, pad_sides, pad_to_multiple, to_model_range
from ..models.load import network_size_multiple
from ..noise import NoiseSource
from ..operators import Blur, Downsample, GaussianNoise, Identity, Inpainting, LinearOperator
from .recipes import BASELINES, method_settings
from ..rules import StepRule, make_rule
from ..sampler import Resampling, StepInfo, sample

__all__ = ["Plan", "build_operator", "plan_method", "simulate", "restore", "size_multiple"]

RULE_OPTIONS = {"ddim": ("eta",), "renoise": ("zeta",)}


@dataclass
class Plan:
    """What the sampler needs for a method: guidance terms, step rule, grid and resampling."""

    terms: list[GuidanceTerm]
    rule: StepRule
    steps: str | int
    resample: Resampling | None


def size_multiple(denoiser: Denoiser) -> int:
    """Side lengths the network accepts must be multiples of this (1 for analytic priors)."""
    return network_size_multiple(getattr(denoiser, "net", None))


def _kernel(spec: str, size: int, boundary: str) -> Blur:
    name, _, arg = str(spec).partition(":")
    if name == "gaussian":
        try:
            sigma = float(arg or 3.0)
        except ValueError:
            raise InputError(f"kernel {spec!r}: expected gaussian:SIGMA, e.g. gaussian:3.0") from None
        return Blur.gaussian(size, sigma, boundary=boundary)
    if name == "motion":
        try:
            seed = int(arg or 0)
        except ValueError:
            raise InputError(f"kernel {spec!r}: expected motion or motion:SEED") from None
        return Blur.motion(size, 0.5, seed=seed, boundary=boundary)
    path, _, key = str(spec).partition(":") if str(spec).count(":") == 1 and not str(spec).startswith("/") else (str(spec), "", "")
    return Blur.from_file(path, key or None, boundary=boundary)


def build_operator(
    recipe: dict[str, Any], hw: tuple[int, int], mask: torch.Tensor | None = None, for_solver: bool = False
) -> LinearOperator:
    """The recipe's operator for an unknown image of size ``hw`` = (H, W).

    A blur with boundary "padded" is the physical reflect-boundary blur (what simulation, metrics
    and classical baselines use), except with ``for_solver`` (restore() only): there it is the
    circular model of a canvas that restore() has reflect-padded by the kernel radius.

    mask: for inpainting, a bool (H, W) tensor, True = fill, or (B, 1, H, W) for one mask per image;
    when None the recipe's generated mask spec is used (seeded by the recipe's seed).
    """
    op = recipe["operator"]
    kind = op.get("kind")
    if kind == "inpaint":
        if mask is None:
            mask = make_mask(str(op.get("mask", "box")), hw, seed=int(recipe.get("seed", 0)))
        if tuple(mask.shape[-2:]) != tuple(hw):
            raise InputError(f"mask is {mask.shape[-1]}x{mask.shape[-2]} but the image is {hw[1]}x{hw[0]}")
        return Inpainting.from_fill_mask(mask)
    if kind == "downsample":
        scale = op.get("scale", 4)
        return Downsample(scale, op.get("mode", "bicubic"))
    if kind == "blur":
        boundary = op.get("boundary", "reflect")
        # "padded": the measurement has been reflect-padded by the kernel radius (restore() does it),
        # so the fast circular model (FFT closed forms) only wraps inside that margin
        if boundary == "padded":
            boundary = "circular" if for_solver else "reflect"
        return _kernel(op.get("kernel", "gaussian:3.0"), int(op.get("size", 61)), boundary)
    if kind == "identity":
        return Identity()
    raise InputError(f"unknown operator kind {kind!r}; choose from inpaint, downsample, blur, identity")


def plan_method(recipe: dict[str, Any], operator: LinearOperator, y_model: torch.Tensor) -> Plan:
    """Guidance terms, rule and grid of the recipe's method for measurement ``y_model`` ([-1, 1])."""
    method, s = recipe["method"], method_settings(recipe)
    sigma_y = float(recipe.get("noise", {}).get("sigma_y", 0.0))
    rule_name = s.get("rule", "ddim")
    options = {k: s[k] for k in RULE_OPTIONS.get(rule_name, ()) if k in s and not (method == "dps" and k == "zeta")}
    try:
        rule = make_rule(rule_name, **options)
    except ValueError as exc:
        raise InputError(f"recipe: {exc}") from None
    resample = None
    scale = float(s.get("scale", 1.0))
    if method == "pnp":  # DiffPIR's proximal data step on the plug-and-play rule: no sampling noise
        return Plan([Proximal(operator, y_model, sigma_y, lam=float(s.get("lam", 1.0)), scale=scale)],
                    make_rule("pnp"), s["steps"], None)
    if method == "diffpir":
        terms: list[GuidanceTerm] = [Proximal(operator, y_model, sigma_y, lam=float(s.get("lam", 1.0)), scale=scale)]
    elif method == "ddnm":
        terms = [Projection(operator, y_model, sigma_y, scale=scale, eta=float(s.get("eta", 0.85)),
                            noise_rule=str(s.get("noise_rule", "svd")))]
    elif method == "repaint":
        terms = [Replacement(operator, y_model, sigma_y, scale=scale)]
        resample = Resampling(int(s.get("jump_length", 10)), int(s.get("jump_n_sample", 10)))
    else:  # dps
        terms = [DPS(operator, y_model, sigma_y, scale=float(s.get("zeta", 1.0)))]
    return Plan(terms, rule, s["steps"], resample)


def warm_start(recipe: dict[str, Any], denoiser: Denoiser, y: torch.Tensor,
               mask: torch.Tensor | None) -> tuple[torch.Tensor | None, int | None]:
    """The method's starting image and timestep: (None, None) for a start from pure noise, else the
    classical method ``init``'s estimate from the (padded, [0, 1]) measurement ``y``, in model range,
    and the timestep whose noise level is ``start_sigma`` (model range, like every sigma_t)."""
    s = method_settings(recipe)
    name = s.get("init")
    if name in (None, "", "none"):
        if "start_sigma" in s:
            raise InputError(f"recipe: methods.{recipe['method']}.start_sigma needs an init method to start from")
        return None, None
    kind = recipe["operator"].get("kind")
    if name not in BASELINES or kind not in BASELINES[name][0]:
        usable = [b for b, (kinds, _) in BASELINES.items() if kind in kinds]
        raise InputError(f"recipe: init {name!r} is not a classical method for this task; choose from {', '.join(usable)}")
    sigma = float(s.get("start_sigma", 0.5))
    if not sigma > 0:
        raise InputError(f"recipe: start_sigma must be > 0, got {sigma}")
    from ..baselines import run_baseline

    estimate = run_baseline({**recipe, "method": name}, y.to("cpu", torch.float32), mask=None if mask is None else mask.cpu())
    if estimate.shape[1] == 1:
        estimate = estimate.expand(-1, 3, -1, -1)
    return to_model_range(estimate).to(y.device), denoiser.schedule.t_from_sigma(sigma)


def simulate(x: torch.Tensor, operator: LinearOperator, sigma_y: float, seed: int = 0) -> torch.Tensor:
    """A measurement of clean images ``x`` ([0, 1]): A x plus Gaussian noise of std sigma_y ([0, 1]
    scale), per-image seeded. Not clipped: clipping would bias the noise model."""
    y = operator.A(x)
    if sigma_y > 0:
        noise = NoiseSource.from_seeds([seed + i for i in range(x.shape[0])]).randn(y.shape[1:], y.dtype, y.device)
        y = y + sigma_y * noise
    return y


def _pad_measurement(recipe: dict[str, Any], y: torch.Tensor, mask: torch.Tensor | None, multiple: int):
    """Reflect-pad y (and the mask) so the unknown image's sides are multiples of ``multiple``."""
    factor = int(recipe["operator"].get("scale", 1)) if recipe["operator"].get("kind") == "downsample" else 1
    step = multiple // _gcd(multiple, factor)  # LR sides must be multiples of this
    y_pad, crop = pad_to_multiple(y, step, mode="reflect")
    mask_pad = None if mask is None else pad_to_multiple(mask, step, mode="reflect")[0]
    return y_pad, mask_pad, crop, factor


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


def restore(
    denoiser: Denoiser | None,
    recipe: dict[str, Any],
    y: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    seeds: Sequence[int] | None = None,
    callback: Callable[[StepInfo], None] | None = None,
) -> torch.Tensor:
    """Restore measurements ``y`` ((B, C, h, w) in [0, 1]; C = 1 or 3) with ``recipe``'s operator and method.

    mask: inpainting only, bool (h, w) or one per image (B, h, w), True = fill (else the recipe's
    generated mask). seeds: one per image (default recipe seed + index): each image's result
    depends on its own seed only.
    Returns (B, C, H, W) in [0, 1], H x W the unknown image's size (h x w times the SR scale).
    A classical method (recipes.BASELINES: bicubic, wiener, ...) runs guidedinv.baselines instead of
    the sampler; it needs no denoiser (None is fine) and ignores seeds and callback.
    """
    if y.ndim != 4 or y.shape[1] not in (1, 3):
        raise InputError(f"measurements must be (B, 1 or 3, H, W), got {tuple(y.shape)}")
    if not torch.isfinite(y).all():
        raise InputError("the measurement contains NaN or infinite values")
    batch, channels = y.shape[:2]
    seeds = list(seeds) if seeds is not None else [int(recipe.get("seed", 0)) + i for i in range(batch)]
    if len(seeds) != batch:
        raise InputError(f"{len(seeds)} seeds for {batch} images")
    if mask is not None and mask.ndim == 3 and mask.shape[0] != batch:
        raise InputError(f"{mask.shape[0]} masks for {batch} images; give one (h, w) mask or one per image")
    if recipe["method"] in BASELINES:
        from ..baselines import run_baseline

        return run_baseline(recipe, y, mask=mask)
    device = next((p.device for p in denoiser.parameters()), y.device)
    y = y.to(device, torch.float32)
    if mask is None and recipe["operator"].get("kind") == "inpaint":
        hw = (y.shape[-2], y.shape[-1])
        mask = make_mask(str(recipe["operator"].get("mask", "box")), hw, seed=int(recipe.get("seed", 0)))
    margin = None
    if recipe["operator"].get("kind") == "blur" and recipe["operator"].get("boundary") == "padded":
        kh, kw = build_operator(recipe, (1, 1)).kernel.shape
        y, margin = pad_sides(y, kh // 2, kh // 2, kw // 2, kw // 2, mode="reflect")
    y_pad, mask_pad, crop, factor = _pad_measurement(recipe, y, mask, size_multiple(denoiser))
    if channels == 1:
        y_pad = y_pad.expand(-1, 3, -1, -1)
    hw = (y_pad.shape[-2] * factor, y_pad.shape[-1] * factor)
    operator_mask = None if mask_pad is None else mask_pad.to(device)
    if operator_mask is not None and operator_mask.ndim == 3:
        operator_mask = operator_mask.unsqueeze(1)  # (B, 1, H, W): Inpainting reads a 3-D mask as per channel
    operator = build_operator(recipe, hw, operator_mask, for_solver=True)
    y_model = operator.to_model_range(y_pad)
    plan = plan_method(recipe, operator, y_model)
    init, init_t = warm_start(recipe, denoiser, y_pad, mask_pad)
    x = sample(denoiser, (batch, 3, *hw), NoiseSource.from_seeds(seeds), steps=plan.steps, rule=plan.rule,
               terms=plan.terms, resample=plan.resample, callback=callback, device=device, init=init, init_t=init_t)
    x = from_model_range(x)
    if channels == 1:
        x = x.mean(1, keepdim=True)
    x = crop.scaled(factor)(x) if factor != 1 else crop(x)
    return margin(x) if margin is not None else x
