"""The typer app: its global options, its commands (in the order ``--help`` lists them),
and ``main``, the ``phoenix`` console script, which handles SIGTERM like Ctrl-C."""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from phoenix.cli import commands_deploy, commands_inspect, commands_ops, watch_command
from phoenix.cli.options import Globals, LogFormat, LogLevel, OutputFormat

app = typer.Typer(
    name="phoenix",
    help=(
        "Deploy applications the Phoenix-server way: build fresh servers from a golden"
        " image, prove them healthy, move traffic, retire the old ones, roll back on failure."
        "\n\nExit codes: 0 converged, 1 failed and rolled back, 2 bad input,"
        " 3 needs a person, 4 locked by another deploy, 130 interrupted."
    ),
    no_args_is_help=True,
    add_completion=False,
    # Typer's pretty tracebacks could show local variables (secret values among them).
    pretty_exceptions_enable=False,
)


# --- global options ---------------------------------------------------------------------


def _version(value: bool) -> None:
    if value:
        from importlib import metadata

        try:
            version = metadata.version("phoenix-deploy")
        except metadata.PackageNotFoundError:
            version = "unknown"
        typer.echo(f"phoenix {version}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    output: Annotated[
        OutputFormat,
        typer.Option("--output", "-o", help="text, or json: one JSON document on stdout."),
    ] = OutputFormat.TEXT,
    log_format: Annotated[
        LogFormat,
        typer.Option(
            "--log-format", help="Logs (stderr): auto = console on a TTY, else JSON lines."
        ),
    ] = LogFormat.AUTO,
    log_level: Annotated[
        LogLevel | None,
        typer.Option(
            "--log-level",
            help="Log level (default: info; warning while a TTY shows deploy progress).",
            show_default=False,
        ),
    ] = None,
    metrics_file: Annotated[
        Path | None,
        typer.Option(
            "--metrics-file", envvar="PHOENIX_METRICS_FILE", metavar="PATH",
            help="deploy, rollback, repave, failover, failback: add what they did to PATH"
            " in the Prometheus text format (for node_exporter's textfile collector).",
        ),
    ] = None,
    env: Annotated[
        str | None,
        typer.Option(
            "--env", "-e", envvar="PHOENIX_ENV", metavar="NAME", show_default=False,
            help="The spec's environment to act on (environments.NAME; also per command).",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Phoenix deploys: fresh servers every time, traffic moved only to proven ones."""
    del version
    ctx.obj = Globals(output, log_format, log_level, metrics_file, env)


# --- commands ---------------------------------------------------------------------------

for _command in (
    commands_inspect.validate,
    commands_inspect.render,
    commands_inspect.plan,
    commands_deploy.deploy,
    commands_deploy.failover,
    commands_deploy.failback,
    commands_inspect.status,
    commands_deploy.rollback,
    commands_deploy.repave,
    watch_command.watch,
    commands_inspect.history,
    commands_ops.destroy,
    commands_ops.unlock,
    commands_inspect.schema,
):
    app.command()(_command)
app.add_typer(commands_ops.image_app, name="image")
app.add_typer(commands_ops.drill_app, name="drill")


def main() -> None:
    """Entry point of the ``phoenix`` console script; exits with the command's code.

    SIGTERM (what CI runners and process supervisors send to cancel a job) is handled
    like Ctrl-C, so a cancelled pipeline rolls back to the old release before exiting.
    """
    signal.signal(signal.SIGTERM, _terminate)
    app(prog_name="phoenix")


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
