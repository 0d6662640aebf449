"""Run a request: a prior + a measurement -> a restored image. The command line, the batch runner,
the benchmark and Python scripts all come through :func:`restore`.

Ranges: images and measurements are [0, 1] here (B, C, H, W); the model sees [-1, 1] (the
conversion is guidedinv.io's). A grey image is a measurement of the mean of a colour image's channels (operators.ColourToGrey),
with its noise on the grey values; the result is that mean.
Sizes: the network needs sides divisible by its ``size_multiple``; the measurement is reflect-padded
to fit and the result cropped back, so any size works.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..denoiser import Denoiser
from ..errors import InputError
from ..io import from_model_range, pad_sides, to_model_range
from ..models.load import network_size_multiple
from ..noise import NoiseSource
from ..operators import ColourToGrey, LinearOperator
from ..sampler import StepInfo, sample
from .edit import run_edit
from .guided import class_guidance
from .measure import build_operator, default_mask, pad_measurement, simulate
from .methods import ClassicalMethod, GuidedMethod, Plan, PlanInput, get_method
from .noise_range import check_prior_range
from .posterior import Posterior, draw_samples, group_size
from .request import Request, check_samples, parse_request

__all__ = ["Plan", "build_operator", "plan_method", "simulate", "restore", "size_multiple", "as_request",
           "run_classical", "warm_start", "pad_measurement", "Posterior"]


def as_request(what: Request | dict[str, Any]) -> Request:
    """A Request as it is, a recipe dict parsed (and checked) into one."""
    return what if isinstance(what, Request) else parse_request(what)


def size_multiple(denoiser: Denoiser | None) -> int:
    """Side lengths the network accepts must be multiples of this (1 for analytic priors)."""
    return network_size_multiple(getattr(denoiser, "net", None))


def plan_method(request: Request | dict[str, Any], operator: LinearOperator, y_model: torch.Tensor) -> Plan:
    """Guidance terms, rule and grid of the request's method for measurement ``y_model`` ([-1, 1])."""
    request = as_request(request)
    method = get_method(request.method)
    assert isinstance(method, GuidedMethod), f"{request.method} is not a guided method"
    return method.plan(PlanInput(operator, y_model, request.sigma_y, request.settings))


def run_classical(request: Request | dict[str, Any], y: torch.Tensor, mask: torch.Tensor | None = None,
                  method: str | None = None) -> torch.Tensor:
    """Restore ``y`` ((B, C, h, w), [0, 1]) with a classical method (the request's, or ``method`` with
    its default settings); (B, C, H, W) in [0, 1]. mask: inpainting, bool (h, w) or (B, h, w)."""
    import numpy as np

    request = as_request(request)
    chosen = get_method(method or request.method)
    assert isinstance(chosen, ClassicalMethod), f"{chosen.name} is not a classical method"
    settings = request.settings if method is None else chosen.check_settings({}, f"methods.{chosen.name}")
    hw = (int(y.shape[-2]), int(y.shape[-1]))
    if request.operator.kind == "inpaint" and mask is None:
        mask = default_mask(request, hw)
    # the operator carries the kernel / factor; its image size only matters for inpainting's mask
    operator = build_operator(request, hw, None if mask is None else (mask if mask.ndim == 2 else mask[0]))
    solve = chosen.solver(settings, operator, request.sigma_y)
    out = []
    for i in range(y.shape[0]):
        fill = None if mask is None else (mask if mask.ndim == 2 else mask[i]).detach().cpu().numpy().astype(bool)
        yi = np.moveaxis(y[i].detach().to("cpu", torch.float64).numpy(), 0, -1)
        xi = solve(yi, fill)
        out.append(torch.from_numpy(np.moveaxis(np.clip(xi, 0.0, 1.0), -1, 0).copy()))
    return torch.stack(out).to(device=y.device, dtype=y.dtype)


def warm_start(request: Request | dict[str, Any], denoiser: Denoiser, y: torch.Tensor,
               mask: torch.Tensor | None) -> tuple[torch.Tensor | None, int | None]:
    """The method's starting image and timestep: (None, None) for a start from pure noise, else the
    classical method ``init``'s estimate from the (padded, [0, 1]) measurement ``y``, in model range,
    and the timestep whose noise level is ``start_sigma`` (model range, like every sigma_t)."""
    request = as_request(request)
    name = request.settings.get("init")
    if name in (None, "none"):
        return None, None
    estimate = run_classical(request, y.to("cpu", torch.float32), None if mask is None else mask.cpu(), method=name)
    if estimate.shape[1] == 1:
        estimate = estimate.expand(-1, 3, -1, -1)
    return to_model_range(estimate).to(y.device), denoiser.schedule.t_from_sigma(float(request.settings["start_sigma"]))


