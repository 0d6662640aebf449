"""The model card of an exported run, and the export of a training checkpoint as a model file.

One card for both ways a file is made: ``guidedinv train prior|cond-prior|classifier`` at the end of
a run, and ``guidedinv train export`` of any checkpoint while a run goes on (:func:`export_checkpoint`):
the same step gives the same file. What the card says about the data and the machine (the data's
paths, images, megapixels and class names; the hardware and thread count) is recorded in every
checkpoint under ``"card"`` (:attr:`guidedinv.training.Trainer.record`). A checkpoint of an older
version lacks it: its export takes it from the card.json an earlier part of the run wrote beside it
(when that card names the same data: file count and digest), or scans the data folders given with
--data as the run did (the hardware and threads are then this machine's).
"""
from __future__ import annotations

import json
import math
import platform
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError, ModelError
from ..models.adm import ADMConfig, build_network
from .data import CropSampler, describe, run_files
from .export import export_safetensors
from .settings import TrainSettings, read_checkpoint

__all__ = ["DTYPES", "model_card", "run_record", "export_kind", "final_loss", "export_checkpoint", "read_for_export"]

# --export-dtype -> its torch dtype
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
OBJECTIVE_TEXT = {"classifier": "cross-entropy of logits(x_t, t), t uniform over 1000 steps",
                  "conditional": "v-prediction with label dropout {label_dropout}, t uniform over 1000 steps"}


def _objective_text(settings: TrainSettings) -> str:
    """The card's objective line: a prior's noise levels and loss weighting, or the other objectives'."""
    if settings.objective != "prior":
        return OBJECTIVE_TEXT[settings.objective].format(label_dropout=settings.label_dropout)
    if settings.noise == "uniform":
        levels = "t uniform over 1000 steps"
    else:
        levels = (f"ln sigma ~ N({settings.noise_mean:g}, {settings.noise_std:g}^2) at the nearest step, "
                  f"{settings.uniform_share:.0%} of t uniform over 1000 steps")
    weighting = "" if settings.weighting == "v" else f", EDM loss weighting (sigma_data {settings.sigma_data:g})"
    start = f", fine-tuned from {settings.init['file']} ({settings.init['digest']})" if settings.init else ""
    return f"v-prediction, {levels}{weighting}{start}"


def run_record(data: Sequence[str | Path], sampler: CropSampler, device: torch.device) -> dict[str, Any]:
    """What the card says that the settings do not: the data as given, the images kept (at least a crop
    in size) and their megapixels, the class names, and the machine (its hardware and thread count)."""
    record = {"data": [str(p) for p in data], "images": len(sampler.images),
              "megapixels": round(sampler.num_pixels / 1e6, 1),
              "hardware": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
              "threads": torch.get_num_threads()}
    if sampler.classes is not None:
        record["classes"] = sampler.classes
    return record


def model_card(settings: TrainSettings, record: dict[str, Any], *, step: int, seconds: float, loss: float | None,
               device: str, export_dtype: str, tile: int | None = None) -> dict[str, Any]:
    """The card of the EMA weights at ``step`` (``record``: :func:`run_record`; ``loss``: :func:`final_loss`)."""
    card = {
        "objective": _objective_text(settings),
        "data": record["data"], "images": record["images"], "megapixels": record["megapixels"],
        "files": settings.data.get("files"), "data_digest": settings.data.get("digest"),
        "crop": settings.crop, "batch": settings.batch, "steps": step, "lr": settings.lr, "ema": settings.ema,
        "seed": settings.seed, "device": device, "hardware": record["hardware"], "threads": record["threads"],
        "wall_seconds": round(seconds, 1), "final_loss": loss, "export_dtype": export_dtype,
    }
    if record.get("classes") is not None:
        card["classes"] = record["classes"]
    if settings.objective == "conditional":
        card["label_dropout"] = settings.label_dropout
    if tile is not None:
        card["tile"] = tile
    return card


def export_kind(objective: str, classes: int) -> dict[str, Any]:
    """:func:`export_safetensors`'s kind, num_classes and null_label for ``classes`` classes."""
    kind = {"prior": "prior", "classifier": "classifier", "conditional": "conditional-prior"}[objective]
    return {"kind": kind, **({"num_classes": classes} if objective != "prior" else {}),
            **({"null_label": classes} if objective == "conditional" else {})}


def final_loss(log: Path, step: int | None = None) -> float | None:
    """The loss of the last row of ``log`` (log.jsonl) at or before ``step`` (None: the last row). Rows
    go in the order written: after a resume, the resumed run's rows are the later ones."""
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.exists() else []
    rows = [r for r in rows if step is None or r.get("step", step + 1) <= step]
    return rows[-1].get("loss") if rows else None


