"""The ``guidedinv`` command line (typer). Each command is a thin shell over the Python API.

Building the app imports no torch (``guidedinv --version`` and ``--help`` answer in a fraction of
a second): the command modules import torch and the model code inside their command functions
(tests/test_cli_light.py)."""
from __future__ import annotations

import sys
import warnings

import typer
from typer.core import TyperGroup

from .. import __version__
from ..errors import GuidedinvError
from .batch import batch_command
from .bench import bench_command
from .edit import edit_command, invert_command
from .eval import eval_command
from .models import models_app
from .restore import register_restore_commands
from .toy import generate, train_toy
from .train import train_app
from .ui import ui_command

# click's exception classes, found through typer's public BadParameter: typer >= 0.24 vendors click
# (typer._click), older typer uses the click package; both have this hierarchy.
_CLICK = {c.__name__: c for c in typer.BadParameter.__mro__}
_UsageError, _ClickException = _CLICK["UsageError"], _CLICK["ClickException"]
_ARGS_KEY = "guidedinv.args"


def _warning_line(message, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
    typer.echo(f"guidedinv: warning: {_printable(str(message))}", err=True)


class _UserErrorsAsOneLine(TyperGroup):
    """Every command, sub-commands included: a user's mistake (any GuidedinvError, and click's usage
    errors: a bad option value, a missing argument, an unknown option or command) is one line on
    stderr and its exit code, never a traceback or a usage box; Ctrl-C is one line and exit 130.
    Exit codes: 0 ok, 1 some batch items failed, 2 bad input or usage, 3 model problem, 4 download
    problem, 130 interrupted. ``--help`` and a bare ``guidedinv`` still print the full help."""

    def make_context(self, info_name, args, parent=None, **extra):  # type: ignore[no-untyped-def]
        raw = list(args)
        try:
            ctx = super().make_context(info_name, args, parent=parent, **extra)
        except _ClickException as exc:  # an option of the group itself (guidedinv --bogus)
            _one_line(exc, raw)
        ctx.meta[_ARGS_KEY] = raw
        return ctx

    def invoke(self, ctx):  # type: ignore[no-untyped-def]
        try:
            with warnings.catch_warnings():  # a library warning (e.g. guessed model flags) is one line too
                warnings.showwarning = _warning_line
                return super().invoke(ctx)
        except GuidedinvError as exc:
            typer.echo(f"guidedinv: error: {_printable(str(exc))}", err=True)
            ctx.exit(exc.exit_code)
        except _ClickException as exc:  # parsing a command's options happens here, below the group
            _one_line(exc, ctx.meta.get(_ARGS_KEY, []))
        except KeyboardInterrupt:
            typer.echo("guidedinv: interrupted", err=True)
            ctx.exit(130)


def _one_line(exc: Exception, args: list[str]) -> None:
    """Print a click error as ``guidedinv: error: ...`` on one line and exit with its code (2 for usage)."""
    if type(exc).__name__ == "NoArgsIsHelpError":  # a bare command: its help, as before
        raise exc
    message = " ".join(exc.format_message().split())  # type: ignore[attr-defined]
    param = getattr(exc, "param", None)
    value = _typed_value(param, args) if param is not None and type(exc).__name__ == "BadParameter" else None
    if value is not None and message.startswith("Invalid value for "):
        head, sep, rest = message.partition(": ")
        message = f"{head} ({value!r}){sep}{rest}"
    message = message[:1].lower() + message[1:].rstrip(".")
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, _UsageError) and ctx is not None:
        message = f"{message} (see '{ctx.command_path} --help')"
    typer.echo(f"guidedinv: error: {_printable(message)}", err=True)
    raise typer.Exit(getattr(exc, "exit_code", 2))


def _printable(message: str) -> str:
    """One line whatever a message quotes: control characters (a newline or NUL in a file name) escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)


def _typed_value(param: object, args: list[str]) -> str | None:
    """What the user typed for an option (its last occurrence: ``--seed abc``, ``--seed=abc``, ``-b0``)."""
    if getattr(param, "param_type_name", "") != "option":
        return None
    names = [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]
    value = None
    for i, arg in enumerate(args):
        if arg == "--":
            break
        for name in names:
            if arg == name and i + 1 < len(args):
                value = args[i + 1]
            elif name.startswith("--") and arg.startswith(name + "="):
                value = arg[len(name) + 1 :]
            elif not name.startswith("--") and arg.startswith(name) and len(arg) > len(name):
                value = arg[len(name) :]
    return value


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
app.command("edit")(edit_command)
app.command("invert")(invert_command)
app.command("bench")(bench_command)
app.command("batch")(batch_command)
app.command("eval")(eval_command)
app.command("ui")(ui_command)


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
    """Console entry point (see :class:`_UserErrorsAsOneLine` for errors and exit codes). A Ctrl-C
    outside a command (while Python imports, say) is also one line and exit 130."""
    try:
        app(prog_name="guidedinv")
    except KeyboardInterrupt:
        print("guidedinv: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    run()
