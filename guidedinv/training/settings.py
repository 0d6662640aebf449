"""What a training run depends on, how it is checked, and the checkpoint that records it.

:class:`TrainSettings` holds every setting of a run (the network and crop included) and checks its
ranges (:meth:`TrainSettings.check`, :func:`check_network`), naming the command line's options.

Resuming: a checkpoint records the settings of its run. A resume with other settings is refused
(:class:`SettingsChanged`, naming each difference old -> new), except for the ones that do not
change what is learnt (``HARMLESS``: the step count, the checkpoint and log intervals; the device
is not a setting). A checkpoint that is not ours (unsafe pickle, truncated, another program's,
non-finite or integer weights, shapes of another network) is a ModelError naming the file, found
by :func:`read_checkpoint` and :func:`check_resume` before any training data is read.
"""
from __future__ import annotations

import json
import math
import pickle
import re
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from ..errors import InputError, ModelError
from ..models.adm import ADMConfig, build_network

__all__ = ["TrainSettings", "SettingsChanged", "read_checkpoint", "resume_differences", "describe_differences",
           "check_resume", "check_network", "OPTION_NAMES", "HARMLESS", "GROUPS"]

Objective = Literal["prior", "conditional", "classifier"]
GROUPS = 32  # GroupNorm's group count in every ADM block: each level's channels must be a multiple of it
SCHEDULES = ("linear", "cosine")
EXPORT_DTYPES = ("fp32", "fp16")
NOISES, WEIGHTINGS = ("uniform", "lognormal"), ("v", "edm")  # see .noise_levels
HARMLESS = ("steps", "checkpoint_every", "log_every")  # a resume may change these: what is learnt stays the same
# how each setting is given on the command line (messages name what the user typed)
OPTION_NAMES = {
    "objective": "the command (train prior, classifier or cond-prior)", "steps": "--steps", "batch": "--batch", "lr": "--lr",
    "warmup": "warmup", "ema": "--ema", "grad_clip": "grad_clip", "schedule": "--schedule", "label_dropout": "--label-dropout",
    "seed": "--seed", "checkpoint_every": "--checkpoint-every", "log_every": "log_every", "crop": "--crop",
    "export_dtype": "--export-dtype", "data": "the training data", "network.model_channels": "--channels",
    "network.channel_mult": "--mult", "network.num_res_blocks": "--res-blocks", "network.attention_ds": "--attention",
    "network.head_channels": "--attention", "network.image_size": "--crop", "network.out_channels": "the number of classes",
    "network.num_classes": "the number of classes", "noise": "--noise", "noise_mean": "--noise-mean",
    "noise_std": "--noise-std", "uniform_share": "--uniform-share", "weighting": "--weighting", "sigma_data": "--sigma-data",
    "init": "--init",
}
# what a checkpoint written before these settings existed trained with (so a resume compares against them)
UNRECORDED_MEANS = {"noise": "uniform", "noise_mean": -1.2, "noise_std": 1.2, "uniform_share": 0.0, "weighting": "v",
                    "sigma_data": 0.5, "init": {}}


