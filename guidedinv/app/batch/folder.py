"""The output folder's recipe: ``OUT/recipe.toml`` holds the resolved recipe of the results in it,
so a rerun with a different recipe is refused instead of mixing results (unless forced)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ...errors import InputError
from ...io import atomic_write_bytes
from ..recipes import dump_toml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["RECIPE_NAME", "canonical", "claim_folder"]

RECIPE_NAME = "recipe.toml"


def canonical(recipe: dict[str, Any]) -> dict[str, Any]:
    """The recipe as it reads back from TOML (the form compared and hashed)."""
    return tomllib.loads(dump_toml(recipe))


def _differences(have: Any, want: Any, prefix: str = "") -> list[str]:
    if isinstance(have, dict) and isinstance(want, dict):
        keys = sorted(set(have) | set(want))
        return [d for k in keys for d in _differences(have.get(k), want.get(k), f"{prefix}{k}.")]
    return [] if have == want else [f"{prefix.rstrip('.')}: {have!r} -> {want!r}"]


def claim_folder(out_dir: Path, recipe: dict[str, Any], force: bool, writer: bool = True) -> None:
    """Write ``recipe.toml`` into ``out_dir``; refuse a folder made with another recipe unless ``force``.

    writer: whether this process writes the file (rank 0; every rank checks).
    """
    path, text = out_dir / RECIPE_NAME, dump_toml(recipe)
    wanted = tomllib.loads(text)
    if path.exists():
        try:
            have: Any = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            have = None
        if have == wanted:
            return
        if not force:
            diff = "; ".join(_differences(have, wanted)[:4]) if isinstance(have, dict) else "unreadable recipe.toml"
            raise InputError(f"{out_dir} holds results of a different recipe ({diff}); use another --out folder, "
                             "or --force to replace its recipe.toml and redo the items made with the old one")
    if writer:
        atomic_write_bytes(path, text.encode())
