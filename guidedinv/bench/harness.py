"""The benchmark harness: guided methods and classical baselines side by side on the same crops,
measurements and seeds, scored by :mod:`guidedinv.metrics`, timed, with network evaluations counted.

Protocol (all fixed, so a rerun gives the same numbers except the timings and memory):

* Images: each folder's image files in name order, the first ``limit`` of each folder; ``dataset``
  is the folder's name. Each image is read as [0, 1] (grey stays grey) and centre-cropped to
  ``crop`` x ``crop`` (256 by default); a side shorter than that keeps its whole length rounded
  down to a multiple of 8. The crop box (top, left, height, width) is in the CSV and the config.
* Seeds: an image's seed is crc32("dataset/file name") + ``seed``, so it does not depend on which
  other images run. The measurement noise and the random mask use that seed, the sampler seed + 1
  (so the sampler's first draw is not the measurement noise).
* Tasks (:data:`TASKS`): a shipped recipe with fixed overrides: x4 bicubic (antialiased) downsampling,
  Gaussian blur sigma 3 and a seeded motion blur (61 x 61, intensity 0.5, seed 0), both circular
  (periodic, DiffPIR's evaluation model: every method's data step is then an exact FFT formula; with
  the recipe's reflect boundary those steps are conjugate-gradient solves that cost more than the
  network on a CPU, about 11 s per proximal step at 256 x 256; ``--set operator.boundary=...``
  changes it), a centred box of half the crop's side (128 x 128 at 256), a 70 % random mask;
  sigma_y = 0.01 on [0, 1] for all of these, 0.05 for denoising. Inpainting measurements have the
  hole zeroed (what a user has); all measurements are Gaussian-noised, not clipped.
* Budgets: each guided method runs at each NFE budget (network forward calls). DiffPIR and DDNM use
  their recipe's grid kind at the budget ("logsnrN": N calls); DPS "N" makes N forward calls and N
  backward passes through the network (column ``backward``); RePaint's grid is the largest whose
  resampling jumps (the recipe's jump_length and jump_n_sample) stay within the budget. The
  ``nfe`` column is counted by wrapping the denoiser, never inferred.
* Timing: wall seconds of the restore() call per image (batch of one), after one untimed warm-up
  call of the network. Peak memory: on CUDA torch.cuda.max_memory_allocated above the start; on
  the CPU the peak resident set size above the start, sampled every 2 ms from /proc/self/statm after
  returning freed heap to the system (malloc_trim): approximate, a few MB of noise.
"""
from __future__ import annotations

import csv
import ctypes
import io
import json
import math
import platform
import threading
import time
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..denoiser import Denoiser, Prediction
from ..errors import InputError
from ..io import IMAGE_SUFFIXES, list_images as _image_files, make_mask, read_image
from ..metrics import lpips_status, score
from ..app.recipes import BASELINES, apply_overrides, dump_toml, load_recipe, method_settings
from ..app.restore import build_operator, restore, simulate
from ..sampler import Resampling, resampling_path

__all__ = ["BenchTask", "TASKS", "GUIDED", "COLUMNS", "CountingDenoiser", "PeakMemory", "list_images", "centre_crop",
           "degrade", "steps_for_budget", "run_bench", "write_outputs", "random_tiny_model"]

GUIDED = ("pnp", "diffpir", "ddnm", "repaint", "dps")


@dataclass(frozen=True)
class BenchTask:
    """A benchmark task: a shipped recipe, the overrides that fix its degradation, its methods."""

    name: str
    recipe: str
    sets: tuple[str, ...]
    methods: tuple[str, ...]
    about: str


