"""``guidedinv eval OUTPUTS REFERENCES``: score restored images against their references (PSNR, SSIM,
optionally LPIPS) through :mod:`guidedinv.metrics`, the one implementation the benchmark and the
batch report use.

Pairing rule (also in the command's help). OUTPUTS and REFERENCES are each an image file, a folder
(searched recursively) or a quoted glob pattern, found as ``guidedinv batch`` finds its inputs
(:func:`guidedinv.app.batch.collect_items`). Every image has a key: its path relative to the folder (or
to the glob's fixed leading folder; a file given by name: its file name) without the suffix, so
``out/sub/foo.superres.png`` found in ``out/`` has the key ``sub/foo.superres``. An output pairs
with the reference whose key is the output's key exactly, else the output's key with its last
dot-separated parts dropped one at a time (``sub/foo.superres`` -> ``sub/foo``): ``foo.png``,
``foo.superres.png`` and ``foo.ddnm.x4.png`` all pair with the reference ``foo.png``. Two files
given by name are always one pair, whatever their names. Images that pair with nothing are
reported; the command fails when nothing pairs (or, with ``--strict``, when anything is unpaired).
"""
from __future__ import annotations

import csv
import io as _io
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Optional, Sequence

import typer

from ..errors import InputError

__all__ = ["Pair", "pair_images", "score_pairs", "eval_command"]

SHOWN_UNPAIRED = 5  # names listed per kind of unpaired image; the rest are counted


@dataclass(frozen=True)
class Pair:
    """One output image and its reference."""

    output: Path
    reference: Path


def _images(arg: str, other: str, what: str) -> tuple[list, bool]:
    """The images an argument names (batch items: id and path) and whether it is a single file."""
    import glob

    from ..app.batch import collect_items

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


def pair_images(outputs: str, references: str) -> tuple[list[Pair], list[str], list[str]]:
    """(pairs, unpaired outputs, unpaired references) of two file / folder / glob arguments, by the
    module's pairing rule. Missing paths, empty folders and two references with one key are InputErrors."""
    outs, out_is_file = _images(outputs, references, "OUTPUTS")
    refs, ref_is_file = _images(references, outputs, "REFERENCES")
    if out_is_file and ref_is_file:
        return [Pair(outs[0].input, refs[0].input)], [], []
    by_key: dict[str, Any] = {}
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
    return pairs, unpaired, [str(r.input) for r in refs if r.id not in used]


def _as_pair(output: Any, reference: Any, pair: Pair) -> tuple[Any, Any]:
    """The two images as tensors of one shape: a size mismatch is an InputError; a grey image scored
    against a colour one is repeated to three channels."""
    x, ref = output.image, reference.image
    if x.shape[-2:] != ref.shape[-2:]:
        raise InputError(f"{pair.output} is {x.shape[-1]}x{x.shape[-2]} but its reference {pair.reference} is "
                         f"{ref.shape[-1]}x{ref.shape[-2]}; an output must have its reference's size")
    if x.shape[0] != ref.shape[0]:
        x, ref = x.expand(3, -1, -1), ref.expand(3, -1, -1)
    return x, ref


def score_pairs(pairs: Sequence[Pair], use_lpips: bool = False) -> list[dict[str, Any]]:
    """One row per pair: names, size, PSNR (dB; inf for identical images), SSIM (None when a side is
    under 11 px) and, when asked, LPIPS (None when unavailable). Alpha channels are not scored."""
    from ..io import read_image
    from ..metrics import SSIM_MIN_SIDE, lpips_distance, psnr, ssim

    rows = []
    for pair in pairs:
        x, ref = _as_pair(read_image(pair.output), read_image(pair.reference), pair)
        row: dict[str, Any] = {"output": str(pair.output), "reference": str(pair.reference),
                               "width": int(x.shape[-1]), "height": int(x.shape[-2]), "psnr": float(psnr(x, ref)),
                               "ssim": float(ssim(x, ref)) if min(x.shape[-2:]) >= SSIM_MIN_SIDE else None}
        if use_lpips:
            with warnings.catch_warnings():  # unavailability is said once, by the command
                warnings.simplefilter("ignore", RuntimeWarning)
                value = lpips_distance(x, ref)
            row["lpips"] = None if value is None else float(value)
        rows.append(row)
    return rows


def _mean(rows: list[dict[str, Any]], key: str) -> float | None:
    """Mean over the rows that have the value (an identical pair's infinite PSNR makes the mean inf)."""
    values = [r[key] for r in rows if r.get(key) is not None]
    return sum(values) / len(values) if values else None


def _metrics(use_lpips: bool) -> list[str]:
    return ["psnr", "ssim", "lpips"] if use_lpips else ["psnr", "ssim"]


def _text(value: Any, key: str) -> str:
    if value is None:
        return "-"
    if key == "psnr":
        return "inf" if math.isinf(value) else f"{value:.2f}"
    return f"{value:.4f}"


def _table(rows: list[dict[str, Any]], mean: dict[str, Any], keys: list[str]) -> str:
    head = ["output", "reference", "size", *[{"psnr": "PSNR dB", "ssim": "SSIM", "lpips": "LPIPS"}[k] for k in keys]]
    body = [[r["output"], r["reference"], f"{r['width']}x{r['height']}", *[_text(r[k], k) for k in keys]] for r in rows]
    body.append([f"mean of {len(rows)}", "", "", *[_text(mean[k], k) for k in keys]])
    widths = [max(len(line[i]) for line in [head, *body]) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(head), rule, *map(line, body[:-1]), rule, line(body[-1])])


