"""The one reverse-diffusion loop. Every task is this loop with a different list of guidance terms:

    for each step t -> t_next on the path:
        x0 = denoiser(x_t, t)                 (with gradients only if an active term needs them)
        x0 = term.correct_x0(ctx, x0)          for each active term, in order
        x  = rule.step(x_t, x0, t -> t_next)   DDPM / DDIM / DPM-Solver++ ...
        x  = term.correct_sample(ctx, x)       for each active term, in order
        callback(StepInfo)

A path is a list of timesteps of the denoiser's schedule, ending at -1 (clean). It normally
descends; an upward pair (RePaint's resampling) re-noises x with the forward process instead of
calling the network.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .denoiser import Denoiser, timestep_tensor
from .guidance.base import GuidanceTerm, StepContext
from .noise import NoiseSource
from .rules import DDIM, StepRule
from .schedule import VPSchedule, logsnr_spacing, respace

__all__ = ["Resampling", "StepInfo", "build_path", "resampling_path", "sample", "invert", "decode"]


@dataclass(frozen=True)
class Resampling:
    """RePaint's resampling (Lugmayr et al. 2022, Alg. 1): every ``jump_length`` steps of the grid,
    go back up ``jump_length`` steps and redo them, ``jump_n_sample - 1`` extra times."""

    jump_length: int = 10
    jump_n_sample: int = 10

    def __post_init__(self) -> None:
        if self.jump_length < 1 or self.jump_n_sample < 1:
            raise ValueError("jump_length and jump_n_sample must be >= 1")


@dataclass
class StepInfo:
    """What the callback sees after each reverse step."""

    index: int
    num_steps: int
    t: float
    t_next: float
    sigma: float
    x: torch.Tensor
    x0: torch.Tensor
    x_next: torch.Tensor


def resampling_path(num: int, resample: Resampling) -> list[int]:
    """Grid indices visited with RePaint's jumps over a grid of ``num`` levels, ending with -1."""
    jumps = {j: resample.jump_n_sample - 1 for j in range(0, num - resample.jump_length, resample.jump_length)}
    t, path = num, []
    while t >= 1:
        t -= 1
        path.append(t)
        if jumps.get(t, 0) > 0:
            jumps[t] -= 1
            for _ in range(resample.jump_length):
                t += 1
                path.append(t)
    return path + [-1]


def build_path(
    steps: int | str | Sequence[int],
    schedule: VPSchedule,
    init_t: int | None = None,
    resample: Resampling | None = None,
) -> list[int]:
    """The timestep path of a run: the respaced grid (``steps``: int N, "N", "N,M,...", "ddimN" or
    "logsnrN" or explicit timesteps), walked from high noise to -1, with optional RePaint jumps.

    Starting from an image at ``init_t``: guided-diffusion's specs and explicit timesteps are cut at
    ``init_t`` (SDEdit's convention: the steps above it are skipped), while "logsnrN" places all N
    steps between ``init_t`` and 0, so N stays the number of network evaluations."""
    num_train_steps = schedule.num_steps
    if init_t is not None and not 0 <= init_t < num_train_steps:
        raise ValueError(f"init_t must be in [0, {num_train_steps - 1}], got {init_t}")
    text = steps.strip() if isinstance(steps, str) else ""
    if init_t is not None and text.startswith("logsnr"):
        try:
            grid = logsnr_spacing(int(text[6:]), schedule, t_max=init_t)
        except ValueError as exc:
            raise ValueError(f"bad respacing {steps!r} below init_t={init_t}: {exc}") from None
    else:
        grid = respace(steps, num_train_steps, schedule)
    if init_t is not None:
        grid = [t for t in grid if t <= init_t]
        if not grid:
            raise ValueError(f"no step of the grid lies at or below init_t={init_t}")
    if resample is None:
        return grid[::-1] + [-1]
    if hasattr(resample, "walk"):  # another walk over the grid (DAPS's annealing, guidedinv.daps.Annealing)
        return list(resample.walk(grid, schedule))
    return [grid[i] if i >= 0 else -1 for i in resampling_path(len(grid), resample)]


def _module_device(module: torch.nn.Module) -> torch.device:
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


