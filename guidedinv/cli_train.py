"""``guidedinv train ...``: train the priors and classifiers that guidedinv ships (thin shell over
:mod:`guidedinv.training`)."""
from __future__ import annotations

import json
import platform
from pathlib import Path

import torch
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .defaults import pick_device
from .errors import GuidedinvError
from .models.adm import ADMConfig
from .training import CropSampler, Trainer, TrainSettings, export_safetensors

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
    columns = (TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]:.4f}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns) as bar:
        task = bar.add_task("train", total=trainer.settings.steps, completed=trainer.step, loss=float("nan"))
        trainer.train(lambda step, loss: bar.update(task, completed=step, loss=loss))


@train_app.command("prior")
def train_prior(
    data: list[Path] = typer.Argument(..., help="Folders or files of training images (PNG, JPEG, BMP, TIFF, WebP)."),
    out: Path = typer.Option(Path("runs/prior"), "--out", "-o", help="Run folder: checkpoint.pt, log.jsonl, model.safetensors."),
    steps: int = typer.Option(10000, help="Optimisation steps."),
    batch: int = typer.Option(16, help="Crops per step."),
    crop: int = typer.Option(64, help="Square crop size in pixels (the network itself works at any size)."),
    channels: int = typer.Option(32, help="Base channels (a multiple of 32: GroupNorm uses 32 groups)."),
    mult: str = typer.Option("1,2,2,2", help="Channel multiplier per resolution level."),
    res_blocks: int = typer.Option(2, help="Residual blocks per level."),
    attention: str = typer.Option("", help="Downsample factors with self-attention, e.g. '4,8' (empty: none, fully convolutional)."),
    schedule: str = typer.Option("linear", help="Noise schedule: linear or cosine (T = 1000)."),
    lr: float = typer.Option(2e-4, help="AdamW learning rate."),
    ema: float = typer.Option(0.999, help="EMA decay of the exported weights."),
    seed: int = typer.Option(0, help="Seed of crops, timesteps and noise."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    checkpoint_every: int = typer.Option(500, help="Steps between checkpoints (resume picks up the last one)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train an unconditional prior (v-prediction) on random crops; resumes from OUT if a checkpoint is there.

    Example: guidedinv train prior ../shared/data/train --out runs/prior --steps 20000 --crop 64
    """
    dev = pick_device(device)
    cfg = ADMConfig(model_channels=channels, num_res_blocks=res_blocks, channel_mult=_parse_ints(mult, "--mult"),
                    attention_ds=_parse_ints(attention, "--attention"), out_channels=3, head_channels=32 if attention else None,
                    num_heads=1)
    settings = TrainSettings(objective="prior", steps=steps, batch=batch, lr=lr, ema=ema, schedule=schedule, seed=seed,
                             checkpoint_every=checkpoint_every, network=cfg.to_dict())
    sampler = CropSampler.from_folders(data, crop, device=dev)
    trainer = Trainer(settings, sampler, out, dev)
    resumed = trainer.resume()
    if not quiet:
        typer.echo(f"{'resuming at step ' + str(trainer.step) if resumed else 'starting'}: {len(sampler.images)} images "
                   f"({sampler.num_pixels / 1e6:.1f} MP), {sum(p.numel() for p in trainer.net.parameters()) / 1e6:.2f}M parameters, {dev}")
    run_training(trainer, quiet)
    log = out / "log.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.exists() else []
    last = rows[-1] if rows else {}  # the last logged row, also when a resumed run had nothing left to do
    card = {
        "objective": "v-prediction, t uniform over 1000 steps",
        "data": [str(p) for p in data], "images": len(sampler.images), "megapixels": round(sampler.num_pixels / 1e6, 1),
        "crop": crop, "batch": batch, "steps": trainer.step, "lr": lr, "ema": ema, "seed": seed,
        "device": str(dev), "hardware": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(), "wall_seconds": round(trainer.seconds, 1), "final_loss": last.get("loss"),
    }
    path = export_safetensors(trainer.ema, cfg, out / "model.safetensors", schedule=schedule, prediction="v", kind="prior", card=card)
    (out / "card.json").write_text(json.dumps(card, indent=2))
    typer.echo(f"wrote {path} (EMA weights), final loss {last.get('loss')}")
