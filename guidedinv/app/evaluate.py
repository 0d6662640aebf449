"""Score restored images against their references (PSNR, SSIM, optionally LPIPS) through
:mod:`guidedinv.metrics`, the one implementation the benchmark and the batch report use. The
``guidedinv eval`` command is a shell over these functions; scripts call them directly:

    from guidedinv.app.evaluate import pair_images, score_pairs, format_table, write_csv

    pairing = pair_images("restored/", "sample_images/")   # files, folders or glob patterns
    rows = score_pairs(pairing.pairs, lpips=False)         # one dict per pair
    print(format_table(rows))                              # the command's table, a mean row last
    write_csv("scores.csv", rows)
    print(pairing.unpaired_outputs, pairing.unpaired_references)

Pairing rule. OUTPUTS and REFERENCES are each an image file, a folder (searched recursively) or a
glob pattern, found as ``guidedinv batch`` finds its inputs (:func:`guidedinv.app.batch.collect_items`).
Every image has a key: its path relative to the folder (or to the glob's fixed leading folder; a
file given by name: its file name) without the suffix, so ``out/sub/foo.superres.png`` found in
``out/`` has the key ``sub/foo.superres``. An output pairs with the reference whose key is the
output's key exactly, else the output's key with its last dot-separated parts dropped one at a time
(``sub/foo.superres`` -> ``sub/foo``): ``foo.png``, ``foo.superres.png`` and ``foo.ddnm.x4.png``
all pair with the reference ``foo.png``. Two files given by name are always one pair, whatever their
names. Images that pair with nothing are returned apart, unscored.

Rows: ``output``, ``reference`` (paths as text), ``width``, ``height``, ``psnr`` (dB; inf for
identical images), ``ssim`` (None when a side is under 11 px) and, when asked, ``lpips`` (None
when unavailable). Images are [0, 1]; alpha is not scored; a grey image scored against a colour one
is repeated to three channels; sizes must match (else an InputError).
"""
from __future__ import annotations

import csv
import glob
import io as _io
import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

import torch

from ..errors import InputError
from ..io import ImageData, atomic_write_bytes, read_image
from ..metrics import SSIM_MIN_SIDE, lpips_distance, psnr, ssim
from .batch import Item, collect_items

__all__ = ["Pair", "Pairing", "pair_images", "score_pairs", "metric_names", "mean_scores", "format_table",
           "scores_csv", "scores_json", "write_csv", "write_json"]


@dataclass(frozen=True)
class Pair:
    """One output image and its reference."""

    output: Path
    reference: Path


class Pairing(NamedTuple):
    """What :func:`pair_images` found: the pairs, and the images (paths as text) that paired with nothing."""

    pairs: list[Pair]
    unpaired_outputs: list[str]
    unpaired_references: list[str]


# -- pairing ------------------------------------------------------------------------------------------
def _images(arg: str, other: str, what: str) -> tuple[list[Item], bool]:
    """The images an argument names (batch items: id and path) and whether it is a single file."""
    path = Path(arg)
    if not glob.has_magic(arg) and not path.exists():
        raise InputError(f"{what} {arg}: no such file or folder")
    other_path = Path(other)
    exclude = other_path if other_path.is_dir() and not glob.has_magic(other) and other_path.resolve() != path.resolve() else None
    return collect_items([arg], exclude=exclude), path.is_file() and not glob.has_magic(arg)


def _key(item_id: str) -> str:
    """An image's key: its relative path without the suffix."""
    path = PurePosixPath(item_id)
    return str(path.with_suffix("")) if path.suffix else str(path)


def _candidates(key: str) -> list[str]:
    """The key itself, then with its last dot-separated parts dropped one at a time (longest first)."""
    path = PurePosixPath(key)
    parts = path.name.split(".")
    return [str(path.with_name(".".join(parts[:n]))) for n in range(len(parts), 0, -1) if parts[:n] != [""]]


def pair_images(outputs: str | Path, references: str | Path) -> Pairing:
    """(pairs, unpaired outputs, unpaired references) of two file / folder / glob arguments, by the
    module's pairing rule. Missing paths, empty folders and two references with one key are InputErrors."""
    outputs, references = str(outputs), str(references)
    outs, out_is_file = _images(outputs, references, "OUTPUTS")
    refs, ref_is_file = _images(references, outputs, "REFERENCES")
    if out_is_file and ref_is_file:
        return Pairing([Pair(outs[0].input, refs[0].input)], [], [])
    by_key: dict[str, Item] = {}
    for ref in refs:
        twin = by_key.get(_key(ref.id))
        if twin is not None:
            raise InputError(f"REFERENCES {references}: {twin.input} and {ref.input} have the same name but for the suffix; "
                             "which one is the reference is ambiguous")
        by_key[_key(ref.id)] = ref
    pairs, unpaired, used = [], [], set()
    for out in outs:
        match = next((by_key[k] for k in _candidates(_key(out.id)) if k in by_key), None)
        if match is None:
            unpaired.append(str(out.input))
            continue
        pairs.append(Pair(out.input, match.input))
        used.add(match.id)
    return Pairing(pairs, unpaired, [str(r.input) for r in refs if r.id not in used])


