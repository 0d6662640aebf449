"""``guidedinv eval OUTPUTS REFERENCES``: score restored images against their references (PSNR, SSIM,
optionally LPIPS). A shell over :mod:`guidedinv.app.evaluate` (pairing by name, scoring, the table
and the CSV / JSON files), which scripts can call directly; the pairing rule is written there and
in the command's help. Its own imports are light (typer): torch and the metrics load when the
command runs, so building the command line does not pay for them.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import typer

from ..errors import InputError

__all__ = ["eval_command"]

SHOWN_UNPAIRED = 5  # names listed per kind of unpaired image; the rest are counted


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
    csv_file: Path | None = typer.Option(None, "--csv", show_default="none", metavar="FILE",
                                            help="Also write the rows and a last 'mean' row to this CSV file."),
    json_file: Path | None = typer.Option(None, "--json", show_default="none", metavar="FILE",
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
    from ..app.evaluate import format_table, pair_images, score_pairs, write_csv, write_json
    from ..metrics import lpips_status

    pairs, lone_outputs, lone_refs = pair_images(outputs, references)
    if not pairs:
        raise InputError(f"no output in {outputs} pairs with a reference in {references} (an output foo.TASK.png or foo.png "
                         "pairs with the reference foo.png; see guidedinv eval --help)")
    if strict and (lone_outputs or lone_refs):
        what = [f"outputs without a reference: {_listed(lone_outputs)}"] if lone_outputs else []
        what += [f"references without an output: {_listed(lone_refs)}"] if lone_refs else []
        raise InputError(f"--strict: {'; '.join(what)}")
    from ..app.outputs import Read, Write, check_paths

    reads = [Read("a scored image", Path(p)) for pair in pairs for p in (pair.output, pair.reference)] + [Read("an image", Path(p)) for p in (*lone_outputs, *lone_refs)]
    writes = [Write("--csv", csv_file, (".csv",))] if csv_file is not None else []
    writes += [Write("--json", json_file, (".json",))] if json_file is not None else []
    check_paths(reads, writes)  # before any scoring: nothing is written over an image
    for paths, what in ((lone_outputs, "output(s) without a reference"), (lone_refs, "reference(s) without an output")):
        if paths:
            typer.echo(f"guidedinv: {len(paths)} {what}, not scored: {_listed(paths)}", err=True)
    if use_lpips:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            _, reason = lpips_status()
        if reason is not None:
            typer.echo(f"guidedinv: {reason}", err=True)
    rows = score_pairs(pairs, lpips=use_lpips)
    typer.echo(format_table(rows))
    if csv_file is not None:
        write_csv(csv_file, rows)
    if json_file is not None:
        write_json(json_file, rows, lone_outputs, lone_refs)
