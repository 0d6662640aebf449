"""What a batch restores: items from files, folders, globs or a manifest, each with a stable id.

An item's id names it in the report and, unless the manifest gives an ``output``, its output file
(``ID`` with the suffix replaced by ``.png``, inside the output folder). Ids come from the data,
never from the order: a file given by name is its file name, a file found in a folder is its path
relative to that folder, a glob match is relative to the glob's fixed leading folder, and a manifest
row is its ``id`` field, else its ``output``, else its input relative to the manifest's folder.
The item list is sorted by id, so every process of a torchrun job sees the same list.

Manifests are CSV (a header row) or JSON Lines (one object per line); fields, all but ``input``
optional, paths relative to the manifest's folder:

    input      the image (the measurement; with --simulate the clean image)
    mask       inpainting mask file (white = fill) for this item
    scale      super-resolution factor for this item (downsample recipes only)
    seed       this item's seed (default: a hash of the recipe's seed and the item id)
    reference  clean image of the output's size, for PSNR / SSIM
    output     output file name inside the output folder (.png)
    id         the item's name in the report
"""
from __future__ import annotations

import csv
import glob
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ...errors import InputError
from ...io import IMAGE_SUFFIXES, is_image_file, list_images
from ..measure import measurement_seed  # noqa: F401  (re-exported: the batch's seeding names)

__all__ = ["Item", "IMAGE_SUFFIXES", "MANIFEST_FIELDS", "collect_items", "read_manifest", "item_seed",
           "measurement_seed"]

MANIFEST_FIELDS = ("input", "mask", "scale", "seed", "reference", "output", "id")
SEED_RANGE = 2**53  # seeds stay exact in JSON readers that use doubles


@dataclass(frozen=True)
class Item:
    """One image to restore. ``output`` is a relative POSIX path inside the output folder."""

    id: str
    input: Path
    output: str
    mask: Path | None = None
    reference: Path | None = None
    scale: int | None = None
    seed: int | None = None  # given by the manifest; else :func:`item_seed`


