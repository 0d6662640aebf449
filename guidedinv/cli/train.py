"""``guidedinv train ...``: train the priors and classifiers that guidedinv ships (thin shell over
:mod:`guidedinv.training`).

torch and the training modules are imported inside the commands, so building the command line
(``guidedinv --help``) stays light.
"""
from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import GuidedinvError

if TYPE_CHECKING:
    import torch

    from ..models.adm import ADMConfig
    from ..training import CropSampler, Trainer, TrainSettings

train_app = typer.Typer(help="Train priors and noisy classifiers (small ADM configurations).", no_args_is_help=True)


def _parse_ints(text: str, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise GuidedinvError(f"{what} must be comma-separated integers, got {text!r}") from None


def run_training(trainer: Trainer, quiet: bool) -> None:
    """Train with a progress bar (or silently)."""
    if quiet:
        trainer.train()
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]:.4f}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns) as bar:
        task = bar.add_task("train", total=trainer.settings.steps, completed=trainer.step, loss=float("nan"))
        trainer.train(lambda step, loss: bar.update(task, completed=step, loss=loss))


# --export-dtype -> the name of its torch dtype (resolved when exporting: torch is not imported here)
EXPORT_DTYPES = {"fp32": "float32", "fp16": "float16"}


def _network(channels: int, mult: str, res_blocks: int, attention: str, **extra) -> ADMConfig:
    from ..models.adm import ADMConfig

    ds = _parse_ints(attention, "--attention")
    return ADMConfig(model_channels=channels, num_res_blocks=res_blocks, channel_mult=_parse_ints(mult, "--mult"),
                     attention_ds=ds, head_channels=32 if ds or extra.get("kind") == "classifier" else None, num_heads=1,
                     **extra)


def _train_and_export(settings: TrainSettings, cfg: ADMConfig, sampler: CropSampler, data: list[Path], out: Path, dev: torch.device,
                      quiet: bool, export_dtype: str, crop: int, objective_text: str, **export) -> None:
    """Resume or start, train with a progress bar, export the EMA weights with a model card."""
    import torch

    from ..training import Trainer, export_safetensors

    if export_dtype not in EXPORT_DTYPES:
        raise GuidedinvError(f"--export-dtype must be one of {', '.join(EXPORT_DTYPES)}, got {export_dtype!r}")
    trainer = Trainer(settings, sampler, out, dev)
    try:
        resumed = trainer.resume()
    except ValueError as exc:
        raise GuidedinvError(f"{exc}; use another --out or the same settings") from None
    if not quiet:
        typer.echo(f"{'resuming at step ' + str(trainer.step) if resumed else 'starting'}: {len(sampler.images)} images "
                   f"({sampler.num_pixels / 1e6:.1f} MP), {sum(p.numel() for p in trainer.net.parameters()) / 1e6:.2f}M parameters, {dev}")
    run_training(trainer, quiet)
    log = out / "log.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.exists() else []
    last = rows[-1] if rows else {}  # the last logged row, also when a resumed run had nothing left to do
    card = {
        "objective": objective_text,
        "data": [str(p) for p in data], "images": len(sampler.images), "megapixels": round(sampler.num_pixels / 1e6, 1),
        "crop": crop, "batch": settings.batch, "steps": trainer.step, "lr": settings.lr, "ema": settings.ema, "seed": settings.seed,
        "device": str(dev), "hardware": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(), "wall_seconds": round(trainer.seconds, 1), "final_loss": last.get("loss"),
        "export_dtype": export_dtype,
    }
    if sampler.classes is not None:
        card["classes"] = sampler.classes
    if settings.objective == "conditional":
        card["label_dropout"] = settings.label_dropout
    path = export_safetensors(trainer.ema, cfg, out / "model.safetensors", schedule=settings.schedule, prediction="v",
                              dtype=getattr(torch, EXPORT_DTYPES[export_dtype]), card=card, **export)
    (out / "card.json").write_text(json.dumps(card, indent=2))
    typer.echo(f"wrote {path} (EMA weights, {export_dtype}), final loss {last.get('loss')}")


