"""Export a trained network as a self-describing safetensors file: the EMA weights under the
released ADM key names, plus metadata (architecture, schedule, parameterisation, classes) so the
model zoo's one loading path needs no flags."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..models.adm import ADMConfig

__all__ = ["export_safetensors", "read_init", "METADATA_FORMAT"]

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


def read_init(path: str | Path, config: ADMConfig, schedule: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The weights of an exported prior (:func:`export_safetensors`) to start a run from, as float32,
    and {"file", "digest"} (the file's name and the first 12 hex digits of its SHA-256) for the run's
    settings. An InputError naming the file when it is unreadable, not ours, or of another network."""
    import hashlib

    from safetensors import SafetensorError, safe_open

    from ..errors import InputError

    path = Path(path)
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            weights = {k: f.get_tensor(k).float() for k in f.keys()}
    except (OSError, SafetensorError) as exc:
        raise InputError(f"--init {path}: not a readable safetensors file ({exc}); give a prior exported by "
                         "'guidedinv train prior' (its out folder's model.safetensors)") from None
    if meta.get("format") != METADATA_FORMAT or meta.get("kind") != "prior":
        raise InputError(f"--init {path}: not a prior exported by guidedinv (metadata format {meta.get('format')!r}, "
                         f"kind {meta.get('kind')!r}); give an out folder's model.safetensors")
    try:
        theirs = ADMConfig.from_dict(json.loads(meta.get("config", "")))
    except (ValueError, TypeError, KeyError):
        raise InputError(f"--init {path}: its network description is unreadable") from None
    if theirs != config:
        want = f"--channels {theirs.model_channels} --mult {','.join(f'{m:g}' for m in theirs.channel_mult)} " \
               f"--res-blocks {theirs.num_res_blocks}"
        raise InputError(f"--init {path}: its network differs from the one asked for; train with its options ({want})")
    if meta.get("schedule") != schedule:
        raise InputError(f"--init {path}: trained on the {meta.get('schedule')} schedule; give --schedule {meta.get('schedule')}")
    if meta.get("prediction") != "v":
        raise InputError(f"--init {path}: a {meta.get('prediction')}-prediction network; training continues v-prediction")
    return weights, {"file": path.name, "digest": digest}
