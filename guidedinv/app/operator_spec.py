"""The ``[operator]`` table of a recipe: which keys each operator kind takes (inpaint: a mask;
downsample: scale, mode; blur: kernel, size, boundary; edit: a mask of edit weights, a reference;
identity: none), their defaults and ranges, and the checks of what they name (a kernel spec or file,
a mask spec or file, a reference image), all before any model loads. :mod:`.request` checks the
rest of a recipe; :mod:`.measure` builds the operator from the :class:`OperatorSpec` made here.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from .methods.base import TASK_OF_KIND, Setting

__all__ = ["KIND_OF_TASK", "OPERATOR_KEYS", "OperatorSpec", "operator_keys", "check_operator", "kernel_path"]

KIND_OF_TASK = {task: kind for kind, task in TASK_OF_KIND.items()}  # the operator kind of each task

# operator keys per kind: (Setting, ...); kind itself follows from the task
OPERATOR_KEYS: dict[str, tuple[Setting, ...]] = {
    "inpaint": (Setting("mask", "str", "box", "a mask file (white = fill) or box | box:SIZE | random:F | half | lines"),),
    "downsample": (Setting("scale", "int", 4, "integer upscaling factor", low=1, high=32),
                   Setting("mode", "str", "bicubic", "downsampling model", choices=("bicubic", "average"))),
    "blur": (Setting("kernel", "str", "gaussian:3.0", "gaussian:SIGMA | motion | motion:SEED | FILE.npy | FILE.npz:KEY | FILE.png"),
             Setting("size", "int", 61, "size of generated gaussian and motion kernels (odd)", low=3, high=1001),
             Setting("boundary", "str", "padded", "padded | reflect | circular", choices=("padded", "reflect", "circular"))),
    "identity": (),
    "edit": (Setting("mask", "str", "", "edit weights: a mask file (white = edit, grey = blend) or box | half | ...; \"\": everywhere"),
             Setting("reference", "str", "", "a reference image for ILVR (\"\": none)")),
}


@dataclass(frozen=True)
class OperatorSpec:
    """The forward model of a task; the fields that do not apply to ``kind`` are None."""

    kind: str
    mask: str | None = None
    reference: str | None = None
    scale: int | None = None
    mode: str | None = None
    kernel: str | None = None
    size: int | None = None
    boundary: str | None = None

    @property
    def factor(self) -> int:
        """Super-resolution factor (1 for the other kinds)."""
        return int(self.scale) if self.kind == "downsample" else 1


def operator_keys(kind: str) -> list[str]:
    """The keys an ``[operator]`` table of that kind may hold (none but "kind" for an unknown kind)."""
    return ["kind", *(s.name for s in OPERATOR_KEYS.get(kind, ()))]


def check_operator(table: Mapping[str, Any], task: str) -> OperatorSpec:
    """The ``[operator]`` table of a ``task`` recipe, its keys already checked against
    :func:`operator_keys`, as an :class:`OperatorSpec`: defaults filled in, every value checked and
    every file it names read (a kernel) or found (a mask, a reference) before any model loads."""
    kind = KIND_OF_TASK[task]
    specs = OPERATOR_KEYS[kind]
    if table.get("kind", kind) != kind:
        raise InputError(f"operator.kind = {table['kind']!r}: a {task} recipe's operator is {kind!r}")
    values = {s.name: s.check(table.get(s.name, s.default), f"operator.{s.name}") for s in specs}
    if kind == "blur":
        _check_kernel(values["kernel"], values["size"])
    if kind == "inpaint" or (kind == "edit" and values["mask"]):
        _check_mask_spec(values["mask"])
    if kind == "edit" and values["reference"] and not Path(values["reference"]).is_file():
        raise InputError(f"operator.reference = {values['reference']!r}: no such image file")
    return OperatorSpec(kind, **values)


def _check_kernel(spec: str, size: int) -> None:
    if size % 2 == 0:
        raise InputError(f"operator.size = {size}: expected an odd kernel size (3, 5, ..., 1001)")
    name, _, arg = spec.partition(":")
    if name == "gaussian":
        try:
            sigma = float(arg or 3.0)
        except ValueError:
            sigma = float("nan")
        if not (math.isfinite(sigma) and 0 < sigma <= 100):
            raise InputError(f"operator.kernel = {spec!r}: expected gaussian:SIGMA with 0 < SIGMA <= 100, e.g. gaussian:3.0")
        return
    if name == "motion":
        if arg and not ((arg.isascii() and arg.isdigit()) and int(arg) < 2**32):
            raise InputError(f"operator.kernel = {spec!r}: expected motion or motion:SEED with a whole SEED >= 0")
        return
    path = kernel_path(spec)
    if not path.is_file():
        raise InputError(f"operator.kernel = {spec!r}: no such kernel file; expected gaussian:SIGMA, motion, motion:SEED "
                         "or a .npy / .npz:KEY / image file")
    from ..operators import load_kernel  # read once here: a corrupt file fails before any model loads

    key = spec[len(str(path)) + 1:] or None
    load_kernel(path, key)


def kernel_path(spec: str) -> Path:
    """The file a kernel spec names (``FILE.npz:KEY`` -> FILE.npz)."""
    text = str(spec)
    head, sep, key = text.rpartition(":")
    if sep and head.lower().endswith(".npz") and "/" not in key:
        return Path(head)
    return Path(text)


def _check_mask_spec(spec: str) -> None:
    from ..io import IMAGE_SUFFIXES, make_mask

    if Path(spec).suffix.lower() in IMAGE_SUFFIXES:
        if not Path(spec).is_file():
            raise InputError(f"operator.mask = {spec!r}: no such mask file")
        return
    try:
        make_mask(spec, (16, 16))
    except InputError as exc:
        raise InputError(f"operator.mask = {spec!r}: {exc}") from None
