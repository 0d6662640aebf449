"""``guidedinv inpaint | superres | deblur | denoise``: restore one image with a task preset.

A thin shell: the options become one :class:`~guidedinv.app.request.Request` (checked before any
file is read or written, before any model loads), the output paths are checked against the inputs,
then :func:`guidedinv.app.solve.restore` runs. The input is the degraded image itself (the real
use), or with ``--simulate`` a clean image that is degraded first (for evaluation).

Importing this module imports neither torch nor the engine (``guidedinv --help`` stays fast).
"""
from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from ..app.methods import get_method, methods_for_kind
from ..app.operator_spec import KIND_OF_TASK
from ..app.request import Request, build_request, load_preset
from ..errors import InputError

__all__ = ["register_restore_commands", "restore_file", "TASK_COMMANDS"]

TASK_COMMANDS = ("inpaint", "superres", "deblur", "denoise")
EXAMPLES = {
    "inpaint": "guidedinv inpaint photo.png mask.png -o filled.png\n\n    guidedinv inpaint photo.png --mask random:0.7 --simulate --compare cmp.png",
    "superres": "guidedinv superres small.png --scale 4 -o big.png\n\n    guidedinv superres photo.png --scale 4 --simulate --method ddnm --steps logsnr20",
    "deblur": "guidedinv deblur blurry.png --kernel gaussian:3.0\n\n    guidedinv deblur blurry.png --kernel kernels.npz:k3 --sigma-y 0.02",
    "denoise": "guidedinv denoise noisy.png --sigma 0.05\n\n    guidedinv denoise clean.png --sigma 0.1 --simulate --compare cmp.png",
}
SUMMARY = {
    "inpaint": "Fill the white region of MASK (or a generated mask) in IMAGE.",
    "superres": "Super-resolve IMAGE by an integer --scale.",
    "deblur": "Remove a known blur (--kernel) from IMAGE.",
    "denoise": "Remove Gaussian noise of standard deviation --sigma from IMAGE.",
}


def _opt(default: Any, *names: str, help: str, shown: str | bool = True) -> Any:
    return typer.Option(default, *names, help=help, show_default=shown)


def _preset_defaults(task: str) -> dict[str, Any]:
    """The shipped preset's values the help shows (read from the TOML: no engine import)."""
    recipe = load_preset(task)
    method = recipe["method"]
    steps = {}
    for name in methods_for_kind(KIND_OF_TASK[task]):
        m = get_method(name)
        if m.uses_network:
            steps[name] = recipe.get("methods", {}).get(name, {}).get("steps", m.defaults().get("steps"))
    return {"recipe": recipe, "method": method, "steps": steps, "operator": recipe.get("operator", {}),
            "sigma_y": recipe.get("noise", {}).get("sigma_y", 0.0)}


