"""``guidedinv inpaint | superres | deblur | denoise``: restore one image with a task recipe.

The four commands share one implementation (:func:`restore_file`) and one set of common options;
each adds the one or two options of its own task. The input is the degraded image itself (the real
use), or with ``--simulate`` a clean image that is degraded first (for evaluation).
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
import typer

from .. import __version__
from ..app.batch.items import measurement_seed
from ..defaults import load_prior, parse_tile
from ..errors import InputError
from ..io import check_mask, make_mask, read_image, read_mask, write_image
from ..operators import crop_to_multiple
from ..app.recipes import apply_overrides, dump_toml, load_recipe, method_settings
from ..app.restore import build_operator, restore, simulate

__all__ = ["register_restore_commands", "restore_file"]

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


def _opt(default: Any, *names: str, help: str) -> Any:
    return typer.Option(default, *names, help=help, show_default=True)


COMMON = [  # (name, annotation, default) shared by the four commands
    ("model", str, _opt("default", "--model", help="Prior: 'default' (embedded), a registry name or a checkpoint file.")),
    ("method", str, _opt("", "--method", help="pnp (plug-and-play, best PSNR) | diffpir | ddnm | repaint (inpaint only) | dps | a classical method (lanczos, tv_deconv, biharmonic, ...); empty: the recipe's.")),
    ("steps", str, _opt("", "--steps", help="Network evaluations: '50', 'ddim25', 'logsnr20'; empty: the recipe's.")),
    ("seed", int, _opt(0, "--seed", help="Random seed; the same seed gives the same result.")),
    ("sigma_y", float, _opt(-1.0, "--sigma-y", help="Measurement noise std on the [0, 1] scale; -1: the recipe's.")),
    ("device", str, _opt("auto", "--device", help="auto | cpu | cuda | cuda:N | mps.")),
    ("dtype", str, _opt("fp32", "--dtype", help="fp32 | fp16 | bf16 (network torso precision).")),
    ("tile", str, _opt("", "--tile", help="Network tiles: auto (the model's own: 64 px for the default prior) | 0 (whole image) | N px; empty: the recipe's.")),
    ("out", Path, _opt(None, "--out", "-o", help="Output PNG; default INPUT-STEM.TASK.png in the current folder.")),
    ("task_file", Path, _opt(None, "--task", help="A recipe TOML to use instead of the shipped one.")),
    ("set_", list[str], _opt([], "--set", help="Override a recipe value, e.g. --set methods.diffpir.zeta=0.5 (repeatable).")),
    ("simulate", bool, _opt(False, "--simulate", help="IMAGE is clean: degrade it with the recipe first (evaluation).")),
    ("compare", Path, _opt(None, "--compare", help="Also write input | measurement | result side by side to this PNG.")),
    ("trajectory", Path, _opt(None, "--trajectory", help="Also write the x0 estimate across the steps as a GIF.")),
    ("quiet", bool, _opt(False, "--quiet", "-q", help="No progress bar.")),
]

SPECIFIC: dict[str, list] = {
    "inpaint": [
        ("image", Path, typer.Argument(..., help="Image to fill (PNG, JPEG, TIFF, WebP, BMP; grey, RGB or RGBA).")),
        ("mask_file", Path, typer.Argument(None, help="Mask image, white = fill (any grey level, thresholded at 0.5).")),
        ("mask", str, _opt("", "--mask", help="Generated mask instead of a file: box | box:SIZE | random:0.7 | half | lines.")),
    ],
    "superres": [
        ("image", Path, typer.Argument(..., help="Low-resolution image (with --simulate: the high-resolution original).")),
        ("scale", int, _opt(4, "--scale", help="Integer upscaling factor.")),
        ("mode", str, _opt("bicubic", "--mode", help="Downsampling model: bicubic (antialiased) | average (block mean).")),
    ],
    "deblur": [
        ("image", Path, typer.Argument(..., help="Blurred image (with --simulate: the sharp original).")),
        ("kernel", str, _opt("gaussian:3.0", "--kernel", help="gaussian:SIGMA | motion | motion:SEED | FILE.npy | FILE.npz:KEY | FILE.png.")),
        ("kernel_size", int, _opt(61, "--kernel-size", help="Size of generated gaussian and motion kernels.")),
    ],
    "denoise": [
        ("image", Path, typer.Argument(..., help="Noisy image (with --simulate: the clean original).")),
        ("sigma", float, _opt(0.05, "--sigma", help="Noise std of the input on the [0, 1] scale.")),
    ],
}


def _overrides(task: str, o: dict[str, Any]) -> list[str]:
    """CLI options as recipe assignments (the recipe stays the one source of truth)."""
    sets = []
    if task == "superres":
        sets += [f"operator.scale={o['scale']}", f'operator.mode="{o["mode"]}"']
    elif task == "deblur":
        sets += [f'operator.kernel="{o["kernel"]}"', f"operator.size={o['kernel_size']}"]
    elif task == "denoise":
        sets.append(f"noise.sigma_y={o['sigma']}")
    elif task == "inpaint" and o["mask"]:
        sets.append(f'operator.mask="{o["mask"]}"')
    if o["method"]:
        sets.append(f'method="{o["method"]}"')
    if o["sigma_y"] >= 0:
        sets.append(f"noise.sigma_y={o['sigma_y']}")
    sets += [f"seed={o['seed']}", f'model="{o["model"]}"']
    if o["tile"]:
        tile = parse_tile(o["tile"])
        sets.append(f"tile={tile}" if isinstance(tile, int) else 'tile="auto"')
    return sets


def _progress(total: int, quiet: bool):
    if quiet:
        return None, None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    # on stderr, like batch's bars: stdout keeps only the 'wrote ...' line
    bar = Progress(TextColumn("[bold]sampling"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=Console(stderr=True), transient=True)
    return bar, bar.add_task("steps", total=total)


def _side_by_side(panels: list[torch.Tensor]) -> torch.Tensor:
    """Panels (C, h, w) in [0, 1] resized (nearest) to the tallest height and joined with a 4 px gap."""
    height = max(p.shape[-2] for p in panels)
    resized = []
    for p in panels:
        if p.shape[-2] != height:
            w = round(p.shape[-1] * height / p.shape[-2])
            p = F.interpolate(p[None], size=(height, w), mode="nearest")[0]
        resized.append(p.expand(3, -1, -1) if p.shape[0] == 1 else p)
        resized.append(torch.ones(3, height, 4))
    return torch.cat(resized[:-1], dim=-1).clamp(0, 1)


def _write_gif(path: Path, frames: list[torch.Tensor]) -> None:
    from PIL import Image

    from ..io import atomic_write_bytes

    if path.suffix.lower() != ".gif":
        raise InputError(f"--trajectory {path}: the file must end in .gif")
    images = [Image.fromarray((f.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype("uint8").squeeze()) for f in frames]
    import io as _io

    buffer = _io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=120, loop=0)
    atomic_write_bytes(path, buffer.getvalue())


def restore_file(task: str, **o: Any) -> Path:
    """Run one restoration command; returns the output path. Raises GuidedinvError on bad input."""
    recipe = load_recipe(o["task_file"] or task)
    if recipe["task"] != task:
        raise InputError(f"--task {o['task_file']} is a {recipe['task']!r} recipe, not {task!r}")
    recipe = apply_overrides(recipe, _overrides(task, o))
    if o["steps"]:
        recipe = apply_overrides(recipe, [f'methods.{recipe["method"]}.steps="{o["steps"]}"'])
    recipe = apply_overrides(recipe, o["set_"])
    settings = method_settings(recipe)  # validates the method before any heavy work

    data = read_image(o["image"])
    image = data.image[None]
    mask = None
    if task == "inpaint":
        if o["mask_file"] is not None and o["mask"]:
            raise InputError("give either a MASK file or --mask SPEC, not both")
        mask = read_mask(o["mask_file"], data.size) if o["mask_file"] is not None else make_mask(
            str(recipe["operator"].get("mask", "box")), data.size, seed=int(recipe["seed"]))
        check_mask(mask)
    sigma_y = float(recipe.get("noise", {}).get("sigma_y", 0.0))
    if o["simulate"]:
        if task == "superres":
            image = crop_to_multiple(image, int(recipe["operator"]["scale"]))
        operator = build_operator(recipe, tuple(image.shape[-2:]), mask)
        y = simulate(image, operator, sigma_y, seed=measurement_seed(int(recipe["seed"])))
        if task == "inpaint":
            y = operator.AT(y)  # the visible image with the hole zeroed, as a user would have it
    else:
        y = image
        if task == "superres":
            scale = int(recipe["operator"]["scale"])
            if scale > min(image.shape[-2:]) * 64:
                raise InputError(f"--scale {scale} is far too large for a {image.shape[-1]}x{image.shape[-2]} image")

    denoiser = load_prior(str(recipe["model"]), o["device"], o["dtype"], recipe.get("tile", "auto"))
    frames: list[torch.Tensor] = []
    bar, task_id = _progress(0, o["quiet"])

    def callback(info) -> None:
        if bar is not None:
            bar.update(task_id, total=info.num_steps, completed=info.index + 1)
        if o["trajectory"] is not None:
            frames.append(((info.x0[0].detach().float().cpu() + 1) / 2))

    if bar is not None:
        bar.start()
    try:
        x = restore(denoiser, recipe, y.clamp(0, 1) if not o["simulate"] else y, mask=mask, seeds=[int(recipe["seed"])],
                    callback=callback)[0].cpu()
    finally:
        if bar is not None:
            bar.stop()

    out = o["out"] or Path(f"{Path(o['image']).stem}.{task}.png")
    if out.resolve() == Path(o["image"]).resolve():
        raise InputError(f"output {out} would overwrite the input image")
    alpha = data.alpha
    if alpha is not None and alpha.shape[-2:] != x.shape[-2:]:
        alpha = F.interpolate(alpha[None], size=x.shape[-2:], mode="bicubic", align_corners=False)[0].clamp(0, 1)
    if x.shape[0] != data.channels:
        x = x.mean(0, keepdim=True) if data.channels == 1 else x.expand(3, -1, -1)
    meta = {"Software": f"guidedinv {__version__}", "guidedinv:task": task, "guidedinv:model": str(recipe["model"]),
            "guidedinv:method": recipe["method"], "guidedinv:steps": str(settings["steps"]), "guidedinv:seed": str(recipe["seed"]),
            "guidedinv:recipe": dump_toml(recipe)}
    write_image(out, x, alpha=alpha, metadata=meta, bit_depth=16 if data.bit_depth == 16 else 8)
    from ..io import atomic_write_bytes

    atomic_write_bytes(out.with_suffix(".recipe.toml"), dump_toml(recipe).encode())
    if o["compare"] is not None:
        shown_y = y[0].clamp(0, 1)
        write_image(o["compare"], _side_by_side([data.image, shown_y.expand(x.shape[0], -1, -1), x]))
    if o["trajectory"] is not None and frames:
        _write_gif(o["trajectory"], frames)
    if not o["quiet"]:
        typer.echo(f"wrote {out} ({recipe['method']}, {settings['steps']} steps, seed {recipe['seed']})")
    return out


def _make_command(task: str) -> Callable[..., None]:
    params = SPECIFIC[task] + COMMON

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
    for task in ("inpaint", "superres", "deblur", "denoise"):
        app.command(task)(_make_command(task))
