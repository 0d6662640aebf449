"""Export a trained network as a self-describing safetensors file: the EMA weights under the
released ADM key names, plus metadata (architecture, schedule, parameterisation, classes) so the
model zoo's one loading path needs no flags."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..models.adm import ADMConfig

__all__ = ["export_safetensors", "METADATA_FORMAT"]

METADATA_FORMAT = "guidedinv-adm-1"


def export_safetensors(
    net: torch.nn.Module,
    config: ADMConfig,
    path: str | Path,
    *,
    schedule: str,
    prediction: str,
    kind: str,
    num_classes: int = 0,
    null_label: int | None = None,
    dtype: torch.dtype = torch.float32,
    card: dict | None = None,
) -> Path:
    """Write ``net``'s weights (cast to ``dtype``) and metadata; returns the path.

    kind: "prior", "conditional-prior" or "classifier"; prediction: "eps", "v" or "x0" (priors);
    num_classes: classes a user may ask for (a conditional prior's null embedding is extra, at
    index ``null_label``); card: free-form facts (data, steps, wall time) kept in the file.
    """
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in net.state_dict().items()}
    meta = {
        "format": METADATA_FORMAT,
        "config": json.dumps(config.to_dict()),
        "schedule": schedule,
        "prediction": prediction,
        "kind": kind,
        "num_classes": str(num_classes),
        "null_label": "" if null_label is None else str(null_label),
        "card": json.dumps(card or {}),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)
    return path