@dataclass
class TrainSettings:
    """Everything a run depends on, written into its checkpoints.

    crop: the training crop (None: the data's); export_dtype: "fp32" or "fp16", the exported
    weights' precision; data: a description of the training data (file count and digest, see
    :func:`guidedinv.training.data.describe`), compared on resume like every other setting.
    noise, noise_mean, noise_std, uniform_share: the noise-level distribution; weighting, sigma_data:
    the loss weighting (:mod:`guidedinv.training.noise_levels`); init: {"file", "digest"} of the
    weights the run started from (empty: a seeded random initialisation).
    """

    objective: Objective = "prior"
    steps: int = 10000
    batch: int = 16
    lr: float = 2e-4
    warmup: int = 200
    ema: float = 0.999
    grad_clip: float = 1.0
    schedule: str = "linear"
    label_dropout: float = 0.1
    seed: int = 0
    checkpoint_every: int = 1000
    log_every: int = 50
    network: dict = field(default_factory=dict)
    crop: int | None = None
    export_dtype: str = "fp32"
    data: dict = field(default_factory=dict)
    noise: str = "uniform"
    noise_mean: float = -1.2
    noise_std: float = 1.2
    uniform_share: float = 0.0
    weighting: str = "v"
    sigma_data: float = 0.5
    init: dict = field(default_factory=dict)

    def check(self) -> None:
        """An InputError naming the first setting out of its range (the command line's option name)."""
        def whole(key: str, low: int, high: float = math.inf) -> None:
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or not low <= v < high:
                upper = "" if high == math.inf else " and < 2**64" if high == 2**64 else f" and < {high}"
                raise InputError(f"{OPTION_NAMES[key]} {v}: expected a whole number >= {low}{upper}")

        def real(key: str, low: float, high: float, closed_low: bool, what: str) -> None:
            v = getattr(self, key)
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            if not ok or not (low <= v if closed_low else low < v) or not v < high:
                raise InputError(f"{OPTION_NAMES[key]} {v}: expected {what}")

        if self.objective not in ("prior", "conditional", "classifier"):
            raise InputError(f"objective {self.objective!r}: expected prior, conditional or classifier")
        whole("steps", 1)
        whole("batch", 1)
        real("lr", 0.0, math.inf, False, "a finite number > 0 (e.g. 2e-4)")
        whole("warmup", 0)
        real("ema", 0.0, 1.0, True, "a number in [0, 1) (e.g. 0.999)")
        real("grad_clip", 0.0, math.inf, False, "a finite number > 0")
        if self.schedule not in SCHEDULES:
            raise InputError(f"--schedule {self.schedule}: expected one of {', '.join(SCHEDULES)}")
        real("label_dropout", 0.0, 1.0, True, "a number in [0, 1) (Ho & Salimans: 0.1-0.2)")
        whole("seed", 0, 2**64)
        whole("checkpoint_every", 1)
        whole("log_every", 1)
        if self.crop is not None:
            whole("crop", 1)
        if self.export_dtype not in EXPORT_DTYPES:
            raise InputError(f"--export-dtype {self.export_dtype}: expected one of {', '.join(EXPORT_DTYPES)}")
        if self.noise not in NOISES:
            raise InputError(f"--noise {self.noise}: expected one of {', '.join(NOISES)}")
        real("noise_mean", -20.0, 20.0, True, "a number in [-20, 20) (ln sigma; Karras et al.: -1.2)")
        real("noise_std", 0.0, 20.0, False, "a number in (0, 20) (Karras et al.: 1.2)")
        real("uniform_share", 0.0, math.nextafter(1.0, 2.0), True, "a number in [0, 1] (the share of t drawn uniform)")
        if self.weighting not in WEIGHTINGS:
            raise InputError(f"--weighting {self.weighting}: expected one of {', '.join(WEIGHTINGS)}")
        real("sigma_data", 0.0, 100.0, False, "a number in (0, 100) (images on [-1, 1]: 0.5)")


def check_network(config: ADMConfig, crop: int | None = None) -> None:
    """An InputError when ``config`` cannot be built or trained on ``crop`` x ``crop`` crops: every
    level's channels a positive multiple of the GroupNorm group count, attention only at downsample
    factors the network has, a crop the levels halve evenly."""
    chans = [config.channels(level) for level in range(config.levels)]
    mult = ",".join(f"{m:g}" for m in config.channel_mult)
    if config.model_channels < 1 or any(c < 1 for c in chans):
        raise InputError(f"--channels {config.model_channels} --mult {mult}: expected channels >= {GROUPS} and multipliers >= 1")
    if any(c % GROUPS for c in [config.model_channels, *chans]):
        raise InputError(f"--channels {config.model_channels} --mult {mult}: the levels' channels "
                         f"({', '.join(map(str, chans))}) must be multiples of {GROUPS}, the GroupNorm group count "
                         f"(e.g. --channels {max(GROUPS, config.model_channels // GROUPS * GROUPS)})")
    factors = [2**i for i in range(config.levels)]
    wrong = [d for d in config.attention_ds if d not in factors]
    if wrong:
        raise InputError(f"--attention {','.join(map(str, config.attention_ds))}: this network's downsample factors are "
                         f"{','.join(map(str, factors))} (one per --mult level); {wrong[0]} is not one of them")
    if crop is not None and crop % factors[-1]:
        halvings = config.levels - 1
        raise InputError(f"--crop {crop}: must be a multiple of {factors[-1]} (the network halves it {halvings} "
                         f"time{'s' if halvings > 1 else ''}: {config.levels} --mult levels)")


class SettingsChanged(InputError):
    """A resume with settings that differ from the checkpoint's; ``differences`` are (key, old, new)."""

    def __init__(self, path: Path, differences: list[tuple[str, Any, Any]]):
        self.path, self.differences = path, differences
        super().__init__(f"{path} was trained with other settings: {describe_differences(differences)}; "
                         "use another --out for the new settings, or resume with the old values")


def short_reason(exc: BaseException) -> str:
    """The first sentence of an exception's message (torch's run on for several lines)."""
    text = (str(exc).strip().splitlines() or [""])[0].split(". ")[0].strip()
    return text[:160] or type(exc).__name__


def _flat(settings: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in settings.items() if k != "network"}
    out.update({f"network.{k}": v for k, v in (settings.get("network") or {}).items()})
    return out


def _show(key: str, value: Any) -> str:
    if value is None and key in ("crop", "export_dtype", "data"):
        return "(not recorded)"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) or "none"
    if isinstance(value, dict) and "digest" in value and "file" in value:
        return f"{value['file']} (digest {value['digest']})"
    if value == {} and key == "init":
        return "none (random)"
    if isinstance(value, dict) and "files" in value:
        return f"{value['files']} files (digest {value.get('digest')})"
    return str(value)


