"""Class guidance beside any guided method: the request's ``[guidance]`` (``--class``) as a term
(classifier guidance with a noisy classifier) or as a wrapped denoiser (classifier-free guidance
with a class-conditional prior)."""
from __future__ import annotations

from typing import Any

import torch

from ..denoiser import Denoiser
from ..errors import InputError
from .request import Request

__all__ = ["class_guidance"]


def class_guidance(request: Request, denoiser: Denoiser, batch: int, classifier: Any):
    """The request's class guidance, if any: (denoiser, extra terms, labels)."""
    spec = request.guidance
    if spec is None:
        return denoiser, [], None
    from ..guidance import ClassifierFreeGuidance, ClassifierGuidance

    labels = torch.full((batch,), spec.label, dtype=torch.long)
    if classifier is not None:
        classes = getattr(getattr(classifier, "config", None), "out_channels", None)
        if classes and spec.label >= classes:
            raise InputError(f"--class {spec.label}: the classifier knows classes 0..{classes - 1}")
        return denoiser, [ClassifierGuidance(classifier, labels, spec.scale)], None
    classes = int(getattr(denoiser, "num_classes", 0) or 0)
    if classes == 0:
        raise InputError(f"--class {spec.label}: the model is unconditional; give --classifier FILE (a noisy-image "
                         "classifier) or a class-conditional --model")
    if spec.label >= classes:
        raise InputError(f"--class {spec.label}: the model knows classes 0..{classes - 1}")
    return ClassifierFreeGuidance(denoiser, spec.scale), [], labels
