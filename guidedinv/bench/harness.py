"""The benchmark harness: guided methods and classical baselines side by side on the same crops,
measurements and seeds, scored by :mod:`guidedinv.metrics`, timed, with network evaluations counted.

The methods are the registry's (:mod:`guidedinv.app.methods`): a task compares every method that
solves its operator kind, a budget becomes steps by the method's own ``steps_for_budget``, and
nothing here branches on a method's name. Measurements come from the one simulation of the
application layer, :func:`guidedinv.app.measure.simulate_measurement`.

Protocol (all fixed, so a rerun gives the same numbers except the timings and memory):

* Images: each folder's image files in name order, the first ``limit`` of each folder; ``dataset``
  is the folder's name. Each image is read as [0, 1] (grey stays grey) and centre-cropped to
  ``crop`` x ``crop`` (256 by default); a side shorter than that keeps its whole length rounded
  down to a multiple of 8. The crop box (top, left, height, width) is in the CSV and the config.
* Seeds: an image's seed is s = crc32("dataset/file name") + ``seed`` (mod 2^31), so it does not
  depend on which other images run. It is the request's seed of every run on that image, with the
  application layer's one convention (:mod:`guidedinv.app.measure`): the sampler's seed is s
  itself, the measurement noise's is ``measurement_seed(s)`` (derived from s, so the sampler's
  first draw is not the measurement noise) and a generated random mask's is s. A row is therefore
  the run of its task's recipe with ``seed = s`` on the crop (``guidedinv TASK --simulate``).
  (Before the registry the bench drew the noise from s and the sampler from s + 1.)
* Tasks (:data:`TASKS`): a shipped recipe with fixed overrides: x4 bicubic (antialiased) downsampling,
  Gaussian blur sigma 3 and a seeded motion blur (61 x 61, intensity 0.5, seed 0), both circular
  (periodic, DiffPIR's evaluation model: every method's data step is then an exact FFT formula; with
  the recipe's reflect boundary those steps are conjugate-gradient solves that cost more than the
  network on a CPU, about 11 s per proximal step at 256 x 256; ``--set operator.boundary=...``
  changes it), a centred box of half the crop's side (128 x 128 at 256), a 70 % random mask;
  sigma_y = 0.01 on [0, 1] for all of these, 0.05 for denoising. Inpainting measurements have the
  hole zeroed (what a user has); all measurements are Gaussian-noised, not clipped. Each task
  compares the registry's methods for its operator kind (``methods_for_kind``).
* Budgets: each guided method runs at each NFE budget (network forward calls); the method turns
  the budget into steps of its recipe's grid kind (``Method.steps_for_budget``: "logsnrN" or "N"
  make N calls, RePaint's grid is the largest whose resampling jumps stay within the budget). Its
  ``cost`` (forward calls and backward passes, e.g. DPS's one per step) is in the config and the
  plan line; the ``nfe`` and ``backward`` columns are counted by wrapping the denoiser
  (:class:`CountingDenoiser`), never inferred.
* Timing: wall seconds of the restore() call per image (batch of one), after one untimed warm-up
  call of the network. Peak memory: on CUDA torch.cuda.max_memory_allocated above the start; on
  the CPU the peak resident set size above the start, sampled every 2 ms from /proc/self/statm after
  returning freed heap to the system (malloc_trim): approximate, a few MB of noise.
"""
from __future__ import annotations

import platform
import time
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..app.measure import Measurement, simulate_measurement
from ..app.methods import get_method, guided_names, method_names, methods_for_kind
from ..app.operator_spec import KIND_OF_TASK
from ..app.request import Request, apply_overrides, load_preset, parse_request
from ..app.solve import restore
from ..errors import InputError
from ..io import IMAGE_SUFFIXES, list_images as _image_files, read_image
from ..metrics import lpips_status, score
from .instruments import RANDOM_TINY, CountingDenoiser, PeakMemory, load_bench_model, random_tiny_model

