"""How much memory a restoration needs, before it starts, and a refusal that says what would fit.

Peak = the largest network call's activations + the image-sized buffers + the weights.

* Network call: planned exactly as :func:`guidedinv.tiling.plan_call` will run it: chunks of tiles
  under the budget (at most the budget, or one tile when a tile alone is over it). Forward-only
  methods (pnp, ddnm, diffpir, repaint) hold one chunk. A gradient method (dps) differentiates
  through the network, so every tile's activations are kept for the backward pass: chunking alone
  cannot bound that (the kept activations of all chunks add up: 15 kB per pixel for the embedded
  prior, 15 GB at 1 Mpx), so when they are over the budget each chunk is recomputed in the backward
  pass (one more forward pass per step) and the call holds one chunk again: one DPS network call
  with its backward pass peaked at 348 / 374 / 421 MB at 256 / 512 / 1024 px (all tiles kept:
  1.54 GB at 256 px).
* Image-sized buffers: float32 copies of the (3-channel, output-sized) image the sampler and the
  method's data step hold at their peak, counted with guidedinv.memory.LiveBytes around restore()
  on a 1224x816 output with a stand-in network: pnp 6 (denoise), 8.3 (deblur: the FFT's complex
  buffers), 7.2 (inpaint), 8.0 (superres); ddnm 8-12.7; diffpir 10.5; repaint 7.5; dps 11.6-16.9.
  The estimate takes the largest: 13 forward-only, 19 with gradients. benchmarks/memory.py measured
  (peak RSS - the estimated network part) / image: pnp denoise 4.2-7.8, deblur 9.7-11.3 from 1 to
  24 Mpx (24 Mpx: 2.34 GB denoising, 3.62 GB deblurring; estimates 4.09 GB).
* Weights: the network's parameters (10 MB for the embedded prior).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .errors import InputError
from .memory import available_memory, call_bytes, format_bytes, memory_budget
from .tiling import CallPlan, Tiling, plan_call, recommended_tiling, training_tiling

__all__ = ["MemoryEstimate", "estimate_memory", "estimate_for", "check_memory", "network_bytes_per_pixel",
           "EMBEDDED_TILING", "EMBEDDED_BYTES_PER_PIXEL", "IMAGE_COPIES"]

EMBEDDED_TILING = recommended_tiling(48, 8)  # the embedded prior's: 64 px tiles, 8 shared
EMBEDDED_BYTES_PER_PIXEL = {False: 3328, True: 22810}  # its call_bytes per tile pixel, margins included
EMBEDDED_WEIGHTS = 2_609_027 * 4
IMAGE_COPIES = {False: 13.0, True: 19.0}


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak memory of a restoration of ``batch`` images of ``height`` x ``width`` (output size): the
    network call's activations (``plan``), the image-sized buffers and the weights, in bytes."""

    height: int
    width: int
    batch: int
    gradient: bool
    plan: CallPlan
    images: int
    weights: int
    options: dict[str, Any]  # the other arguments of estimate_memory, to size what would fit

    @property
    def network(self) -> int:
        return self.plan.peak_bytes

    @property
    def total(self) -> int:
        return self.network + self.images + self.weights

    def describe(self) -> str:
        p = self.plan
        calls = (f"{p.tiles} tiles in chunks of {p.chunk}" if p.tiling is not None else f"{p.tiles} whole images, {p.chunk} a call")
        kept = ", checkpointed" if p.checkpoint else (", all kept for the backward pass" if p.grad else "")
        return (f"about {format_bytes(self.total)}: network {format_bytes(self.network)} ({calls}{kept}), images "
                f"{format_bytes(self.images)}, weights {format_bytes(self.weights)}")


