"""``guidedinv train ...``: train the priors and classifiers that guidedinv ships (thin shell over
:mod:`guidedinv.training`).

torch and the training modules are imported inside the commands, so building the command line
(``guidedinv --help``) stays light.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import InputError

if TYPE_CHECKING:
    import torch

    from ..models.adm import ADMConfig
    from ..training import Trainer, TrainSettings

train_app = typer.Typer(help="Train priors and noisy classifiers (small ADM configurations).", no_args_is_help=True)


def _parse_ints(text: str, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InputError(f"{what} {text!r}: expected comma-separated whole numbers, e.g. 1,2,2,2") from None


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


RUN_FILES = ("checkpoint.pt", "checkpoint.tmp", "log.jsonl", "model.safetensors", "model.tmp", "card.json")


def _network(channels: int, mult: str, res_blocks: int, attention: str, crop: int, **extra) -> ADMConfig:
    """The ADM configuration of the options, checked (one line naming the option) before anything is built."""
    from ..models.adm import ADMConfig
    from ..training import check_network

    mults, ds = _parse_ints(mult, "--mult"), _parse_ints(attention, "--attention")
    if not mults or min(mults) < 1:
        raise InputError(f"--mult {mult!r}: expected one whole number >= 1 per resolution level, e.g. 1,2,2,2")
    if res_blocks < 1:
        raise InputError(f"--res-blocks {res_blocks}: expected a whole number >= 1")
    if channels < 1:
        raise InputError(f"--channels {channels}: expected a positive multiple of 32 (GroupNorm's group count)")
    if min(ds, default=1) < 1:
        raise InputError(f"--attention {attention!r}: expected downsample factors 1, 2, 4, ... (empty: none)")
    if crop < 1:
        raise InputError(f"--crop {crop}: expected a whole number of pixels >= 1")
    extra.setdefault("image_size", crop if extra.get("kind") == "classifier" else None)
    cfg = ADMConfig(model_channels=channels, num_res_blocks=res_blocks, channel_mult=mults, attention_ds=ds,
                    head_channels=32 if ds or extra.get("kind") == "classifier" else None, num_heads=1, **extra)
    check_network(cfg, crop)
    return cfg


def _check_out(out: Path) -> None:
    """The run folder can be made and written, and none of the run's file names is taken by a folder."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: is a file, not a folder; give a folder for the run's files")
    parent = out
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"--out {out}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"--out {out}: cannot write to folder {parent} (permission denied)")
    taken = [name for name in RUN_FILES if (out / name).is_dir()]
    if taken:
        raise InputError(f"--out {out}: {out / taken[0]} is a folder, where the run writes a file; use another --out")


def _resume_line(state: dict, settings: TrainSettings, path: Path, dev: torch.device) -> str:
    """One line: where the run continues and which harmless settings changed."""
    from ..training import HARMLESS, OPTION_NAMES

    old, parts = state["settings"], []
    parts += [f"{OPTION_NAMES[k]} {old.get(k)} -> {getattr(settings, k)}" for k in HARMLESS
              if k in old and old[k] != getattr(settings, k) and OPTION_NAMES[k].startswith("--")]
    if state.get("device") not in (None, str(dev)):
        parts.append(f"device {state['device']} -> {dev}")
    unrecorded = [OPTION_NAMES[k] for k in ("crop", "export_dtype", "data") if k not in old]
    if unrecorded:
        parts.append(f"{', '.join(unrecorded)} not recorded by this older checkpoint: taken as given now")
    step = state["step"]
    head = (f"{path} is at step {step} of {settings.steps}: nothing left to train, exporting it again" if step >= settings.steps
            else f"resuming {path} at step {step} of {settings.steps}")
    return head + (f" ({'; '.join(parts)})" if parts else "")