# the run's outputs (CSV, tables, plots, docs page) are guidedinv.bench.report's
__all__ = ["BenchTask", "TASKS", "GUIDED", "COLUMNS", "TIMING_COLUMNS", "BenchResult", "CountingDenoiser", "PeakMemory",
           "RANDOM_TINY", "random_tiny_model", "load_bench_model", "list_images", "centre_crop", "image_seed", "task_recipe",
           "degrade", "steps_for_budget", "method_request", "plan_runs", "run_bench", "tuning_crops"]

GUIDED = guided_names()


@dataclass(frozen=True)
class BenchTask:
    """A benchmark task: a shipped recipe, the overrides that fix its degradation, its methods
    (left empty: every method of the registry that solves the recipe's operator kind)."""

    name: str
    recipe: str
    sets: tuple[str, ...]
    about: str
    methods: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        usable = methods_for_kind(self.kind)
        if not self.methods:
            object.__setattr__(self, "methods", usable)
        wrong = [m for m in self.methods if m not in usable]
        if wrong:
            raise ValueError(f"bench task {self.name}: {', '.join(wrong)} do not solve {self.kind} "
                             f"(methods_for_kind: {', '.join(usable)})")

    @property
    def kind(self) -> str:
        """The operator kind of the task's recipe (inpaint, downsample, blur, identity)."""
        return KIND_OF_TASK[self.recipe]


TASKS: dict[str, BenchTask] = {t.name: t for t in (
    BenchTask("superres4", "superres", ("operator.scale=4", 'operator.mode="bicubic"', "noise.sigma_y=0.01"),
              "x4 super-resolution (antialiased bicubic downsampling), sigma_y 0.01"),
    BenchTask("deblur-gauss", "deblur", ('operator.kernel="gaussian:3.0"', "operator.size=61", 'operator.boundary="circular"',
                                         "noise.sigma_y=0.01"),
              "Gaussian blur sigma 3 (61x61, circular), sigma_y 0.01"),
    BenchTask("deblur-motion", "deblur", ('operator.kernel="motion:0"', "operator.size=61", 'operator.boundary="circular"',
                                          "noise.sigma_y=0.01"),
              "motion blur (61x61, intensity 0.5, seed 0, circular), sigma_y 0.01"),
    BenchTask("inpaint-box", "inpaint", ('operator.mask="box"', "noise.sigma_y=0.01"),
              "centred box of half the side (128x128 at 256), sigma_y 0.01"),
    BenchTask("inpaint-random", "inpaint", ('operator.mask="random:0.7"', "noise.sigma_y=0.01"),
              "70% of the pixels missing at random, sigma_y 0.01"),
    BenchTask("denoise", "denoise", ("noise.sigma_y=0.05",), "Gaussian noise sigma 0.05"),
)}

COLUMNS = ["dataset", "image", "crop", "task", "method", "nfe_budget", "steps", "nfe", "backward", "psnr", "ssim", "lpips",
           "hf_ratio", "consistency", "seconds", "peak_mem_mb", "seed"]
TIMING_COLUMNS = ("seconds", "peak_mem_mb")


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


def tuning_crops(folder: Path, images: int, crop: int) -> tuple[list[Path], list[torch.Tensor]]:
    """The crops the tuning scripts compare settings on (benchmarks/tune_methods.py and its kin): centre
    crops of ``images`` images of a TRAINING folder from its fourth on (the first three tuned the classical
    baselines, benchmarks/tune_baselines.py); returns the files and the (C, H, W) crops."""
    files = [f for _, f in list_images([Path(folder)], limit=3 + images)[3:]]
    return files, [centre_crop(read_image(f).image, crop)[0] for f in files]


def image_seed(dataset: str, name: str, seed: int = 0) -> int:
    """A seed that depends on the image's identity only (not on which other images run)."""
    return (zlib.crc32(f"{dataset}/{name}".encode()) + int(seed)) % 2**31



