"""The ``phoenix`` command line: parse arguments, call the library, render the result.

This is the only module that knows about a terminal (typer for parsing, rich for the
progress display); every decision is made by ``phoenix.api``. What shapes it:

* **stdout is for results.** Text reports or, with ``--output json``, exactly one JSON
  document (the result's fields plus ``exit_code``, or ``{"error": ...}``). Logs,
  progress and error text go to stderr, so ``phoenix --output json deploy | jq`` works.
* **The exit code is the contract with CI** (``phoenix.errors.ExitCode``): 0 converged,
  1 failed and rolled back, 2 bad input, 3 needs a person, 4 locked, 130 interrupted.
  A ``PhoenixError`` never shows a Python traceback: it is a message for a person.
* **Secrets never reach the terminal.** Once a spec is loaded, everything printed,
  including error messages and JSON, passes through ``secret_mask.mask`` with the spec's
  secret var values (``phoenix render --show-secrets`` is the one deliberate exception).
* **In a GitHub Actions step** (``GITHUB_ACTIONS=true``) a failure is also printed as
  ``::error`` annotations (at the spec's or template's line), and the outcome of
  validate, plan and the commands that change the cloud is appended to the job summary
  (``phoenix.github`` renders both).

Global options (``--output``, ``--log-format``, ``--log-level``) go before the command
(``phoenix --output json deploy``) and are also accepted after it (``phoenix deploy
phoenix.yaml --output json``); the one after the command wins.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import io
import json
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, TextIO, cast

import typer

from phoenix import api_calls, github
from phoenix.errors import (
    ExitCode,
    InputError,
    LeaseLost,
    OutcomeError,
    PhoenixError,
    SpecError,
)

# Start-up time (issue 15): `phoenix --help` and `--version` must not pay for the library
# (pydantic, jinja2, httpx, structlog, prometheus_client, the provider SDKs) nor for rich,
# so each command imports what it uses when it runs; these names are for type checking.
if TYPE_CHECKING:
    from rich.console import Console
    from rich.status import Status

    from phoenix import api
    from phoenix import watch as watch_module
    from phoenix.engine import DeployResult, Event, EventSink
    from phoenix.records import DeployRecord
    from phoenix.spec import Spec

__all__ = ["app", "main"]


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
class _Globals:
    """Options given before the command (``phoenix --output json deploy ...``)."""

    output: OutputFormat = OutputFormat.TEXT
    log_format: LogFormat = LogFormat.AUTO
    log_level: LogLevel | None = None  # None: info, or warning under a progress display
    metrics_file: Path | None = None  # --metrics-file: where one-shot commands add metrics


class _Stderr(io.TextIOBase):
    """The current ``sys.stderr``, looked up at each write.

    Logs must follow stderr when rich's live display redirects it (log lines then print
    above the spinner instead of through it) and when a test runner swaps it.
    """

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        try:
            return sys.stderr.isatty()
        except (AttributeError, ValueError):
            return False


class _Session:
    """One command's output: stdout results, stderr messages, secrets masked in both."""

    def __init__(
        self, output: OutputFormat, metrics_file: Path | None = None, command: str = ""
    ) -> None:
        self.output = output
        self.secrets: list[str] = []
        self.metrics_file = metrics_file
        self._calls_at_start = api_calls.snapshot()
        self.command = command
        self.spec_file: str | None = None
        # In a GitHub Actions step: a job summary and ``::error`` annotations as well.
        self.github = github.active()

    def record(self, result: DeployResult, error: PhoenixError | None = None) -> None:
        """Add the action to the GitHub job summary (in a workflow) and, with
        ``--metrics-file``, it and this run's API calls to that file. A failure to is a
        warning: the deploy's outcome, not its metrics, sets the exit."""
        self.summarize(lambda: github.result_summary(
            self.command, result, _problems(error) if error is not None else (),
            mask=self.mask))
        if self.metrics_file is None:
            return
        from phoenix import textfile

        now = api_calls.snapshot()
        calls = {key: n - self._calls_at_start.get(key, 0) for key, n in now.items()
                 if n != self._calls_at_start.get(key, 0)}
        try:
            textfile.record_action(
                self.metrics_file, app=result.app, action=result.action,
                outcome=result.outcome, seconds=result.seconds, finished=datetime.now(UTC),
                api_calls=calls)
        except (InputError, OSError) as exc:
            self.err(f"warning: the metrics were not written: {exc}")

    @property
    def json(self) -> bool:
        return self.output is OutputFormat.JSON

    def load(self, path: str) -> Spec:
        """Load the spec; from now on its secret values are masked in all output."""
        from phoenix import log as plog
        from phoenix.spec_loader import load_spec

        self.spec_file = path
        spec = load_spec(path)
        self.secrets = spec.secret_values
        plog.register_secrets(self.secrets)
        return spec

    def load_many(self, paths: Sequence[str]) -> list[Spec]:
        """Every spec named (a folder: every ``*.yaml`` in it); all their secrets masked."""
        from phoenix import log as plog
        from phoenix.spec_loader import load_spec

        files: list[str] = []
        for path in paths:
            folder = Path(path)
            if folder.is_dir():
                found = sorted(str(p) for p in folder.glob("*.y*ml") if p.is_file())
                if not found:
                    raise InputError(f"{path}: a folder with no *.yaml spec in it")
                files += found
            else:
                files.append(path)
        specs = [load_spec(file) for file in files]
        self.secrets = [value for spec in specs for value in spec.secret_values]
        plog.register_secrets(self.secrets)
        return specs

    def summarize(self, markdown: Callable[[], str]) -> None:
        """In a GitHub Actions step of a summarized command: append ``markdown()`` (its
        values masked as it renders them) to the job summary. A failure to is a warning."""
        if not self.github or self.command not in github.SUMMARIZED:
            return
        try:
            github.append_summary(self.mask(markdown()))
        except Exception as exc:  # the summary never changes the command's outcome
            self.err(f"warning: the job summary was not written: {exc}")

    def annotate(self, error: PhoenixError | str) -> None:
        """In a GitHub Actions step: ``::error`` annotations for ``error``, at the spec's
        or template's line when it has one. On stdout (stderr with ``--output json``,
        which the runner reads as well, so stdout stays one JSON document)."""
        if not self.github:
            return
        title = f"phoenix {self.command}".strip()
        notes = ([github.Annotation(self.mask(error), title=title)] if isinstance(error, str)
                 else github.error_annotations(error, title=title, mask=self.mask))
        for note in notes:
            typer.echo(note.command(), err=self.json)

    def mask(self, text: str) -> str:
        if not self.secrets:
            return text
        from phoenix.secret_mask import mask

        return mask(text, self.secrets)

    def out(self, text: str = "", *, masked: bool = True) -> None:
        typer.echo(self.mask(text) if masked else text)

    def err(self, text: str) -> None:
        typer.echo(self.mask(text), err=True)

    def emit(self, data: dict[str, Any], *, masked: bool = True) -> None:
        typer.echo(json.dumps(self._masked(data) if masked else data, indent=2, default=str))

    def emit_line(self, data: dict[str, Any]) -> None:
        """One JSON document on one line (a stream of them: ``watch``)."""
        typer.echo(json.dumps(self._masked(data), default=str))

    def done(
        self, data: dict[str, Any], text: str | Sequence[str], *, masked: bool = True
    ) -> None:
        """Print a successful command's result (exit code 0)."""
        if self.json:
            self.emit({**data, "exit_code": int(ExitCode.OK)}, masked=masked)
        else:
            self.out(text if isinstance(text, str) else "\n".join(text), masked=masked)

    def fail(self, exc: PhoenixError) -> int:
        """Report ``exc`` (stderr text; in json mode also the stdout document); its code."""
        code = int(exc.exit_code)
        for line in _problems(exc):
            self.err(f"error: {line}")
        self.annotate(exc)
        result = _deploy_result(exc)
        if result is not None:
            self.record(result, exc)
        else:
            self.summarize(lambda: github.failure_summary(
                self.command, self.spec_file, code, _problems(exc), mask=self.mask))
        if result is not None and not self.json:
            self.out("\n".join(_deploy_text(result)))
        if self.json:
            error: dict[str, Any] = {
                "type": type(exc).__name__,
                "message": str(exc),
                "exit_code": code,
            }
            if isinstance(exc, SpecError):
                error["problems"] = list(exc.problems)
            data = dataclasses.asdict(result) if result is not None else {}
            self.emit({**data, "error": error, "exit_code": code})
        return code

    def fail_other(self, name: str, message: str, code: ExitCode) -> int:
        """Report a failure that is not a ``PhoenixError`` (interrupt, bug)."""
        self.err(f"error: {message}")
        self.annotate(message)
        self.summarize(lambda: github.failure_summary(
            self.command, self.spec_file, int(code), [message], mask=self.mask))
        if self.json:
            self.emit(
                {
                    "error": {"type": name, "message": message, "exit_code": int(code)},
                    "exit_code": int(code),
                }
            )
        return int(code)

    def _masked(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, dict):
            return {self._masked(k): self._masked(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._masked(v) for v in value]
        return value


def _problems(exc: PhoenixError) -> list[str]:
    """What went wrong, one line each: a spec's problems, else the message's lines."""
    problems = exc.problems if isinstance(exc, SpecError) else str(exc).splitlines()
    return list(problems) or [type(exc).__name__]


def _deploy_result(exc: PhoenixError) -> DeployResult | None:
    """The ``DeployResult`` that ``exc`` carries, if any."""
    result = exc.result if isinstance(exc, OutcomeError) else None
    if result is None:
        return None
    from phoenix.engine import DeployResult  # loaded already: the engine made the result

    return result if isinstance(result, DeployResult) else None


@contextlib.contextmanager
def _session(
    ctx: typer.Context,
    output: OutputFormat | None,
    log_format: LogFormat | None,
    log_level: LogLevel | None,
    *,
    changes_cloud: bool = False,
    records_action: bool = False,
) -> Iterator[_Session]:
    """Set up output and logging for one command; map whatever it raises to an exit code.

    ``changes_cloud``: the command shows progress on a TTY (so info logs, which would
    repeat every line of it, are left out unless ``--log-level`` asks for them), and an
    unexpected crash may have left the cloud half-changed, so it exits 3, not 1.
    ``records_action``: the command's result goes to ``--metrics-file`` when given.
    """
    given = ctx.obj if isinstance(ctx.obj, _Globals) else _Globals()
    session = _Session(output or given.output, given.metrics_file if records_action else None,
                       ctx.info_name or "")
    fmt = log_format or given.log_format
    level = log_level or given.log_level
    if level is None:
        progress_shown = changes_cloud and _Stderr().isatty() and fmt is not LogFormat.JSON
        level = LogLevel.WARNING if progress_shown else LogLevel.INFO
    try:
        from phoenix import log as plog

        plog.configure_logging(fmt=fmt.value, level=level.value, stream=cast(TextIO, _Stderr()))
        if session.metrics_file is not None:
            from phoenix import textfile

            textfile.check_writable(session.metrics_file)  # before the cloud is touched
        yield session
    except (typer.Exit, typer.Abort) as exc:
        if isinstance(exc, typer.Abort):  # Ctrl-C or EOF at a confirmation prompt
            raise typer.Exit(
                session.fail_other("Interrupted", "aborted; nothing was changed",
                                   ExitCode.INTERRUPTED)
            ) from None
        raise
    except PhoenixError as exc:
        raise typer.Exit(session.fail(exc)) from None
    except LeaseLost as exc:
        raise typer.Exit(
            session.fail_other(type(exc).__name__, str(exc), ExitCode.LOCKED)
        ) from None
    except KeyboardInterrupt:
        raise typer.Exit(
            session.fail_other("Interrupted", "interrupted", ExitCode.INTERRUPTED)
        ) from None
    except Exception as exc:
        session.err(traceback.format_exc().rstrip())
        code = ExitCode.NEEDS_PERSON if changes_cloud else ExitCode.DEPLOY_FAILED
        advice = " The cloud may be half-changed: run `phoenix status`." if changes_cloud else ""
        raise typer.Exit(
            session.fail_other(
                type(exc).__name__,
                f"unexpected {type(exc).__name__}: {exc} (a bug in Phoenix; please report it"
                f" with the traceback above).{advice}",
                code,
            )
        ) from None


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
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Phoenix deploys: fresh servers every time, traffic moved only to proven ones."""
    del version
    ctx.obj = _Globals(output, log_format, log_level, metrics_file)


# --- commands ---------------------------------------------------------------------------


@app.command()
def validate(
    ctx: typer.Context,
    spec_file: SpecArg = "phoenix.yaml",
    output: OutputOpt = None,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = None,
) -> None:
    """Check the spec and render the template for every region and node; touches no cloud."""
    with _session(ctx, output, log_format, log_level) as session:
        from phoenix import api

        spec = session.load(spec_file)
        api.validate(spec)
        session.summarize(lambda: github.validate_summary(spec_file, spec, mask=session.mask))
        session.done(
            {
                "ok": True,
                "app": spec.app,
                "count": spec.count,
                "regions": list(spec.regions),
                "template": str(spec.template_path),
                "secret_vars": sorted(spec.secret_names),
            },
            f"ok: {spec.app}, {spec.count} node(s), regions {', '.join(spec.regions)}",
        )


@app.command()
def render(
    ctx: typer.Context,
    spec_file: SpecArg = "phoenix.yaml",
    index: Annotated[int, typer.Option("--index", "-i", help="Node index.", min=0)] = 0,
    region: RegionOpt = None,
    show_secrets: Annotated[
        bool, typer.Option("--show-secrets", help="Print secret var values instead of ***.")
    ] = False,
    output: OutputOpt = None,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = None,
) -> None:
    """Print the user-data one node would boot with (release shown as RELEASE)."""
    with _session(ctx, output, log_format, log_level) as session:
        from phoenix.release import PLACEHOLDER_RELEASE
        from phoenix.render import RenderContext, render_user_data

        spec = session.load(spec_file)
        where = _region(spec, region)
        if index >= spec.count:
            raise InputError(
                f"--index {index}: the spec has count {spec.count}, so indexes are"
                f" 0..{spec.count - 1}"
            )
        text = render_user_data(
            spec.template_path,
            RenderContext(
                app=spec.app,
                release=PLACEHOLDER_RELEASE,
                region=where,
                index=index,
                vars=spec.resolved_vars,
            ),
        )
        data = {"app": spec.app, "region": where, "index": index,
                "release": PLACEHOLDER_RELEASE, "user_data": text}
        # The template's own final newline ends the output; echo adds none of its own.
        session.done(data, text.removesuffix("\n"), masked=not show_secrets)


@app.command()
def plan(
    ctx: typer.Context,
    spec_file: SpecArg = "phoenix.yaml",
    region: ServingRegionOpt = None,
    output: OutputOpt = None,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = None,
) -> None:
    """Show which release the spec means and what deploy would do first; changes nothing."""
    with _session(ctx, output, log_format, log_level) as session:
        from phoenix import api

        spec = session.load(spec_file)
        report = api.plan(spec, region=_given_region(spec, region))
        session.summarize(lambda: github.plan_summary(report, mask=session.mask))
        session.done(dataclasses.asdict(report), _plan_text(report))


@app.command()
def deploy(
    ctx: typer.Context,
    spec_file: SpecArg = "phoenix.yaml",
    region: ServingRegionOpt = None,
    output: OutputOpt = None,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = None,
) -> None:
    """Build the spec's release, health-gate it, move traffic, retire the old release.

    On failure the old release keeps serving (exit 1). Ctrl-C rolls back, then exits 130.
    With dns: in the spec, a region that fails as a whole (quota, no capacity, API down,
    every new node failing its health gate) is left for the next region in the spec's
    order, and the DNS record follows.
    """
    with _session(ctx, output, log_format, log_level, changes_cloud=True,
                  records_action=True) as session:
        from phoenix import api

        spec = session.load(spec_file)
        where = _given_region(spec, region)
        with _progress(session, f"deploying {spec.app}"
                       + (f" to {where}" if where else "")) as on_event:
            result = api.deploy(spec, region=where, on_event=on_event)
        session.record(result)
        session.done(dataclasses.asdict(result), _deploy_text(result))


@app.command()
def failover(
    ctx: typer.Context,
    spec_file: SpecArg = "phoenix.yaml",
    to: Annotated[
        str, typer.Option("--to", metavar="REGION", help="The region to move the app to.")
    ] = "",
    yes: YesOpt = False,
    output: OutputOpt = None,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = None,
) -> None:
    """Move the app to another region: deploy the serving release there, prove it
    healthy, point DNS at it, retire the old region (when it can be reached)."""
    with _session(ctx, output, log_format, log_level, changes_cloud=True,
                  records_action=True) as session:
        from phoenix import api

        spec = session.load(spec_file)
        if not to:
            raise InputError(
                f"--to REGION: say where to move {spec.app} ({', '.join(spec.regions)})"
            )
        _region(spec, to)
        _confirm("failover", f"Move {spec.app} to {to}?", yes=yes)
        with _progress(session, f"failing {spec.app} over to {to}") as on_event:
            result = api.failover(spec, to=to, on_event=on_event)
        session.record(result)
        session.done(dataclasses.asdict(result), _deploy_text(result))


@app.command()
def failback(
    ctx: typer.Context,
    spec_file: SpecArg = "phoenix.yaml",
    yes: YesOpt = False,
    output: OutputOpt = None,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = None,
) -> None:
    """Move the app back to the primary region (the spec's first), health-gated."""
    with _session(ctx, output, log_format, log_level, changes_cloud=True,
                  records_action=True) as session:
        from phoenix import api

        spec = session.load(spec_file)
        primary = spec.regions[0]
        _confirm("failback", f"Move {spec.app} back to {primary}?", yes=yes)
        with _progress(session, f"failing {spec.app} back to {primary}") as on_event:
            result = api.failback(spec, on_event=on_event)
        session.record(result)
        session.done(dataclasses.asdict(result), _deploy_text(result))


@app.command()
def status(
    ctx: typer.Context,
    spec_file: SpecArg = "phoenix.yaml",
    no_health: Annotated[
        bool, typer.Option("--no-health", help="Skip health checks (faster).")
    ] = False,
    output: OutputOpt = None,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = None,
) -> None:
    """Show what runs where: nodes, health, pool membership, DNS, the lock, problems."""
    with _session(ctx, output, log_format, log_level) as session:
        from phoenix import api

        spec = session.load(spec_file)
        report = api.status(spec, check_health=not no_health)
        session.done(dataclasses.asdict(report), _status_text(spec, report, not no_health))


@app.command()
def rollback(
    ctx: typer.Context,
    spec_file: SpecArg = "phoenix.yaml",
    to: Annotated[
        str | None,
        typer.Option("--to", metavar="RELEASE", help="Release to restore (default: the"
                     " previous good one; `phoenix history` lists them)."),
    ] = None,
    region: ServingRegionOpt = None,
    yes: YesOpt = False,
    output: OutputOpt = None,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = None,
) -> None:
    """Put the previous good release (or --to RELEASE) back in service."""
    with _session(ctx, output, log_format, log_level, changes_cloud=True,
                  records_action=True) as session:
        from phoenix import api

        spec = session.load(spec_file)
        where = _given_region(spec, region)
        target = to or "the previous good release"
        place = f" in {where}" if where else ""
        _confirm("rollback", f"Roll {spec.app}{place} back to {target}?", yes=yes)
        with _progress(session, f"rolling {spec.app} back{place}") as on_event:
            result = api.rollback(spec, to_release=to, region=where, on_event=on_event)
        session.record(result)
        session.done(dataclasses.asdict(result), _deploy_text(result))


@app.command()
def repave(
    ctx: typer.Context,
    spec_file: SpecArg = "phoenix.yaml",
    region: ServingRegionOpt = None,
    yes: YesOpt = False,
    output: OutputOpt = None,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = None,
) -> None:
    """Replace every node of the serving release with a fresh one from the same image
    (rolling, health-gated, rolled back on failure): rebuild everything now, e.g. after
    a suspected compromise."""
    with _session(ctx, output, log_format, log_level, changes_cloud=True,
                  records_action=True) as session:
        from phoenix import api

        spec = session.load(spec_file)
        where = _given_region(spec, region)
        place = f" in {where}" if where else ""
        _confirm("repave", f"Replace every node of {spec.app}{place} with a fresh one?",
                 yes=yes)
        with _progress(session, f"repaving {spec.app}{place}") as on_event:
            result = api.repave(spec, region=where, on_event=on_event)
        session.record(result)
        session.done(dataclasses.asdict(result), _deploy_text(result))


@app.command()
def watch(
    ctx: typer.Context,
    spec_files: Annotated[
        list[str],
        typer.Argument(metavar="SPEC...", help="Specs (or folders of specs) of the apps to"
                       " keep healthy."),
    ],
    interval: Annotated[
        str, typer.Option("--interval", help="Time between rounds (e.g. 10s, 1m).")
    ] = "10s",
    once: Annotated[
        bool, typer.Option("--once", help="One round, then exit (cron, tests).")
    ] = False,
    listen: Annotated[
        str, typer.Option("--listen", metavar="HOST:PORT",
                          help="Serve /metrics and /healthz here (loopback by default;"
                          " 'off': not at all).")
    ] = "127.0.0.1:9464",
    output: OutputOpt = None,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = None,
) -> None:
    """Keep the apps' serving releases healthy between deploys: replace sick or vanished
    nodes, repave nodes older than max_node_age, open the circuit when too much of a
    fleet is sick. Never deploys a newer spec; waits while a deploy holds the lease."""
    with _session(ctx, output, log_format, log_level, changes_cloud=True) as session:
        from phoenix import watch as watch_module
        from phoenix.metrics import Endpoints
        from phoenix.spec import parse_duration

        specs = session.load_many(spec_files)
        try:
            seconds = parse_duration(interval)
        except ValueError as exc:
            raise InputError(f"--interval {interval}: {exc}") from None
        if not 0.1 <= seconds <= 86400:
            raise InputError(f"--interval {interval}: use 100ms to 1d")

        def show(reports: list[watch_module.AppReport]) -> None:
            for report in reports:
                if session.json:
                    session.emit_line(dataclasses.asdict(report))
                else:
                    acted = f" [{report.action}: {report.outcome}]" if report.action else ""
                    session.out(f"{report.at} {report.app} {report.region} {report.state}"
                                f"{acted}: {report.detail}")

        address = None if listen == "off" else _host_port(listen)
        with watch_module.Watcher(specs) as watcher:
            if once:
                show(watcher.round())
                return
            endpoints = None
            if address is not None:
                try:
                    endpoints = Endpoints(*address, watcher.metrics,
                                          lambda: watcher.alive(seconds), watcher.page)
                except OSError as exc:
                    raise InputError(f"--listen {listen}: {exc.strerror or exc}") from None
                endpoints.start()
                host, port = endpoints.address
                session.err(f"watch: metrics at http://{host}:{port}/metrics, status page"
                            f" at http://{host}:{port}/")
            stop = threading.Event()
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: stop.set())
            try:
                watcher.run(interval=seconds, stop=stop, on_round=show)
            finally:
                if endpoints is not None:
                    endpoints.stop()


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InputError(f"--listen {text}: use HOST:PORT, e.g. 127.0.0.1:9464, or off")
    return host.strip("[]"), int(port)


@app.command()
def history(
    ctx: typer.Context,
    spec_file: SpecArg = "phoenix.yaml",
    output: OutputOpt = None,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = None,
) -> None:
    """List every deploy, rollback and failover of the app, oldest first."""
    with _session(ctx, output, log_format, log_level) as session:
        from phoenix import api

        spec = session.load(spec_file)
        records = api.history(spec)
        session.done(
            {"app": spec.app, "records": [dataclasses.asdict(r) for r in records]},
            _history_text(spec.app, records),
        )


@app.command()
def destroy(
    ctx: typer.Context,
    spec_file: SpecArg = "phoenix.yaml",
    yes: YesOpt = False,
    purge_records: Annotated[
        bool,
        typer.Option("--purge-records", help="Also delete release records and deploy history."),
    ] = False,
    output: OutputOpt = None,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = None,
) -> None:
    """Take the app out of every region: pool members removed, servers deleted."""
    with _session(ctx, output, log_format, log_level, changes_cloud=True) as session:
        from phoenix import api

        spec = session.load(spec_file)
        what = "every server and pool member"
        if purge_records:
            what += ", and its release records and history"
        _confirm("destroy", f"Destroy {spec.app} in {', '.join(spec.regions)}: {what}?", yes=yes)
        result = api.destroy(spec, purge_records=purge_records)
        session.done(dataclasses.asdict(result), _destroy_text(result))


@app.command()
def unlock(
    ctx: typer.Context,
    spec_file: SpecArg = "phoenix.yaml",
    yes: YesOpt = False,
    force: Annotated[bool, typer.Option(
        "--force", help="break it even if the holder looks alive (it stops at its next poll)"
    )] = False,
    output: OutputOpt = None,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = None,
) -> None:
    """Break the app's deploy lock, left by a deploy that died on another machine.

    Refuses a holder that looks alive (a process on this host that runs, or a lease
    elsewhere that has not expired) unless --force."""
    with _session(ctx, output, log_format, log_level, changes_cloud=True) as session:
        from phoenix import api

        spec = session.load(spec_file)
        _confirm(
            "unlock",
            f"Break the deploy lock of {spec.app}? Only if the deploy holding it is dead"
            + (" (--force: even if it looks alive)." if force else "."),
            yes=yes,
        )
        holder = api.unlock(spec, force=force)
        session.done(
            {"app": spec.app, "removed_holder": holder},
            f"unlocked {spec.app}: broke the lock held by {holder}" if holder
            else f"{spec.app} was not locked; nothing to do",
        )


image_app = typer.Typer(help="Golden images: list them, or import a directory (local).")
app.add_typer(image_app, name="image")


@image_app.command("list")
def image_list(
    ctx: typer.Context,
    spec_file: SpecArg = "phoenix.yaml",
    region: RegionOpt = None,
    output: OutputOpt = None,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = None,
) -> None:
    """List the provider's images with their digest and creation time, newest first."""
    with _session(ctx, output, log_format, log_level) as session:
        from phoenix import api

        spec = session.load(spec_file)
        found = api.images(spec, region=region)
        rows = [
            [i.id, i.name, i.properties.get("digest", "-"),
             i.created_at.isoformat(timespec="seconds") if i.created_at else "-"]
            for i in found
        ]
        session.done(
            {"images": [
                {"id": i.id, "name": i.name, "digest": i.properties.get("digest"),
                 "created_at": i.created_at.isoformat() if i.created_at else None}
                for i in found
            ]},
            _table(["ID", "NAME", "DIGEST", "CREATED"], rows) if rows else ["no images"],
        )


@image_app.command("import")
def image_import(
    ctx: typer.Context,
    source: Annotated[Path, typer.Argument(help="the directory to snapshot")],
    spec_file: SpecArg = "phoenix.yaml",
    name: Annotated[str | None, typer.Option(help="image name (default: the dir's)")] = None,
    output: OutputOpt = None,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = None,
) -> None:
    """Import a directory as an immutable, content-addressed image (local provider)."""
    with _session(ctx, output, log_format, log_level) as session:
        from phoenix import api

        spec = session.load(spec_file)
        image = api.import_image(spec, source, name=name)
        digest = image.properties.get("digest", "-")
        session.done(
            {"id": image.id, "name": image.name, "digest": digest,
             "created_at": image.created_at.isoformat() if image.created_at else None},
            f"{image.id}  {image.name}  sha256:{digest}",
        )


drill_app = typer.Typer(help="Failover drills on the local provider: cut a region's power.")
app.add_typer(drill_app, name="drill")


DrillRegionOpt = Annotated[str, typer.Option("--region", "-r", help="The local region.")]


@drill_app.command("outage")
def drill_outage(
    ctx: typer.Context,
    spec_file: SpecArg = "phoenix.yaml",
    region: DrillRegionOpt = "",
    output: OutputOpt = None,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = None,
) -> None:
    """SIGKILL a local region's load balancers and nodes; its API answers "unavailable"
    until `phoenix drill recover`."""
    _drill(ctx, spec_file, region, output, log_format, log_level, end=False)


@drill_app.command("recover")
def drill_recover(
    ctx: typer.Context,
    spec_file: SpecArg = "phoenix.yaml",
    region: DrillRegionOpt = "",
    output: OutputOpt = None,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = None,
) -> None:
    """End a drill's outage: the region answers again (its dead nodes read ERROR)."""
    _drill(ctx, spec_file, region, output, log_format, log_level, end=True)


def _drill(
    ctx: typer.Context, spec_file: str, region: str, output: OutputFormat | None,
    log_format: LogFormat | None, log_level: LogLevel | None, *, end: bool,
) -> None:
    with _session(ctx, output, log_format, log_level, changes_cloud=True) as session:
        from phoenix import api

        spec = session.load(spec_file)
        if not region:
            raise InputError(f"--region REGION: say which region ({', '.join(spec.regions)})")
        result = api.drill(spec, region=_region(spec, region), end=end)
        if not end:
            text = (f"{result.region} is down: {len(result.killed_pids)} process(es) killed;"
                    " its API answers 'unavailable' until `phoenix drill recover`")
        elif result.changed:
            text = f"{result.region} is back"
        else:
            text = f"{result.region} was not down; nothing to do"
        session.done(dataclasses.asdict(result), text)


@app.command()
def schema() -> None:
    """Print the JSON Schema of phoenix.yaml (for editors and linters)."""
    from phoenix.spec_loader import spec_json_schema

    typer.echo(json.dumps(spec_json_schema(), indent=2))


def main() -> None:
    """Entry point of the ``phoenix`` console script; exits with the command's code.

    SIGTERM (what CI runners and process supervisors send to cancel a job) is handled
    like Ctrl-C, so a cancelled pipeline rolls back to the old release before exiting.
    """
    signal.signal(signal.SIGTERM, _terminate)
    app(prog_name="phoenix")


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


# --- helpers ----------------------------------------------------------------------------


def _region(spec: Spec, region: str | None) -> str:
    """The region to act in; an unknown one is refused before any provider is opened."""
    if region is None:
        return spec.regions[0]
    if region not in spec.regions:
        raise InputError(
            f"--region {region}: not one of the spec's regions ({', '.join(spec.regions)})"
        )
    return region


def _given_region(spec: Spec, region: str | None) -> str | None:
    """A --region that was given, checked; None lets the library pick the serving one."""
    return None if region is None else _region(spec, region)


def _confirm(action: str, question: str, *, yes: bool) -> None:
    """Ask before a destructive action; without a terminal to ask on, demand ``--yes``."""
    if yes:
        return
    if not _stdin_is_tty():
        raise InputError(
            f"{action} changes what runs in the cloud and stdin is not a terminal to ask"
            " on; pass --yes to confirm"
        )
    if not typer.confirm(question, default=False, err=True):
        typer.echo("aborted; nothing was changed", err=True)
        raise typer.Exit(int(ExitCode.DEPLOY_FAILED))


def _stdin_is_tty() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def _progress(session: _Session, title: str) -> Iterator[EventSink | None]:
    """An event sink showing progress on a TTY's stderr; none otherwise (logs suffice)."""
    if not _Stderr().isatty():
        yield None
        return
    from rich.console import Console
    from rich.markup import escape

    console = Console(stderr=True, highlight=False)
    with console.status(escape(title)) as spinner:
        yield _ProgressView(console, spinner, session.mask)


class _ProgressView:
    """Renders engine events: steps as lines, waits in the spinner, outcomes marked."""

    def __init__(
        self, console: Console, spinner: Status | None, mask: Callable[[str], str]
    ) -> None:
        self.console = console
        self.spinner = spinner
        self.mask = mask

    def __call__(self, event: Event) -> None:
        from rich.markup import escape

        message = escape(self.mask(event.message))
        lines = [escape(self.mask(line)) for line in event.lines]
        if event.kind == "steps":
            self._spin(f"working: {message}")
            for line in lines:
                self.console.print(f"  [cyan]->[/] {line}")
        elif event.kind == "waiting":
            text = "waiting for " + (lines[0] if lines else message)
            if len(lines) > 1:
                text += f" (+{len(lines) - 1} more)"
            if self.spinner is None:
                self.console.print(f"  {text}")
            self._spin(text)
        elif event.kind == "converged":
            self.console.print(f"[green]ok[/] {message}")
            self._spin("recording the release")
        elif event.kind == "failed":
            self.console.print(f"[red]failed[/] {message}")
            self._spin("rolling back")
        elif event.kind == "rollback":
            self.console.print(f"[yellow]rollback[/] {message}")
        else:
            self.console.print(message)

    def _spin(self, text: str) -> None:
        if self.spinner is not None:
            self.spinner.update(text)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    """Plain aligned columns: stable for grep/awk and for any terminal width."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    return [
        indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    ]


def _seconds(value: float) -> str:
    return f"{value:.1f}s" if value < 60 else f"{int(value // 60)}m{value % 60:04.1f}s"


def _deploy_text(result: DeployResult) -> list[str]:
    lines = [
        f"{result.app}: {result.action} {result.outcome} in {result.region}"
        f" ({result.deploy_id})",
        f"  release   {result.release}",
        f"  previous  {result.previous_release or 'none'}",
        f"  nodes     {len(result.nodes)}"
        + (f": {', '.join(result.nodes)}" if result.nodes else ""),
        f"  steps     {result.steps} in {_seconds(result.seconds)}",
    ]
    if result.reason:
        lines.append(f"  reason    {result.reason}")
    if result.endpoint and result.outcome in ("succeeded", "unchanged"):
        lines.append(f"  url       {result.endpoint}")
    if result.dns is not None:
        lines.append(f"  dns       {result.dns}")
    if len(result.attempts) > 1 or any(a.outcome == "failed" for a in result.attempts):
        lines.append("  regions tried:")
        lines.extend(f"    {number}. {attempt.describe()}"
                     for number, attempt in enumerate(result.attempts, 1))
    return lines


def _plan_text(report: api.PlanReport) -> list[str]:
    built = "new: deploy builds it" if report.new_release else "already built"
    lines = [
        f"{report.app} in {report.region}",
        f"  release   {report.release} ({built})",
        f"  serving   {report.serving_release or 'nothing'}",
    ]
    if report.converged:
        lines.append(f"  nothing to do: {report.release} already serves as the spec says")
        return lines
    if report.steps:
        lines.append("  first steps:")
        lines.extend(f"    - {step}" for step in report.steps)
    if report.waiting_for:
        lines.append("  waiting for:")
        lines.extend(f"    - {item}" for item in report.waiting_for)
    if not report.steps and not report.waiting_for:
        lines.append("  nothing to do")
    return lines


def _status_text(spec: Spec, report: api.StatusReport, checked: bool) -> list[str]:
    lines = [report.app]
    for number, region in enumerate(report.regions):
        label = f"{region.region} (primary)" if number == 0 else region.region
        if region.dns_points_here:
            label += " [DNS points here]"
        if region.error is not None:
            lines.append(f"{label}: could not be read: {region.error}")
            continue
        serving = f"{region.serving_release} serves" if region.serving_release else "nothing serves"
        lines.append(f"{label}: {serving}, {len(region.nodes)} server(s)")
        if region.endpoint and region.serving_release:
            lines.append(f"  url {region.endpoint}")
        if region.nodes:
            rows = [
                [
                    node.name,
                    node.release,
                    node.state,
                    node.address or "-",
                    _health_cell(node, checked),
                    node.member or "-",
                    str(node.lease) if node.lease is not None else "-",
                    node.fault or "-",
                ]
                for node in region.nodes
            ]
            headers = ["NAME", "RELEASE", "STATE", "ADDRESS", "HEALTH", "POOL", "LEASE",
                       "FAULT"]
            lines.extend(_table(headers, rows))
        for member in region.stray_members:
            lines.append(f"  stray pool member without a server: {member}")
    if spec.dns is not None:
        target = f" ({report.serving_region} serves)" if report.serving_region else ""
        lines.append(
            f"dns {spec.dns.record}.{spec.dns.zone}: {report.dns or 'not set'}{target}"
        )
    if report.last_move:
        lines.append(f"last region move: {report.last_move}")
    lines.append(f"lock: held by {report.lock_holder}" if report.lock_holder else "lock: free")
    if report.problems:
        lines.append(f"problems ({len(report.problems)}):")
        lines.extend(f"  - {problem}" for problem in report.problems)
    else:
        lines.append("problems: none")
    return lines


def _health_cell(node: api.NodeStatus, checked: bool) -> str:
    if not checked:
        return "-"
    if node.health in ("HEALTHY", "UNKNOWN"):
        return node.health
    return f"{node.health} ({node.health_detail})"


def _history_text(app_name: str, records: Sequence[DeployRecord]) -> list[str]:
    if not records:
        return [f"no deploys of {app_name} recorded yet"]
    rows = [
        [
            _when(record.started_at),
            record.action,
            record.release,
            record.region,
            record.outcome,
            record.previous_release or "-",
            str(record.lease) if record.lease is not None else "-",
            record.reason or "",
        ]
        for record in records
    ]
    # LEASE: the lease generation the actor held, so that who did what is plain even
    # when two actors overlapped.
    headers = ["STARTED (UTC)", "ACTION", "RELEASE", "REGION", "OUTCOME", "PREVIOUS", "LEASE",
               "REASON"]
    return _table(headers, rows, indent="")


def _when(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return iso


def _destroy_text(result: api.DestroyResult) -> list[str]:
    if not result.deleted_nodes and not result.removed_members and not result.purged_records:
        return [f"nothing to destroy: {result.app} has no servers or pool members"]
    lines = [
        f"destroyed {result.app}: {len(result.deleted_nodes)} server(s) deleted,"
        f" {len(result.removed_members)} pool member(s) removed"
        + (f", {result.purged_records} record(s) purged" if result.purged_records else "")
    ]
    lines.extend(f"  - {name}" for name in result.deleted_nodes)
    return lines