def _train(objective: str, data: list[Path], out: Path, *, steps: int, batch: int, crop: int, channels: int, mult: str,
           res_blocks: int, attention: str, schedule: str, lr: float, ema: float, seed: int, device: str, checkpoint_every: int,
           export_dtype: str, quiet: bool, label_dropout: float = 0.1, levels: dict | None = None,
           init: Path | None = None) -> None:
    """Check every option, the device, the run folder, the data's listing and any checkpoint to resume (in that
    order: a mistake is one line before any image is read or anything written); then read, train and export."""
    from dataclasses import replace

    from ..training import TrainSettings, describe, read_checkpoint
    from ..training.data import run_files
    from .batch import check_device

    settings = TrainSettings(objective=objective, steps=steps, batch=batch, lr=lr, ema=ema, schedule=schedule,  # type: ignore[arg-type]
                             label_dropout=label_dropout, seed=seed, checkpoint_every=checkpoint_every, crop=crop,
                             export_dtype=export_dtype, **(levels or {}))
    settings.check()
    extra = {"kind": "classifier", "out_channels": 2, "pool": "attention"} if objective == "classifier" else {"out_channels": 3}
    _network(channels, mult, res_blocks, attention, crop, **extra)  # checked now; the class count comes with the data
    dev = check_device(device)
    _check_out(out)
    files, labels, classes = run_files(objective, data)
    k = len(classes or [])
    if objective == "classifier":
        extra["out_channels"] = k
    elif objective == "conditional":
        extra["num_classes"] = k + 1
    cfg = _network(channels, mult, res_blocks, attention, crop, **extra)
    settings = replace(settings, network=cfg.to_dict(), data=describe(files, data, labels))
    weights = None
    if init is not None:  # read and checked before the data: a wrong file is one line
        from ..training import read_init

        weights, info = read_init(init, cfg, schedule)
        settings = replace(settings, init=info)
    state, checkpoint = None, out / "checkpoint.pt"
    if checkpoint.exists():
        from ..training import check_resume

        state = read_checkpoint(checkpoint, dev)
        check_resume(state, settings, checkpoint)
        typer.echo(_resume_line(state, settings, checkpoint, dev))
    from ..training.card import export_kind

    _train_and_export(settings, cfg, files, labels, classes, data, out, dev, quiet, state, weights, **export_kind(objective, k))


def _train_and_export(settings: TrainSettings, cfg: ADMConfig, files: list[Path], labels: list[int] | None,
                      classes: list[str] | None, data: list[Path], out: Path, dev: torch.device, quiet: bool,
                      state: dict | None, weights: dict | None = None, **export) -> None:
    """Read the images, resume or start, train with a progress bar, export the EMA weights with a model card."""
    from ..training import CropSampler, Trainer, export_safetensors
    from ..training.card import DTYPES, final_loss, model_card, run_record

    sampler = CropSampler.for_run(files, labels, classes, settings.crop, data[0], device=dev)
    trainer = Trainer(settings, sampler, out, dev)
    trainer.record = run_record(data, sampler, dev)  # in every checkpoint: 'train export' writes the same card
    if state is not None:
        trainer.resume(state)
    elif weights is not None:
        trainer.start_from(weights)
    if not quiet:
        typer.echo(f"{'continuing' if state is not None else 'starting'}: {len(sampler.images)} images "
                   f"({sampler.num_pixels / 1e6:.1f} MP), {sum(p.numel() for p in trainer.net.parameters()) / 1e6:.2f}M parameters, {dev}")
    try:
        run_training(trainer, quiet)
    except KeyboardInterrupt:
        kept = (f"the checkpoint of step {trainer.saved_step} is kept: rerun the same command to resume" if trainer.saved_step
                else "no checkpoint was written yet")
        typer.echo(f"guidedinv: interrupted at step {trainer.step}; {kept}", err=True)
        raise typer.Exit(130) from None
    loss = final_loss(out / "log.jsonl")  # the last logged row, also when a resumed run had nothing left to do
    card = model_card(settings, trainer.record, step=trainer.step, seconds=trainer.seconds, loss=loss, device=str(dev),
                      export_dtype=settings.export_dtype)
    path = export_safetensors(trainer.ema, cfg, out / "model.safetensors", schedule=settings.schedule, prediction="v",
                              dtype=DTYPES[settings.export_dtype], card=card, **export)
    (out / "card.json").write_text(json.dumps(card, indent=2))
    typer.echo(f"wrote {path} (EMA weights, {settings.export_dtype}), final loss {loss}")


