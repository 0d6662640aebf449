"""Accuracy of class-conditional generation, judged by the clean classifier (which never guides).

For each guidance method and scale: generate ``per_class`` samples of every class (item seeds
fixed by ``seed``), classify them with the clean classifier, report the fraction whose predicted
class is the requested one. The unguided prior is scored against the same requested labels, so
its accuracy is about 1/K.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..defaults import embedded_path
from ..generate import ClassModels, generate
from ..models import load_classifier, load_denoiser
from .data import TOY, make_dataset

__all__ = ["ToyModels", "load_toy", "classify", "clean_accuracy", "noisy_accuracy", "accuracy", "scale_table", "DEFAULT_SCALES"]

NAMES = ("toy-prior", "toy-classifier", "toy-cond-prior", "toy-clean-classifier")
DEFAULT_SCALES = {"none": (0.0,), "classifier": (0.5, 1.0, 2.0, 4.0, 8.0, 16.0), "cfg": (0.0, 1.0, 2.0, 3.0, 5.0)}


@dataclass
class ToyModels(ClassModels):
    """The four toy models; ``clean_classifier`` only evaluates."""

    clean_classifier: torch.nn.Module | None = None


def load_toy(folder: str | Path | None = None, device: str | torch.device = "cpu") -> ToyModels:
    """The toy models shipped in the package (or NAME.safetensors files in ``folder``)."""
    paths = {n: (Path(folder) / f"{n}.safetensors" if folder else embedded_path(n)) for n in NAMES}
    return ToyModels(
        prior=load_denoiser(paths["toy-prior"], device=device, progress=False),
        classifier=load_classifier(paths["toy-classifier"], device=device, progress=False),
        cond_prior=load_denoiser(paths["toy-cond-prior"], device=device, progress=False),
        num_classes=TOY.num_classes,
        clean_classifier=load_classifier(paths["toy-clean-classifier"], device=device, progress=False),
    )


@torch.no_grad()
def classify(clean_classifier: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Predicted classes (N,) of images x (N, 3, H, W) in the model range [-1, 1]."""
    t = torch.zeros(x.shape[0], device=x.device)
    return clean_classifier(x.clamp(-1, 1), t).argmax(1)


def clean_accuracy(clean_classifier: torch.nn.Module, n: int = 500, seed: int = 12345) -> float:
    """Accuracy of the clean classifier on ``n`` fresh toy images drawn from ``seed``."""
    images, labels = make_dataset(n, seed)
    x = images.float() / 127.5 - 1
    return float((classify(clean_classifier, x) == labels).float().mean())


@torch.no_grad()
def noisy_accuracy(classifier: torch.nn.Module, schedule, t: int, n: int = 500, seed: int = 12345) -> float:
    """Accuracy of the noisy classifier on ``n`` fresh toy images noised to timestep ``t`` of ``schedule``."""
    images, labels = make_dataset(n, seed)
    x0 = images.float() / 127.5 - 1
    ab = float(schedule.alpha_bar(t))
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    x = ab**0.5 * x0 + (1 - ab) ** 0.5 * noise
    return float((classifier(x, torch.full((n,), float(t))).argmax(1) == labels).float().mean())


def accuracy(models: ToyModels, guidance: str, scale: float, per_class: int = 20, steps: int | str = 25,
             seed: int = 1000) -> float:
    """Clean-classifier accuracy of ``per_class`` samples of every class."""
    k = models.num_classes
    labels = torch.arange(k).repeat_interleave(per_class)
    seeds = [seed + i for i in range(labels.numel())]
    x = generate(models, labels, seeds, guidance=guidance, scale=scale, size=TOY.size, steps=steps)
    return float((classify(models.clean_classifier, x) == labels).float().mean())


def scale_table(models: ToyModels, scales: dict[str, Sequence[float]] | None = None, per_class: int = 20,
                steps: int | str = 25, seed: int = 1000) -> str:
    """A markdown table: guidance, scale, clean-classifier accuracy, seconds."""
    rows = ["| guidance | scale | accuracy | seconds |", "|---|---|---|---|"]
    for guidance, values in (scales or DEFAULT_SCALES).items():
        for s in values:
            start = time.time()
            acc = accuracy(models, guidance, s, per_class, steps, seed)
            rows.append(f"| {guidance} | {s:g} | {acc:.3f} | {time.time() - start:.1f} |")
    return "\n".join(rows)