TASKS: dict[str, BenchTask] = {t.name: t for t in (
    BenchTask("superres4", "superres", ("operator.scale=4", 'operator.mode="bicubic"', "noise.sigma_y=0.01"),
              ("pnp", "diffpir", "ddnm", "dps", "bicubic", "lanczos"), "x4 super-resolution (antialiased bicubic downsampling), sigma_y 0.01"),
    BenchTask("deblur-gauss", "deblur", ('operator.kernel="gaussian:3.0"', "operator.size=61", 'operator.boundary="circular"',
                                         "noise.sigma_y=0.01"),
              ("pnp", "diffpir", "ddnm", "dps", "wiener", "richardson_lucy", "tv_deconv"), "Gaussian blur sigma 3 (61x61, circular), sigma_y 0.01"),
    BenchTask("deblur-motion", "deblur", ('operator.kernel="motion:0"', "operator.size=61", 'operator.boundary="circular"',
                                          "noise.sigma_y=0.01"),
              ("pnp", "diffpir", "ddnm", "dps", "wiener", "richardson_lucy", "tv_deconv"),
              "motion blur (61x61, intensity 0.5, seed 0, circular), sigma_y 0.01"),
    BenchTask("inpaint-box", "inpaint", ('operator.mask="box"', "noise.sigma_y=0.01"),
              ("pnp", "diffpir", "ddnm", "repaint", "dps", "biharmonic"), "centred box of half the side (128x128 at 256), sigma_y 0.01"),
    BenchTask("inpaint-random", "inpaint", ('operator.mask="random:0.7"', "noise.sigma_y=0.01"),
              ("pnp", "diffpir", "ddnm", "repaint", "dps", "biharmonic"), "70% of the pixels missing at random, sigma_y 0.01"),
    BenchTask("denoise", "denoise", ("noise.sigma_y=0.05",), ("pnp", "diffpir", "ddnm", "dps", "tv_denoise"),
              "Gaussian noise sigma 0.05"),
)}

COLUMNS = ["dataset", "image", "crop", "task", "method", "nfe_budget", "steps", "nfe", "backward", "psnr", "ssim", "lpips",
           "consistency", "seconds", "peak_mem_mb", "seed"]
TIMING_COLUMNS = ("seconds", "peak_mem_mb")


# -- counting and measuring -----------------------------------------------------------------------
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

    def __enter__(self) -> "PeakMemory":
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


# -- images, crops, measurements --------------------------------------------------------------------
def list_images(paths: Sequence[Path], limit: int | None = None) -> list[tuple[str, Path]]:
    """(dataset, file) pairs: a folder gives its image files (:func:`guidedinv.io.list_images`, not
    recursive) in name order (the first ``limit``), a file gives itself; dataset is the folder's name."""
    out: list[tuple[str, Path]] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            files = _image_files(path)
            if not files:
                raise InputError(f"{path}: no image files ({', '.join(IMAGE_SUFFIXES)})")
            out += [(path.name, f) for f in files[: limit if limit else None]]
        elif path.is_file():
            out.append((path.parent.name, path))
        else:
            raise InputError(f"{path}: no such file or folder")
    return out


