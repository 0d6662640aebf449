"""What the benchmark runs and measures with: its model (a prior, or an untrained seeded tiny network
that exercises the harness only), a denoiser wrapper that counts (and times) network calls and
backward passes, and a peak-memory meter (the notes of :mod:`guidedinv.bench.harness`)."""
from __future__ import annotations

import ctypes
import json
import threading
import time
from pathlib import Path
from typing import Any

import torch

from ..denoiser import Denoiser, Prediction

__all__ = ["CountingDenoiser", "PeakMemory", "RANDOM_TINY", "random_tiny_model", "load_bench_model"]


class CountingDenoiser(Denoiser):
    """Wraps a denoiser: counts forward calls (``calls``), calls made with gradients enabled
    (``grad_calls``: a backward pass follows each) and their wall time (``seconds``, synchronised on
    CUDA). Everything else passes through."""

    def __init__(self, inner: Denoiser) -> None:
        super().__init__()
        self.inner = inner
        self.schedule = inner.schedule
        self.num_classes = getattr(inner, "num_classes", 0)
        if hasattr(inner, "net"):
            self.net = inner.net  # restore() reads the network's size multiple from here
        self.reset()

    def reset(self) -> None:
        self.calls, self.grad_calls, self.seconds = 0, 0, 0.0

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> Prediction:
        sync = x.device.type == "cuda"
        if sync:
            torch.cuda.synchronize(x.device)
        start = time.perf_counter()
        out = self.inner(x, t, labels)
        if sync:
            torch.cuda.synchronize(x.device)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        self.grad_calls += int(torch.is_grad_enabled() and x.requires_grad)
        return out


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


try:
    import resource

    _PAGE = resource.getpagesize()
except ImportError:  # pragma: no cover - not POSIX
    resource, _PAGE = None, 4096  # type: ignore[assignment]


def _malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Context manager: ``mb`` is the peak memory above the start while inside (see module notes)."""

    def __init__(self, device: torch.device, interval: float = 0.002) -> None:
        self.device, self.interval, self.mb = torch.device(device), interval, float("nan")
        self._stop = threading.Event()

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            return self
        _malloc_trim()
        self._start = _rss_bytes()
        self._peak = self._start
        if self._start is not None:
            self._thread = threading.Thread(target=self._watch, daemon=True)
            self._thread.start()
        elif resource is not None:
            self._start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return self

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            rss = _rss_bytes()
            if rss is not None and rss > self._peak:
                self._peak = rss

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.mb = (torch.cuda.max_memory_allocated(self.device) - self._start) / 2**20
            return
        if hasattr(self, "_thread"):
            self._stop.set()
            self._thread.join()
            rss = _rss_bytes()
            self.mb = (max(self._peak, rss or 0) - self._start) / 2**20
        elif self._start is not None and resource is not None:  # ru_maxrss: only grows past the old peak
            self.mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - self._start) / 2**20


# -- models -------------------------------------------------------------------------------------------
RANDOM_TINY = "random-tiny"


def random_tiny_model(folder: Path, device: torch.device) -> tuple[Denoiser, dict[str, Any]]:
    """An UNTRAINED, seeded small ADM UNet (32 channels, levels 1,2,2,2, one res block per level, no
    attention but the middle block's; about 60 % of the default prior's time per call): it
    exercises the harness and nothing else; its quality numbers are meaningless."""
    from ..defaults import load_prior
    from ..models.adm import ADMConfig, build_network
    from ..training import export_safetensors

    cfg = ADMConfig(model_channels=32, num_res_blocks=1, channel_mult=(1, 2, 2, 2), attention_ds=(), out_channels=3,
                    head_channels=None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = build_network(cfg)
    path = export_safetensors(net, cfg, Path(folder) / "random-tiny.safetensors", schedule="linear", prediction="v", kind="prior",
                              card={"note": "untrained random weights (torch seed 0), for exercising the benchmark only"})
    info = {"source": RANDOM_TINY, "untrained": True, "config": cfg.to_dict()}
    return load_prior(str(path), device), info


def load_bench_model(model: str, device: torch.device, work: Path) -> tuple[Denoiser, dict[str, Any]]:
    """The denoiser named by ``model`` ('default', a registry name, a file, or 'random-tiny') and facts about it."""
    if model == RANDOM_TINY:
        denoiser, info = random_tiny_model(work, device)
    else:
        from ..defaults import EMBEDDED, WEIGHTS_DIR, load_prior

        denoiser = load_prior(model, device)
        info = {"source": model, "untrained": False}
        path = WEIGHTS_DIR / EMBEDDED[model] if model in EMBEDDED else Path(model)
        if path.is_file():
            import hashlib

            from safetensors import safe_open

            info["file"] = path.name
            info["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
            if path.suffix == ".safetensors":
                with safe_open(str(path), "pt") as f:
                    meta = f.metadata() or {}
                info["card"] = json.loads(meta.get("card", "{}") or "{}")
        cfg = getattr(getattr(denoiser, "net", None), "config", None)
        if cfg is not None and hasattr(cfg, "to_dict"):
            info["config"] = cfg.to_dict()
    info["parameters"] = sum(p.numel() for p in denoiser.parameters())
    tiling = getattr(denoiser, "tiling", None)
    info["tiling"] = None if tiling is None else tiling.describe()
    return denoiser, info