# -- scoring ------------------------------------------------------------------------------------------
def _as_pair(output: ImageData, reference: ImageData, pair: Pair) -> tuple[torch.Tensor, torch.Tensor]:
    """The two images as tensors of one shape: a size mismatch is an InputError; a grey image scored
    against a colour one is repeated to three channels."""
    x, ref = output.image, reference.image
    if x.shape[-2:] != ref.shape[-2:]:
        raise InputError(f"{pair.output} is {x.shape[-1]}x{x.shape[-2]} but its reference {pair.reference} is "
                         f"{ref.shape[-1]}x{ref.shape[-2]}; an output must have its reference's size")
    if x.shape[0] != ref.shape[0]:
        x, ref = x.expand(3, -1, -1), ref.expand(3, -1, -1)
    return x, ref


def score_pairs(pairs: Sequence[Pair], lpips: bool = False) -> list[dict[str, Any]]:
    """One row per pair (the module's row fields). LPIPS, when asked and unavailable, is None in
    every row, without a warning (:func:`guidedinv.metrics.lpips_status` says why)."""
    rows = []
    for pair in pairs:
        x, ref = _as_pair(read_image(pair.output), read_image(pair.reference), pair)
        row: dict[str, Any] = {"output": str(pair.output), "reference": str(pair.reference),
                               "width": int(x.shape[-1]), "height": int(x.shape[-2]), "psnr": float(psnr(x, ref)),
                               "ssim": float(ssim(x, ref)) if min(x.shape[-2:]) >= SSIM_MIN_SIDE else None}
        if lpips:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                value = lpips_distance(x, ref)
            row["lpips"] = None if value is None else float(value)
        rows.append(row)
    return rows


def metric_names(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The metric columns of ``rows``: psnr, ssim, and lpips when it was asked for."""
    return ["psnr", "ssim", "lpips"] if any("lpips" in r for r in rows) else ["psnr", "ssim"]


def mean_scores(rows: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """Each metric's mean over the rows that have it (None when none has; an identical pair's
    infinite PSNR makes the PSNR mean inf)."""
    out: dict[str, float | None] = {}
    for key in metric_names(rows):
        values = [r[key] for r in rows if r.get(key) is not None]
        out[key] = sum(values) / len(values) if values else None
    return out


# -- tables and files ---------------------------------------------------------------------------------
def _text(value: Any, key: str) -> str:
    if value is None:
        return "-"
    if key == "psnr":
        return "inf" if math.isinf(value) else f"{value:.2f}"
    return f"{value:.4f}"


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A plain-text table: one line per row, then a 'mean of N' line."""
    keys, mean = metric_names(rows), mean_scores(rows)
    head = ["output", "reference", "size", *[{"psnr": "PSNR dB", "ssim": "SSIM", "lpips": "LPIPS"}[k] for k in keys]]
    body = [[r["output"], r["reference"], f"{r['width']}x{r['height']}", *[_text(r[k], k) for k in keys]] for r in rows]
    body.append([f"mean of {len(rows)}", "", "", *[_text(mean[k], k) for k in keys]])
    widths = [max(len(line[i]) for line in [head, *body]) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(head), rule, *map(line, body[:-1]), rule, line(body[-1])])


def scores_csv(rows: Sequence[dict[str, Any]]) -> bytes:
    """CSV: output, reference, width, height and the metrics per row, then a last 'mean' row."""
    keys, mean = metric_names(rows), mean_scores(rows)
    buffer = _io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["output", "reference", "width", "height", *keys])
    for r in [*rows, {"output": "mean", "reference": "", "width": "", "height": "", **mean}]:
        writer.writerow([r["output"], r["reference"], r["width"], r["height"],
                         *["" if r[k] is None else repr(float(r[k])) for k in keys]])
    return buffer.getvalue().encode()


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def scores_json(rows: Sequence[dict[str, Any]], unpaired_outputs: Sequence[str] = (),
                unpaired_references: Sequence[str] = ()) -> bytes:
    """JSON: {"pairs": rows, "mean": {"count", metrics...}, "unpaired_outputs", "unpaired_references"};
    an infinite PSNR (identical images) is null, so the file is strict JSON."""
    mean = {"count": len(rows), **mean_scores(rows)}
    data = {"pairs": [{k: _finite(v) for k, v in r.items()} for r in rows],
            "mean": {k: _finite(v) for k, v in mean.items()},
            "unpaired_outputs": list(unpaired_outputs), "unpaired_references": list(unpaired_references)}
    return (json.dumps(data, indent=1, allow_nan=False) + "\n").encode()


def write_csv(path: str | Path, rows: Sequence[dict[str, Any]]) -> None:
    """:func:`scores_csv` written atomically to ``path``."""
    atomic_write_bytes(path, scores_csv(rows))


def write_json(path: str | Path, rows: Sequence[dict[str, Any]], unpaired_outputs: Sequence[str] = (),
               unpaired_references: Sequence[str] = ()) -> None:
    """:func:`scores_json` written atomically to ``path``."""
    atomic_write_bytes(path, scores_json(rows, unpaired_outputs, unpaired_references))
