"""Memory: the budget of one network call, what a network call costs, and the C allocator's setting.

The budget bounds the ACTIVATION memory of one network call: a tiled call (guidedinv.tiling) splits
the tiles of its images into chunks whose activations fit it. It does not bound the image-sized
buffers of a restoration (the sampler's state, the measurement, the blended output), which grow with
the image whatever the budget; :func:`guidedinv.memory_estimate.estimate_memory` counts both.

Budget: :func:`set_memory_budget` (bytes or "2G"), else the environment variable ``GUIDEDINV_MEMORY``,
else the default, fixed at first use: on the host a quarter of the available memory (``MemAvailable``,
or the cgroup's room when lower), at most 512 MiB, at least 64 MiB; on a CUDA device half its free
memory. A quarter leaves room for the image-sized buffers, the weights and whatever else runs. On a
CPU larger chunks are not faster: one 1024 px call of the embedded prior (361 tiles of 13 MB by the
count below), 1 thread, allocator tuned, took 13.6 s of CPU with a 256 MiB budget (18 tiles a chunk,
peak 342 MB), 12.6-13.7 s with 512 MiB (37 tiles, 520-672 MB), 14.2 s in chunks of 64 (1207 MB) and
13.1 s in one call (4288 MB); 512 MiB leaves room for more threads. A GPU's memory is the process's
own and larger calls are faster there. The budget decides how a call is chunked; it never refuses
on its own: a tile (or a whole image that cannot be tiled) over it runs alone.

Cost of a network call: measured, once per network, input shape, dtype, device and grad mode, by
running the network on one tile (or a crop) while counting the bytes of the live tensors it creates
(:class:`LiveBytes`, a dispatch mode: every op's outputs are counted until their last Python
reference dies). Activations are linear in the batch, so a chunk of k tiles costs k times one tile.
With gradients on (DPS), what autograd saves for the backward pass stays counted (saved-tensor
hooks). The count is doubled for what it cannot see (heap fragmentation, oneDNN's reorder buffers
and workspaces, the backward pass's buffers): the embedded prior counts 1664 B per pixel of a tile,
and the RSS of its calls grew by 2.0-3.9 kB per pixel (1 to 64 tiles a call, 1 or 2 threads, glibc's
allocator tuned or not; 1.9 kB for 361 tiles in one call); with gradients it counts 11.4 kB, the
RSS grew by 15 kB per pixel, forward and backward (1.54 GB for the 25 tiles of a 256 px image).

Allocator (Linux/glibc only): glibc serves every block over its mmap threshold (at most 32 MB) with
a fresh mmap and unmaps it on free, so a network call whose activations are larger page-faults them
in again at every call (system time 40-107 % of user time at 512 px and above). Before a tiled call,
:func:`allocator_for` raises the mmap threshold with ``mallopt`` just above the largest activation
tensor of a chunk (measured with its cost) and the trim threshold to twice the budget, so freed
activations stay in the heap for the next chunk and call, at most about two budgets of free memory
are kept, and image-sized buffers larger than that are still mapped and returned whole (in the heap
they fragmented it: a 24 Mpx pnp step peaked at 3.18 GB denoising and 4.43 GB deblurring, now 2.34
and 3.62 GB). ``GUIDEDINV_MALLOPT=0`` leaves the allocator alone. One 1024 px call, 1 thread
(benchmarks/memory.py --calls): all tiles in one call with glibc as it comes 10.6 s user + 12.7 s
system, 2.57 GB; chunks with glibc as it comes 11.1 + 6.0 s, 431 MB; chunks + mallopt 12.6 + 0.04 s,
520 MB. CPU time per output pixel 13.7 / 10.9 / 12.0 us at 256 / 512 / 1024 px (8.8 / 8.6 / 8.6 us
per tile pixel: flat; the tiles of a 256 px image overlap more); it was 15.3 / 16.9 / 22.2 us. The
price: freed blocks stay in a heap that fragments, so the peak RSS of a call is up to twice its live
tensors (one call of all 361 tiles: 4.29 GB tuned, 2.57 GB not); chunks keep it small.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import re
import weakref
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from .errors import InputError

__all__ = ["ENV_BUDGET", "parse_memory", "format_bytes", "set_memory_budget", "memory_budget", "available_memory",
           "LiveBytes", "call_bytes", "largest_tensor", "tune_allocator", "allocator_for"]

ENV_BUDGET = "GUIDEDINV_MEMORY"
ENV_MALLOPT = "GUIDEDINV_MALLOPT"
DEFAULT_FRACTION = 0.25
DEFAULT_CAP = 512 * 2**20
DEFAULT_FLOOR = 64 * 2**20
CUDA_FRACTION = 0.5
MARGIN = 2.0  # what the live-tensor count cannot see: heap fragmentation, oneDNN's reorder buffers
GRAD_MARGIN = 2.0  # with gradients: the backward pass's own buffers too

_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "kib": 2**10, "m": 2**20, "mb": 2**20, "mib": 2**20,
          "g": 2**30, "gb": 2**30, "gib": 2**30, "t": 2**40, "tb": 2**40, "tib": 2**40}
_explicit: int | None = None
_defaults: dict[str, int] = {}


def parse_memory(text: str | int, where: str = "--memory") -> int:
    """Bytes from a size such as ``512M``, ``2G``, ``1.5GB`` or ``1000000`` (K, M, G, T are powers of
    1024, with or without B / iB); an InputError naming ``where`` otherwise. At least 1 MiB."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise InputError(f"{where} {text!r}: expected a size such as 512M, 2G or 1.5GB (K, M, G, T = powers of 1024)")
    value = int(float(match.group(1)) * _UNITS[unit])
    if value < 2**20:
        raise InputError(f"{where} {text!r}: expected at least 1M (1 MiB)")
    return value


