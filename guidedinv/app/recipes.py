"""Task recipes: TOML files that fix the operator, the noise, the method and its step rule, so any
result can be reproduced. The shipped ones are package data (``guidedinv/app/presets``); a path to any TOML file works too.

A recipe is a plain nested dict. :func:`resolve` merges the chosen method's table into one flat
"run" section, which is what the presets consume and what is written beside every output.
"""
from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import InputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["TASKS", "BASELINES", "load_recipe", "apply_overrides", "method_settings", "dump_toml", "recipe_dir"]

TASKS = ("inpaint", "superres", "deblur", "denoise")
METHOD_KEYS = {
    "diffpir": {"rule", "zeta", "eta", "lam", "steps", "scale", "init", "start_sigma"},
    "ddnm": {"rule", "eta", "zeta", "steps", "scale", "init", "start_sigma", "noise_rule"},
    "repaint": {"rule", "eta", "zeta", "steps", "jump_length", "jump_n_sample", "scale"},
    "dps": {"rule", "zeta", "eta", "steps", "init", "start_sigma"},
    "pnp": {"lam", "steps", "scale", "init", "start_sigma"},
}
# A guided method may start from a classical method's estimate (``init = "lanczos"``) noised to the
# model-range noise level ``start_sigma`` instead of from pure noise (a warm start, as in Chung et
# al.'s "Come-Closer-Diffuse-Faster", 2022): fewer steps, and the prior only has to fix what the
# classical estimate got wrong.
# Classical methods (guidedinv.baselines): the operator kinds each solves and its settings. They make
# no network evaluation; method_settings reports steps = 0 for them.
BASELINES = {
    "bicubic": (("downsample",), set()),
    "lanczos": (("downsample",), set()),
    "wiener": (("blur",), {"balance"}),
    "richardson_lucy": (("blur",), {"iterations"}),
    "tv_deconv": (("blur",), {"weight", "iterations"}),
    "biharmonic": (("inpaint",), set()),
    "tv_denoise": (("identity",), {"weight"}),
}
METHOD_KEYS.update({name: keys for name, (_, keys) in BASELINES.items()})


def recipe_dir() -> Path:
    """Where the shipped presets are: package data beside this module (``guidedinv/app/presets``)."""
    return Path(__file__).resolve().parent / "presets"


def load_recipe(name_or_path: str | Path) -> dict[str, Any]:
    """A shipped task's recipe by name ('inpaint', ...) or any TOML file by path."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        if str(name_or_path) not in TASKS:
            raise InputError(f"unknown task {name_or_path!r}; choose from {', '.join(TASKS)} or give a .toml file")
        path = recipe_dir() / f"{name_or_path}.toml"
    if not path.is_file():
        raise InputError(f"recipe {path}: no such file")
    try:
        recipe = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"recipe {path}: not valid TOML ({exc})") from None
    for key in ("task", "method", "operator"):
        if key not in recipe:
            raise InputError(f"recipe {path}: missing '{key}'")
    return recipe


def _parse_value(text: str) -> Any:
    """A --set value: TOML syntax when it parses (numbers, booleans, quoted strings), else a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(recipe: dict[str, Any], assignments: list[str]) -> dict[str, Any]:
    """A copy of ``recipe`` with ``key.sub=value`` assignments applied (keys must already exist,
    except inside the chosen method's table, so typos fail loudly)."""
    out = copy.deepcopy(recipe)
    for item in assignments:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set expects key=value, got {item!r}")
        parts = key.strip().split(".")
        node = out
        for depth, part in enumerate(parts[:-1]):
            if not isinstance(node.get(part), dict):
                if part in node or not (depth == 1 and parts[0] == "methods"):
                    raise InputError(f"--set {key}: '{'.'.join(parts[: depth + 1])}' is not a section of the recipe")
                node[part] = {}
            node = node[part]
        leaf = parts[-1]
        inside_method = len(parts) == 3 and parts[0] == "methods"
        if leaf not in node and not inside_method:
            known = ", ".join(sorted(k for k in node if not isinstance(node[k], dict)))
            raise InputError(f"--set {key}: no such setting (known here: {known})")
        node[leaf] = _parse_value(raw.strip())
    return out


def method_settings(recipe: dict[str, Any]) -> dict[str, Any]:
    """The chosen method's settings, checked against what that method accepts."""
    method = recipe["method"]
    if method not in METHOD_KEYS:
        raise InputError(f"unknown method {method!r}; choose from {', '.join(METHOD_KEYS)}")
    if method == "repaint" and recipe["operator"].get("kind") != "inpaint":
        raise InputError("method 'repaint' replaces known pixels, so it works for inpainting only")
    if method in BASELINES and recipe["operator"].get("kind") not in BASELINES[method][0]:
        tasks = {"downsample": "superres", "blur": "deblur", "inpaint": "inpaint", "identity": "denoise"}
        raise InputError(f"method {method!r} works for {' and '.join(tasks[k] for k in BASELINES[method][0])} only")
    settings = dict(recipe.get("methods", {}).get(method, {}))
    unknown = set(settings) - METHOD_KEYS[method]
    if unknown:
        raise InputError(f"method {method!r} has no setting(s) {', '.join(sorted(unknown))}")
    if method in BASELINES:
        return {**settings, "steps": 0}
    if "steps" not in settings:
        raise InputError(f"recipe: methods.{method}.steps is missing")
    return settings


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def dump_toml(recipe: dict[str, Any]) -> str:
    """Serialise a recipe (nested tables of scalars and lists) to TOML that :func:`load_recipe` reads back."""
    lines: list[str] = []

    def table(node: dict[str, Any], prefix: str) -> None:
        scalars = {k: v for k, v in node.items() if not isinstance(v, dict)}
        if prefix and scalars:
            lines.append(f"\n[{prefix}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in scalars.items())
        for k, v in node.items():
            if isinstance(v, dict):
                table(v, f"{prefix}.{k}" if prefix else k)

    table(recipe, "")
    return "\n".join(lines).lstrip() + "\n"