def centre_crop(image: torch.Tensor, size: int) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """The centred size x size crop of (C, H, W) (a shorter side: its length rounded down to a
    multiple of 8) and its box (top, left, height, width)."""
    _, h, w = image.shape
    ch, cw = min(size, h // 8 * 8), min(size, w // 8 * 8)
    if ch < 16 or cw < 16:
        raise InputError(f"image {w}x{h} is too small for the benchmark (at least 16x16 after cropping to multiples of 8)")
    top, left = (h - ch) // 2, (w - cw) // 2
    return image[:, top:top + ch, left:left + cw].contiguous(), (top, left, ch, cw)


def image_seed(dataset: str, name: str, seed: int = 0) -> int:
    """A seed that depends on the image's identity only (not on which other images run)."""
    return (zlib.crc32(f"{dataset}/{name}".encode()) + int(seed)) % 2**31


def task_recipe(task: BenchTask, sets: Sequence[str] = (), sigma_y: float | None = None, seed: int = 0) -> dict[str, Any]:
    """The task's resolved recipe (shipped recipe + the task's overrides + the user's ``sets``; a
    user's assignment whose key this task's recipe lacks, e.g. operator.boundary for inpainting, is
    left out here: :func:`run_bench` checks that each one fits at least one task)."""
    extra = [f"noise.sigma_y={sigma_y}"] if sigma_y is not None else []
    recipe = apply_overrides(load_recipe(task.recipe), [*task.sets, *extra, f"seed={int(seed)}"])
    for item in sets:
        try:
            recipe = apply_overrides(recipe, [item])
        except InputError:
            continue
    return recipe


def _check_sets(task_names: Sequence[str], sets: Sequence[str]) -> None:
    """InputError for a --set that fits none of the tasks' recipes (a typo)."""
    for item in sets:
        errors = []
        for t in task_names:
            try:
                apply_overrides(load_recipe(TASKS[t].recipe), [item])
            except InputError as exc:
                errors.append(str(exc))
        if len(errors) == len(task_names):
            raise InputError(f"{errors[0]} (in no task's recipe)")


def degrade(recipe_or_task: dict[str, Any] | BenchTask, x: torch.Tensor, seed: int = 0):
    """Simulate the task's measurement of clean ``x`` ((1, C, H, W), [0, 1]) with ``seed``.

    Returns (recipe, y, mask, operator): the recipe with this seed, the measurement (inpainting:
    the hole zeroed), the fill mask (inpainting) or None, and the operator on the [0, 1] scale.
    """
    recipe = task_recipe(recipe_or_task, seed=seed) if isinstance(recipe_or_task, BenchTask) else \
        apply_overrides(recipe_or_task, [f"seed={int(seed)}"])
    hw = (int(x.shape[-2]), int(x.shape[-1]))
    mask = make_mask(str(recipe["operator"]["mask"]), hw, seed=seed) if recipe["operator"]["kind"] == "inpaint" else None
    operator = build_operator(recipe, hw, mask)
    y = simulate(x, operator, float(recipe["noise"]["sigma_y"]), seed=seed)
    if mask is not None:
        y = operator.AT(y)
    return recipe, y, mask, operator


def steps_for_budget(recipe: dict[str, Any], method: str, nfe: int) -> str:
    """The method's steps string for a budget of ``nfe`` network forward calls (see module notes)."""
    s = dict(recipe.get("methods", {}).get(method, {}))
    current = str(s.get("steps", nfe))
    prefix = current.rstrip("0123456789") if current[-1:].isdigit() else ""
    if prefix not in ("", "ddim", "logsnr"):
        prefix = ""
    if prefix == "logsnr" and nfe < 2:
        raise InputError(f"{method}: a budget of {nfe} network evaluation is too small for its logsnr grid (at least 2)")
    if method != "repaint":
        return f"{prefix}{nfe}"
    resample = Resampling(int(s.get("jump_length", 10)), int(s.get("jump_n_sample", 10)))

    def reverse_steps(num: int) -> int:
        path = resampling_path(num, resample)
        return sum(1 for a, b in zip(path, path[1:]) if b < a)

    best = 1
    for num in range(1, nfe + 1):
        if reverse_steps(num) <= nfe:
            best = num
    return f"{prefix}{best}"


def method_recipe(base: dict[str, Any], method: str, nfe: int | None) -> dict[str, Any]:
    recipe = apply_overrides(base, [f'method="{method}"'])
    if nfe is not None:
        recipe = apply_overrides(recipe, [f'methods.{method}.steps="{steps_for_budget(recipe, method, nfe)}"'])
    method_settings(recipe)  # validate before any work
    return recipe


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


# -- the run -----------------------------------------------------------------------------------------
@dataclass
class BenchResult:
    rows: list[dict[str, Any]]
    config: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def plan_runs(task_names: Sequence[str], methods: Sequence[str] | None, nfes: Sequence[int],
              method_nfe: dict[str, Sequence[int]] | None = None) -> list[tuple[str, str, int | None]]:
    """(task, method, budget or None for a baseline) in table order; InputError for unknown names."""
    unknown = [t for t in task_names if t not in TASKS]
    if unknown:
        raise InputError(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(TASKS)}")
    known = set(GUIDED) | set(BASELINES)
    bad = [m for m in (methods or ()) if m not in known]
    if bad:
        raise InputError(f"unknown method(s) {', '.join(bad)}; choose from {', '.join([*GUIDED, *BASELINES])}")
    if any(int(n) < 1 for n in nfes):
        raise InputError(f"NFE budgets must be >= 1, got {list(nfes)}")
    method_nfe = dict(method_nfe or {})
    runs = []
    for t in task_names:
        for m in TASKS[t].methods:
            if methods and m not in methods:
                continue
            budgets = [None] if m in BASELINES else list(method_nfe.get(m, nfes))
            runs += [(t, m, n) for n in budgets]
    if methods:
        unused = [m for m in methods if not any(r[1] == m for r in runs)]
        if unused:
            raise InputError(f"method(s) {', '.join(unused)} apply to none of the tasks {', '.join(task_names)}")
    if not runs:
        raise InputError("nothing to run: no method applies to the chosen tasks")
    return runs


def run_bench(
    paths: Sequence[Path],
    *,
    tasks: Sequence[str] = tuple(TASKS),
    methods: Sequence[str] | None = None,
    nfes: Sequence[int] = (20, 50, 100),
    method_nfe: dict[str, Sequence[int]] | None = None,
    limit: int | None = None,
    crop: int = 256,
    model: str = "default",
    device: str | torch.device = "auto",
    seed: int = 0,
    sets: Sequence[str] = (),
    sigma_y: float | None = None,
    use_lpips: bool = True,
    work: Path | None = None,
    log: Callable[[str], None] | None = None,
) -> BenchResult:
    """Run every (image, task, method, budget) once; rows follow :data:`COLUMNS` (see the module notes)."""
    import tempfile

    from .. import __version__
    from ..defaults import pick_device

    runs = plan_runs(tasks, methods, nfes, method_nfe)
    images = list_images(paths, limit)
    _check_sets(list(dict.fromkeys(r[0] for r in runs)), sets)
    recipes = {t: task_recipe(TASKS[t], sets, sigma_y, seed) for t in dict.fromkeys(r[0] for r in runs)}
    for t, m, n in runs:  # every (task, method, budget) resolves before anything heavy starts
        method_recipe(recipes[t], m, n)
    log = log or (lambda _msg: None)
    forward = sum(n or 0 for _, _, n in runs) * len(images)
    backward = sum(n or 0 for _, m, n in runs if m == "dps") * len(images)
    log(f"plan: {len(images)} image(s) x {len(runs)} run(s), at most {forward} network calls + {backward} backward passes")
    dev = pick_device(device) if isinstance(device, str) else torch.device(device)
    needs_net = any(m not in BASELINES for _, m, _ in runs)
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        denoiser, model_info = load_bench_model(model, dev, Path(work or tmp)) if needs_net else (None, {"source": None})
    counter = CountingDenoiser(denoiser) if denoiser is not None else None
    with warnings.catch_warnings():  # the reason goes into the notes, said once by the caller
        warnings.simplefilter("ignore", RuntimeWarning)
        lpips_reason = lpips_status()[1] if use_lpips else "LPIPS not asked for (--no-lpips)"
    if lpips_reason:
        notes.append(lpips_reason)
    if model_info.get("untrained"):
        notes.append("UNTRAINED RANDOM NETWORK: the guided methods' quality numbers are meaningless; only the harness, "
                     "the NFE counts and the timings are real")

    rows: list[dict[str, Any]] = []
    image_records = []
    total = len(images) * len(runs)
    done = 0
    for dataset, path in images:
        x, box = centre_crop(read_image(path).image, crop)
        x = x[None]
        s = image_seed(dataset, path.name, seed)
        image_records.append({"dataset": dataset, "image": path.name, "crop": list(box), "seed": s})
        for task_name in dict.fromkeys(r[0] for r in runs):
            base, y, mask, operator = degrade(recipes[task_name], x, seed=s)
            for t, m, n in runs:
                if t != task_name:
                    continue
                recipe = method_recipe(base, m, n)
                if counter is not None:
                    if not getattr(counter, "_warm", False):  # the first network call pays for allocations
                        with torch.no_grad():
                            counter(torch.zeros(1, 3, 8 * 2, 8 * 2, device=dev), torch.zeros(1, device=dev))
                        counter._warm = True
                    counter.reset()
                with PeakMemory(dev) as mem:
                    start = time.perf_counter()
                    out = restore(counter if m not in BASELINES else None, recipe, y, mask=mask, seeds=[s + 1])
                    if dev.type == "cuda":
                        torch.cuda.synchronize(dev)
                    seconds = time.perf_counter() - start
                out = out.cpu()
                metrics = score(out, x, operator, y, use_lpips=use_lpips and lpips_reason is None)[0]
                steps = method_settings(recipe)["steps"]
                row = {"dataset": dataset, "image": path.name, "crop": "{},{},{},{}".format(*box), "task": t, "method": m,
                       "nfe_budget": n or 0, "steps": steps, "nfe": counter.calls if (counter and m not in BASELINES) else 0,
                       "backward": counter.grad_calls if (counter and m not in BASELINES) else 0, **metrics,
                       "seconds": seconds, "peak_mem_mb": mem.mb, "seed": s}
                rows.append(row)
                done += 1
                log(f"[{done}/{total}] {dataset}/{path.name} {t} {m}" + (f" nfe={row['nfe']}" if n else "") +
                    f": {row['psnr']:.2f} dB, SSIM {row['ssim']:.3f}, {seconds:.1f} s")
    config = {
        "command": None,
        "versions": {"guidedinv": __version__, "torch": torch.__version__, "python": platform.python_version(),
                     "scikit-image": _version("scikit-image"), "numpy": _version("numpy")},
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "device": str(dev) if dev.type != "cuda" else f"{dev} ({torch.cuda.get_device_name(dev)})",
                    "torch_threads": torch.get_num_threads()},
        "model": model_info,
        "protocol": {"crop": crop, "limit_per_folder": limit, "seed": seed, "nfe": list(nfes),
                     "method_nfe": {k: list(v) for k, v in (method_nfe or {}).items()}, "sets": list(sets), "sigma_y": sigma_y,
                     "lpips": lpips_reason or "computed (AlexNet, lpips v0.1)"},
        "images": image_records,
        "tasks": {t: {"about": TASKS[t].about, "recipe": recipes[t]} for t in recipes},
        "runs": [{"task": t, "method": m, "nfe_budget": n, "steps": method_settings(method_recipe(recipes[t], m, n))["steps"]}
                 for t, m, n in runs],
    }
    return BenchResult(rows, config, notes)


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


