"""Training recipes of the four toy models, with the project's one training loop
(:class:`guidedinv.training.Trainer`), small enough to train on one CPU core in a few minutes:

    toy-prior             unconditional v-prediction UNet
    toy-classifier        noisy-image classifier p(c | x_t) (for classifier guidance)
    toy-cond-prior        class-conditional UNet, K + 1 label embeddings (the last = no class),
                          labels dropped with probability ``label_dropout`` (for CFG)
    toy-clean-classifier  the same classifier architecture trained on clean images only (t = 0);
                          used only to evaluate generated samples, never to guide

Whole images are the crops (crop = image size) and augmentation is off: a 90-degree rotation
would turn horizontal stripes into vertical ones. The schedule is the linear one: the cosine
schedule's last step has alpha_bar ~ 2e-9, where classifier guidance's x0 correction
s (1 - ab)/sqrt(ab) grad is ~2e4 times the gradient and the first DDIM step blows the sample up
(with the linear schedule, alpha_bar_T ~ 4e-5, the factor is ~160 and the step is stable). The
exported files are float16 (they load as float32) and carry a card with the data, steps, wall
time and final loss.
"""
from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from ..models.adm import ADMConfig
from ..training import CropSampler, Trainer, TrainSettings, export_safetensors
from .data import TOY, ToyConfig, make_dataset

__all__ = ["ToyModelRecipe", "RECIPES", "CleanClassifierTrainer", "train_one", "train_all", "DATA_SEED", "DATA_SIZE"]

DATA_SEED = 0  # the training set; evaluation and tests draw from other seeds
DATA_SIZE = 5000


def _unet(num_classes: int = 0) -> ADMConfig:
    return ADMConfig(model_channels=32, num_res_blocks=1, channel_mult=(1,), attention_ds=(), out_channels=3,
                     head_channels=32, num_classes=num_classes)


def _classifier(k: int) -> ADMConfig:
    # the attention pool, not the adaptive one: with 32 channels GroupNorm's 32 groups normalise every
    # channel on its own, and a global average of SiLU(normalised features) cannot see how strongly a
    # feature is present (the adaptive-pool classifier was still at 74% after 400 clean steps; this
    # one is at 99.8% after 300)
    return ADMConfig(model_channels=32, num_res_blocks=1, channel_mult=(1, 1), attention_ds=(), kind="classifier",
                     out_channels=k, head_channels=32, pool="attention", image_size=TOY.size)


@dataclass(frozen=True)
class ToyModelRecipe:
    """One toy model: file name, objective ('prior', 'conditional', 'classifier' or
    'clean-classifier'), and the training loop's settings (network included)."""

    name: str
    objective: str
    settings: TrainSettings

    @property
    def network(self) -> ADMConfig:
        return ADMConfig.from_dict(self.settings.network)

    @property
    def kind(self) -> str:
        return {"prior": "prior", "conditional": "conditional-prior"}.get(self.objective, "classifier")


