"""Class-conditional generation: the one sampler with a class as its guidance.

Three ways to ask for class c (each item its own random stream, so a result never depends on the
batch it shared):

    classifier  unconditional prior + noisy classifier, x0 <- x0 + s (1 - ab)/sqrt(ab) grad log p(c | x_t)
                (:class:`~guidedinv.guidance.ClassifierGuidance`). s = 1 samples p(x | c) exactly when
                the classifier is exact, s > 1 sharpens towards p(x) p(c | x)^s, s = 0 is unguided.
    cfg         class-conditional prior with a null label, x0 = x0_u + w (x0_c - x0_u)
                (:class:`~guidedinv.guidance.ClassifierFreeGuidance`). w = 1 is the plain conditional
                model, w = 0 the unconditional one, w > 1 stronger guidance.
    none        the unconditional prior alone (the baseline: each class about 1/K of the time).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .denoiser import Denoiser
from .errors import InputError, ModelError
from .guidance import ClassifierFreeGuidance, ClassifierGuidance, GuidanceTerm
from .noise import NoiseSource
from .rules import StepRule
from .sampler import StepInfo, sample

__all__ = ["GUIDANCE", "ClassModels", "guided", "generate", "image_grid"]

GUIDANCE = ("classifier", "cfg", "none")


@dataclass
class ClassModels:
    """What class-conditional generation may use: an unconditional ``prior`` and a noisy
    ``classifier`` (classifier guidance), a ``cond_prior`` with a null label (CFG); any may be None
    when the guidance asked for does not need it. ``num_classes``: the classes one may request."""

    prior: Denoiser | None = None
    classifier: torch.nn.Module | None = None
    cond_prior: Denoiser | None = None
    num_classes: int = 0


def guided(models: ClassModels, guidance: str, scale: float, labels: torch.Tensor) -> tuple[Denoiser, list[GuidanceTerm]]:
    """The denoiser and terms for ``guidance`` at ``scale``; an InputError / ModelError names what is missing."""
    if guidance not in GUIDANCE:
        raise InputError(f"unknown guidance {guidance!r}; choose from {', '.join(GUIDANCE)}")
    if not math.isfinite(scale) or (guidance == "classifier" and scale < 0):
        raise InputError(f"guidance scale must be a finite number{' >= 0' if guidance == 'classifier' else ''}, got {scale}")
    k = models.num_classes
    if (k or guidance != "none") and labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= k):
        bad = int(labels.min()) if int(labels.min()) < 0 else int(labels.max())
        raise InputError(f"class {bad} is out of range: these models know classes 0..{k - 1}")
    if guidance == "cfg":
        if models.cond_prior is None:
            raise ModelError("classifier-free guidance needs a class-conditional prior with a null label")
        return ClassifierFreeGuidance(models.cond_prior, scale), []
    if models.prior is None:
        raise ModelError(f"{guidance} guidance needs an unconditional prior")
    if guidance == "none":
        return models.prior, []
    if models.classifier is None:
        raise ModelError("classifier guidance needs a noisy classifier")
    return models.prior, [ClassifierGuidance(models.classifier, labels, scale)]


def generate(
    models: ClassModels,
    labels: Sequence[int] | torch.Tensor,
    seeds: Sequence[int],
    *,
    guidance: str = "classifier",
    scale: float = 1.0,
    size: int | tuple[int, int] = 16,
    steps: int | str = 25,
    rule: StepRule | None = None,
    batch: int = 64,
    callback: Callable[[StepInfo], None] | None = None,
) -> torch.Tensor:
    """Samples of the requested classes, (N, 3, H, W) in the model range [-1, 1].

    labels: (N,) classes; seeds: (N,) one seed per item (item i depends on seeds[i] alone);
    size: image side or (H, W); steps: respacing of the sampler; batch: items per network call;
    callback: handed to :func:`~guidedinv.sampler.sample` for every batch.
    """
    labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    if len(seeds) != labels.numel():
        raise ValueError(f"{len(seeds)} seeds for {labels.numel()} labels")
    h, w = (size, size) if isinstance(size, int) else size
    denoiser, _ = guided(models, guidance, scale, labels)  # validate once, before any work
    out = []
    for start in range(0, labels.numel(), batch):
        part = labels[start : start + batch]
        denoiser, terms = guided(models, guidance, scale, part)
        rng = NoiseSource.from_seeds(list(seeds[start : start + batch]))
        cond = part if (guidance == "cfg" or getattr(denoiser, "num_classes", 0)) else None
        out.append(sample(denoiser, (part.numel(), 3, h, w), rng, steps=steps, rule=rule, terms=terms, labels=cond,
                          callback=callback))
    return torch.cat(out) if out else torch.zeros(0, 3, h, w)


def image_grid(images: torch.Tensor, columns: int | None = None, pad: int = 1, fill: float = 0.5) -> torch.Tensor:
    """Tile (N, C, H, W) images into one (C, H', W') image, ``columns`` per row (default ~sqrt(N))."""
    n, c, h, w = images.shape
    if n == 0:
        raise ValueError("no images to tile")
    cols = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = images.new_full((c, rows * (h + pad) + pad, cols * (w + pad) + pad), fill)
    for i, im in enumerate(images):
        r, q = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + q * (w + pad)
        grid[:, top : top + h, left : left + w] = im
    return grid