# -- outputs -----------------------------------------------------------------------------------------
def _fmt(key: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if key in ("psnr",):
        return f"{value:.4f}"
    if key in ("ssim", "lpips"):
        return f"{value:.5f}"
    if key == "consistency":
        return f"{value:.5g}"
    if key == "seconds":
        return f"{value:.3f}"
    if key == "peak_mem_mb":
        return f"{value:.1f}"
    return str(value)


def rows_to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str] = COLUMNS) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_fmt(c, row.get(c)) for c in columns])
    return buffer.getvalue()


SUMMARY_COLUMNS = ["dataset", "task", "method", "nfe_budget", "steps", "images", "nfe", "backward", "psnr", "ssim", "lpips",
                   "consistency", "seconds", "peak_mem_mb"]


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Means over images per (dataset, task, method, budget), in run order; peak memory is the max."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["task"], row["method"], row["nfe_budget"]), []).append(row)
    out = []
    for (dataset, task, method, budget), items in groups.items():
        def mean(key: str) -> float | None:
            vals = [r[key] for r in items if r.get(key) is not None and not (isinstance(r[key], float) and math.isnan(r[key]))]
            return sum(vals) / len(vals) if vals else None

        mems = [r["peak_mem_mb"] for r in items if not math.isnan(r["peak_mem_mb"])]
        out.append({"dataset": dataset, "task": task, "method": method, "nfe_budget": budget, "steps": items[0]["steps"],
                    "images": len(items),
                    "nfe": mean("nfe"), "backward": mean("backward"), "psnr": mean("psnr"), "ssim": mean("ssim"),
                    "lpips": mean("lpips"), "consistency": mean("consistency"), "seconds": mean("seconds"),
                    "peak_mem_mb": max(mems) if mems else float("nan")})
    return out


