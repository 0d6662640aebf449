"""Tiled network evaluation: run a fully convolutional network on overlapping tiles of the image and
blend the outputs, so that it sees inputs of the size it was trained on, whatever the image size.

Why: a network trained on small crops (the embedded prior: 48 px) normalises its features with
GroupNorm statistics taken over the whole input. On a 256 px image those statistics mix regions a
48 px crop never sees together, and the denoiser over-smooths: on 256 px training crops, 70 %-random
inpainting went from 28.42 dB (whole image) to 29.58 dB with 64 px tiles (16 px shared; 29.59 with
8 shared, the default), SR x4 and both deblurrings gained 0.1-0.2 dB and the 128 px box 2.6 dB
(benchmarks/tiling.py prints the table). Tiling also bounds the
activation memory of a network call, so a large image fits where the whole image would not.

Blending: each tile's output is weighted by a separable window that ramps linearly over the shared
band, the weights are summed per pixel and the blend divides by that sum, so the weights form a
partition of unity: a network that acts pixel by pixel gives the same output tiled or not. Tiles are
laid out per image (the last tile of a row or column is flush with the border).

Chunks: the tiles of a call (image by image, each in box order) go to the network in chunks whose
activations fit the memory budget (guidedinv.memory: a quarter of the available memory, at most
512 MiB on a CPU by default), so memory stays flat with image size. Every pixel adds its tiles'
outputs in box order whatever the chunks, so chunking changes nothing but the network's batch (bit
for bit for a network whose per-item outputs do not depend on the batch). A whole image over the
budget runs on the network's training tiles where they are known, else alone if it fits in memory,
else it is refused. With gradients (DPS) each chunk is checkpointed when the activations kept for
the backward pass would exceed the budget. One 1024 px call of the embedded prior (361 tiles), 1
thread: all tiles in one call 10.6 s user + 12.7 s system, 2.57 GB peak; now (chunks of 37, glibc
tuned) 12.6 + 0.04 s, 520 MB (benchmarks/memory.py --calls).
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace

import torch
from torch.autograd.function import once_differentiable
from torch.utils.checkpoint import checkpoint

from .errors import InputError
from .memory import allocator_for, available_memory, call_bytes, format_bytes, largest_tensor, memory_budget

__all__ = ["Tiling", "tiles_of", "tile_starts", "blend_window", "tiled_call", "recommended_tiling", "tile_progress",
           "plan_call", "CallPlan", "tile_boxes", "training_tiling"]

PROBE = 128  # a whole image's activation bytes are measured on a crop of at most this side


@dataclass(frozen=True)
class Tiling:
    """Evaluate on ``size`` x ``size`` tiles sharing ``overlap`` px with their neighbours.

    ``max_tiles``: at most this many tiles per network call; ``budget``: the activation bytes of one
    network call (None: :func:`guidedinv.memory.memory_budget`). The tiles of a call (of one image or
    of a batch) go in chunks that respect both (:func:`plan_call`)."""

    size: int
    overlap: int
    max_tiles: int = 64
    budget: int | None = None

    def __post_init__(self) -> None:
        if self.size < 1 or not 0 <= self.overlap < self.size:
            raise ValueError(f"tiling needs size >= 1 and 0 <= overlap < size, got size {self.size}, overlap {self.overlap}")
        if self.max_tiles < 1:
            raise ValueError(f"tiling max_tiles must be >= 1, got {self.max_tiles}")
        if self.budget is not None and self.budget < 1:
            raise ValueError(f"tiling budget must be None or >= 1 byte, got {self.budget}")

    def describe(self) -> str:
        return f"{self.size} px tiles, {self.overlap} px shared"


def tiles_of(size: int) -> Tiling:
    """``size`` px tiles sharing an eighth of their side with each neighbour. On 256 px training crops an
    eighth (64 px tiles, 8 shared) gave the same PSNR as a quarter (16 shared) within 0.05 dB on four
    tasks, with fewer tiles on most image sizes (a 512 px call: 2.9 s instead of 4.9 s on 2 CPU cores)."""
    return Tiling(int(size), int(size) // 8)


def recommended_tiling(train_crop: int | None, multiple: int, tile: int | None = None) -> Tiling | None:
    """The tiling for a network trained on ``train_crop`` px crops: :func:`tiles_of` 4/3 of the crop,
    rounded up to a multiple of ``multiple`` (the network's size multiple) and of 16, or of ``tile``
    where the file's card names the side its validation chose (a multiple of ``multiple``). None
    (whole image) when neither is known (public checkpoints, trained on whole images)."""
    if tile and tile % int(multiple) == 0:
        return tiles_of(tile)
    if not train_crop:
        return None
    step = math.lcm(int(multiple), 16)
    return tiles_of(step * math.ceil(4 * int(train_crop) / 3 / step))


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of the tiles along one axis: every ``tile - overlap`` px, the last flush with the end.
    One tile at 0 when the axis is no longer than a tile."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def blend_window(length: int, overlap: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Per-pixel weight along one axis of a tile: ramps (0.5/overlap .. 1) over ``overlap`` px at both
    ends, 1 in between; strictly positive, so every pixel has weight."""
    w = torch.ones(length, dtype=dtype, device=device)
    n = min(overlap, length // 2)
    if n > 0:
        ramp = (torch.arange(n, dtype=dtype, device=device) + 0.5) / n
        w[:n] = ramp
        w[length - n:] = ramp.flip(0)
    return w


ProgressHook = Callable[[int, int], None]
_progress: ContextVar[ProgressHook | None] = ContextVar("guidedinv_tile_progress", default=None)


@contextmanager
def tile_progress(callback: ProgressHook | None) -> Iterator[None]:
    """Inside: every network call through :func:`tiled_call` reports ``callback(done, total)``, tiles done
    of the call's total (all images' tiles; a whole-image call counts images), once with done = 0 before
    the first chunk and after each chunk."""
    token = _progress.set(callback)
    try:
        yield
    finally:
        _progress.reset(token)


@dataclass(frozen=True)
class CallPlan:
    """How one network call runs: ``tiling`` (None: whole images; the fallback when the whole image is
    over the budget), ``tiles`` items in chunks of ``chunk``, ``item_bytes`` each; ``checkpoint``: with
    gradients, each chunk is recomputed in the backward pass instead of keeping its activations;
    ``fell_back``: the whole image was over the budget and ``tiling`` is the fallback."""

    tiling: Tiling | None
    tiles: int
    chunk: int
    item_bytes: int
    grad: bool = False
    checkpoint: bool = False
    fell_back: bool = False

    @property
    def peak_bytes(self) -> int:
        """Activation bytes the call holds at its peak: one chunk's, or with gradients and no
        checkpointing every tile's kept activations."""
        return self.item_bytes * (self.tiles if self.grad and not self.checkpoint else self.chunk)


def tile_boxes(height: int, width: int, tiling: Tiling) -> tuple[int, int, list[tuple[int, int]]]:
    """Tile height, width and top-left corners of ``tiling`` on an image of ``height`` x ``width``."""
    th, tw = min(tiling.size, height), min(tiling.size, width)
    return th, tw, [(i, j) for i in tile_starts(height, th, tiling.overlap) for j in tile_starts(width, tw, tiling.overlap)]


def plan_call(
    batch: int, height: int, width: int, tiling: Tiling | None, item_bytes: Callable[[int, int], int], budget: int,
    grad: bool = False, fallback: Tiling | None = None, room: int | None = None,
) -> CallPlan:
    """The chunks of one network call on ``batch`` images of ``height`` x ``width`` under ``budget``
    activation bytes; ``item_bytes(h, w)``: bytes of one h x w item (grad: kept activations included).

    Tiles go in chunks of at most ``budget // item_bytes`` (and ``tiling.max_tiles``), at least one:
    a tile is never split, since that would change the output. Whole images (no tiling, or an image no
    larger than a tile) go in chunks of whole images; an image alone over the budget runs on
    ``fallback`` tiles (the network's training tiles); without one it runs alone if it fits in ``room``
    (the memory available; None: no limit), else it is refused with an InputError saying what would
    fit. The budget is a target for chunking, never a reason on its own to refuse what fits. With
    gradients the kept activations of every chunk add up, so when all of them are over the budget
    each chunk is checkpointed (recomputed in the backward pass: one more forward pass, bounded memory).
    """
    whole = tiling is None or (height <= tiling.size and width <= tiling.size)
    if whole:
        per, count, cap = max(1, int(item_bytes(height, width))), batch, batch
    else:
        th, tw, boxes = tile_boxes(height, width, tiling)
        per, count, cap = max(1, int(item_bytes(th, tw))), batch * len(boxes), tiling.max_tiles
    if whole and per > budget:
        if fallback is not None and not (height <= fallback.size and width <= fallback.size):
            plan = plan_call(batch, height, width, fallback, item_bytes, budget, grad)
            return replace(plan, fell_back=True)
        if room is not None and per > room:
            scale = math.sqrt(room / per)
            raise InputError(
                f"tile 0 (whole image): one {width}x{height} image needs about {format_bytes(per)} in one network call, "
                f"more than the {format_bytes(room)} of memory available; at most about {int(width * scale)}x"
                f"{int(height * scale)} px fit whole: run it in tiles (--tile N)")
    chunk = max(1, min(cap, count, budget // per))
    checkpoint = grad and per * count > budget
    return CallPlan(None if whole else tiling, count, chunk, per, grad, checkpoint)


def tiled_call(
    fn: Callable[..., torch.Tensor],
    x: torch.Tensor,
    per_item: tuple[torch.Tensor | None, ...],
    tiling: Tiling | None,
    *,
    budget: int | None = None,
    fallback: Tiling | None = None,
    room: int | None = None,
) -> torch.Tensor:
    """``fn(x, *per_item)`` evaluated tile by tile, in chunks under a memory budget, and blended (see the
    module notes and :func:`plan_call`).

    x: (B, C, H, W); per_item: tensors of leading size B (timesteps, labels) or None, repeated for each
    tile of their image. ``tiling`` None: whole images. budget: activation bytes of one network call
    (default ``tiling.budget``, else :func:`guidedinv.memory.memory_budget`); fallback: the tiling
    for a whole image over the budget (the network's training tiles); room: the memory a whole image
    without a fallback may take (default :func:`guidedinv.memory.available_memory`), else it is refused.
    """
    if x.ndim != 4:  # not an image batch (vectors of a toy prior): one call
        return fn(x, *per_item)
    limit = budget or (tiling.budget if tiling is not None and tiling.budget else memory_budget(x.device))
    grad = torch.is_grad_enabled()
    batch, height, width = x.shape[0], x.shape[-2], x.shape[-1]
    first = tuple(None if e is None else e[:1] for e in per_item)

    def item_bytes(h: int, w: int, measure: Callable[..., int] = call_bytes) -> int:
        if (h, w) != (height, width) or max(h, w) <= PROBE:
            return measure(fn, x[:1, :, :h, :w], first, grad)
        ph, pw = min(h, PROBE), min(w, PROBE)  # a whole image: measured on a crop, linear in its pixels
        return measure(fn, x[:1, :, :ph, :pw], first, grad) * h * w // (ph * pw)

    whole = tiling is None or (height <= tiling.size and width <= tiling.size)
    if room is None and whole and fallback is None:
        room = available_memory(x.device)
    plan = plan_call(batch, height, width, tiling, item_bytes, limit, grad, fallback, room)
    shape = (height, width) if plan.tiling is None else tile_boxes(height, width, plan.tiling)[:2]
    allocator_for(plan.chunk * item_bytes(*shape, measure=largest_tensor))  # activations reuse the heap
    if plan.fell_back:
        warnings.warn(f"tile 0: a {width}x{height} image is over the memory budget of {format_bytes(limit)} in one network "
                      f"call; running it on {plan.tiling.describe()} instead (raise --memory to run it whole)",
                      RuntimeWarning, stacklevel=2)
    report = _progress.get()
    if report is not None:
        report(0, plan.tiles)
    run = (lambda *a: checkpoint(fn, *a, use_reentrant=False)) if plan.checkpoint else fn
    if plan.tiling is None:
        if plan.chunk >= batch:
            out = run(x, *per_item)
            if report is not None:
                report(batch, batch)
            return out
        parts = []
        for b0 in range(0, batch, plan.chunk):
            b1 = min(batch, b0 + plan.chunk)
            parts.append(run(x[b0:b1], *(None if e is None else e[b0:b1] for e in per_item)))
            if report is not None:
                report(b1, batch)
        return torch.cat(parts)
    th, tw, boxes = tile_boxes(height, width, plan.tiling)
    weight = (blend_window(th, plan.tiling.overlap if th < height else 0, x.dtype, x.device)[:, None]
              * blend_window(tw, plan.tiling.overlap if tw < width else 0, x.dtype, x.device)[None, :])
    norm = torch.zeros(height, width, dtype=x.dtype, device=x.device)
    for i, j in boxes:
        norm[i:i + th, j:j + tw] += weight
    job = _Job(fn, per_item, [(b, i, j) for b in range(batch) for i, j in boxes], th, tw, plan.chunk, weight, norm, report)
    if not grad:
        return job.blend(x)
    if plan.checkpoint and _frozen(fn):  # no graph in the forward pass; each chunk again in the backward pass
        return _Recompute.apply(x, job)
    outs = []  # one gather, one blend: autograd through per-tile slices costs an image-sized gradient per tile
    for c0, piece in zip(job.starts, _Tiles.apply(x, job.items, th, tw).split(plan.chunk)):
        outs.append(run(piece, *job.extras(c0, x.device)))
        job.progress(c0)
    return _Blend.apply(torch.cat(outs), job.items, th, tw, weight, norm, batch)


def _frozen(fn: Callable[..., torch.Tensor]) -> bool:
    """``fn`` is a method of a module none of whose parameters wants a gradient (a loaded denoiser)."""
    owner = getattr(fn, "__self__", None)
    return isinstance(owner, torch.nn.Module) and not any(p.requires_grad for p in owner.parameters())


@dataclass
class _Job:
    """The chunks of one tiled call: ``items`` (image, top, left), image by image, each in box order."""

    fn: Callable[..., torch.Tensor]
    per_item: tuple[torch.Tensor | None, ...]
    items: list[tuple[int, int, int]]
    th: int
    tw: int
    chunk: int
    weight: torch.Tensor
    norm: torch.Tensor
    report: ProgressHook | None

    @property
    def starts(self) -> range:
        return range(0, len(self.items), self.chunk)

    def extras(self, c0: int, device: torch.device) -> tuple[torch.Tensor | None, ...]:
        index = torch.tensor([b for b, _, _ in self.items[c0:c0 + self.chunk]], device=device)
        return tuple(None if e is None else e[index] for e in self.per_item)

    def tiles(self, x: torch.Tensor, c0: int) -> torch.Tensor:
        return torch.stack([x[b, :, i:i + self.th, j:j + self.tw] for b, i, j in self.items[c0:c0 + self.chunk]])

    def progress(self, c0: int) -> None:
        if self.report is not None:
            self.report(min(c0 + self.chunk, len(self.items)), len(self.items))

    def blend(self, x: torch.Tensor) -> torch.Tensor:
        """The blended output, chunk by chunk (no gradients through it)."""
        blended: torch.Tensor | None = None
        for c0 in self.starts:
            out = self.fn(self.tiles(x, c0), *self.extras(c0, x.device))
            if blended is None:
                blended = out.new_zeros(x.shape[0], out.shape[1], *self.norm.shape)
            _add_tiles(blended, out, self.items[c0:c0 + self.chunk], self.th, self.tw, self.weight)
            self.progress(c0)
        assert blended is not None
        return blended.div_(self.norm)


class _Recompute(torch.autograd.Function):
    """A frozen network's tiled call with gradients over the budget: the forward pass keeps no graph
    (as :meth:`_Job.blend`, the same output); the backward pass runs each chunk again with a graph of
    its own and adds its tiles' input gradients into one image-sized buffer. Memory: one chunk's
    activations, and no graph nodes left between freed activations (torch's checkpoint leaves each
    chunk's nodes, which fragment glibc's heap: about 2 MB per tile of the embedded prior)."""

    @staticmethod
    def forward(ctx, x, job):  # type: ignore[no-untyped-def]
        ctx.save_for_backward(x)
        ctx.job = job
        with torch.no_grad():
            return job.blend(x)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):  # type: ignore[no-untyped-def]
        (x,) = ctx.saved_tensors
        job: _Job = ctx.job
        g = grad / job.norm
        gx = torch.zeros_like(x)
        for c0 in job.starts:
            part = job.items[c0:c0 + job.chunk]
            tiles = job.tiles(x, c0).requires_grad_(True)
            with torch.enable_grad():
                out = job.fn(tiles, *job.extras(c0, x.device))
            g_out = torch.stack([g[b, :, i:i + job.th, j:j + job.tw] * job.weight for b, i, j in part]).to(out.dtype)
            (g_tiles,) = torch.autograd.grad(out, tiles, g_out)
            for k, (b, i, j) in enumerate(part):
                gx[b, :, i:i + job.th, j:j + job.tw] += g_tiles[k]
        return gx, None


def _add_tiles(blended: torch.Tensor, out: torch.Tensor, part: list[tuple[int, int, int]], th: int, tw: int,
               weight: torch.Tensor) -> None:
    for k, (b, i, j) in enumerate(part):  # every pixel sums its tiles in box order, whatever the chunks
        blended[b, :, i:i + th, j:j + tw] += out[k] * weight


class _Tiles(torch.autograd.Function):
    """The tiles ``items`` (image, top, left) of x, stacked; the backward adds each tile's gradient into
    one image-sized buffer (linear in the image, where per-tile slicing is quadratic)."""

    @staticmethod
    def forward(ctx, x, items, th, tw):  # type: ignore[no-untyped-def]
        ctx.items, ctx.th, ctx.tw, ctx.shape = items, th, tw, x.shape
        return torch.stack([x[b, :, i:i + th, j:j + tw] for b, i, j in items])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):  # type: ignore[no-untyped-def]
        out = grad.new_zeros(ctx.shape)
        for k, (b, i, j) in enumerate(ctx.items):
            out[b, :, i:i + ctx.th, j:j + ctx.tw] += grad[k]
        return out, None, None, None


class _Blend(torch.autograd.Function):
    """The tiles' outputs blended into their images (the same sums as the no-gradient path); the
    backward hands each tile its window of the gradient."""

    @staticmethod
    def forward(ctx, outs, items, th, tw, weight, norm, batch):  # type: ignore[no-untyped-def]
        ctx.items, ctx.th, ctx.tw = items, th, tw
        ctx.save_for_backward(weight, norm)
        blended = outs.new_zeros(batch, outs.shape[1], *norm.shape)
        _add_tiles(blended, outs, items, th, tw, weight)
        return blended.div_(norm)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):  # type: ignore[no-untyped-def]
        weight, norm = ctx.saved_tensors
        g = grad / norm
        tiles = torch.stack([g[b, :, i:i + ctx.th, j:j + ctx.tw] * weight for b, i, j in ctx.items])
        return tiles, None, None, None, None, None, None


def training_tiling(denoiser: object) -> Tiling | None:
    """The tiles of the network's training crop (:func:`recommended_tiling`) where its loader recorded
    one (``denoiser.inferred.train_crop``), else None: the fallback of a whole image over the budget."""
    inferred = getattr(denoiser, "inferred", None)
    crop, tile = getattr(inferred, "train_crop", None), getattr(inferred, "tile", None)
    if not crop and not tile:
        return None
    from .models.load import network_size_multiple  # the models import this module

    return recommended_tiling(crop, network_size_multiple(getattr(denoiser, "net", None)), tile)
