"""``guidedinv edit`` and ``guidedinv invert``: image editing on the one sampler (a thin shell over
:mod:`guidedinv.app.edit`). Importing this module imports neither torch nor the engine."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..app.methods.sdedit import SDEdit
from ..app.outputs import Read, Write, check_paths
from ..app.request import Request, build_request
from ..errors import InputError
from .restore import check_device_dtype, run_with_bar, toml_string

__all__ = ["edit_command", "invert_command", "make_edit_request"]

_DEFAULTS = SDEdit().defaults()
EDIT_GUIDANCE_SCALE = 3.0  # chosen on the toy translation table (guidedinv/weights/TOY_CARD.md)


def make_edit_request(o: dict[str, Any]) -> Request:
    """The edit command's options (a dict by their parameter names) as one checked Request; a bad
    one is an InputError naming its flag, before anything is read or loaded."""
    pairs: list[tuple[str, str]] = []

    def add(flag: str, value: Any, assignment: str) -> None:
        if value is not None:
            pairs.append((f"{flag} {value}", assignment))

    add("--strength", o["strength"], f"methods.sdedit.strength={o['strength']!r}")
    add("--mask", o["mask"], f"operator.mask={toml_string(str(o['mask']))}")
    add("--reference", o["reference"], f"operator.reference={toml_string(str(o['reference']))}")
    add("--ilvr", o["ilvr"], f"methods.sdedit.ilvr={o['ilvr']}")
    add("--ilvr-sigma-min", o["ilvr_sigma_min"], f"methods.sdedit.ilvr_sigma_min={o['ilvr_sigma_min']!r}")
    add("--rule", o["rule"], f"methods.sdedit.rule={toml_string(o['rule'])}")
    add("--steps", o["steps"], f"methods.sdedit.steps={toml_string(o['steps'])}")
    add("--seed", o["seed"], f"seed={o['seed']}")
    add("--model", o["model"], f"model={toml_string(o['model'])}")
    add("--model-flags", o["model_flags"], f"model_flags={toml_string(o['model_flags'])}")
    if o["tile"] is not None:
        tile = o["tile"].strip()
        add("--tile", tile, f"tile={tile}" if (tile.isascii() and tile.isdigit()) else f"tile={toml_string(tile)}")
    add("--class", o["class_"], f"guidance.class={o['class_']}")
    add("--classifier", o["classifier"], f"guidance.classifier={toml_string(o['classifier'])}")
    if o["class_"] is not None:  # translation: w = 3 by default (CFG on the toy set: 97% land in the class at strength 0.5)
        scale = o["scale"] if o["scale"] is not None else EDIT_GUIDANCE_SCALE
        pairs.append((f"--scale {scale}", f"guidance.scale={scale!r}"))
    elif o["scale"] is not None:
        raise InputError(f"--scale {o['scale']}: a guidance scale needs the class to guide towards (--class C)")
    request = build_request("edit", o["task_file"], pairs, o["set_"])
    if o["guidance"] not in (None, "classifier", "cfg"):
        raise InputError(f"--guidance {o['guidance']}: expected classifier or cfg")
    if o["guidance"] is not None and request.guidance is None:
        raise InputError(f"--guidance {o['guidance']}: give the class to guide towards with --class C")
    if o["guidance"] == "classifier" and request.guidance is not None and not request.guidance.classifier:
        raise InputError("--guidance classifier needs --classifier FILE (a noisy-image classifier)")
    if o["guidance"] == "cfg" and request.guidance is not None and request.guidance.classifier:
        raise InputError("--guidance cfg uses the class-conditional --model itself; drop --classifier")
    if request.settings["ilvr"] and not request.operator.reference:
        raise InputError(f"--ilvr {request.settings['ilvr']}: give the reference image with --reference REF")
    check_device_dtype(o["device"], o["dtype"])
    return request


def edit_command(
    image: Path = typer.Argument(..., help="The image to edit (a photo, a stroke painting, a collage; PNG, JPEG, TIFF, WebP)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output PNG.", show_default="INPUT-STEM.edit.png"),
    strength: float | None = typer.Option(None, help="Where the input is noised: fraction of the model's timestep range "
                                          "(0 returns the input, 1 ignores it).", show_default=str(_DEFAULTS["strength"])),
    mask: str | None = typer.Option(None, help="Edit only here: a mask file (white = edit, grey = blend) or box | half | ...; "
                                    "the rest is kept exactly.", show_default="everywhere"),
    reference: str | None = typer.Option(None, help="ILVR: a reference image of the input's size whose coarse structure "
                                         "the result keeps (with --ilvr N).", show_default="none"),
    ilvr: int | None = typer.Option(None, help="ILVR low-pass factor N (downsample by N and back).", show_default="0 (off)"),
    ilvr_sigma_min: float | None = typer.Option(None, "--ilvr-sigma-min", help="ILVR stops below this noise level "
                                                "(model-range sigma).", show_default="0 (never)"),
    class_: int | None = typer.Option(None, "--class", help="Translate towards this class (a class-conditional --model "
                                      "or a --classifier).", show_default=False),
    guidance: str | None = typer.Option(None, help="classifier | cfg.", show_default="classifier with --classifier, else cfg"),
    scale: float | None = typer.Option(None, help="Guidance scale of --class (classifier s; classifier-free w).",
                                       show_default="3.0"),
    classifier: str | None = typer.Option(None, help="Noisy-image classifier checkpoint for --class.", show_default=False),
    from_latent: Path | None = typer.Option(None, "--from-latent", help="Decode this latent (from guidedinv invert) "
                                            "instead of noising IMAGE: IMAGE only names the output and its size.", show_default=False),
    model: str | None = typer.Option(None, help="Prior: 'default' (embedded), a registry name or a checkpoint file.",
                                     show_default="default"),
    model_flags: str | None = typer.Option(None, "--model-flags", help="Hidden settings of a guided-diffusion checkpoint "
                                           "(num_heads=4 use_new_attention_order=true).", show_default=False),
    rule: str | None = typer.Option(None, help="Step rule: ddpm | ddim | dpm++2m | renoise | ...", show_default=_DEFAULTS["rule"]),
    steps: str | None = typer.Option(None, help="Network calls below the strength's level: 'logsnrN' runs N; 'N' is cut "
                                     "at the level (about strength x N).", show_default=_DEFAULTS["steps"]),
    seed: int | None = typer.Option(None, help="Random seed (the recipe's, else 0); the same seed gives the same result.", show_default=False),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N | mps."),
    dtype: str = typer.Option("fp32", help="fp32 | fp16 | bf16 (network torso precision)."),
    tile: str | None = typer.Option(None, help="Network tiles: auto | 0 (whole image) | N px.", show_default="auto"),
    task_file: Path | None = typer.Option(None, "--task", help="A recipe TOML (e.g. a result's .recipe.toml, to reproduce it).",
                                          show_default="the shipped preset"),
    set_: list[str] = typer.Option([], "--set", help="Override a recipe value, e.g. --set methods.sdedit.eta=0.5.",
                                   show_default=False),
    compare: Path | None = typer.Option(None, help="Also write input | result side by side to this PNG.", show_default=False),
    trajectory: Path | None = typer.Option(None, help="Also write the x0 estimate across the steps as a GIF.", show_default=False),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no 'wrote' line."),
) -> None:
    """Edit IMAGE on the diffusion prior: SDEdit from --strength, inside a --mask only, towards a --class, or
    keeping a --reference's coarse structure (ILVR).

    --strength s noises the input to timestep round(s (T - 1)) of the model's T = 1000 and samples back; a logsnrN grid then makes N network calls whatever s (diffusers' img2img makes strength x steps).

    Examples:

        guidedinv edit painting.png --strength 0.5 -o realistic.png

        guidedinv edit photo.png --mask region.png --strength 0.8 --compare cmp.png

        guidedinv edit cat.png --model toy-prior --class 3 --classifier toy-classifier --scale 5

        guidedinv edit noise.png --reference face.png --ilvr 8 --strength 1
    """
    o = dict(locals())
    request = make_edit_request(o)
    out = out or Path(f"{Path(image).stem}.edit.png")
    reads = [Read("IMAGE", Path(image))]
    for label, value in (("--mask", request.operator.mask), ("--reference", request.operator.reference),
                         ("--from-latent", from_latent), ("--task", task_file), ("--model", request.model)):
        if value and Path(str(value)).is_file():
            reads.append(Read(label, Path(str(value))))
    writes = [Write("--out", out, (".png",)), Write("the recipe file", out.with_suffix(".recipe.toml"), (".toml",))]
    writes += [Write("--compare", compare, (".png",))] if compare is not None else []
    writes += [Write("--trajectory", trajectory, (".gif",))] if trajectory is not None else []
    check_paths(reads, writes)

    from ..app.job import JobOutputs, load_models, prepare_job, write_job_outputs

    outputs = JobOutputs(out, compare=compare, measurement_panel=False, trajectory=trajectory)
    job = prepare_job(request, image, latent=from_latent, outputs=outputs)
    denoiser, clf = load_models(request, device, dtype)
    written = write_job_outputs(job, run_with_bar(job, denoiser, clf, quiet))
    if not quiet:
        calls = "no network" if request.settings["strength"] == 0 and job.latent is None else f"{request.steps} steps"
        typer.echo(f"wrote {', '.join(str(p) for p in written)} (sdedit, strength {request.settings['strength']}, {calls}, "
                   f"seed {request.seed})")


def invert_command(
    image: Path = typer.Argument(..., help="The image to encode."),
    out: Path = typer.Option(..., "--out", "-o", help="The latent file (.safetensors)."),
    steps: str = typer.Option("logsnr50", help="Grid of the probability-flow ODE (its network calls)."),
    rule: str = typer.Option("ddim", help="ddim (first order) | dpm++2m (second order)."),
    model: str = typer.Option("default", help="Prior: 'default' (embedded), a registry name or a checkpoint file."),
    class_: int | None = typer.Option(None, "--class", help="Class label for a class-conditional --model.", show_default=False),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N | mps."),
    tile: str = typer.Option("auto", help="Network tiles: auto | 0 | N px."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No 'wrote' line."),
) -> None:
    """Encode IMAGE to its noise latent by running the probability-flow ODE upwards (DDIM inversion), and
    report how well decoding it back reconstructs the image.

    Decode with another class or guidance: guidedinv edit IMAGE --from-latent LATENT --class C (the
    latent file records the grid, rule and model it was made with).

    Example:

        guidedinv invert photo.png -o photo.latent.safetensors --steps logsnr50
    """
    from ..app.request import check_tile
    from ..app.steps import parse_steps

    parse_steps(steps, "--steps")
    if rule not in ("ddim", "dpm++2m"):
        raise InputError(f"--rule {rule}: inversion needs a deterministic rule: ddim or dpm++2m")
    check_device_dtype(device, "fp32")
    check_tile(tile, "--tile")
    check_paths([Read("IMAGE", Path(image))] + ([Read("--model", Path(model))] if Path(model).is_file() else []),
                [Write("--out", out, (".safetensors",))])

    from .. import defaults
    from ..app.latent import encode_image
    from ..io import read_image

    data = read_image(image)
    denoiser = defaults.load_prior(model, device, None, check_tile(tile))
    psnr = encode_image(denoiser, data.image, out, steps=steps, rule=rule, model=model, label=class_)
    if not quiet:
        typer.echo(f"wrote {out} ({rule}, {steps}; decoding it back gives {psnr:.2f} dB PSNR against {image})")