def estimate_memory(
    height: int, width: int, *, batch: int = 1, gradient: bool = False, tiling: Tiling | None = EMBEDDED_TILING,
    fallback: Tiling | None = EMBEDDED_TILING, budget: int | None = None, bytes_per_pixel: float | None = None,
    image_copies: float | None = None, weights: int = EMBEDDED_WEIGHTS, device: torch.device | str = "cpu",
    room: int | None = None,
) -> MemoryEstimate:
    """Peak memory of restoring ``batch`` images whose OUTPUT is ``height`` x ``width`` (module notes).

    gradient: the method differentiates through the network (dps). tiling / fallback: the network's
    tiling (None: whole images) and the tiles a whole image over the budget falls back to (None: it runs
    whole if it fits in ``room``, default the memory available, else an InputError). budget: activation
    bytes of one call (default memory_budget(device)). bytes_per_pixel: the network's activation bytes
    per pixel of a call (:func:`network_bytes_per_pixel`; default the embedded prior's). image_copies:
    image-sized float32 buffers (default IMAGE_COPIES). weights: bytes of the parameters. Defaults
    describe the embedded prior with its default tiling.
    """
    limit = int(budget if budget is not None else memory_budget(device))
    options = {"batch": int(batch), "gradient": bool(gradient), "tiling": tiling, "fallback": fallback, "budget": limit,
               "bytes_per_pixel": bytes_per_pixel, "image_copies": image_copies, "weights": int(weights), "device": device,
               "room": room}
    per_px = float(EMBEDDED_BYTES_PER_PIXEL[bool(gradient)] if bytes_per_pixel is None else bytes_per_pixel)
    plan = plan_call(int(batch), int(height), int(width), tiling, lambda h, w: int(per_px * h * w), limit, bool(gradient), fallback,
                     room if room is not None else available_memory(device))
    copies = IMAGE_COPIES[bool(gradient)] if image_copies is None else float(image_copies)
    images = int(copies * batch * 3 * height * width * 4)
    return MemoryEstimate(int(height), int(width), int(batch), bool(gradient), plan, images, int(weights), options)


def network_bytes_per_pixel(denoiser: Any, gradient: bool = False) -> float:
    """Activation bytes per pixel of ``denoiser``'s network call (a loaded NetworkDenoiser), measured once
    on one tile of its tiling (or a 64 px crop for a whole-image network; margins included)."""
    tiling = getattr(denoiser, "tiling", None)
    side = tiling.size if tiling is not None else 64
    param = next(iter(denoiser.parameters()), None)
    dtype = torch.float32 if param is None or not param.is_floating_point() else torch.promote_types(param.dtype, torch.float32)
    x = torch.zeros(1, 3, side, side, dtype=dtype, device=None if param is None else param.device)
    t = torch.full((1,), float(denoiser.schedule.num_steps // 2), device=x.device)
    labels = None if not getattr(denoiser, "num_classes", 0) else torch.zeros(1, dtype=torch.long, device=x.device)
    return call_bytes(denoiser._call_net, x, (t, labels), gradient) / (side * side)


def estimate_for(denoiser: Any, height: int, width: int, **options: Any) -> MemoryEstimate:
    """:func:`estimate_memory` for a loaded denoiser: its tiling, training-crop fallback, measured bytes per
    pixel, weights and device; ``options`` as estimate_memory's (batch, gradient, budget, image_copies)."""
    gradient = bool(options.get("gradient", False))
    param = next(iter(denoiser.parameters()), None)
    defaults = {
        "tiling": getattr(denoiser, "tiling", None), "fallback": training_tiling(denoiser),
        "bytes_per_pixel": network_bytes_per_pixel(denoiser, gradient),
        "weights": sum(p.numel() * p.element_size() for p in denoiser.parameters()),
        "device": "cpu" if param is None else param.device,
    }
    return estimate_memory(height, width, **{**defaults, **options})


def check_memory(estimate: MemoryEstimate, available: int | None = None, what: str = "this restoration") -> None:
    """Refuse, with one line saying what would fit, an ``estimate`` over ``available`` bytes (default what
    the device has free, guidedinv.memory.available_memory; nothing is checked when that is unknown)."""
    e = estimate
    room = available_memory(e.options["device"]) if available is None else available
    if room is None or e.total <= room:
        return

    def total(**changes: Any) -> int | None:
        options = {**e.options, **changes}
        try:
            return estimate_memory(options.pop("height", e.height), options.pop("width", e.width), **options).total
        except InputError:
            return None

    def fits(scale: float) -> bool:
        need = total(height=max(1, int(e.height * scale)), width=max(1, int(e.width * scale)))
        return need is not None and need <= room

    low, high = 0.0, 1.0
    for _ in range(40):
        mid = (low + high) / 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    hints = []
    if low * min(e.height, e.width) >= 16:
        hints.append(f"at most about {int(e.width * low)}x{int(e.height * low)} px fit")
    if e.batch > 1 and (total(batch=1) or room + 1) <= room:
        hints.append("one image at a time fits")
    forward = total(gradient=False) if e.gradient else None
    if forward is not None and forward <= room:
        hints.append(f"a method without gradients through the network (pnp, ddnm, diffpir) needs {format_bytes(forward)}")
    raise InputError(f"{what} ({e.batch} x {e.width}x{e.height} px) needs {e.describe()}, but only {format_bytes(room)} "
                     f"is available: {'; '.join(hints) or 'nothing of this size fits'}")