def _common(task: str) -> list[tuple[str, Any, Any]]:
    d = _preset_defaults(task)
    guided = ", ".join(f"{m} {s}" for m, s in d["steps"].items())
    methods = " | ".join(methods_for_kind(KIND_OF_TASK[task]))
    return [  # (name, annotation, default)
        ("model", str | None, _opt(None, "--model", help="Prior: 'default' (embedded), a registry name or a checkpoint file.",
                                      shown=str(d["recipe"].get("model", "default")))),
        ("model_flags", str | None, _opt(None, "--model-flags", help="Hidden settings of a guided-diffusion checkpoint the "
                                         "registry does not know: 'num_heads=4 use_new_attention_order=true' or its own "
                                         "'--num_heads 4 ...' (else read from CHECKPOINT-STEM.flags.json).", shown=False)),
        ("method", str | None, _opt(None, "--method", help=f"{methods}.", shown=d["method"])),
        ("steps", str | None, _opt(None, "--steps", help="Network evaluations: '50', 'ddim25', 'logsnr20'.",
                                      shown=f"the method's: {guided}")),
        ("seed", int | None, _opt(None, "--seed", help="Random seed (the recipe's, else 0); the same seed gives the same result.", shown=False)),
        ("sigma_y", float | None, _opt(None, "--sigma-y", help="Measurement noise std on the [0, 1] scale.",
                                          shown=str(d["sigma_y"]))),
        ("device", str, _opt("auto", "--device", help="auto | cpu | cuda | cuda:N | mps.")),
        ("dtype", str, _opt("fp32", "--dtype", help="fp32 | fp16 | bf16 (network torso precision).")),
        ("tile", str | None, _opt(None, "--tile", help="Network tiles: auto (the model's own: 64 px for the default "
                                     "prior) | 0 (whole image) | N px.", shown=str(d["recipe"].get("tile", "auto")))),
        ("out", Path | None, _opt(None, "--out", "-o", help="Output PNG.", shown=f"INPUT-STEM.{task}.png in the current folder")),
        ("task_file", Path | None, _opt(None, "--task", help="A recipe TOML to use instead of the shipped preset "
                                           "(e.g. a result's .recipe.toml, to reproduce it).", shown="the shipped preset")),
        ("set_", list[str], _opt([], "--set", help="Override a recipe value, e.g. --set methods.diffpir.zeta=0.5 (repeatable).",
                                 shown=False)),
        ("simulate", bool, _opt(False, "--simulate", help="IMAGE is clean: degrade it with the recipe first (evaluation).")),
        ("compare", Path | None, _opt(None, "--compare", help="Also write input | measurement | result side by side to this PNG.",
                                         shown=False)),
        ("trajectory", Path | None, _opt(None, "--trajectory", help="Also write the x0 estimate across the steps as a GIF.",
                                            shown=False)),
        ("class_", int | None, _opt(None, "--class", help="Also guide towards this class (with --classifier, or a "
                                       "class-conditional --model).", shown=False)),
        ("classifier", str | None, _opt(None, "--classifier", help="Noisy-image classifier checkpoint for --class.",
                                           shown=False)),
        ("guidance_scale", float | None, _opt(None, "--guidance-scale", help="Scale of the --class guidance "
                                                 "(classifier s; classifier-free w).", shown="1.0")),
        ("memory", str | None, _opt(None, "--memory", help="Memory budget of one network call (e.g. 2GiB, 800MB): tiles "
                                    "run in chunks under it.", shown="1/4 of the free memory, at most 512 MiB")),
        ("samples", int | None, _opt(None, "--samples", help="Draw N posterior samples (seeds derived from --seed) and write "
                                    "their mean; a sampling method only (not pnp or a classical one).", shown="1")),
        ("save_samples", bool, _opt(False, "--save-samples", help="With --samples: also write each sample as "
                                    "OUT-STEM.sample-K.png (K from 0; sample 0 is the one-sample result).", shown=False)),
        ("uncertainty", Path | None, _opt(None, "--uncertainty", help="With --samples: write the per-pixel standard deviation "
                                          "(RMS over channels, [0, 1] scale) as a colour map with a scale bar to this PNG.",
                                          shown=False)),
        ("quiet", bool, _opt(False, "--quiet", "-q", help="No progress bar and no 'wrote' line.")),
    ]


def _specific(task: str) -> list[tuple[str, Any, Any]]:
    op = _preset_defaults(task)["operator"]
    return {
        "inpaint": [
            ("image", Path, typer.Argument(..., help="Image to fill (PNG, JPEG, TIFF, WebP, BMP; grey, RGB or RGBA).")),
            ("mask_file", Path | None, typer.Argument(None, help="Mask image, white = fill (any grey level, thresholded at 0.5).",
                                                         show_default=False)),
            ("mask", str | None, _opt(None, "--mask", help="Generated mask instead of a file: box | box:SIZE | random:0.7 | half | lines.",
                                         shown=str(op.get("mask", "box")))),
        ],
        "superres": [
            ("image", Path, typer.Argument(..., help="Low-resolution image (with --simulate: the high-resolution original).")),
            ("scale", int | None, _opt(None, "--scale", help="Integer upscaling factor (1-32).", shown=str(op.get("scale")))),
            ("mode", str | None, _opt(None, "--mode", help="Downsampling model: bicubic (antialiased) | average (block mean).",
                                         shown=str(op.get("mode")))),
        ],
        "deblur": [
            ("image", Path, typer.Argument(..., help="Blurred image (with --simulate: the sharp original).")),
            ("kernel", str | None, _opt(None, "--kernel", help="gaussian:SIGMA | motion | motion:SEED | FILE.npy | FILE.npz:KEY | FILE.png.",
                                           shown=str(op.get("kernel")))),
            ("kernel_size", int | None, _opt(None, "--kernel-size", help="Size of generated gaussian and motion kernels (odd).",
                                                shown=str(op.get("size")))),
        ],
        "denoise": [
            ("image", Path, typer.Argument(..., help="Noisy image (with --simulate: the clean original).")),
            ("sigma", float | None, _opt(None, "--sigma", help="Noise std of the input on the [0, 1] scale.",
                                            shown=str(_preset_defaults(task)["sigma_y"]))),
        ],
    }[task]


def toml_string(value: str) -> str:
    return json.dumps(str(value))  # a JSON string is a TOML basic string