def task_recipe(task: BenchTask, sets: Sequence[str] = (), sigma_y: float | None = None, seed: int = 0) -> dict[str, Any]:
    """The task's recipe (shipped preset + the task's overrides + the user's ``sets``), every
    method's table kept so that any method can be chosen from it (:func:`method_request`). A user's
    assignment whose key this task's recipe lacks, e.g. operator.boundary for inpainting, is left
    out here: :func:`run_bench` checks that each one fits at least one task."""
    extra = [f"noise.sigma_y={sigma_y}"] if sigma_y is not None else []
    recipe = apply_overrides(load_preset(task.recipe), [*task.sets, *extra, f"seed={int(seed)}"])
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
                apply_overrides(load_preset(TASKS[t].recipe), [item])
            except InputError as exc:
                errors.append(str(exc))
        if len(errors) == len(task_names):
            raise InputError(f"{errors[0]} (in no task's recipe)")


def degrade(recipe_or_task: dict[str, Any] | BenchTask, x: torch.Tensor, seed: int = 0) -> tuple[dict[str, Any], Measurement]:
    """Simulate the task's measurement of clean ``x`` ((1, C, H, W), [0, 1]) for the image seed ``seed``.

    Returns (recipe, measurement): the task's recipe with ``seed`` (every method's table kept:
    :func:`method_request` picks one) and :func:`guidedinv.app.measure.simulate_measurement`'s
    Measurement (y, mask, operator, clean), seeded by the application layer's one convention
    (module notes): mask from ``seed``, noise from ``measurement_seed(seed)``.
    """
    recipe = task_recipe(recipe_or_task, seed=seed) if isinstance(recipe_or_task, BenchTask) else \
        apply_overrides(recipe_or_task, [f"seed={int(seed)}"])
    return recipe, simulate_measurement(parse_request(recipe, "bench task"), x)


def steps_for_budget(request: Request, nfe: int) -> str:
    """The steps of the request's (guided) method for a budget of ``nfe`` network forward calls: the
    method's own rule (:meth:`guidedinv.app.methods.GuidedMethod.steps_for_budget`)."""
    method = get_method(request.method)
    if not method.uses_network:
        raise InputError(f"{request.method} makes no network calls: it has no NFE budget")
    try:
        return method.steps_for_budget(request.settings, int(nfe))  # type: ignore[attr-defined]
    except InputError as exc:
        raise InputError(f"{request.method} at a budget of {nfe} network evaluations: {exc}") from None


def method_request(base: dict[str, Any], method: str, nfe: int | None) -> Request:
    """The request of ``method`` on the task recipe ``base`` (its settings: the recipe's table for
    it over the method's defaults), its steps set for a budget of ``nfe`` calls (None: a baseline)."""
    recipe = apply_overrides(base, [f'method="{method}"'])
    request = parse_request(recipe, f"bench {method}")
    if nfe is None:
        return request
    steps = steps_for_budget(request, nfe)
    return parse_request(apply_overrides(recipe, [f'methods.{method}.steps="{steps}"']), f"bench {method} at NFE {nfe}")


