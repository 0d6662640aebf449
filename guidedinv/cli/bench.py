"""``guidedinv bench``: guided methods and classical baselines on the same crops, one table."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer

from ..app.methods import classical_names, guided_names  # the registry: no torch
from ..errors import InputError

__all__ = ["bench_command"]

# the harness's tasks (guidedinv.bench.harness.TASKS, which imports torch); tests/test_bench.py checks the list
TASK_NAMES = ("superres4", "deblur-gauss", "deblur-motion", "inpaint-box", "inpaint-random", "denoise")


def _ints(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{what} expects comma-separated integers, e.g. 20,50,100; got {text!r}") from None
    if not values:
        raise InputError(f"{what} is empty")
    return values


def _names(text: str) -> list[str] | None:
    names = [v.strip() for v in text.split(",") if v.strip()]
    return None if not names or names == ["all"] else names


def bench_command(
    images: list[Path] = typer.Argument(..., help="Image folders (their files in name order) or image files."),
    tasks: str = typer.Option("all", "--tasks", help=f"Comma-separated: {', '.join(TASK_NAMES)}; 'all' for every one.",
                              show_default=True),
    methods: str = typer.Option("all", "--methods", help=f"Comma-separated guided methods ({', '.join(guided_names())}) and "
                                f"baselines ({', '.join(classical_names())}); 'all': every one that applies to a task.",
                                show_default=True),
    nfe: str = typer.Option("20,50,100", "--nfe", help="Network-evaluation budgets of each guided method (each method "
                            "turns a budget into steps of its own grid; forward calls and backward passes are counted).",
                            show_default=True),
    method_nfe: list[str] = typer.Option([], "--method-nfe", help="Budgets for one method instead of --nfe, e.g. "
                                         "--method-nfe dps=20 (repeatable).", show_default=False),
    limit: int = typer.Option(0, "--limit", help="The first N images of each folder (0: all).", show_default=True),
    crop: int = typer.Option(256, "--crop", help="Side of the centred square crop (shorter sides: rounded down to x8).",
                             show_default=True),
    model: str = typer.Option("default", "--model", help="Prior: 'default' (embedded), a registry name, a checkpoint file, "
                              "or 'random-tiny' (an untrained seeded network: exercises the harness only).", show_default=True),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N | mps.", show_default=True),
    seed: int = typer.Option(0, "--seed", help="Added to every image's own seed (crc32 of dataset/file): the sampler's "
                             "seed; the measurement noise's is derived from it.", show_default=True),
    sigma_y: float = typer.Option(-1.0, "--sigma-y", help="Measurement noise of every task; -1: each task's "
                                  "(0.01, denoising 0.05).", show_default=True),
    set_: list[str] = typer.Option([], "--set", help="Recipe override for every task, e.g. --set methods.dps.zeta=0.5 "
                                   "(repeatable).", show_default=False),
    lpips: bool = typer.Option(True, "--lpips/--no-lpips", help="Compute LPIPS when the lpips package and its cached "
                               "weights are there.", show_default=True),
    out: Path = typer.Option(Path("runs/bench"), "--out", "-o", help="Folder for results.csv, summary.md/csv, config.json, "
                             "recipes.toml and plots.", show_default=True),
    doc: Path = typer.Option(None, "--doc", help="Also write this markdown page (e.g. docs/benchmarks.md), with the "
                             "command line at the top and its plots in a folder beside it.", show_default=False),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No per-run progress lines.", show_default=True),
) -> None:
    """Benchmark guided methods against classical baselines: PSNR, SSIM, LPIPS, consistency, time, NFE, memory.

    Fixed centre crops and per-image seeds, so a rerun gives the same numbers (timings apart).

    Example (the validation protocol, kept small for a CPU):

        guidedinv bench ../shared/data/val/cbsd68 ../shared/data/val/set14 --limit 2 --nfe 20,50,100 --doc docs/benchmarks.md
    """
    from ..bench.harness import TASKS, run_bench
    from ..bench.report import write_outputs

    per_method = {}
    for item in method_nfe:
        name, sep, values = item.partition("=")
        if not sep:
            raise InputError(f"--method-nfe expects METHOD=N[,N...], got {item!r}")
        per_method[name.strip()] = _ints(values, f"--method-nfe {name}")
    if limit < 0 or crop < 16:
        raise InputError("--limit must be >= 0 and --crop >= 16")
    log = None if quiet else (lambda msg: typer.echo(msg, err=True))
    result = run_bench(images, tasks=_names(tasks) or list(TASKS), methods=_names(methods), nfes=_ints(nfe, "--nfe"),
                       method_nfe=per_method, limit=limit or None, crop=crop, model=model, device=device, seed=seed,
                       sets=set_, sigma_y=None if sigma_y < 0 else sigma_y, use_lpips=lpips, log=log)
    result.config["command"] = "guidedinv " + shlex.join(sys.argv[1:]) if Path(sys.argv[0]).name in ("guidedinv", "__main__.py") \
        else None
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)
    written = write_outputs(result, out, doc)
    typer.echo((out / "summary.md").read_text())
    typer.echo("wrote " + ", ".join(str(p) for p in written))