def _options(task: str, o: dict[str, Any]) -> list[tuple[str, str]]:
    """The options the user gave, as (the flag as typed, the recipe assignment it stands for)."""
    pairs: list[tuple[str, str]] = []

    def add(flag: str, value: Any, assignment: str) -> None:
        if value is not None:
            pairs.append((f"{flag} {value}", assignment))

    add("--scale", o.get("scale"), f"operator.scale={o.get('scale')}")
    add("--mode", o.get("mode"), f"operator.mode={toml_string(o.get('mode'))}")
    add("--kernel", o.get("kernel"), f"operator.kernel={toml_string(o.get('kernel'))}")
    add("--kernel-size", o.get("kernel_size"), f"operator.size={o.get('kernel_size')}")
    add("--sigma", o.get("sigma"), f"noise.sigma_y={o.get('sigma')!r}")
    add("--mask", o.get("mask"), f"operator.mask={toml_string(o.get('mask'))}")
    # the MASK file is recorded as typed, like a --kernel file: a recipe's files are found from the
    # working directory, so "--task THAT.recipe.toml" alone fills the same region again
    add("MASK", o.get("mask_file"), f"operator.mask={toml_string(o.get('mask_file'))}")
    add("--method", o["method"], f"method={toml_string(o['method'])}")
    add("--sigma-y", o["sigma_y"], f"noise.sigma_y={o['sigma_y']!r}")
    add("--seed", o["seed"], f"seed={o['seed']}")
    add("--model", o["model"], f"model={toml_string(o['model'])}")
    add("--model-flags", o["model_flags"], f"model_flags={toml_string(o['model_flags'])}")
    if o["tile"] is not None:
        tile = o["tile"].strip()
        add("--tile", tile, f"tile={tile}" if (tile.isascii() and tile.isdigit()) else f"tile={toml_string(tile)}")
    add("--class", o["class_"], f"guidance.class={o['class_']}")
    add("--classifier", o["classifier"], f"guidance.classifier={toml_string(o['classifier'])}")
    add("--guidance-scale", o["guidance_scale"], f"guidance.scale={o['guidance_scale']!r}")
    return pairs


def make_request(task: str, o: dict[str, Any]) -> Request:
    """Every option checked: a bad one is an InputError naming it, before anything is read or loaded."""
    if task == "inpaint" and o.get("mask_file") is not None:
        from ..io import IMAGE_SUFFIXES

        if o.get("mask") is not None:
            raise InputError("give either a MASK file or --mask SPEC, not both")
        if Path(o["mask_file"]).suffix.lower() not in IMAGE_SUFFIXES:  # the recipe tells a file from a spec by its suffix
            raise InputError(f"MASK {o['mask_file']}: expected an image file ending in {', '.join(IMAGE_SUFFIXES)}")
    request = build_request(task, o["task_file"], _options(task, o), o["set_"])
    if o["steps"] is not None:
        if not request.uses_network:
            raise InputError(f"--steps {o['steps']}: the classical method {request.method!r} runs no steps")
        request = request.with_changes([f"methods.{request.method}.steps={toml_string(o['steps'])}"], f"--steps {o['steps']}")
    if o.get("samples") is not None:  # after --method, --set and --steps: the method decides whether samples spread
        request = request.with_changes([f"samples={o['samples']}"], f"--samples {o['samples']}")
    from ..app.posterior import check_sample_flags  # torch is in by now (build_request imports it)

    check_sample_flags(request.samples, o.get("uncertainty") is not None, bool(o.get("save_samples")))
    if request.samples > 1 and o.get("trajectory") is not None:
        raise InputError(f"--trajectory follows one sample, not {request.samples}; give it without --samples")
    check_device_dtype(o["device"], o["dtype"])
    if o.get("memory") is not None:
        from ..memory import parse_memory

        parse_memory(o["memory"], "--memory")
    return request


def check_device_dtype(device: str, dtype: str) -> None:
    """--device and --dtype checked before any model loads (availability is the loader's)."""
    if device not in ("auto", "cpu", "mps") and not (device == "cuda" or device.startswith("cuda:") and (device[5:].isascii() and device[5:].isdigit())):
        raise InputError(f"--device {device}: expected auto, cpu, cuda, cuda:N or mps")
    if dtype not in ("fp32", "fp16", "bf16"):
        raise InputError(f"--dtype {dtype}: expected fp32, fp16 or bf16")