def describe_differences(differences: list[tuple[str, Any, Any]]) -> str:
    """'--crop 64 -> 32, --lr 0.0002 -> 0.001' (one entry per option, in the order given)."""
    parts, seen = [], set()
    for key, old, new in differences:
        name = OPTION_NAMES.get(key, key)
        if name in seen:
            continue
        seen.add(name)
        parts.append(f"{name} {_show(key, old)} -> {_show(key, new)}")
    return ", ".join(parts)


def resume_differences(saved: dict[str, Any], mine: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, saved, mine) for every setting that differs, HARMLESS ones excepted; network fields are
    'network.<field>'. A setting the saved run did not record (a checkpoint of an older version:
    crop, export_dtype, data) is not a difference."""
    old, new = _flat({**UNRECORDED_MEANS, **saved}), _flat(mine)
    keys = [k for k in new if k not in HARMLESS] + [k for k in old if k not in new]
    return [(k, old.get(k), new.get(k)) for k in keys if k in old and _normal(old.get(k)) != _normal(new.get(k))]


def _normal(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


# the weights-only unpickler's words for a pickle that asks for an object it will not build (not for garbage bytes)
UNSAFE = re.compile(r"GLOBAL|Can only (build|create new object)|reduce|must be imported", re.IGNORECASE)
CHECKPOINT_KEYS = {"step": int, "net": dict, "ema": dict, "opt": dict, "rng": torch.Tensor, "settings": str}


def read_checkpoint(path: str | Path, device: str | torch.device = "cpu", advice: str | None = None) -> dict[str, Any]:
    """A training checkpoint, loaded safely (weights_only: tensors and plain data, never code) and
    checked for its layout and finite weights; a ModelError naming the file otherwise. The saved
    settings are parsed into ``state["settings"]`` (a dict); ``advice`` ends each message (default: for a
    run folder's checkpoint, use another --out)."""
    path = Path(path)
    advice = advice or "use another --out (or move the file away to start afresh)"
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols of garbage files: the error says it
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        if UNSAFE.search(str(exc)):
            raise ModelError(f"{path}: refused unread: it asks for Python objects other than tensors and plain data, "
                             f"which could run code; {advice}") from None
        raise ModelError(f"{path}: not a readable training checkpoint (corrupt pickle data); {advice}") from None
    except Exception as exc:  # noqa: BLE001 - truncated zip, garbage, a folder, no permission, ...: all one message
        raise ModelError(f"{path}: not a readable training checkpoint ({short_reason(exc)}); {advice}") from None
    if not isinstance(state, dict):
        raise ModelError(f"{path}: holds a {type(state).__name__}, not a guidedinv training checkpoint; {advice}")
    wrong = [k for k, kind in CHECKPOINT_KEYS.items() if not isinstance(state.get(k), kind)]
    if wrong:
        raise ModelError(f"{path}: not a guidedinv training checkpoint (no valid {', '.join(map(repr, wrong))}); {advice}")
    try:
        settings = json.loads(state["settings"])
    except ValueError:
        settings = None
    if not isinstance(settings, dict) or not isinstance(settings.get("network"), dict):
        raise ModelError(f"{path}: its recorded settings are unreadable; {advice}")
    state["settings"] = settings
    if state["step"] < 0:
        raise ModelError(f"{path}: step {state['step']} is negative; {advice}")
    for part in ("net", "ema"):
        for key, value in state[part].items():
            if not isinstance(value, torch.Tensor) or not value.is_floating_point() or not bool(torch.isfinite(value).all()):
                what = "not a tensor" if not isinstance(value, torch.Tensor) else (
                    f"{value.dtype}, not floating point" if not value.is_floating_point() else "NaN or infinite values")
                raise ModelError(f"{path}: weight {part}.{key} holds {what}; {advice}")
    return state


def _check_shapes(state: dict[str, Any], config: ADMConfig, path: Path) -> None:
    """The checkpoint's weights have exactly the network's keys and shapes (built on the meta device: no memory)."""
    want = {k: tuple(v.shape) for k, v in build_network(config, "meta").state_dict().items()}
    for part in ("net", "ema"):
        have = {k: tuple(v.shape) for k, v in state[part].items()}
        if have != want:
            bad = sorted(set(have) ^ set(want)) or [k for k in want if have[k] != want[k]]
            raise ModelError(f"{path}: its {part} weights do not fit the network its settings describe ({bad[0]}); "
                             "use another --out")


def check_resume(state: dict[str, Any], settings: TrainSettings, path: Path) -> None:
    """Refuse ``state`` (from :func:`read_checkpoint` of ``path``) when its settings differ from
    ``settings`` (SettingsChanged), when it is past ``settings.steps`` (InputError), or when its
    weights do not fit the network (ModelError). Needs no data: run it before reading any."""
    differ = resume_differences(state["settings"], asdict(settings))
    if differ:
        raise SettingsChanged(path, differ)
    if state["step"] > settings.steps:
        raise InputError(f"{path} is at step {state['step']}, past --steps {settings.steps}; "
                         f"give --steps {state['step']} or more, or another --out")
    _check_shapes(state, ADMConfig.from_dict(settings.network), path)