def format_bytes(n: float) -> str:
    """``1.5 GB`` style (powers of 1024), for messages and tables."""
    for unit, size in (("TB", 2**40), ("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


def set_memory_budget(value: int | str | None) -> None:
    """Set the activation budget of one network call for this process: bytes, a size string
    (:func:`parse_memory`), or None to go back to ``GUIDEDINV_MEMORY`` / the default."""
    global _explicit
    _explicit = None if value is None else (parse_memory(value) if isinstance(value, str) else _positive(value))
    if _threshold > 0:  # the trim threshold follows the budget
        tune_allocator(0)


def _positive(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 2**20:
        raise InputError(f"memory budget {value!r}: expected a whole number of bytes >= 1048576 (1 MiB)")
    return value


def memory_budget(device: torch.device | str | None = None) -> int:
    """The activation budget of one network call on ``device`` (default CPU), in bytes (module notes)."""
    if _explicit is not None:
        return _explicit
    env = os.environ.get(ENV_BUDGET, "").strip()
    if env:
        return parse_memory(env, ENV_BUDGET)
    dev = torch.device(device if device is not None else "cpu")
    key = str(dev)
    if key not in _defaults:
        free = available_memory(dev)
        if dev.type == "cuda":  # the device's memory is this process's, and larger calls are faster there
            _defaults[key] = max(DEFAULT_FLOOR, int(free * CUDA_FRACTION))
        else:
            _defaults[key] = max(DEFAULT_FLOOR, min(DEFAULT_CAP, DEFAULT_CAP if free is None else int(free * DEFAULT_FRACTION)))
    return _defaults[key]


def available_memory(device: torch.device | str | None = None) -> int | None:
    """Bytes this process may still allocate on ``device``: a CUDA device's free memory; on the host
    ``MemAvailable`` (Linux), lowered to the cgroup v2 limit minus its usage when that is smaller, else
    the free physical pages; None when unknown."""
    dev = torch.device(device if device is not None else "cpu")
    if dev.type == "cuda":
        return int(torch.cuda.mem_get_info(dev)[0])
    free: int | None = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
    if free is None:
        with contextlib.suppress(AttributeError, ValueError, OSError):
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    with contextlib.suppress(OSError, ValueError):
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        if limit != "max":
            with open("/sys/fs/cgroup/memory.current") as f:
                room = int(limit) - int(f.read().strip())
            free = room if free is None else min(free, room)
    return free


# -- the cost of a network call ------------------------------------------------------------------------
class LiveBytes(TorchDispatchMode):
    """Dispatch mode counting the bytes of live tensor storages created inside it: ``peak`` is the
    most held at once. A storage counts from the op that made it until the last Python tensor using
    it dies (views share their base's storage), or for good once :meth:`keep` was told autograd saved
    it for the backward pass; inputs made before entering (and views of them) are not counted.
    ``largest``: the largest storage made."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, list[int]] = {}
        self.kept: set[int] = set()
        self.current = self.peak = self.largest = 0

    def keep(self, tensor: torch.Tensor) -> torch.Tensor:
        """A saved-tensor pack hook: ``tensor``'s storage stays counted after its Python tensors die."""
        key = tensor.untyped_storage().data_ptr()
        if key in self.live:
            self.kept.add(key)
        return tensor

    def _release(self, key: int) -> None:
        entry = self.live.get(key)
        if entry is not None:
            entry[0] -= 1
            if entry[0] == 0:
                del self.live[key]
                if key not in self.kept:
                    self.current -= entry[1]

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        outside = None  # storages of inputs made before entering: a view of one is no new memory
        for o in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(o, torch.Tensor) and o.device.type != "meta":
                storage = o.untyped_storage()
                key = storage.data_ptr()
                if key not in self.live:
                    if outside is None:
                        outside = {a.untyped_storage().data_ptr() for a in tree_leaves((args, kwargs))
                                   if isinstance(a, torch.Tensor) and a.device.type != "meta"}
                    if key in outside:
                        continue
                if key in self.live:
                    self.live[key][0] += 1
                else:
                    self.live[key] = [1, storage.nbytes()]
                    self.current += storage.nbytes()
                    self.peak = max(self.peak, self.current)
                    self.largest = max(self.largest, storage.nbytes())
                weakref.finalize(o, self._release, key)
        return out


_costs: weakref.WeakKeyDictionary[Any, dict[tuple, tuple[int, int]]] = weakref.WeakKeyDictionary()


def call_bytes(fn: Any, x: torch.Tensor, extras: tuple[torch.Tensor | None, ...], grad: bool) -> int:
    """Bytes one call ``fn(x, *extras)`` needs beyond its input, margin included, measured once per
    function, input shape, dtype, device and grad mode (module notes). grad: the bytes kept for the
    backward pass are counted as well. The measurement runs ``fn`` once on ``x`` (its output is dropped)."""
    return _cost(fn, x, extras, grad)[0]


def largest_tensor(fn: Any, x: torch.Tensor, extras: tuple[torch.Tensor | None, ...], grad: bool) -> int:
    """Bytes of the largest tensor the call ``fn(x, *extras)`` makes (the same measurement as call_bytes)."""
    return _cost(fn, x, extras, grad)[1]


def _cost(fn: Any, x: torch.Tensor, extras: tuple[torch.Tensor | None, ...], grad: bool) -> tuple[int, int]:
    owner = getattr(fn, "__self__", fn)
    key = (getattr(fn, "__name__", None), tuple(x.shape), x.dtype, str(x.device), grad)
    try:
        table = _costs.setdefault(owner, {})
    except TypeError:  # not weak-referenceable: measure every time
        table = {}
    if key not in table:
        table[key] = _measure(fn, x, extras, grad)
    return table[key]


def _measure(fn: Any, x: torch.Tensor, extras: tuple[torch.Tensor | None, ...], grad: bool) -> tuple[int, int]:
    meter = LiveBytes()
    x = x.detach().requires_grad_(grad)
    try:
        with torch.set_grad_enabled(grad), torch.autograd.graph.saved_tensors_hooks(meter.keep, lambda t: t), meter:
            out = fn(x, *extras)
        del out
    except Exception:  # a network the dispatch mode cannot follow: a generous guess, 512 floats per input value
        guess = int(MARGIN * 512 * x.numel() * x.element_size())
        return guess, guess // 8
    return int((GRAD_MARGIN if grad else MARGIN) * meter.peak), meter.largest


# -- the allocator ---------------------------------------------------------------------------------
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_GLIBC_MAX = 32 * 2**20  # glibc's own highest (dynamic) mmap threshold on 64-bit machines
_threshold = 0  # the mmap threshold set, 0: not yet


def tune_allocator(largest: int = _GLIBC_MAX) -> bool:
    """Keep a network call's freed activations in glibc's heap (module notes): M_MMAP_THRESHOLD just above
    ``largest`` (the largest activation tensor of a chunk, at least 32 MB), so activations come from the
    heap and are reused while larger, image-sized, buffers are mapped and returned whole (in the heap
    they fragment it: glibc's 64-byte aligned blocks cannot reuse a freed block of their own size);
    M_TRIM_THRESHOLD = twice the budget. The threshold only rises. Linux/glibc only; False (nothing
    done) elsewhere or with ``GUIDEDINV_MALLOPT=0``."""
    global _threshold
    if os.environ.get(ENV_MALLOPT, "1").strip() == "0" or platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    wanted = min(max(int(1.25 * largest), _GLIBC_MAX, _threshold), 2**31 - 1)
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if mallopt(_M_MMAP_THRESHOLD, wanted) != 1:  # some glibc versions refuse more than 32 MB
        wanted = _GLIBC_MAX
        if mallopt(_M_MMAP_THRESHOLD, wanted) != 1:
            return False
    _threshold = wanted
    return mallopt(_M_TRIM_THRESHOLD, min(2 * max(memory_budget(), wanted), 2**31 - 1)) == 1


def allocator_for(largest: int) -> None:
    """Before a network call whose largest activation tensor is ``largest`` bytes: raise the mmap
    threshold above it once (:func:`tune_allocator`); nothing when it already is, or was refused."""
    if _threshold >= 0 and largest * 1.25 > _threshold:
        if not tune_allocator(largest):
            _disable()


def _disable() -> None:
    global _threshold
    _threshold = -1  # refused or switched off: do not ask again