def markdown_tables(summary: Sequence[dict[str, Any]]) -> str:
    """One table per task; the best mean PSNR per dataset in bold."""
    lines: list[str] = []
    for task in dict.fromkeys(r["task"] for r in summary):
        items = [r for r in summary if r["task"] == task]
        best = {d: max((r["psnr"] for r in items if r["dataset"] == d), default=None) for d in {r["dataset"] for r in items}}
        lines += [f"### {task}: {TASKS[task].about}" if task in TASKS else f"### {task}", "",
                  "| dataset | method | steps | NFE (fwd + bwd) | images | PSNR (dB) | SSIM | LPIPS | ‖Ax−y‖/‖y‖ | s / image | peak MB |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in items:
            nfe = "0" if not r["nfe"] else f"{r['nfe']:.0f}" + (f" + {r['backward']:.0f}" if r["backward"] else "")
            psnr_txt = f"{r['psnr']:.2f}"
            if best[r["dataset"]] is not None and r["psnr"] == best[r["dataset"]]:
                psnr_txt = f"**{psnr_txt}**"
            lp = "–" if r["lpips"] is None else f"{r['lpips']:.3f}"
            lines.append(f"| {r['dataset']} | {r['method']} | {r['steps'] or '–'} | {nfe} | {r['images']} | {psnr_txt} | {r['ssim']:.3f} | {lp} | "
                         f"{r['consistency']:.3g} | {r['seconds']:.2f} | {r['peak_mem_mb']:.0f} |")
        lines.append("")
    return "\n".join(lines)


def plot(summary: Sequence[dict[str, Any]], folder: Path) -> tuple[list[Path], str | None]:
    """PSNR against NFE and against seconds per image, one panel per task, means over all images.
    Returns (files written, None) or ([], why not) when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return [], "plots skipped: matplotlib is not installed (pip install matplotlib to get them)"
    overall: dict[tuple, list[dict[str, Any]]] = {}
    for r in summary:
        overall.setdefault((r["task"], r["method"], r["nfe_budget"]), []).append(r)
    agg = [{"task": t, "method": m, "nfe_budget": n, "nfe": sum(i["nfe"] + i["backward"] for i in v) / len(v),
            "psnr": sum(i["psnr"] * i["images"] for i in v) / sum(i["images"] for i in v),
            "seconds": sum(i["seconds"] * i["images"] for i in v) / sum(i["images"] for i in v)}
           for (t, m, n), v in overall.items()]
    tasks = list(dict.fromkeys(r["task"] for r in agg))
    files = []
    for kind, xkey, xlabel in (("nfe", "nfe", "network evaluations (forward + backward)"), ("time", "seconds", "seconds per image")):
        cols = min(3, len(tasks))
        rows_n = math.ceil(len(tasks) / cols)
        fig, axes = plt.subplots(rows_n, cols, figsize=(4.2 * cols, 3.4 * rows_n), squeeze=False)
        for ax, task in zip(axes.flat, tasks):
            for method in dict.fromkeys(r["method"] for r in agg if r["task"] == task):
                pts = sorted((r[xkey], r["psnr"]) for r in agg if r["task"] == task and r["method"] == method)
                if method in BASELINES and kind == "nfe":
                    ax.axhline(pts[0][1], linestyle="--", linewidth=1, label=method, color=f"C{len(ax.lines) % 10}")
                else:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=method)
            ax.set_title(task)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("PSNR (dB)")
            if kind == "time":
                ax.set_xscale("log")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        for ax in list(axes.flat)[len(tasks):]:
            ax.axis("off")
        fig.tight_layout()
        path = Path(folder) / f"psnr_vs_{kind}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=90, metadata={"Software": None})
        plt.close(fig)
        files.append(path)
    return files, None


def write_outputs(result: BenchResult, out: Path, doc: Path | None = None) -> list[Path]:
    """results.csv, summary.csv, summary.md, config.json and the plots in ``out``; the doc page too."""
    from ..io import atomic_write_bytes

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(result.rows)
    tables = markdown_tables(summary)
    written = []
    for name, text in (("results.csv", rows_to_csv(result.rows)), ("summary.csv", rows_to_csv(summary, SUMMARY_COLUMNS)),
                       ("summary.md", tables), ("config.json", json.dumps(result.config, indent=2, default=str) + "\n"),
                       ("recipes.toml", "".join(f"# task {t}\n{dump_toml(v['recipe'])}\n" for t, v in result.config["tasks"].items()))):
        atomic_write_bytes(out / name, text.encode())
        written.append(out / name)
    plots, why = plot(summary, out)
    written += plots
    notes = list(result.notes) + ([why] if why else [])
    if doc is not None:
        doc = Path(doc)
        doc_plots = plot(summary, doc.parent / doc.stem)[0] if plots else []
        atomic_write_bytes(doc, doc_page(result, tables, notes, [p.relative_to(doc.parent) for p in doc_plots]).encode())
        written += [doc, *doc_plots]
    return written


def doc_page(result: BenchResult, tables: str, notes: Sequence[str], plots: Sequence[Path]) -> str:
    """The markdown page of docs/benchmarks.md: the command first, then what ran and the tables."""
    cfg = result.config
    model = cfg["model"]
    images = cfg["images"]
    by_set: dict[str, list[str]] = {}
    for rec in images:
        by_set.setdefault(rec["dataset"], []).append(f"{rec['image']} [{', '.join(map(str, rec['crop']))}]")
    lines = [
        "# Benchmarks",
        "",
        "Generated by this command (do not edit by hand; rerun it to refresh):",
        "",
        "```",
        str(cfg.get("command") or "(run from Python)"),
        "```",
        "",
    ]
    if model.get("untrained"):
        lines += ["> **UNTRAINED RANDOM NETWORK.** These tables were made with a seeded, untrained tiny network",
                  "> (`--model random-tiny`) because the default prior's weights are not in this install yet. The guided",
                  "> methods' PSNR/SSIM are meaningless here; the classical baselines, NFE counts and the harness are real.",
                  ""]
    m = cfg["machine"]
    lines += [
        f"- Model: `{model.get('source')}`" + (f", {model['parameters'] / 1e6:.2f}M parameters" if model.get("parameters") else "")
        + (f", file sha256 `{model['sha256'][:16]}…`" if model.get("sha256") else "")
        + (f", network evaluated on {model['tiling']} (guidedinv/tiling.py)" if model.get("tiling") else ""),
        f"- Machine: {m['device']}, {m['processor']}, {m['torch_threads']} torch thread(s); torch {cfg['versions']['torch']}, "
        f"scikit-image {cfg['versions']['scikit-image']}, guidedinv {cfg['versions']['guidedinv']}",
        f"- Images: centre crops of {cfg['protocol']['crop']} px (box = top, left, height, width) — "
        + "; ".join(f"{d}: {', '.join(v)}" for d, v in by_set.items()),
        "- Seeds: crc32(\"dataset/file\") + seed for the measurement noise and masks, + 1 for the sampler; "
        "reruns give identical numbers except seconds and memory.",
        "- NFE = network forward calls, counted; DPS adds one backward pass per step (shown as fwd + bwd). "
        "RePaint's budget includes its resampling jumps. Baselines make none.",
        "- Peak MB: CPU resident-set growth during the call (approximate) or CUDA max allocated.",
        "",
    ]
    for note in notes:
        if not note.startswith("UNTRAINED"):  # said above, in bold
            lines.append(f"- Note: {note}")
    lines += ["", "Protocol details, baselines' settings and how to rerun: `guidedinv bench --help`, guidedinv/bench.py, "
              "guidedinv/baselines.py, guidedinv/metrics.py.", "", "## Results (means over images)", "", tables]
    if plots:
        lines += ["## Plots", ""] + [f"![{p.stem}]({p.as_posix()})" for p in plots] + [""]
    lines += ["## Resolved task recipes", ""]
    for task, v in cfg["tasks"].items():
        lines += [f"`{task}`: {v['about']}", "", "```toml", dump_toml(v["recipe"]).rstrip(), "```", ""]
    return "\n".join(lines)
