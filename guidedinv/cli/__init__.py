"""The ``guidedinv`` command line (typer). Each command is a thin shell over the Python API.

Building the app imports no torch (``guidedinv --version`` and ``--help`` answer in a fraction of
a second): the command modules import torch and the model code inside their command functions
(tests/test_cli_light.py)."""
from __future__ import annotations

import sys

import typer
from typer.core import TyperGroup

from .. import __version__
from ..errors import GuidedinvError
from .batch import batch_command
from .bench import bench_command
from .eval import eval_command
from .models import models_app
from .restore import register_restore_commands
from .toy import generate, train_toy
from .train import train_app


class _UserErrorsAsOneLine(TyperGroup):
    """Every command, sub-commands included: a user's mistake (any GuidedinvError) is one line on
    stderr and its exit code, never a traceback. Exit codes: 0 ok, 1 some batch items failed,
    2 bad input or usage, 3 model problem, 4 download problem, 130 interrupted."""

    def invoke(self, ctx):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except GuidedinvError as exc:
            typer.echo(f"guidedinv: error: {exc}", err=True)
            ctx.exit(exc.exit_code)


app = typer.Typer(
    cls=_UserErrorsAsOneLine,
    name="guidedinv",
    help="Guided diffusion for image editing and inverse problems: one prior, one sampler, pluggable guidance.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(models_app, name="models")


app.add_typer(train_app, name="train")
train_app.command("toy")(train_toy)
app.command("generate")(generate)
register_restore_commands(app)
app.command("bench")(bench_command)
app.command("batch")(batch_command)
app.command("eval")(eval_command)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"guidedinv {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Guided diffusion for image editing and inverse problems."""


@app.command()
def demo(
    scale: float = typer.Option(1.0, help="Classifier-guidance scale s (0 = unguided, 1 = exact posterior)."),
    component: int = typer.Option(1, help="Mixture component (class) to guide towards."),
    samples: int = typer.Option(2000, "-n", help="Number of samples."),
    steps: str = typer.Option("50", help="Respacing: 'N', 'N,M,...' or 'ddimN'."),
    seed: int = typer.Option(0, help="Random seed."),
) -> None:
    """Guide samples of an exact 2-D Gaussian mixture towards one component; print what fraction lands there.

    Needs no network: the prior and the noisy classifier are both exact, so s = 1 must put
    (nearly) every sample in the requested component.
    """
    from ..demo import mixture_demo

    typer.echo(mixture_demo(scale=scale, component=component, samples=samples, steps=steps, seed=seed))


def run() -> None:
    """Console entry point (see :class:`_UserErrorsAsOneLine` for errors and exit codes)."""
    try:
        app(prog_name="guidedinv")
    except KeyboardInterrupt:
        print("guidedinv: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    run()
