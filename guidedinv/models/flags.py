"""Model flags: what a checkpoint's tensor shapes cannot show, stated by whoever has the file.

The shapes give the whole layout (see :mod:`guidedinv.models.config`) but not the number of
attention heads, the qkv channel order, the noise schedule or what the network predicts. For a
file that is neither in the registry nor exported by guidedinv (which records them), those are
guessed, and a network trained with other values silently computes something else. Model flags
state them, under guided-diffusion's own names:

============================  =====================================================================
``num_heads``                 heads per attention block (improved-diffusion's default is 4)
``num_head_channels``         channels per head; when set (not -1) it decides the heads, as in
                              guided-diffusion (its released models use 64)
``num_heads_upsample``        heads on the decoder side when num_head_channels is -1 (-1: num_heads)
``use_new_attention_order``   qkv split as [all q | all k | all v] (true) or per head (false)
``noise_schedule``            ``linear`` or ``cosine``
``predict_xstart``            the network predicts x0 (true) instead of eps (false)
``diffusion_steps``           T; only 1000 is run
``rescale_timesteps``         accepted (no effect when T = 1000)
============================  =====================================================================

Three ways to give them, all checked by the same rules:

* Python: ``load_model(path, flags={"num_heads": 4, "use_new_attention_order": True})`` (also
  :func:`~guidedinv.models.load_denoiser`, :func:`~guidedinv.models.load_classifier` and
  :func:`guidedinv.defaults.load_prior`); a string is parsed as below.
* text (a command-line value): ``"num_heads=4 use_new_attention_order=true"`` or guided-diffusion's
  flag string ``"--num_heads 4 --use_new_attention_order True"`` (:func:`parse_model_flags`).
* a JSON object in ``CHECKPOINT_STEM.flags.json`` beside the checkpoint (``model.flags.json`` for
  ``model.pt``), read automatically: ``{"num_heads": 4, "use_new_attention_order": true}``. (Not
  ``model.pt.json``: the download cache keeps its size / SHA-256 record under that name.)

Given flags and the file's flags are merged; the same flag with two values is an error. Flags that
contradict what the registry or the file's own metadata record are an error too; registry entries
keep their known values. Flags the shapes do show (``num_channels``, ``attention_resolutions``, ...)
are refused with a line saying so. This module imports no torch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import InputError, ModelError

__all__ = ["FLAGS", "parse_model_flags", "check_model_flags", "flags_file", "read_flags_file", "merge_flags", "apply_flags"]

FLAGS = {
    "num_heads": "a whole number >= 1",
    "num_head_channels": "a whole number >= 1, or -1 (num_heads decides)",
    "num_heads_upsample": "a whole number >= 1, or -1 (same as num_heads)",
    "use_new_attention_order": "true or false",
    "noise_schedule": "linear or cosine",
    "predict_xstart": "true or false",
    "diffusion_steps": "1000 (guidedinv runs T = 1000 schedules only)",
    "rescale_timesteps": "true or false",
}
FROM_SHAPES = (
    "image_size", "num_channels", "num_res_blocks", "channel_mult", "attention_resolutions", "class_cond",
    "learn_sigma", "use_scale_shift_norm", "resblock_updown", "classifier_width", "classifier_depth",
    "classifier_attention_resolutions", "classifier_use_scale_shift_norm", "classifier_resblock_updown",
    "classifier_pool",
)
ELSEWHERE = {
    "use_fp16": "--dtype fp16", "classifier_use_fp16": "--dtype fp16", "timestep_respacing": "--steps",
    "use_checkpoint": "nothing (training only)", "dropout": "nothing (training only)", "use_kl": "nothing (training only)",
    "rescale_learned_sigmas": "nothing (training only)",
}
TRUE, FALSE = ("true", "t", "yes", "y", "1"), ("false", "f", "no", "n", "0")  # guided-diffusion's str2bool


def _accepted() -> str:
    return ", ".join(FLAGS)


def _value(key: str, raw: Any) -> Any:
    """The typed value of one flag, or ValueError saying what is accepted."""
    bad = ValueError(f"{key} must be {FLAGS[key]}, got {raw!r}")
    if key in ("use_new_attention_order", "predict_xstart", "rescale_timesteps"):
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower() if isinstance(raw, str) else None
        if text in TRUE or text in FALSE:
            return text in TRUE
        raise bad
    if key == "noise_schedule":
        if isinstance(raw, str) and raw.strip().lower() in ("linear", "cosine"):
            return raw.strip().lower()
        raise bad
    if isinstance(raw, bool):
        raise bad
    if isinstance(raw, int):
        number = raw
    elif isinstance(raw, str) and raw.strip().isascii() and raw.strip().lstrip("-").isdigit() and raw.strip().count("-") <= 1:
        number = int(raw.strip())
    else:
        raise bad
    if key == "diffusion_steps":
        if number != 1000:
            raise bad
    elif number < 1 and not (number == -1 and key in ("num_head_channels", "num_heads_upsample")):
        raise bad
    return number


def _refuse_unknown(keys: list[str], where: str, error: type[Exception]) -> None:
    unknown = [k for k in keys if k not in FLAGS]
    if not unknown:
        return
    shapes = [k for k in unknown if k in FROM_SHAPES]
    elsewhere = [f"{k} is {ELSEWHERE[k]}" for k in unknown if k in ELSEWHERE]
    other = [k for k in unknown if k not in FROM_SHAPES and k not in ELSEWHERE]
    parts = []
    if other:
        parts.append(f"unknown flag{'s' if len(other) > 1 else ''} {', '.join(other)}")
    if shapes:
        parts.append(f"{', '.join(shapes)} {'is' if len(shapes) == 1 else 'are'} read from the checkpoint's tensor shapes")
    parts.extend(elsewhere)
    raise error(f"{where}: {'; '.join(parts)}; leave {'it' if len(unknown) == 1 else 'them'} out "
                f"(model flags: {_accepted()})")


def check_model_flags(flags: Mapping[str, Any], where: str = "flags", error: type[Exception] = InputError) -> dict[str, Any]:
    """``flags`` (name -> value: Python values, or the strings the text form takes) checked and typed;
    ``error`` (InputError, or ModelError for a file) names ``where`` they came from."""
    if not isinstance(flags, Mapping):
        raise error(f"{where}: expected an object of model flags ({_accepted()}), got {type(flags).__name__}")
    keys = [str(k).removeprefix("--").replace("-", "_") for k in flags]
    _refuse_unknown(keys, where, error)
    out = {}
    for key, raw in zip(keys, flags.values(), strict=True):
        try:
            out[key] = _value(key, raw)
        except ValueError as exc:
            raise error(f"{where}: {exc}") from None
    return out


def parse_model_flags(text: str, option: str = "--model-flags") -> dict[str, Any]:
    """Parse ``"num_heads=4 use_new_attention_order=true"`` or guided-diffusion's
    ``"--num_heads 4 --use_new_attention_order True"`` (forms may mix; ``--key=value`` too) into typed
    flags; an InputError naming ``option`` and what is accepted for an unknown flag, a bad value, a
    flag given twice with two values, or a word that is neither form. Empty text gives {}."""
    where = f"{option} {text!r}"
    words, pairs = str(text).split(), []
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("--") and "=" not in word:
            if i + 1 >= len(words) or words[i + 1].startswith("--"):
                raise InputError(f"{where}: {word} has no value (write {word} VALUE or {word[2:]}=VALUE)")
            pairs.append((word[2:], words[i + 1]))
            i += 2
            continue
        key, eq, value = word.removeprefix("--").partition("=")
        if not eq or not key or not value:
            raise InputError(f"{where}: expected key=value or --key value, got {word!r} (model flags: {_accepted()})")
        pairs.append((key, value))
        i += 1
    pairs = [(key.replace("-", "_"), value) for key, value in pairs]
    _refuse_unknown([key for key, _ in pairs], where, InputError)
    seen: dict[str, Any] = {}
    for key, value in pairs:
        try:
            typed = _value(key, value)
        except ValueError as exc:
            raise InputError(f"{where}: {exc}") from None
        if key in seen and seen[key] != typed:
            raise InputError(f"{where}: {key} is given twice ({_show(seen[key])} and {_show(typed)})")
        seen[key] = typed
    return seen


def flags_file(weights: Path) -> Path:
    """Where the flags of the checkpoint file ``weights`` are read from: ``STEM.flags.json`` beside it."""
    return weights.with_name(weights.stem + ".flags.json")


def read_flags_file(weights: Path) -> dict[str, Any] | None:
    """The flags of ``flags_file(weights)``, or None when there is no such file; a ModelError naming
    the file when it cannot be read or holds anything else."""
    path = flags_file(weights)
    try:
        if not path.exists():
            return None
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"cannot read the model flags file {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ModelError(f"{path} is not valid JSON ({exc}); expected e.g. {{\"num_heads\": 4}}") from exc
    return check_model_flags(data, str(path), ModelError)


def merge_flags(given: Mapping[str, Any], given_from: str, filed: Mapping[str, Any] | None,
                file_from: str) -> tuple[dict[str, Any], dict[str, str]]:
    """(flags, flag -> where it came from) of the given flags and the file's; the same flag with two
    values is a ModelError naming both."""
    flags, sources = dict(given), dict.fromkeys(given, given_from)
    for key, value in (filed or {}).items():
        if key in flags and flags[key] != value:
            raise ModelError(f"{key}={_show(flags[key])} from {given_from} contradicts {key}={_show(value)} in {file_from}; "
                             "change or remove one")
        if key not in flags:
            flags[key], sources[key] = value, file_from
    if flags.get("num_head_channels") == -1 and "num_heads" not in flags:
        raise ModelError(f"num_head_channels=-1 ({sources['num_head_channels']}) lets num_heads decide; give num_heads too")
    return flags, sources


def _show(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


ATTENTION_FLAGS = ("num_heads", "num_head_channels", "num_heads_upsample", "use_new_attention_order")


def apply_flags(inferred: Any, flags: Mapping[str, Any], sources: Mapping[str, str]) -> Any:
    """``inferred`` (a :class:`~guidedinv.models.config.Inferred`) with the model flags applied and
    recorded. Where a registry entry or the file's metadata records the hidden settings
    (``inferred.recorded_by``), they stay and flags that would change what the network computes are
    a ModelError; otherwise the flags replace the guesses. Also a ModelError: attention flags on a
    diffusers checkpoint, predict_xstart on a classifier, heads that do not divide the widths."""
    from dataclasses import replace

    from .adm import ADMConfig

    if not flags:
        return inferred
    cfg, named = inferred.config, ", ".join(f"{k}={_show(v)} ({sources.get(k, 'flags')})" for k, v in flags.items())
    attention = [k for k in ATTENTION_FLAGS if k in flags]
    if attention and not isinstance(cfg, ADMConfig):
        raise ModelError(f"{', '.join(attention)}: attention flags apply to ADM (guided-diffusion) checkpoints; "
                         "this is a diffusers UNet2DModel (its attention is single-head)")
    is_classifier = isinstance(cfg, ADMConfig) and cfg.kind == "classifier"
    if "predict_xstart" in flags and is_classifier:
        raise ModelError("predict_xstart applies to diffusion models; this checkpoint is a classifier")
    if isinstance(cfg, ADMConfig) and attention:
        change: dict[str, Any] = {}
        if flags.get("num_head_channels", -1) != -1:
            change["head_channels"] = flags["num_head_channels"]
        elif "num_heads" in flags:
            change["head_channels"] = None
        if "num_heads" in flags:
            change["num_heads"] = flags["num_heads"]
        if "num_heads_upsample" in flags:
            change["num_heads_upsample"] = None if flags["num_heads_upsample"] == -1 else flags["num_heads_upsample"]
        if "use_new_attention_order" in flags:
            change["attention_order"] = "new" if flags["use_new_attention_order"] else "legacy"
        try:
            stated = replace(cfg, **change)
        except ValueError as exc:
            raise ModelError(f"model flags {named}: {exc}") from exc
        _attention_heads(stated, named)
    else:
        stated = cfg
    schedule = flags.get("noise_schedule", inferred.schedule)
    prediction = ("x0" if flags["predict_xstart"] else "eps") if "predict_xstart" in flags else inferred.prediction
    recorded = dict(flags=dict(flags), flag_sources={k: sources.get(k, "flags") for k in flags})
    if inferred.recorded_by is not None:
        differs = []
        if isinstance(cfg, ADMConfig) and _attention_heads(stated, named) != _attention_heads(cfg, named):
            differs.append(f"attention heads {_describe_heads(cfg)}")
        if isinstance(cfg, ADMConfig) and stated.attention_order != cfg.attention_order:
            differs.append(f"{cfg.attention_order} attention order")
        if "noise_schedule" in flags and schedule != inferred.schedule:
            differs.append(f"{inferred.schedule} noise schedule")
        if prediction != inferred.prediction:
            differs.append(f"{inferred.prediction} prediction")
        if differs:
            raise ModelError(f"model flags {named} contradict {inferred.recorded_by}, which records {', '.join(differs)}; "
                             "leave the flags out")
        return replace(inferred, **recorded)
    assumed = dict(inferred.assumed)
    for key in flags:
        for field in {"num_heads": ("num_heads", "head_channels"), "num_head_channels": ("head_channels", "num_heads"),
                      "num_heads_upsample": ("num_heads_upsample",), "use_new_attention_order": ("attention_order",),
                      "noise_schedule": ("schedule",), "predict_xstart": ("prediction",)}.get(key, ()):
            assumed[field] = f"model flags ({sources.get(key, 'flags')})"
    known = {"attention heads": "num_heads" in flags or "num_head_channels" in flags,
             "attention order": "use_new_attention_order" in flags, "noise schedule": "noise_schedule" in flags}
    guessed = tuple(g for g in inferred.guessed if not known.get(g, False))
    return replace(inferred, config=stated, schedule=schedule, prediction=prediction, assumed=assumed, guessed=guessed,
                   **recorded)


def _attention_heads(cfg: Any, named: str = "") -> tuple[int, ...]:
    """The number of heads of every attention block of an ADM network, in order (encoder, middle,
    decoder); a ModelError where a block's width is not divisible into that many heads."""
    widths = [(cfg.channels(level), False) for level in range(cfg.levels) if 2**level in cfg.attention_ds]
    widths.append((cfg.channels(cfg.levels - 1), False))
    if cfg.kind == "unet":
        widths += [(cfg.channels(level), True) for level in reversed(range(cfg.levels)) if 2**level in cfg.attention_ds]
    heads = []
    for width, up in widths:
        try:
            n = cfg.heads(width, upsample=up)
        except ValueError as exc:
            raise ModelError(f"model flags {named}: {exc}") from exc
        if n < 1 or width % n:
            raise ModelError(f"model flags {named}: {n} heads do not divide the attention width {width}")
        heads.append(n)
    return tuple(heads)


def _describe_heads(cfg: Any) -> str:
    if cfg.head_channels is not None:
        return f"of {cfg.head_channels} channels"
    up = "" if cfg.num_heads_upsample in (None, cfg.num_heads) else f", {cfg.num_heads_upsample} on the decoder side"
    return f"{cfg.num_heads} per block{up}"


def describe_guess(inferred: Any) -> str:
    """What a guessed configuration assumes, in the flags' words (for the warning)."""
    cfg, parts = inferred.config, []
    if "attention heads" in inferred.guessed:
        parts.append(f"num_head_channels={cfg.head_channels}" if cfg.head_channels is not None else f"num_heads={cfg.num_heads}")
    if "attention order" in inferred.guessed:
        parts.append(f"use_new_attention_order={'true' if cfg.attention_order == 'new' else 'false'}")
    if "noise schedule" in inferred.guessed:
        parts.append(f"noise_schedule={inferred.schedule}")
    return " ".join(parts)
