"""``guidedinv ui``: the local web page (guidedinv.ui). Importing this module imports neither torch
nor the server."""
from __future__ import annotations

import typer

__all__ = ["ui_command"]


def ui_command(
    host: str = typer.Option("127.0.0.1", help="Address to listen on: the loopback address keeps the page to this computer; "
                             "0.0.0.0 opens it to the network (anyone who can reach it can run jobs)."),
    port: int = typer.Option(7860, help="Port (0: any free port; the start line says which)."),
    model: str | None = typer.Option(None, help="Prior: 'default' (embedded), a registry name or a checkpoint file.",
                                     show_default="default"),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N | mps."),
) -> None:
    """Start a local web page to paint a mask or strokes on an image and restore or edit it (inpaint, edit,
    superres, deblur, denoise), with per-step progress, a before / after view and the result as PNG with its recipe.

    Jobs run one at a time (two tabs are queued, not mixed); every file the page writes is in a temporary folder removed when the server stops.

    Example:

        guidedinv ui            # then open http://127.0.0.1:7860/
    """
    from ..errors import InputError
    from .restore import check_device_dtype

    check_device_dtype(device, "fp32")
    if not 0 <= port <= 65535:
        raise InputError(f"--port {port}: expected 0-65535 (0: any free port)")
    from ..ui.server import serve

    try:
        serve(host, port, model, device, echo=typer.echo)
    except KeyboardInterrupt:
        typer.echo("guidedinv ui: stopped", err=True)