def restore(
    denoiser: Denoiser | None,
    request: Request | dict[str, Any],
    y: torch.Tensor | Sequence[torch.Tensor],
    *,
    mask: torch.Tensor | Sequence[torch.Tensor | None] | None = None,
    seeds: Sequence[int] | None = None,
    callback: Callable[[StepInfo], None] | None = None,
    classifier: Any = None,
    reference: torch.Tensor | None = None,
    samples: int | None = None,
    keep_samples: bool = False,
) -> torch.Tensor | list[torch.Tensor] | Posterior | list[Posterior]:
    """Restore measurements ``y`` ((B, C, h, w) in [0, 1]; C = 1 or 3) with a request (or recipe).

    y may also be a list of (C, h, w) or (1, C, h, w) images of different sizes: each is restored on
    its own (its own seed, its own mask from a list) and a list of (C, H, W) results comes back.
    mask: inpainting only, bool (h, w) or one per image (B, h, w), True = fill (else the request's
    mask). seeds: one per image (default request seed + index): each image's result depends on its
    own seed only. classifier: the loaded noisy classifier of the request's class guidance, if any.
    Editing (task "edit"): y is the image to edit, mask its edit weights in [0, 1] (white = edit),
    reference an ILVR reference of y's size ([0, 1]); see :func:`guidedinv.app.edit.run_edit`.
    Returns (B, C, H, W) in [0, 1], H x W the unknown image's size (h x w times the SR factor).
    A classical method needs no denoiser (None is fine) and ignores seeds and callback.
    samples: posterior samples per image (default: the request's ``samples``, 1). More than one (or
    ``keep_samples``) returns a :class:`~guidedinv.app.posterior.Posterior` instead (mean, std, count;
    the samples too with ``keep_samples``), or a list of them for a list of images; a deterministic
    method refuses more than one (InputError naming the sampling methods).
    """
    request = as_request(request)
    if isinstance(y, (list, tuple)):
        seeds = list(seeds) if seeds is not None else [request.seed + i for i in range(len(y))]
        masks = list(mask) if isinstance(mask, (list, tuple)) else [mask] * len(y)
        if len(seeds) != len(y) or len(masks) != len(y):
            raise InputError(f"{len(y)} images with {len(seeds)} seeds and {len(masks)} masks")
        outs = []
        for yi, si, mi in zip(y, seeds, masks):
            one = restore(denoiser, request, yi[None] if yi.ndim == 3 else yi, mask=mi, seeds=[si], callback=callback,
                          classifier=classifier, reference=reference, samples=samples, keep_samples=keep_samples)
            outs.append(one[0])
        return outs
    if y.ndim != 4 or y.shape[1] not in (1, 3):
        raise InputError(f"measurements must be (B, 1 or 3, H, W), got {tuple(y.shape)}")
    if not torch.isfinite(y).all():
        raise InputError("the measurement contains NaN or infinite values")
    batch, channels = y.shape[:2]
    seeds = list(seeds) if seeds is not None else [request.seed + i for i in range(batch)]
    if len(seeds) != batch:
        raise InputError(f"{len(seeds)} seeds for {batch} images")
    if mask is not None and mask.ndim == 3 and mask.shape[0] != batch:
        raise InputError(f"{mask.shape[0]} masks for {batch} images; give one (h, w) mask or one per image")
    count = request.samples if samples is None else check_samples(samples, request.method, request.settings, request.operator.kind)
    if count > 1 or keep_samples:
        def one_each(ys: torch.Tensor, **kw: Any) -> torch.Tensor:
            return restore(denoiser, request, ys, classifier=classifier, reference=reference, samples=1, **kw)

        values = channels * y.shape[-2] * y.shape[-1] * request.operator.factor**2
        return draw_samples(one_each, y, seeds, count, mask=mask, group=group_size(count, batch, values), keep=keep_samples,
                            callback=callback)
    if not request.uses_network:
        return run_classical(request, y, mask)
    if denoiser is None:
        raise InputError(f"method {request.method!r} needs a prior (a denoiser), got None")
    check_prior_range(request, denoiser)  # a Gaussian denoiser's trained noise range (guidedinv.app.noise_range)
    if request.operator.kind == "edit":
        return run_edit(denoiser, request, y, mask=mask, reference=reference, seeds=seeds, callback=callback,
                        classifier=classifier)
    device = next((p.device for p in denoiser.parameters()), y.device)
    y = y.to(device, torch.float32)
    if mask is None and request.operator.kind == "inpaint":
        mask = default_mask(request, (y.shape[-2], y.shape[-1]))
    margin = None
    if request.operator.kind == "blur" and request.operator.boundary == "padded":
        kh, kw = build_operator(request, (1, 1)).kernel.shape
        y, margin = pad_sides(y, kh // 2, kh // 2, kw // 2, kw // 2, mode="reflect")
    y_pad, mask_pad, crop, factor = pad_measurement(request, y, mask, size_multiple(denoiser))
    hw = (y_pad.shape[-2] * factor, y_pad.shape[-1] * factor)
    operator_mask = None if mask_pad is None else mask_pad.to(device)
    if operator_mask is not None and operator_mask.ndim == 3:
        operator_mask = operator_mask.unsqueeze(1)  # (B, 1, H, W): Inpainting reads a 3-D mask as per channel
    operator = build_operator(request, hw, operator_mask, for_solver=True)
    if channels == 1:  # a grey photo is a grey measurement of the colour image the prior knows
        operator = ColourToGrey(operator)
    plan = plan_method(request, operator, operator.to_model_range(y_pad))
    prior, extra, labels = class_guidance(request, denoiser, batch, classifier)
    init, init_t = warm_start(request, denoiser, y_pad, mask_pad)
    try:
        x = sample(prior, (batch, 3, *hw), NoiseSource.from_seeds(seeds), steps=plan.steps, rule=plan.rule,
                   terms=[*plan.terms, *extra], labels=labels, resample=plan.resample, callback=callback, device=device,
                   init=init, init_t=init_t)
    except ValueError as exc:  # a grid that does not fit below a warm start's level, ...
        raise InputError(f"methods.{request.method}: {exc}") from None
    x = from_model_range(x)
    if channels == 1:
        x = x.mean(1, keepdim=True)
    x = crop.scaled(factor)(x) if factor != 1 else crop(x)
    return margin(x) if margin is not None else x