def _scan(settings: TrainSettings, data: Sequence[Path]) -> dict[str, Any]:
    """:func:`run_record` of ``data`` read as the run read it; an InputError unless it is the data the run
    recorded (its file count and digest)."""
    if settings.objective != "prior" and len(data) != 1:
        raise InputError(f"--data: a {settings.objective} run trains on one labelled folder; give it once")
    files, labels, classes = run_files(settings.objective, data)
    now = describe(files, data, labels)
    if settings.data and now != settings.data:
        raise InputError(f"--data {', '.join(map(str, data))}: not the data the run trained on ({now['files']} files, digest "
                         f"{now['digest']}; the run: {settings.data.get('files')} files, digest {settings.data.get('digest')})")
    return run_record(data, CropSampler.for_run(files, labels, classes, settings.crop, data[0]), torch.device("cpu"))


def _earlier_card(path: Path, settings: TrainSettings) -> dict[str, Any]:
    """The record in the card.json an earlier part of the run wrote, if it describes the same data (its
    file count and digest): how a checkpoint of an older version, which records none, is described."""
    try:
        card = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    keys = ("data", "images", "megapixels", "hardware", "threads")
    same = isinstance(card, dict) and settings.data and [card.get("files"), card.get("data_digest")] == \
        [settings.data.get("files"), settings.data.get("digest")]
    if not same or any(k not in card for k in keys) or (settings.objective != "prior" and "classes" not in card):
        return {}
    return {k: card[k] for k in (*keys, "classes") if k in card}


def _seconds(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else 0.0


def export_checkpoint(state: dict[str, Any], path: Path, out: Path, *, data: Sequence[Path] = (),
                      export_dtype: str | None = None, tile: int | None = None) -> dict[str, Any]:
    """Export the EMA weights of ``state`` (:func:`read_checkpoint` of ``path``, in its run folder) to
    ``out`` as the run would at its step; ``data``: the run's data, scanned when given (needed when the
    checkpoint records none; the hardware and threads are then this machine's). Writes ``out`` and
    ``out.with_suffix('.card.json')``; returns the card. An InputError (nothing
    written) for a bad --tile, --data, or weights that do not fit the network."""
    saved = state["settings"]
    names = {f.name for f in fields(TrainSettings)}
    try:
        settings = TrainSettings(**{k: v for k, v in saved.items() if k in names})
        cfg = ADMConfig.from_dict(settings.network)
        net = build_network(cfg)
        net.load_state_dict(state["ema"])
    except (TypeError, ValueError, KeyError, RuntimeError):
        raise InputError(f"{path}: its EMA weights do not fit the network its settings describe") from None
    multiple = 2 ** (cfg.levels - 1)
    if tile is not None and tile % multiple:
        raise InputError(f"--tile {tile}: must be a multiple of {multiple} (this network halves its input "
                         f"{cfg.levels - 1} times)")
    record = state.get("card") if isinstance(state.get("card"), dict) else {}
    if not record and not data:
        record = _earlier_card(path.parent / "card.json", settings)
    if data:  # scanned, the machine kept from the record
        record = {**_scan(settings, data), **{k: record[k] for k in ("hardware", "threads") if k in record}}
    elif not record:
        raise InputError(f"{path}: written by an older guidedinv that does not record the run's training data (nor does a "
                         "card.json of this data beside it); give it with --data FOLDER (as given to the run) for the model card")
    dtype = export_dtype or settings.export_dtype
    card = model_card(settings, record, step=int(state["step"]), seconds=_seconds(state.get("seconds")),
                      loss=final_loss(path.parent / "log.jsonl", int(state["step"])), device=str(state.get("device")),
                      export_dtype=dtype, tile=tile)
    k = cfg.out_channels if settings.objective == "classifier" else max(cfg.num_classes - 1, 0)
    export_safetensors(net, cfg, out, schedule=settings.schedule, prediction="v", dtype=DTYPES[dtype], card=card,
                       **export_kind(settings.objective, k))
    out.with_suffix(".card.json").write_text(json.dumps(card, indent=2))
    return card


def read_for_export(path: Path) -> dict[str, Any]:
    """:func:`read_checkpoint` of ``path`` for an export: its errors as InputErrors (the checkpoint is the input)."""
    try:
        return read_checkpoint(path, "cpu", advice="give a run's checkpoint.pt")
    except ModelError as exc:
        raise InputError(str(exc)) from None
