"""Recipes, the serialised form of a request (TOML): load a preset, apply ``--set`` overrides, write
one back. Checking and typing is :mod:`guidedinv.app.request`'s; this module keeps the names scripts
have used (``load_recipe``, ``apply_overrides``, ``method_settings``, ``dump_toml``)."""
from __future__ import annotations

import json
from typing import Any

from .methods import METHODS, classical_names
from .request import TASKS, apply_overrides, load_preset, parse_request, preset_dir

__all__ = ["TASKS", "BASELINES", "load_recipe", "apply_overrides", "method_settings", "dump_toml", "recipe_dir"]

BASELINES = {name: (METHODS[name].kinds, {s.name for s in METHODS[name].settings}) for name in classical_names()}
recipe_dir = preset_dir


def load_recipe(name_or_path: Any) -> dict[str, Any]:
    """A shipped task's preset by name ('inpaint', ...) or any recipe TOML by path, checked."""
    recipe = load_preset(name_or_path)
    parse_request(recipe, f"recipe {name_or_path}")
    return recipe


def method_settings(recipe: dict[str, Any]) -> dict[str, Any]:
    """The chosen method's settings (defaults filled in), checked; classical methods report steps = 0."""
    request = parse_request(recipe)
    settings = dict(request.settings)
    return settings if request.uses_network else {**settings, "steps": 0}


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