def _csv(rows: list[dict[str, Any]], mean: dict[str, Any], keys: list[str]) -> bytes:
    buffer = _io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["output", "reference", "width", "height", *keys])
    for r in [*rows, {"output": "mean", "reference": "", "width": "", "height": "", **mean}]:
        writer.writerow([r["output"], r["reference"], r["width"], r["height"],
                         *["" if r[k] is None else repr(float(r[k])) for k in keys]])
    return buffer.getvalue().encode()


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _json(rows: list[dict[str, Any]], mean: dict[str, Any], unpaired: tuple[list[str], list[str]]) -> bytes:
    data = {"pairs": [{k: _finite(v) for k, v in r.items()} for r in rows],
            "mean": {k: _finite(v) for k, v in mean.items()},
            "unpaired_outputs": unpaired[0], "unpaired_references": unpaired[1]}
    return (json.dumps(data, indent=1, allow_nan=False) + "\n").encode()


def _listed(paths: list[str]) -> str:
    shown = ", ".join(paths[:SHOWN_UNPAIRED])
    return shown + (f" and {len(paths) - SHOWN_UNPAIRED} more" if len(paths) > SHOWN_UNPAIRED else "")


def eval_command(
    outputs: str = typer.Argument(..., help="Restored images: an image file, a folder (searched recursively) or a quoted "
                                  "glob pattern like 'out/*.png'."),
    references: str = typer.Argument(..., help="Clean reference images: an image file, a folder or a quoted glob pattern."),
    use_lpips: bool = typer.Option(False, "--lpips/--no-lpips", show_default="off",
                                   help="Also LPIPS (AlexNet; needs the lpips package and the backbone weights in torch's "
                                        "hub cache: nothing is downloaded; without them it is skipped with one message)."),
    csv_file: Optional[Path] = typer.Option(None, "--csv", show_default="none", metavar="FILE",
                                            help="Also write the rows and a last 'mean' row to this CSV file."),
    json_file: Optional[Path] = typer.Option(None, "--json", show_default="none", metavar="FILE",
                                             help="Also write the rows, the means and the unpaired images to this JSON file "
                                                  "(an identical pair's infinite PSNR is null there)."),
    strict: bool = typer.Option(False, "--strict", show_default="off",
                                help="Fail when any output or reference is unpaired (default: report them and fail only "
                                     "when nothing pairs)."),
) -> None:
    """Score restored images against their references: PSNR and SSIM per image and their mean, optionally LPIPS.

    Pairing: an image's key is its path relative to the folder (or glob) it was found in, or a given file's name, without the suffix. An output pairs with the reference of the same key, else of its key with the last dot-separated parts dropped one at a time, so foo.png, foo.superres.png and foo.ddnm.x4.png all pair with foo.png. Two files given by name are one pair whatever their names. Unpaired images are listed on stderr.

    Metrics (guidedinv.metrics, as in the benchmark and the batch report): images in [0, 1], the output clipped; PSNR = 10 log10(1 / MSE) over all pixels and channels; SSIM with Wang et al.'s 11x11 Gaussian window per channel, averaged ('-' under 11 px a side); a grey image scored against a colour one is repeated to three channels; alpha is not scored. Sizes must match.

    Examples:

        guidedinv eval coffee_x4.superres.png sample_images/coffee.png

        guidedinv eval restored/ sample_images/ --csv scores.csv

        guidedinv eval 'out/*.png' refs/ --json scores.json --strict

    Exit codes: 0 scored; 2 a missing path, a size mismatch, nothing paired (with --strict: anything unpaired).
    """
    from ..io import atomic_write_bytes
    from ..metrics import lpips_status

    pairs, lone_outputs, lone_refs = pair_images(outputs, references)
    if not pairs:
        raise InputError(f"no output in {outputs} pairs with a reference in {references} (an output foo.TASK.png or foo.png "
                         "pairs with the reference foo.png; see guidedinv eval --help)")
    if strict and (lone_outputs or lone_refs):
        what = [f"outputs without a reference: {_listed(lone_outputs)}"] if lone_outputs else []
        what += [f"references without an output: {_listed(lone_refs)}"] if lone_refs else []
        raise InputError(f"--strict: {'; '.join(what)}")
    for paths, what in ((lone_outputs, "output(s) without a reference"), (lone_refs, "reference(s) without an output")):
        if paths:
            typer.echo(f"guidedinv: {len(paths)} {what}, not scored: {_listed(paths)}", err=True)
    if use_lpips:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            _, reason = lpips_status()
        if reason is not None:
            typer.echo(f"guidedinv: {reason}", err=True)
    rows = score_pairs(pairs, use_lpips)
    keys = _metrics(use_lpips)
    mean = {k: _mean(rows, k) for k in keys}
    typer.echo(_table(rows, mean, keys))
    if csv_file is not None:
        atomic_write_bytes(csv_file, _csv(rows, mean, keys))
    if json_file is not None:
        atomic_write_bytes(json_file, _json(rows, {"count": len(rows), **mean}, (lone_outputs, lone_refs)))