# options shared by the three commands, as annotated types (each command sets its own defaults)
Out = Annotated[Path, typer.Option("--out", "-o", help="Run folder: checkpoint.pt, log.jsonl, model.safetensors, card.json.")]
Steps = Annotated[int, typer.Option(help="Optimisation steps.")]
Batch = Annotated[int, typer.Option(help="Crops per step.")]
Channels = Annotated[int, typer.Option(help="Base channels (a multiple of 32: GroupNorm uses 32 groups).")]
Mult = Annotated[str, typer.Option(help="Channel multiplier per resolution level.")]
ResBlocks = Annotated[int, typer.Option(help="Residual blocks per level.")]
Attention = Annotated[str, typer.Option(help="Downsample factors with self-attention, e.g. '4,8' (empty: none, fully convolutional).")]
Schedule = Annotated[str, typer.Option(help="Noise schedule: linear or cosine (T = 1000); a classifier must match its prior's.")]
Lr = Annotated[float, typer.Option(help="AdamW learning rate.")]
Ema = Annotated[float, typer.Option(help="EMA decay of the exported weights.")]
Seed = Annotated[int, typer.Option(help="Seed of crops, timesteps, noise (and label dropout).")]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
CheckpointEvery = Annotated[int, typer.Option(help="Steps between checkpoints (resume picks up the last one).")]
ExportDtype = Annotated[str, typer.Option(help="Precision of the exported weights: fp32, or fp16 (half the size).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
Labelled = Annotated[Path, typer.Argument(help="A folder with one sub-folder of images per class (ROOT/cat/*.png, ROOT/dog/*.png).")]


@train_app.command("prior")
def train_prior(
    data: list[Path] = typer.Argument(..., help="Folders or files of training images (PNG, JPEG, BMP, TIFF, WebP)."),
    out: Out = Path("runs/prior"),
    steps: Steps = 10000,
    batch: Batch = 16,
    crop: int = typer.Option(64, help="Square crop size in pixels (the network itself works at any size)."),
    channels: Channels = 32,
    mult: Mult = "1,2,2,2",
    res_blocks: ResBlocks = 2,
    attention: Attention = "",
    schedule: Schedule = "linear",
    lr: Lr = 2e-4,
    ema: Ema = 0.999,
    seed: Seed = 0,
    device: Device = "auto",
    checkpoint_every: CheckpointEvery = 500,
    export_dtype: ExportDtype = "fp32",
    quiet: Quiet = False,
) -> None:
    """Train an unconditional prior (v-prediction) on random crops; resumes from OUT if a checkpoint is there.

    Example: guidedinv train prior ../shared/data/train --out runs/prior --steps 20000 --crop 64
    """
    from ..defaults import pick_device
    from ..training import CropSampler, TrainSettings

    dev = pick_device(device)
    cfg = _network(channels, mult, res_blocks, attention, out_channels=3)
    settings = TrainSettings(objective="prior", steps=steps, batch=batch, lr=lr, ema=ema, schedule=schedule, seed=seed,
                             checkpoint_every=checkpoint_every, network=cfg.to_dict())
    sampler = CropSampler.from_folders(data, crop, device=dev)
    _train_and_export(settings, cfg, sampler, data, out, dev, quiet, export_dtype, crop,
                      "v-prediction, t uniform over 1000 steps", kind="prior")


@train_app.command("classifier")
def train_classifier(
    data: Labelled,
    out: Out = Path("runs/classifier"),
    steps: Steps = 10000,
    batch: Batch = 32,
    crop: int = typer.Option(64, help="Square crop size: the classifier's input size (its attention pool is built for it)."),
    channels: Channels = 32,
    mult: Mult = "1,2,2,2",
    res_blocks: ResBlocks = 1,
    attention: Attention = "",
    schedule: Schedule = "linear",
    lr: Lr = 3e-4,
    ema: Ema = 0.999,
    seed: Seed = 0,
    device: Device = "auto",
    checkpoint_every: CheckpointEvery = 500,
    export_dtype: ExportDtype = "fp32",
    quiet: Quiet = False,
) -> None:
    """Train a noisy-image classifier p(class | x_t, t) for classifier guidance, on labelled images.

    Cross-entropy on x_t at t uniform over the schedule (Dhariwal & Nichol 2021). Use it with a prior of the same schedule.

    Classes are the sub-folder names in name order (written to the model card).

    Example: guidedinv train classifier data/pets --out runs/pets-classifier --crop 64 --steps 5000
    """
    from ..defaults import pick_device
    from ..training import CropSampler, TrainSettings

    dev = pick_device(device)
    sampler = CropSampler.from_labelled_folder(data, crop, device=dev)
    k = len(sampler.classes)
    cfg = _network(channels, mult, res_blocks, attention, kind="classifier", out_channels=k, pool="attention", image_size=crop)
    settings = TrainSettings(objective="classifier", steps=steps, batch=batch, lr=lr, ema=ema, schedule=schedule, seed=seed,
                             checkpoint_every=checkpoint_every, network=cfg.to_dict())
    _train_and_export(settings, cfg, sampler, [data], out, dev, quiet, export_dtype, crop,
                      "cross-entropy of logits(x_t, t), t uniform over 1000 steps", kind="classifier", num_classes=k)


@train_app.command("cond-prior")
def train_cond_prior(
    data: Labelled,
    out: Out = Path("runs/cond-prior"),
    steps: Steps = 10000,
    batch: Batch = 16,
    crop: int = typer.Option(64, help="Square crop size in pixels (the network itself works at any size)."),
    channels: Channels = 32,
    mult: Mult = "1,2,2,2",
    res_blocks: ResBlocks = 2,
    attention: Attention = "",
    schedule: Schedule = "linear",
    label_dropout: float = typer.Option(0.1, help="Probability of training on the 'no class' label (Ho & Salimans: 0.1-0.2)."),
    lr: Lr = 2e-4,
    ema: Ema = 0.999,
    seed: Seed = 0,
    device: Device = "auto",
    checkpoint_every: CheckpointEvery = 500,
    export_dtype: ExportDtype = "fp32",
    quiet: Quiet = False,
) -> None:
    """Train a class-conditional prior with label dropout, for classifier-free guidance, on labelled images.

    v-prediction; the network has K + 1 label embeddings, the last one "no class" (used with probability --label-dropout).

    One file serves both branches of CFG.

    Example: guidedinv train cond-prior data/pets --out runs/pets-cond --crop 64 --steps 20000
    """
    if not 0 <= label_dropout < 1:
        raise GuidedinvError(f"--label-dropout must be in [0, 1), got {label_dropout}")
    from ..defaults import pick_device
    from ..training import CropSampler, TrainSettings

    dev = pick_device(device)
    sampler = CropSampler.from_labelled_folder(data, crop, device=dev)
    k = len(sampler.classes)
    cfg = _network(channels, mult, res_blocks, attention, out_channels=3, num_classes=k + 1)
    settings = TrainSettings(objective="conditional", steps=steps, batch=batch, lr=lr, ema=ema, schedule=schedule,
                             label_dropout=label_dropout, seed=seed, checkpoint_every=checkpoint_every, network=cfg.to_dict())
    _train_and_export(settings, cfg, sampler, [data], out, dev, quiet, export_dtype, crop,
                      f"v-prediction with label dropout {label_dropout}, t uniform over 1000 steps",
                      kind="conditional-prior", num_classes=k, null_label=k)
