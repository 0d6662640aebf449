"""``guidedinv batch RECIPE INPUTS... --out DIR``: restore many images with one recipe (a thin shell
over :mod:`guidedinv.app.batch`)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ..errors import InputError

if TYPE_CHECKING:
    import torch

__all__ = ["batch_command", "check_device"]


def check_device(name: str) -> torch.device:
    """The torch device of a --device value, refused up front (one line, exit 2) when it is not one
    guidedinv computes on (auto, cpu, cuda, cuda:N, mps) or is not on this machine."""
    import torch

    from ..defaults import pick_device

    dev = pick_device(name)
    if dev.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"--device {name}: expected auto, cpu, cuda, cuda:N or mps")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        n = torch.cuda.device_count()
        raise InputError(f"--device {name}: this machine has {n} CUDA device(s) (cuda:0 to cuda:{n - 1})")
    return dev


DTYPES = ("fp32", "fp16", "bf16")


def check_model(model: str, typed: str) -> None:
    """The model a run will load exists (an embedded name, a file or folder, a registry name, a plug-and-play
    denoiser's name), checked before anything is written; the weights load later, only if some item needs them."""
    from ..defaults import EMBEDDED, embedded_path
    from ..errors import ModelError
    from ..models import lookup
    from ..models.registry import lookup_denoiser

    if model in EMBEDDED:
        embedded_path(model)
    elif not Path(model).expanduser().exists() and lookup(model) is None and lookup_denoiser(model) is None:
        raise ModelError(f"{typed}: neither an existing file nor a known model name; `guidedinv models list` shows the names")


class _Bar:
    """A rich progress bar over items, with the steps of the group being restored beneath it."""

    def __init__(self, label: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TimeRemainingColumn(), console=Console(stderr=True), transient=True)
        self.items = self.bar.add_task(label, total=None, visible=False)
        self.steps = self.bar.add_task("steps", total=None, visible=False)
        self.started = False

    def start(self, total: int) -> None:
        self.bar.update(self.items, total=total, visible=True)
        self.bar.start()
        self.started = True

    def advance(self, count: int) -> None:
        self.bar.advance(self.items, count)

    def step(self, index: int, num_steps: int) -> None:
        self.bar.update(self.steps, total=num_steps, completed=index + 1, visible=True)

    def failed(self, item_id: str, message: str) -> None:
        self.bar.console.print(f"guidedinv: item {item_id} failed: {message}", markup=False, highlight=False, soft_wrap=True)

    def note(self, message: str) -> None:
        self.bar.console.print(f"guidedinv: note: {message}", markup=False, highlight=False, soft_wrap=True)

    def stop(self) -> None:
        if self.started:  # a bar never started would print an empty line before an error's one line
            self.bar.stop()


class _Quiet:
    def start(self, total: int) -> None: ...
    def advance(self, count: int) -> None: ...
    def step(self, index: int, num_steps: int) -> None: ...
    def stop(self) -> None: ...

    def failed(self, item_id: str, message: str) -> None:
        typer.echo(f"guidedinv: item {item_id} failed: {message}", err=True)

    def note(self, message: str) -> None:
        typer.echo(f"guidedinv: note: {message}", err=True)


def batch_command(
    recipe: str = typer.Argument(..., help="Task name (inpaint, superres, deblur, denoise) or a recipe .toml file."),
    inputs: list[str] | None = typer.Argument(
        None, show_default=False,
        help="Image files, folders (searched recursively) or quoted glob patterns like 'photos/**/*.jpg'."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: one PNG per item, recipe.toml and report.json."),
    manifest: Path | None = typer.Option(
        None, "--manifest", "-m", show_default="none",
        help="CSV (with a header) or JSON Lines file of items; fields: input, mask, scale, seed, reference, output, id."),
    model: str | None = typer.Option(
        None, "--model", show_default="the recipe's model",
        help="The prior: 'default' (embedded), a registry name or a checkpoint file."),
    model_flags: str | None = typer.Option(None, "--model-flags", show_default=False,
                                           help="Hidden settings of a guided-diffusion checkpoint (num_heads=4 use_new_attention_order=true)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps; under torchrun auto is cuda:LOCAL_RANK."),
    dtype: str = typer.Option("fp32", help="Network precision: fp32, fp16 or bf16."),
    tile: str | None = typer.Option(None, show_default="the recipe's: auto",
                                       help="Network tiles: auto (the model's own: 64 px for the default prior) | 0 (whole image) | N px."),
    batch_size: int = typer.Option(4, "--batch-size", "-b",
                                   help="Images of the same (padded) size restored together in one network call."),
    set_: list[str] | None = typer.Option(
        None, "--set", show_default="none",
        help="Override a recipe setting, KEY=VALUE (repeatable), e.g. --set method=ddnm --set seed=3."),
    simulate: bool = typer.Option(
        False, "--simulate", show_default="off",
        help="Inputs are clean images: degrade them with the recipe (seeded per item) and score against them."),
    quiet: bool = typer.Option(False, "--quiet", "-q", show_default="off", help="No progress bar and no summary; item failures still print."),
    force: bool = typer.Option(
        False, "--force", show_default="off", help="Accept an output folder made with a different recipe (its items are redone)."),
    samples: int | None = typer.Option(
        None, "--samples", show_default="1", help="Posterior samples per item (seeds derived from the item's); the output is "
        "their mean. A sampling method only (not pnp or a classical one)."),
    uncertainty: bool = typer.Option(
        False, "--uncertainty", show_default="off", help="With --samples: also write each item's per-pixel standard deviation "
        "as ID.std.png (a colour map with a scale bar)."),
    save_samples: bool = typer.Option(
        False, "--save-samples", show_default="off", help="With --samples: also write each item's samples as ID.sample-K.png "
        "(K from 0; sample 0 is the one-sample result); an item counts as done only with all of them."),
) -> None:
    """Restore many images with one recipe into an output folder; resumable, with a JSON report.

    Items already complete in the output folder are skipped, so rerunning the same command resumes an interrupted batch. Each item has its own seed (the manifest's, else a hash of the recipe's seed and the item id), so results do not depend on order, batch size or the number of processes. Outputs are named after the item id (its path relative to the folder or glob it came from, or the manifest's output field). One batch at a time works in an output folder: a second is refused at once (exit 2), naming the first's pid, host and start time.

    Examples:

        guidedinv batch inpaint photos/ -o filled/ --set operator.mask=half

        guidedinv batch superres --manifest items.csv --out big/ --batch-size 8

        guidedinv batch deblur 'clean/*.png' --out eval/ --simulate

        torchrun --nproc_per_node=4 -m guidedinv batch denoise scans/ --out clean/

    Exit codes: 0 every item done; 1 some items failed (see report.json); 2 usage or input error (nothing ran); 3 the model could not be loaded; 4 a download failed; 130 interrupted (finished items are kept).
    """
    import json

    from ..app.batch import collect_items, join, run_batch
    from ..app.request import build_request, check_tile
    from ..defaults import load_prior

    if batch_size < 1:
        raise InputError(f"--batch-size {batch_size}: expected a whole number >= 1 (images per network call)")
    if dtype.lower() not in DTYPES:
        raise InputError(f"--dtype {dtype}: expected one of {', '.join(DTYPES)}")
    ranks = None
    bar: _Bar | _Quiet = _Quiet()
    try:
        ranks = join()
        task_file = recipe if recipe.endswith(".toml") else None
        options = []
        if model is not None:
            options.append((f"--model {model}", f"model={json.dumps(model)}"))
        if model_flags is not None:
            options.append((f"--model-flags {model_flags}", f"model_flags={json.dumps(model_flags)}"))
        if tile:
            value = check_tile(tile, "--tile")
            options.append((f"--tile {tile}", f"tile={value}" if isinstance(value, int) else 'tile="auto"'))
        request = build_request(None if task_file else recipe, task_file, options, list(set_ or []))
        if samples is not None:  # after --set: the method decides whether samples spread
            request = request.with_changes([f"samples={samples}"], f"--samples {samples}")
        resolved = dict(request.recipe)
        if Path(request.model).is_file():
            resolved["model"] = str(Path(request.model).resolve())
        items = collect_items(list(inputs or []), manifest, exclude=out)
        if device == "auto" and ranks.world > 1:
            import torch

            device = f"cuda:{ranks.local_rank % max(1, torch.cuda.device_count())}" if torch.cuda.is_available() else "auto"
        check_device(device)
        check_model(str(resolved["model"]), f"--model {model}" if model is not None else f"model {resolved['model']!r} (the recipe's)")
        if not quiet and ranks.rank == 0:
            bar = _Bar("items" if ranks.world == 1 else f"rank 0 of {ranks.world}")
        result = run_batch(items, resolved, lambda: load_prior(str(resolved["model"]), device, dtype, request.tile,
                                                               flags=request.model_flags or None, flags_from="--model-flags"), out,
                           batch_size=batch_size, simulate=simulate, force=force, ranks=ranks, progress=bar,
                           reads=[manifest] if manifest is not None else [], uncertainty=uncertainty,
                           save_samples=save_samples)
    except KeyboardInterrupt:
        typer.echo("guidedinv: interrupted; finished items are kept, rerun the same command to resume", err=True)
        raise typer.Exit(130) from None
    finally:  # a GuidedinvError goes on to the app's handler: one line and its exit code
        bar.stop()
        if ranks is not None:
            ranks.close()
    if not quiet and ranks.rank == 0:
        total = result.done + result.skipped + result.failed
        typer.echo(f"{result.done} restored, {result.skipped} already done, {result.failed} failed of {total} items "
                   f"-> {result.report}")
    raise typer.Exit(result.exit_code)