def _hash_int(*parts: object) -> int:
    digest = hashlib.sha256("\x00".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") % SEED_RANGE


def item_seed(item: Item, recipe_seed: int) -> int:
    """The item's own seed, else a stable hash of (recipe seed, item id): independent of order."""
    return item.seed if item.seed is not None else _hash_int(recipe_seed, item.id)



def _output_for(item_id: str, where: str) -> str:
    """Default output name: the id with a .png suffix (a.b/c.jpg -> a.b/c.png)."""
    path = PurePosixPath(item_id)
    if not path.name:
        raise InputError(f"{where}: the id {item_id!r} names no file, so it gives no output name; give an 'output' field")
    return _checked_output(str(path.with_suffix(".png") if path.suffix else path.with_name(path.name + ".png")), where)


def _checked_output(name: str, where: str) -> str:
    path = PurePosixPath(name.replace(os.sep, "/"))
    if path.is_absolute() or ".." in path.parts or not path.parts or path.suffix.lower() != ".png":
        raise InputError(f"{where}: output {name!r} must be a relative .png path inside the output folder "
                         "(no '..'); give an 'output' field in a manifest")
    return str(path)


def _inside(path: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _from_argument(arg: str, exclude: Path | None) -> list[Item]:
    """A file (any name: a bad one fails as an item), a folder (recursively) or a glob pattern."""
    if glob.has_magic(arg):
        parts = PurePosixPath(arg.replace(os.sep, "/")).parts
        fixed = [p for p in parts[: next(i for i, p in enumerate(parts) if glob.has_magic(p))]]
        root = Path(*fixed) if fixed else Path(".")
        found = [Path(p) for p in glob.glob(arg, recursive=True)]
        found = [p for p in found if is_image_file(p, root) and not _inside(p, exclude)]
        if not found:
            raise InputError(f"{arg}: the pattern matches no image files ({', '.join(IMAGE_SUFFIXES)})")
    elif Path(arg).is_dir():
        root = Path(arg)
        found = [p for p in list_images(root, recursive=True) if not _inside(p, exclude)]
        if not found:
            raise InputError(f"{arg}: the folder holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    else:
        path = Path(arg)
        return [Item(path.name, path, _output_for(path.name, arg))]
    items = []
    for p in found:
        item_id = p.relative_to(root).as_posix()
        items.append(Item(item_id, p, _output_for(item_id, arg)))
    return items


def _rows(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise InputError(f"manifest {path}: cannot read it ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise InputError(f"manifest {path}: not UTF-8 text") from None
    suffix = path.suffix.lower()
    if suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames or "input" not in [f.strip() for f in reader.fieldnames]:
            raise InputError(f"manifest {path}: the header row must name an 'input' column (fields: {', '.join(MANIFEST_FIELDS)})")
        for row in reader:
            if None in row:
                raise InputError(f"manifest {path} line {reader.line_num}: more cells than header columns")
            yield reader.line_num, {k.strip(): (v.strip() or None) if isinstance(v, str) else v for k, v in row.items()}
    elif suffix in (".jsonl", ".ndjson"):
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"manifest {path} line {number}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise InputError(f"manifest {path} line {number}: expected a JSON object, e.g. {{\"input\": \"a.png\"}}")
            yield number, row
    else:
        raise InputError(f"manifest {path}: unknown format; give a .csv or a .jsonl (JSON Lines) file")


def _integer(value: Any, name: str, where: str, low: int, high: int) -> int | None:
    if value is None:
        return None
    try:
        number = int(value) if not isinstance(value, float) or value.is_integer() else None
    except (TypeError, ValueError):
        number = None
    if number is None or isinstance(value, bool) or not low <= number < high:
        raise InputError(f"{where}: {name} must be an integer in [{low}, {high}), got {value!r}")
    return number


def read_manifest(path: str | Path) -> list[Item]:
    """The items of a CSV or JSON Lines manifest (module docstring); format errors are InputErrors."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"manifest {path}: no such file")
    base = path.parent
    items = []
    for number, row in _rows(path):
        where = f"manifest {path} line {number}"
        unknown = sorted(set(row) - set(MANIFEST_FIELDS))
        if unknown:
            raise InputError(f"{where}: unknown field(s) {', '.join(unknown)}; accepted: {', '.join(MANIFEST_FIELDS)}")
        if not row.get("input"):
            raise InputError(f"{where}: 'input' is empty")

        def local(key: str) -> Path | None:
            value = row.get(key)
            return None if value in (None, "") else base / Path(str(value)).expanduser()

        source = local("input")
        assert source is not None
        item_id = row.get("id") or row.get("output") or Path(os.path.relpath(source, base)).as_posix()
        output = _checked_output(str(row["output"]), where) if row.get("output") else _output_for(str(item_id), where)
        items.append(Item(str(item_id), source, output, local("mask"), local("reference"),
                          _integer(row.get("scale"), "scale", where, 1, 2**16),
                          _integer(row.get("seed"), "seed", where, 0, 2**63)))
    if not items:
        raise InputError(f"manifest {path}: no rows")
    return items


def collect_items(inputs: Sequence[str], manifest: str | Path | None = None, exclude: str | Path | None = None) -> list[Item]:
    """Every item of ``inputs`` (files, folders, globs) and ``manifest``, sorted by id.

    exclude: a folder whose files are never inputs (the output folder). The same file reached twice
    under one id counts once; two different items with one id or one output name are an InputError.
    """
    skip = Path(exclude) if exclude is not None else None
    found: list[Item] = [item for arg in inputs for item in _from_argument(str(arg), skip)]
    if manifest is not None:
        found += read_manifest(manifest)
    if not found:
        raise InputError("no inputs: give image files, folders or glob patterns, or --manifest FILE")
    by_id: dict[str, Item] = {}
    by_output: dict[str, str] = {}
    for item in found:
        twin = by_id.get(item.id)
        if twin is not None:
            if twin == item or (twin.input.resolve() == item.input.resolve() and twin.output == item.output):
                continue
            raise InputError(f"two inputs share the id {item.id!r} ({twin.input} and {item.input}); "
                             "give distinct names, e.g. with a manifest's id and output fields")
        other = by_output.get(item.output.lower())
        if other is not None:
            raise InputError(f"items {other!r} and {item.id!r} would both be written to {item.output}; "
                             "give distinct output names in a manifest")
        by_id[item.id] = item
        by_output[item.output.lower()] = item.id
    return [by_id[k] for k in sorted(by_id)]