def sample(
    denoiser: Denoiser,
    shape: Sequence[int],
    rng: NoiseSource | torch.Generator,
    *,
    steps: int | str | Sequence[int] = 50,
    rule: StepRule | None = None,
    terms: Sequence[GuidanceTerm] = (),
    labels: torch.Tensor | None = None,
    init: torch.Tensor | None = None,
    init_t: int | None = None,
    resample: Resampling | None = None,
    callback: Callable[[StepInfo], None] | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Draw samples x0 ~ p(x0 | guidance) by reverse diffusion.

    denoiser: prior (or CFG-wrapped conditional prior), see :mod:`guidedinv.denoiser`.
    shape: (B, C, H, W) or (B, d): the batch to draw, in the model's data range.
    rng: one random stream per item (:class:`NoiseSource`); a bare generator is split into
        per-item streams, so item i's result does not depend on the batch size.
    steps: the grid: guided-diffusion respacing ("250", "ddim25", "10,10,10"), "logsnrN" (best
        for few steps with DPM-Solver++), or explicit timesteps.
    rule: step rule, default DDIM(eta=0).
    terms: guidance terms, applied in order.
    labels: (B,) class labels handed to the denoiser (class-conditional models / CFG).
    init, init_t: start from ``init`` (same shape, model range) noised to timestep ``init_t``
        (SDEdit, Meng et al. 2022) instead of from pure noise.
    resample: RePaint-style resampling jumps, or any object whose ``walk(grid, schedule)`` returns the
        path (timesteps, -1 clean; an upward pair re-noises): DAPS's :class:`guidedinv.daps.Annealing`.
    callback: called with a :class:`StepInfo` after every reverse step.
    Returns the final sample (B, ...) at noise level 0.
    """
    rule = rule if rule is not None else DDIM(0.0)
    schedule = denoiser.schedule
    batch = int(shape[0]) if init is None else init.shape[0]
    if device is None:
        device = init.device if init is not None else _module_device(denoiser)
    if isinstance(rng, torch.Generator):
        rng = NoiseSource.from_generator(rng, batch)
    if len(rng) != batch:
        raise ValueError(f"{len(rng)} random streams for a batch of {batch}")
    if (init is None) != (init_t is None):
        raise ValueError("init and init_t go together: give both to start from an image, or neither")
    path = build_path(steps, schedule, init_t, resample)
    num_reverse = sum(1 for a, b in zip(path, path[1:]) if b < a)

    if init is None:
        x = rng.randn(tuple(shape[1:]), dtype, device)
    else:
        x = init.to(device=device, dtype=dtype)
        a0 = schedule.alpha_bar(path[0])
        x = math.sqrt(a0) * x + math.sqrt(1 - a0) * rng.randn_like(x)
    if labels is not None:
        labels = labels.to(device)

    state = rule.new_state()
    index = 0
    for t, t_next in zip(path, path[1:]):
        a, a_next = schedule.alpha_bar(t), schedule.alpha_bar(t_next)
        if t_next > t:  # resampling jump: forward-noise from t up to t_next, no network call
            x = math.sqrt(a_next / a) * x + math.sqrt(1 - a_next / a) * rng.randn_like(x)
            state = rule.new_state()
            continue
        x = _step(denoiser, x, t, t_next, index, num_reverse, terms, rule, rng, state, labels, callback)
        index += 1
    return x


def _step(denoiser: Denoiser, x: torch.Tensor, t: int, t_next: int, index: int, num_steps: int,
          terms: Sequence[GuidanceTerm], rule: StepRule, rng: NoiseSource, state: dict, labels: torch.Tensor | None,
          callback: Callable[[StepInfo], None] | None) -> torch.Tensor:
    """One network step from t to t_next (either direction): denoise, the terms' x0 hooks, the rule,
    the terms' sample hooks, the callback. The body of :func:`sample` and :func:`invert`."""
    schedule = denoiser.schedule
    a, a_next = schedule.alpha_bar(t), schedule.alpha_bar(t_next)
    batch, device = x.shape[0], x.device
    ctx = StepContext(index, num_steps, t, t_next, a, a_next, x, None, labels, rng, denoiser, rule)  # type: ignore[arg-type]
    active = [term for term in terms if term.active(ctx)]
    with_grad = any(term.needs_grad for term in active)
    with torch.set_grad_enabled(with_grad):
        x_in = x.detach().requires_grad_(with_grad)
        pred = denoiser(x_in, timestep_tensor(t, batch, device), labels)
    ctx.x, ctx.pred = x_in, pred
    x0 = pred.x0
    for term in active:
        x0 = term.correct_x0(ctx, x0)
    x0 = x0.detach()
    with torch.no_grad():
        x_next = rule.step(x_in.detach(), pred.with_x0(x0), a, a_next, rng, state)
    for term in active:
        x_next = term.correct_sample(ctx, x_next)
    x_next = x_next.detach()
    if callback is not None:
        callback(StepInfo(index, num_steps, t, t_next, ctx.sigma, x_in.detach(), x0, x_next))
    return x_next


def invert(
    denoiser: Denoiser,
    x0: torch.Tensor,
    *,
    steps: int | str | Sequence[int] = 50,
    rule: StepRule | None = None,
    terms: Sequence[GuidanceTerm] = (),
    labels: torch.Tensor | None = None,
    callback: Callable[[StepInfo], None] | None = None,
) -> torch.Tensor:
    """Encode clean images to their noise latents by running the probability-flow ODE upwards
    (DDIM inversion; Song et al. 2021 sec. 4.3, Dhariwal & Nichol 2021 app. F): the grid of ``steps``
    ascending, each step the rule's deterministic map from t to the next larger t, with the same step
    body as :func:`sample` (so the same terms, labels and callbacks apply).

    x0: (B, ...) clean, in the model's range. It is first brought to the grid's lowest timestep t0
    along the ODE's own noise estimate, x_t0 = sqrt(a0) x0 + sqrt(1 - a0) eps(sqrt(a0) x0, t0) (one
    network call), rather than taken as x_t0 itself (the usual shortcut, whose error sqrt(1 - a0)
    eps = 0.01 on the linear schedule floors the round trip at ~3e-4 on the Gaussian test prior;
    this start floors it at ~2e-5). The run makes len(grid) network calls.
    rule: a deterministic rule, DDIM(eta=0) (first order, the default) or DPMSolverPP2M (second order).
    Returns the latent at the grid's top timestep; ``sample(..., steps, init=latent, init_t=top)``
    with the same rule, grid and no fresh noise decodes it (``decode`` below does that)."""
    rule = rule if rule is not None else DDIM(0.0)
    if getattr(rule, "eta", 0.0) != 0.0 or getattr(rule, "zeta", 0.0) != 0.0 or type(rule).__name__ in ("DDPM",):
        raise ValueError(f"inversion needs a deterministic rule (ddim with eta 0, dpm++2m), got {rule!r}")
    grid = build_path(steps, denoiser.schedule)[:-1][::-1]  # ascending timesteps of the grid
    a0 = denoiser.schedule.alpha_bar(grid[0])
    with torch.no_grad():
        x = math.sqrt(a0) * x0.detach()
        y = None if labels is None else labels.to(x.device)
        eps = (x - math.sqrt(a0) * denoiser(x, timestep_tensor(grid[0], x.shape[0], x.device), y).x0) / math.sqrt(1 - a0)
        x = math.sqrt(a0) * x0.detach() + math.sqrt(1 - a0) * eps
    return _walk(denoiser, x, grid, rule, terms, labels, callback)


def decode(
    denoiser: Denoiser,
    latent: torch.Tensor,
    *,
    steps: int | str | Sequence[int] = 50,
    rule: StepRule | None = None,
    terms: Sequence[GuidanceTerm] = (),
    labels: torch.Tensor | None = None,
    callback: Callable[[StepInfo], None] | None = None,
) -> torch.Tensor:
    """The inverse of :func:`invert`: the ODE downwards from the grid's top timestep to the clean
    image, the latent taken as it is (not noised again), with the same step body as :func:`sample`."""
    rule = rule if rule is not None else DDIM(0.0)
    return _walk(denoiser, latent.detach(), build_path(steps, denoiser.schedule), rule, terms, labels, callback)


def _walk(denoiser: Denoiser, x: torch.Tensor, path: Sequence[int], rule: StepRule, terms: Sequence[GuidanceTerm],
          labels: torch.Tensor | None, callback: Callable[[StepInfo], None] | None) -> torch.Tensor:
    """A deterministic rule along ``path`` (up or down), one network step per pair (no noise is drawn)."""
    if labels is not None:
        labels = labels.to(x.device)
    rng = NoiseSource.from_seeds([0] * x.shape[0])  # deterministic rules draw nothing
    state = rule.new_state()
    for index, (t, t_next) in enumerate(zip(path, path[1:])):
        x = _step(denoiser, x, t, t_next, index, len(path) - 1, terms, rule, rng, state, labels, callback)
    return x