# -- the run -----------------------------------------------------------------------------------------
@dataclass
class BenchResult:
    rows: list[dict[str, Any]]
    config: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def plan_runs(task_names: Sequence[str], methods: Sequence[str] | None, nfes: Sequence[int],
              method_nfe: dict[str, Sequence[int]] | None = None) -> list[tuple[str, str, int | None]]:
    """(task, method, budget or None for a method without network calls) in table order;
    InputError for unknown names."""
    unknown = [t for t in task_names if t not in TASKS]
    if unknown:
        raise InputError(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(TASKS)}")
    bad = [m for m in (methods or ()) if m not in method_names()]
    if bad:
        raise InputError(f"unknown method(s) {', '.join(bad)}; choose from {', '.join(method_names())}")
    if any(int(n) < 1 for n in nfes):
        raise InputError(f"NFE budgets must be >= 1, got {list(nfes)}")
    method_nfe = dict(method_nfe or {})
    bad = [m for m in method_nfe if m not in guided_names()]
    if bad:
        raise InputError(f"budgets for {', '.join(bad)}: only guided methods have NFE budgets ({', '.join(guided_names())})")
    if any(int(n) < 1 for v in method_nfe.values() for n in v):
        raise InputError(f"NFE budgets must be >= 1, got {method_nfe}")
    runs = []
    for t in task_names:
        for m in TASKS[t].methods:
            if methods and m not in methods:
                continue
            budgets = list(method_nfe.get(m, nfes)) if get_method(m).uses_network else [None]
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
    # the recipes name the prior: one with a limited noise range takes their [pnp_prior] settings (app.noise_range)
    recipes = {t: {**task_recipe(TASKS[t], sets, sigma_y, seed), "model": str(model)} for t in dict.fromkeys(r[0] for r in runs)}
    # every (task, method, budget) parsed once, before anything heavy starts
    requests = {(t, m, n): method_request(recipes[t], m, n) for t, m, n in runs}
    costs = {run: get_method(r.method).cost(r.settings) for run, r in requests.items()}
    log = log or (lambda _msg: None)
    forward = sum(c.forward for c in costs.values()) * len(images)
    backward = sum(c.backward for c in costs.values()) * len(images)
    log(f"plan: {len(images)} image(s) x {len(runs)} run(s), at most {forward} network calls + {backward} backward passes")
    dev = pick_device(device) if isinstance(device, str) else torch.device(device)
    needs_net = any(r.uses_network for r in requests.values())
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
    if counter is not None:  # the first network call pays for allocations: untimed
        with torch.no_grad():
            counter(torch.zeros(1, 3, 8 * 2, 8 * 2, device=dev), torch.zeros(1, device=dev))

    rows: list[dict[str, Any]] = []
    image_records = []
    total = len(images) * len(runs)
    done = 0
    for dataset, path in images:
        x, box = centre_crop(read_image(path).image, crop)
        s = image_seed(dataset, path.name, seed)
        image_records.append({"dataset": dataset, "image": path.name, "crop": list(box), "seed": s})
        for task_name in dict.fromkeys(r[0] for r in runs):
            _, measured = degrade(recipes[task_name], x[None], seed=s)
            for t, m, n in runs:
                if t != task_name:
                    continue
                request = requests[(t, m, n)]
                net = counter if request.uses_network else None
                if net is not None:
                    net.reset()
                with PeakMemory(dev) as mem:
                    start = time.perf_counter()
                    out = restore(net, request, measured.y, mask=measured.mask, seeds=[s])
                    if dev.type == "cuda":
                        torch.cuda.synchronize(dev)
                    seconds = time.perf_counter() - start
                out = out.cpu()
                metrics = score(out, measured.clean, measured.operator, measured.y,
                                use_lpips=use_lpips and lpips_reason is None)[0]
                row = {"dataset": dataset, "image": path.name, "crop": "{},{},{},{}".format(*box), "task": t, "method": m,
                       "nfe_budget": n or 0, "steps": request.steps, "nfe": net.calls if net else 0,
                       "backward": net.grad_calls if net else 0, **metrics,
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
                     "lpips": lpips_reason or "computed (AlexNet, lpips v0.1)",
                     "seeds": "image seed s = crc32(dataset/file) + seed: sampler s, measurement noise measurement_seed(s), "
                              "random mask s (guidedinv.app.measure)"},
        "images": image_records,
        "tasks": {t: {"about": TASKS[t].about, "recipe": recipes[t]} for t in recipes},
        "runs": [{"task": t, "method": m, "nfe_budget": n, "steps": requests[(t, m, n)].steps,
                  "settings": dict(requests[(t, m, n)].settings),
                  "cost": {"forward": costs[(t, m, n)].forward, "backward": costs[(t, m, n)].backward}}
                 for t, m, n in runs],
    }
    return BenchResult(rows, config, notes)


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"