def _paths(task: str, request: Request, o: dict[str, Any]) -> tuple[Path, list, list]:
    from ..app.operator_spec import kernel_path
    from ..app.outputs import Read, Write

    out = o["out"] or Path(f"{Path(o['image']).stem}.{task}.png")
    reads = [Read("IMAGE", Path(o["image"]))]
    if o.get("mask_file") is not None:
        reads.append(Read("MASK", Path(o["mask_file"])))
    if request.operator.kind == "inpaint" and o.get("mask_file") is None and Path(str(request.operator.mask)).is_file():
        reads.append(Read("operator.mask", Path(str(request.operator.mask))))
    if request.operator.kind == "blur" and kernel_path(str(request.operator.kernel)).is_file():
        reads.append(Read("--kernel", kernel_path(str(request.operator.kernel))))
    if o["task_file"] is not None:
        reads.append(Read("--task", Path(o["task_file"])))
    if Path(request.model).is_file():
        reads.append(Read("--model", Path(request.model)))
    if request.guidance is not None and request.guidance.classifier and Path(request.guidance.classifier).is_file():
        reads.append(Read("--classifier", Path(request.guidance.classifier)))
    writes = [Write("--out", out, (".png",)), Write("the recipe file", out.with_suffix(".recipe.toml"), (".toml",))]
    if o["compare"] is not None:
        writes.append(Write("--compare", Path(o["compare"]), (".png",)))
    if o["trajectory"] is not None:
        writes.append(Write("--trajectory", Path(o["trajectory"]), (".gif",)))
    if o.get("uncertainty") is not None:
        writes.append(Write("--uncertainty", Path(o["uncertainty"]), (".png",)))
    if o.get("save_samples"):  # names distinct by construction: checked against the reads and the other writes
        writes += [Write(f"--save-samples (sample {k})", out.with_name(f"{out.stem}.sample-{k}.png"), (".png",))
                   for k in range(request.samples)]
    return out, reads, writes


def progress_bar(quiet: bool):
    if quiet:
        return None, None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    # on stderr, like batch's bars: stdout keeps only the 'wrote ...' line
    bar = Progress(TextColumn("[bold]sampling"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=Console(stderr=True), transient=True)
    return bar, bar.add_task("steps", total=0)


def run_with_bar(job: Any, denoiser: Any, classifier: Any, quiet: bool) -> Any:
    """:func:`guidedinv.app.job.run_job` with the progress bar (none when quiet)."""
    from ..app.job import run_job

    bar, task_id = progress_bar(quiet)
    if bar is None:
        return run_job(job, denoiser, classifier)
    bar.start()
    try:
        return run_job(job, denoiser, classifier, lambda info: bar.update(task_id, total=info.num_steps, completed=info.index + 1))
    finally:
        bar.stop()


def restore_file(task: str, **o: Any) -> Path:
    """Run one restoration command; returns the output path. Raises GuidedinvError on bad input."""
    from ..app.outputs import check_paths

    request = make_request(task, o)
    out, reads, writes = _paths(task, request, o)
    many = [w for w in writes if w.label.startswith("--save-samples")][1:]  # at the end of writes
    check_paths(reads, writes[: len(writes) - len(many)])
    if many:  # the samples' names by the linear check (check_paths compares every pair of writes)
        from ..app.outputs import Read, check_disjoint

        others = [Read(w.label, w.path) for w in writes[: len(writes) - len(many)]]
        check_disjoint([*reads, *others], many, "choose another --out name")

    from ..app.job import JobOutputs, load_models, prepare_job, write_job_outputs

    outputs = JobOutputs(out, compare=o["compare"], trajectory=o["trajectory"], uncertainty=o.get("uncertainty"),
                         samples=[w.path for w in writes if w.label.startswith("--save-samples")])
    job = prepare_job(request, o["image"], o.get("mask_file"), simulate=o["simulate"], memory=o["memory"], outputs=outputs)
    denoiser, classifier = load_models(request, o["device"], o["dtype"])
    written = write_job_outputs(job, run_with_bar(job, denoiser, classifier, o["quiet"]))
    if not o["quiet"]:
        steps = f"{request.steps} steps" if request.steps else "no network"
        steps += f", mean of {request.samples} samples" if request.samples > 1 else ""
        typer.echo(f"wrote {', '.join(str(p) for p in written)} ({request.method}, {steps}, seed {request.seed})")
    return out


def _make_command(task: str) -> Callable[..., None]:
    params = _specific(task) + _common(task)

    def command(**kwargs: Any) -> None:
        restore_file(task, **kwargs)

    command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=ann) for name, ann, default in params]
    )
    command.__name__ = task
    command.__doc__ = f"{SUMMARY[task]}\n\nExamples:\n\n    {EXAMPLES[task]}"
    return command


def register_restore_commands(app: typer.Typer) -> None:
    """Add the four restoration commands to the ``guidedinv`` app."""
    for task in TASK_COMMANDS:
        app.command(task)(_make_command(task))