# options shared by the three commands, as annotated types (each command sets its own defaults)
Out = Annotated[Path, typer.Option("--out", "-o", help="Run folder: checkpoint.pt, log.jsonl, model.safetensors, card.json. A checkpoint there is resumed with the same settings (a larger --steps, another --checkpoint-every or device continue it); other settings are refused.")]
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
    noise: str = typer.Option("uniform", help="Noise levels: uniform (t uniform over the schedule) or lognormal (ln sigma ~ N(--noise-mean, --noise-std^2), sigma on the model's [-1, 1] range; Karras et al. 2022)."),
    noise_mean: float = typer.Option(-1.2, help="Mean of ln sigma for --noise lognormal."),
    noise_std: float = typer.Option(1.2, help="Standard deviation of ln sigma for --noise lognormal."),
    uniform_share: float = typer.Option(0.0, help="With --noise lognormal: the share of t still drawn uniform (the sampling methods start from pure noise)."),
    weighting: str = typer.Option("v", help="Loss weighting: v (plain v-MSE) or edm (Karras et al.'s lambda(sigma) on the x0 error)."),
    sigma_data: float = typer.Option(0.5, help="The data's standard deviation for --weighting edm (images on [-1, 1]: 0.5)."),
    init: Path | None = typer.Option(None, help="Start from the weights of an exported prior (a fine-tune; same network options), e.g. guidedinv/weights/natural-prior.safetensors. Recorded by its digest: a resume gives the same file."),
) -> None:
    """Train an unconditional prior (v-prediction) on random crops; resumes from OUT if a checkpoint is there.

    Example: guidedinv train prior ../shared/data/train --out runs/prior --steps 20000 --crop 64
    """
    _train("prior", data, out, steps=steps, batch=batch, crop=crop, channels=channels, mult=mult, res_blocks=res_blocks,
           attention=attention, schedule=schedule, lr=lr, ema=ema, seed=seed, device=device, checkpoint_every=checkpoint_every,
           export_dtype=export_dtype, quiet=quiet, init=init,
           levels={"noise": noise, "noise_mean": noise_mean, "noise_std": noise_std, "uniform_share": uniform_share,
                   "weighting": weighting, "sigma_data": sigma_data})


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
    _train("classifier", [data], out, steps=steps, batch=batch, crop=crop, channels=channels, mult=mult, res_blocks=res_blocks,
           attention=attention, schedule=schedule, lr=lr, ema=ema, seed=seed, device=device, checkpoint_every=checkpoint_every,
           export_dtype=export_dtype, quiet=quiet)


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
    _train("conditional", [data], out, steps=steps, batch=batch, crop=crop, channels=channels, mult=mult, res_blocks=res_blocks,
           attention=attention, schedule=schedule, lr=lr, ema=ema, seed=seed, device=device, checkpoint_every=checkpoint_every,
           export_dtype=export_dtype, quiet=quiet, label_dropout=label_dropout)


def _export_paths(run: Path, out: Path, data: list[Path]) -> Path:
    """The checkpoint of RUN (a checkpoint file or its run folder), with --out checked against every file
    the export reads or the run writes; an InputError (one line) before anything is read."""
    from ..app.outputs import Read, Write, check_paths

    checkpoint = run / "checkpoint.pt" if run.is_dir() else run
    if not checkpoint.exists():
        where = f"{run}: no checkpoint.pt in this folder (a run writes one every --checkpoint-every steps)" if run.is_dir() \
            else f"{run}: no such file or folder"
        raise InputError(f"CHECKPOINT {where}; give a run's checkpoint.pt or its folder")
    folder = checkpoint.parent
    reads = [Read("CHECKPOINT", checkpoint), *(Read(f"the run's {n}", folder / n) for n in RUN_FILES),
             *(Read("--data", p) for p in data)]
    check_paths(reads, [Write("--out", out, (".safetensors",)), Write("--out's card", out.with_suffix(".card.json")),
                        Write("--out's temporary file", out.with_suffix(".tmp"))])
    return checkpoint


@train_app.command("export")
def train_export(
    run: Path = typer.Argument(..., metavar="RUN", help="A run's checkpoint.pt, or its run folder (--out of the training command)."),
    out: Path = typer.Option(..., "--out", "-o", metavar="FILE", help="The model file to write (.safetensors); its card goes beside it as NAME.card.json."),
    tile: int | None = typer.Option(None, metavar="N", help="Record N px as the tile the loader runs the network on (a multiple of 2^(levels - 1)); default: the crop's 4/3."),
    export_dtype: str | None = typer.Option(None, help="Precision of the weights written: fp32, fp16 or bf16 (default: the run's --export-dtype)."),
    data: list[Path] = typer.Option([], "--data", help="The run's training data, as given to it: needed only for a checkpoint of an older version, which does not record it, without a card.json of that data beside it (scanned and checked against the run's digest)."),
) -> None:
    """Export a run's checkpoint as a model file, without training: the EMA weights at its step, the file and
    card the run itself writes at that step. Safe while the run goes on (it only reads the checkpoint).

    Example: guidedinv train export runs/prior --out prior-step5000.safetensors --tile 64
    """
    from ..training.card import DTYPES

    if export_dtype is not None and export_dtype not in DTYPES:
        raise InputError(f"--export-dtype {export_dtype}: expected one of {', '.join(DTYPES)}")
    if tile is not None and tile < 1:
        raise InputError(f"--tile {tile}: expected a whole number of pixels >= 1")
    checkpoint = _export_paths(run, out, data)
    from ..training.card import export_checkpoint, read_for_export

    state = read_for_export(checkpoint)
    card = export_checkpoint(state, checkpoint, out, data=data, export_dtype=export_dtype, tile=tile)
    typer.echo(f"wrote {out} (EMA weights at step {card['steps']}, {card['export_dtype']}) and "
               f"{out.with_suffix('.card.json')}, final loss {card['final_loss']}")
