"""The files a batch writes per item and their checks, made before any model loads.

Beside an item's output ``a/b.png`` go, when asked, its uncertainty map ``a/b.std.png`` and its
posterior samples ``a/b.sample-K.png`` (K from 0; sample 0 is the one-sample result), the names
the restore commands give beside their ``--out``. No file a batch writes may be a file it reads
(an item's input, mask or reference, the manifest), and no two may be one file: an item's extra
file is never another item's output (``x.png`` beside an item whose output is ``x.sample-0.png``
or ``x.std.png`` is refused), compared without case, as on a case-insensitive disk.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from ...errors import InputError
from ..outputs import Read, Write, check_disjoint
from .folder import RECIPE_NAME
from .items import Item
from .report import REPORT_NAME

__all__ = ["std_output", "sample_outputs", "extra_names", "check_outputs"]

_EXTRA = re.compile(r"^(?P<stem>.+)\.(?:std|sample-(?P<k>\d+))\.png$", re.IGNORECASE)


def std_output(out_dir: Path, item: Item) -> Path:
    """Where an item's uncertainty map goes: its output's name with .std.png (a/b.png -> a/b.std.png)."""
    return out_dir / _beside(item.output, "std")


def sample_outputs(out_dir: Path, item: Item, count: int) -> list[Path]:
    """Where an item's ``count`` samples go: a/b.png -> a/b.sample-0.png, a/b.sample-1.png, ..."""
    return [out_dir / _beside(item.output, f"sample-{k}") for k in range(count)]


def extra_names(item: Item, uncertainty: bool, samples: int) -> list[str]:
    """The item's files besides its output (relative POSIX paths): the map, then the samples."""
    return ([_beside(item.output, "std")] if uncertainty else []) + [_beside(item.output, f"sample-{k}") for k in range(samples)]


def _beside(output: str, tag: str) -> str:
    path = PurePosixPath(output)
    return str(path.with_name(f"{path.stem}.{tag}.png"))


def check_outputs(items: Sequence[Item], out_dir: Path, reads: Sequence[Path], uncertainty: bool = False,
                  samples: int = 0) -> None:
    """Inputs are never outputs, whatever their path: no item's output, map or sample (nor the folder's
    report and recipe) may be a file any item reads (its input, mask, reference) or a file named in
    ``reads``, and no extra file may be another item's output. ``samples``: how many are saved per item."""
    readers = [Read("the manifest", Path(p)) for p in reads]
    for i in items:
        readers += [Read(f"the input of item {i.id}", i.input)]
        readers += [Read(f"the mask of item {i.id}", i.mask)] if i.mask is not None else []
        readers += [Read(f"the reference of item {i.id}", i.reference)] if i.reference is not None else []
    writers = [Write(f"the output of item {i.id}", out_dir / i.output) for i in items]
    writers += [Write("the report", out_dir / REPORT_NAME), Write("the folder's recipe", out_dir / RECIPE_NAME)]
    if uncertainty or samples:
        _check_names(items, uncertainty, samples)
        extras = [Write(f"the uncertainty map of item {i.id}", std_output(out_dir, i)) for i in items if uncertainty]
        extras += [Write(f"sample {k} of item {i.id}", path) for i in items
                   for k, path in enumerate(sample_outputs(out_dir, i, samples))]
        check_disjoint([*readers, *(Read(w.label, w.path) for w in writers)], extras, "give another --out folder")
    check_disjoint(readers, writers, "give another --out folder or other output names")


def _check_names(items: Sequence[Item], uncertainty: bool, samples: int) -> None:
    """Linear in the items: an output that has the form of another's extra file (STEM.std.png,
    STEM.sample-K.png) clashes when STEM.png is an output and that extra file is written."""
    outputs = {i.output.lower(): i.id for i in items}
    for i in items:
        match = _EXTRA.match(i.output)
        if match is None:
            continue
        owner = outputs.get(f"{match['stem']}.png".lower())
        k = match["k"]
        written = uncertainty if k is None else int(k) < samples and str(int(k)) == k
        if owner is not None and written:
            what = "uncertainty map" if k is None else f"sample {k}"
            raise InputError(f"the {what} of item {owner} would be {i.output}, the output of item {i.id}; "
                             "give distinct output names in a manifest")