def _recipe(name: str, objective: str, network: ADMConfig, steps: int, lr: float) -> ToyModelRecipe:
    """Short runs: batch 32, a high learning rate with a short warm-up, a fast EMA."""
    settings = TrainSettings(objective="classifier" if objective == "clean-classifier" else objective,  # type: ignore[arg-type]
                             steps=steps, batch=32, lr=lr, warmup=20, ema=0.99, schedule="linear", label_dropout=0.2,
                             seed=0, checkpoint_every=steps, log_every=max(1, steps // 10), network=network.to_dict())
    return ToyModelRecipe(name, objective, settings)


K = TOY.num_classes
RECIPES: dict[str, ToyModelRecipe] = {
    r.name: r
    for r in (
        _recipe("toy-prior", "prior", _unet(), steps=600, lr=3e-3),
        _recipe("toy-classifier", "classifier", _classifier(K), steps=800, lr=5e-3),
        _recipe("toy-cond-prior", "conditional", _unet(K + 1), steps=600, lr=3e-3),
        _recipe("toy-clean-classifier", "clean-classifier", _classifier(K), steps=300, lr=5e-3),
    )
}


class CleanClassifierTrainer(Trainer):
    """The training loop with a clean-image objective: cross-entropy of logits(x0, t=0)."""

    def loss(self, x0: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        t = torch.zeros(x0.shape[0], dtype=torch.long, device=self.device)
        return F.cross_entropy(self.net(x0, t).float(), labels)


def toy_sampler(config: ToyConfig = TOY, n: int = DATA_SIZE, seed: int = DATA_SEED, device: str | torch.device = "cpu") -> CropSampler:
    """The training set as a CropSampler: whole images, no augmentation."""
    images, labels = make_dataset(n, seed, config)
    return CropSampler(list(images), config.size, labels=labels.tolist(), device=device, augment=False)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def _last_loss(trainer: Trainer) -> float | None:
    """The last logged loss, also when the run had already finished and this call only resumed it."""
    if trainer.history:
        return trainer.history[-1]["loss"]
    log = trainer.out / "log.jsonl"
    rows = log.read_text().splitlines() if log.exists() else []
    return json.loads(rows[-1])["loss"] if rows else None


def train_one(recipe: ToyModelRecipe, data: CropSampler, run_dir: str | Path, out: str | Path,
              device: str | torch.device = "cpu", steps: int | None = None,
              run: Callable[[Trainer], None] | None = None) -> dict:
    """Train (resuming from ``run_dir`` when a checkpoint is there) and export ``out``; returns the card.

    steps: override the recipe's; run: called to run the training (e.g. with a progress bar),
    default ``trainer.train()``. Each model seeds its own initialisation and data stream, so the
    result does not depend on which others are trained or in what order.
    """
    settings = recipe.settings if steps is None else replace(recipe.settings, steps=steps, checkpoint_every=steps,
                                                                           log_every=max(1, steps // 10))
    cls = CleanClassifierTrainer if recipe.objective == "clean-classifier" else Trainer
    trainer = cls(settings, data, run_dir, device)
    trainer.resume()
    cpu_file = trainer.out / "cpu_seconds.txt"  # CPU time over all runs of this training (the Trainer keeps wall time)
    cpu = float(cpu_file.read_text()) if cpu_file.exists() else 0.0
    start = time.process_time()
    (run or Trainer.train)(trainer)
    cpu += time.process_time() - start
    trainer.out.mkdir(parents=True, exist_ok=True)
    cpu_file.write_text(f"{cpu:.1f}")
    last = _last_loss(trainer)
    dev = torch.device(device)
    card = {
        "model": recipe.name, "objective": recipe.objective, "data": "guidedinv.toy", "toy": TOY.to_dict(),
        "data_seed": DATA_SEED, "data_size": len(data.images), "image_size": TOY.size, "classes": list(TOY.classes),
        "schedule": settings.schedule, "steps": trainer.step, "batch": settings.batch, "lr": settings.lr, "ema": settings.ema,
        "label_dropout": settings.label_dropout if recipe.objective == "conditional" else None,
        "parameters": sum(p.numel() for p in trainer.net.parameters()),
        "device": str(dev), "hardware": torch.cuda.get_device_name(dev) if dev.type == "cuda" else _cpu_name(),
        "threads": torch.get_num_threads(), "wall_seconds": round(trainer.seconds, 1), "cpu_seconds": round(cpu, 1),
        "final_loss": None if last is None else float(f"{last:.4g}"),
    }
    k = TOY.num_classes
    export_safetensors(trainer.ema, recipe.network, out, schedule=settings.schedule, prediction="v", kind=recipe.kind,
                       num_classes=k, null_label=k if recipe.objective == "conditional" else None,
                       dtype=torch.float16, card=card)
    return card


def train_all(out_dir: str | Path, run_dir: str | Path, device: str | torch.device = "cpu",
              names: list[str] | None = None, steps: int | None = None,
              run: Callable[[str, Trainer], None] | None = None) -> list[dict]:
    """Train and export every toy model (or ``names``) into ``out_dir``/NAME.safetensors, with
    checkpoints in ``run_dir``/NAME; ``run(name, trainer)`` runs each training if given."""
    data = toy_sampler(device=device)
    cards = []
    for name in names or list(RECIPES):
        hook = None if run is None else (lambda trainer, name=name: run(name, trainer))
        cards.append(train_one(RECIPES[name], data, Path(run_dir) / name, Path(out_dir) / f"{name}.safetensors",
                               device, steps, hook))
    return cards
