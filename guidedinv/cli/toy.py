"""``guidedinv generate`` (class-conditional generation) and ``guidedinv train toy`` (the four toy
models that make it work out of the box, on a CPU). torch and the model code are imported inside the commands."""
from __future__ import annotations

import time
from pathlib import Path

import typer

from .. import __version__
from ..errors import InputError

__all__ = ["generate", "train_toy", "DEFAULT_SCALE"]

# the scales the shipped toy models are evaluated best at (guidedinv/weights/TOY_CARD.md)
DEFAULT_SCALE = {"classifier": 8.0, "cfg": 3.0, "none": 0.0}


def _class_index(text: str, num_classes: int | None, names: tuple[str, ...]) -> int:
    """--class as an index, or a toy class name."""
    try:
        index = int(text)
    except ValueError:
        if text not in names:
            known = ", ".join(f"{i} {n}" for i, n in enumerate(names))
            raise InputError(f"--class {text!r} is not a class index{' or name (' + known + ')' if names else ''}") from None
        index = names.index(text)
    if num_classes is not None and not 0 <= index < num_classes:
        raise InputError(f"--class {index} is out of range: the model knows classes 0..{num_classes - 1}")
    return index


def generate(
    class_: str = typer.Option(..., "--class", "-c", help="Class to generate: an index, or for the toy models a name "
                               "(0 disc, 1 cross, 2 hstripes, 3 vstripes, 4 checker)."),
    model: str = typer.Option("toy", "--model", help="'toy' (the embedded 16x16 toy models), or a prior: file, registry or "
                              "embedded name; unconditional for classifier/none guidance, class-conditional with a null "
                              "label for cfg."),
    classifier: str = typer.Option("", "--classifier", help="Noisy classifier for --guidance classifier with a --model "
                                   "other than toy (empty: the registry's partner of --model)."),
    guidance: str = typer.Option("classifier", "--guidance", "-g", help="classifier | cfg | none (unguided baseline)."),
    scale: float | None = typer.Option(None, "--scale", "-s", show_default=False, help="Guidance scale. classifier: s >= 0, "
                                          "s = 1 samples p(x|c) exactly for an exact classifier, s > 1 sharpens, s = 0 is "
                                          "unguided (default 8). cfg: w = 1 the plain conditional model, w = 0 the "
                                          "unconditional one, w > 1 stronger (default 3)."),
    count: int = typer.Option(16, "-n", "--count", help="Number of images."),
    steps: str = typer.Option("25", "--steps", help="Sampler steps: '25', 'ddim25', 'logsnr20', ... (DDIM, eta = 0)."),
    seed: int = typer.Option(0, "--seed", help="Image i uses seed SEED + i: the same seed gives the same images."),
    out: Path = typer.Option(Path("generated.png"), "--out", "-o", help="A .png file: one grid of all images; a folder: "
                             "one PNG per image (class<C>-seed<S>.png)."),
    size: int = typer.Option(0, "--size", help="Image side in pixels; 0: the model's own (toy: 16)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N | mps."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
) -> None:
    """Generate images of one class with classifier guidance, classifier-free guidance (cfg), or none.

    Examples:

        guidedinv generate --class 2 -n 16 -o crosses.png

        guidedinv generate --class vstripes --guidance cfg --scale 3 -o out/

        guidedinv generate --class 0 --guidance none -n 64 --seed 7
    """
    from ..app.generate import load_class_models
    from ..defaults import pick_device
    from ..generate import GUIDANCE, generate as run_generate, image_grid
    from ..io import from_model_range, write_image
    from ..sampler import build_path
    from ..toy import TOY

    if guidance not in GUIDANCE:
        raise InputError(f"unknown --guidance {guidance!r}; choose from {', '.join(GUIDANCE)}")
    if count < 1:
        raise InputError(f"-n/--count must be at least 1, got {count}")
    if size < 0:
        raise InputError(f"--size must be positive (or 0 for the model's own), got {size}")
    s = DEFAULT_SCALE[guidance] if scale is None else scale
    toy = model == "toy"
    label = _class_index(class_, TOY.num_classes if toy else None, TOY.classes if toy else ())
    grid = out.suffix.lower() == ".png"
    if not grid and out.suffix:
        raise InputError(f"--out {out}: give a .png file (one grid) or a folder (one PNG per image)")
    if toy and size not in (0, TOY.size):
        raise InputError(f"--size {size}: the toy models make {TOY.size}x{TOY.size} images")
    models, own_size = load_class_models(model, guidance, classifier, pick_device(device))
    side = size or own_size
    if not side:
        raise InputError(f"the image size of --model {model} is unknown; give --size")
    try:
        build_path(steps, (models.cond_prior if guidance == "cfg" else models.prior).schedule)
    except ValueError as exc:
        raise InputError(f"--steps {steps!r}: {exc}") from None
    seeds = [seed + i for i in range(count)]
    start = time.time()
    x = run_generate(models, [label] * count, seeds, guidance=guidance, scale=s, size=side, steps=steps)
    images = from_model_range(x.float().cpu())
    meta = {"Software": f"guidedinv {__version__}", "guidedinv:task": "generate", "guidedinv:model": model,
            "guidedinv:guidance": guidance, "guidedinv:scale": f"{s:g}", "guidedinv:class": str(label),
            "guidedinv:steps": steps}
    if guidance == "classifier" and not toy:
        meta["guidedinv:classifier"] = classifier or "registry default"
    if grid:
        written = [write_image(out, image_grid(images), metadata={**meta, "guidedinv:seed": f"{seed}..{seed + count - 1}"})]
    else:
        written = [write_image(out / f"class{label}-seed{sd}.png", im, metadata={**meta, "guidedinv:seed": str(sd)})
                   for sd, im in zip(seeds, images)]
    if not quiet:
        where = written[0] if grid else f"{len(written)} files in {out}"
        typer.echo(f"wrote {where}: {count} x class {label}, {guidance} guidance at scale {s:g}, {steps} steps, "
                   f"{time.time() - start:.1f} s")


def train_toy(
    out: Path = typer.Option(Path("runs/toy"), "--out", "-o", help="Folder for the exported toy-*.safetensors "
                             "(guidedinv/weights replaces the shipped ones)."),
    work: Path | None = typer.Option(None, "--work", help="Folder for checkpoints and logs (resumable); default OUT/checkpoints."),
    only: list[str] = typer.Option([], "--only", help="Train only this model (repeatable): toy-prior, toy-classifier, "
                                   "toy-cond-prior, toy-clean-classifier."),
    steps: int = typer.Option(0, "--steps", help="Override every recipe's number of steps (0: the recipes'; a smoke test)."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N (the recipes are sized for one CPU core)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train the four toy models (prior, noisy classifier, conditional prior, clean classifier) and export them.

    Run with one thread for the wall times of the model card:

        OMP_NUM_THREADS=1 guidedinv train toy --out guidedinv/weights --work runs/toy
    """
    import torch

    from ..defaults import pick_device
    from ..toy.train import RECIPES, train_all
    from .train import run_training

    unknown = [n for n in only if n not in RECIPES]
    if unknown:
        raise InputError(f"--only {unknown[0]}: unknown toy model; choose from {', '.join(RECIPES)}")

    if steps < 0:
        raise InputError(f"--steps must be positive (or 0 for the recipes'), got {steps}")

    def run(name: str, trainer) -> None:
        if not quiet:
            typer.echo(f"{name}: {trainer.settings.steps} steps, {sum(p.numel() for p in trainer.net.parameters()):,} parameters")
        run_training(trainer, quiet)

    start = time.time()
    cards = train_all(out, work or out / "checkpoints", pick_device(device), list(only) or None, steps or None, run=run)
    for card in cards:
        typer.echo(f"{card['model']}: {card['steps']} steps, {card['wall_seconds']} s wall, {card['cpu_seconds']} s CPU, "
                   f"final loss {card['final_loss']} -> {out / (card['model'] + '.safetensors')}")
    typer.echo(f"total wall time {time.time() - start:.1f} s ({torch.get_num_threads()} thread(s))")
