"""The models class-conditional generation needs, loaded by name (the ``guidedinv generate`` command's
model choice): the embedded toy set, or a prior (file, registry name or embedded name) with its
noisy classifier.

It sits above both :mod:`guidedinv.generate` (which it fills a :class:`ClassModels` for) and
:mod:`guidedinv.toy` (whose evaluation generates through :mod:`guidedinv.generate`), so neither of
those has to import the other back.

    from guidedinv.app.generate import load_class_models
    from guidedinv.generate import generate

    models, size = load_class_models("toy", "classifier")
    x = generate(models, [2] * 4, seeds=[0, 1, 2, 3], guidance="classifier", scale=8.0, size=size)
"""
from __future__ import annotations

import torch

from ..defaults import EMBEDDED, embedded_path
from ..errors import InputError, ModelError
from ..generate import GUIDANCE, ClassModels
from ..models import load_classifier, load_denoiser, lookup
from ..toy import TOY, load_toy

__all__ = ["load_class_models"]


def load_class_models(model: str = "toy", guidance: str = "classifier", classifier: str = "",
                      device: str | torch.device = "cpu") -> tuple[ClassModels, int | None]:
    """The models ``guidance`` needs and the image size they were trained at (None if unknown).

    model: "toy" (the embedded toy set) or a prior: a file, a registry name or an embedded name;
    the unconditional prior for classifier / none guidance, the class-conditional prior (with a
    null label) for cfg. classifier: the noisy classifier for classifier guidance when ``model`` is
    not "toy" (default: the registry's partner of ``model``).
    """
    if guidance not in GUIDANCE:
        raise InputError(f"unknown guidance {guidance!r}; choose from {', '.join(GUIDANCE)}")
    if model == "toy":
        return load_toy(device=device), TOY.size

    def resolve(name: str) -> str:
        return str(embedded_path(name)) if name in EMBEDDED else name

    entry = lookup(model)
    size = entry.image_size if entry is not None else None
    denoiser = load_denoiser(resolve(model), device=device)
    if guidance == "cfg":
        if denoiser.num_classes == 0 or getattr(denoiser, "null_label_index", None) is None:
            raise ModelError(f"{model} is not a class-conditional prior with a null label; cfg needs one (try --guidance classifier)")
        return ClassModels(cond_prior=denoiser, num_classes=denoiser.num_classes), size
    models = ClassModels(prior=denoiser, num_classes=denoiser.num_classes)
    if guidance == "classifier":
        name = classifier or (entry.classifier if entry is not None and entry.classifier else "")
        if not name:
            raise InputError(f"classifier guidance with --model {model} needs --classifier FILE_OR_NAME")
        models.classifier = load_classifier(resolve(name), device=device)
        models.num_classes = int(models.classifier.config.out_channels)
    return models, size
