"""The command line's shared options: output and log settings, the spec argument, the
region and confirmation options, and the checks of a ``--region`` against the spec."""

from __future__ import annotations

import dataclasses
import enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from phoenix.errors import InputError

if TYPE_CHECKING:
    from phoenix.spec import Spec


class OutputFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"


class LogFormat(enum.StrEnum):
    AUTO = "auto"
    CONSOLE = "console"
    JSON = "json"


class LogLevel(enum.StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


_GLOBAL = "Global options (also accepted before the command)"

SpecArg = Annotated[
    str,
    typer.Argument(metavar="SPEC", help="Path to the deploy spec (phoenix.yaml)."),
]
RegionOpt = Annotated[
    str | None,
    typer.Option("--region", "-r", help="Region to act in (default: the spec's first)."),
]
ServingRegionOpt = Annotated[
    str | None,
    typer.Option(
        "--region", "-r",
        help="Region to act in, with no failover and no DNS change (default: where the"
        " app's DNS record points, else the spec's first).",
    ),
]
EnvOpt = Annotated[
    str | None,
    typer.Option(
        "--env", "-e", metavar="NAME", show_default=False,
        help="The environment: the spec's environments.NAME overlay (and a"
        " <spec>.NAME.yaml beside it) merged over the spec; its own instance of the app.",
    ),
]
YesOpt = Annotated[
    bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (needed without a TTY).")
]
OutputOpt = Annotated[
    OutputFormat | None,
    typer.Option(
        "--output", "-o", help="text, or json: one JSON document on stdout.",
        rich_help_panel=_GLOBAL, show_default=False,
    ),
]
LogFormatOpt = Annotated[
    LogFormat | None,
    typer.Option(
        "--log-format", help="Logs (stderr): auto = console on a TTY, else JSON lines.",
        rich_help_panel=_GLOBAL, show_default=False,
    ),
]
LogLevelOpt = Annotated[
    LogLevel | None,
    typer.Option("--log-level", help="Log level.", rich_help_panel=_GLOBAL, show_default=False),
]


@dataclasses.dataclass
class Globals:
    """Options given before the command (``phoenix --output json deploy ...``)."""

    output: OutputFormat = OutputFormat.TEXT
    log_format: LogFormat = LogFormat.AUTO
    log_level: LogLevel | None = None  # None: info, or warning under a progress display
    metrics_file: Path | None = None  # --metrics-file: where one-shot commands add metrics
    env: str | None = None  # --env (or PHOENIX_ENV): the spec's environment to act on


def checked_region(spec: Spec, region: str | None) -> str:
    """The region to act in; an unknown one is refused before any provider is opened."""
    if region is None:
        return spec.regions[0]
    if region not in spec.regions:
        raise InputError(
            f"--region {region}: not one of the spec's regions ({', '.join(spec.regions)})"
        )
    return region


def given_region(spec: Spec, region: str | None) -> str | None:
    """A --region that was given, checked; None lets the library pick the serving one."""
    return None if region is None else checked_region(spec, region)
