"""One command's run: its output (stdout results, stderr messages, secrets masked in
both, GitHub annotations and job summary, ``--metrics-file``), its logging, and the
mapping of whatever it raises to an exit code (``phoenix.errors.ExitCode``)."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

import typer

from phoenix import api_calls, github
from phoenix.cli.options import Globals, LogFormat, LogLevel, OutputFormat
from phoenix.cli.text import deploy_text
from phoenix.errors import (
    ExitCode,
    InputError,
    LeaseLost,
    OutcomeError,
    PhoenixError,
    SpecError,
)

if TYPE_CHECKING:
    from phoenix.engine import DeployResult
    from phoenix.spec import Spec


class Stderr(io.TextIOBase):
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


class Session:
    """One command's output: stdout results, stderr messages, secrets masked in both."""

    def __init__(
        self, output: OutputFormat, metrics_file: Path | None = None, command: str = "",
        *, env: str | None = None,
    ) -> None:
        self.output = output
        self.secrets: list[str] = []
        self.metrics_file = metrics_file
        self._calls_at_start = api_calls.snapshot()
        self.command = command
        # The environment every spec is loaded for (``--env``); an empty PHOENIX_ENV (a
        # CI input left blank) is none.
        self.env = env or None
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
        spec = load_spec(path, env=self.env)
        self.secrets = spec.secret_values
        plog.register_secrets(self.secrets)
        return spec

    def load_environment(self, path: str, env: str) -> Spec:
        """The spec at ``path`` for environment ``env`` (``validate`` checks them all);
        its secret values are masked too."""
        from phoenix import log as plog
        from phoenix.spec_loader import load_spec

        spec = load_spec(path, env=env)
        self.secrets = [*self.secrets, *spec.secret_values]
        plog.register_secrets(self.secrets)
        return spec

    def load_many(self, paths: Sequence[str]) -> list[Spec]:
        """Every spec named (a folder: every ``*.yaml`` in it); all their secrets masked."""
        from phoenix import log as plog
        from phoenix.environments import is_overlay_of_a_spec
        from phoenix.spec_loader import load_spec

        files: list[str] = []
        for path in paths:
            folder = Path(path)
            if folder.is_dir():
                # An environment's file (app.staging.yaml beside app.yaml) is not an app.
                found = sorted(str(p) for p in folder.glob("*.y*ml")
                               if p.is_file() and not is_overlay_of_a_spec(p))
                if not found:
                    raise InputError(f"{path}: a folder with no *.yaml spec in it")
                files += found
            else:
                files.append(path)
        specs = [load_spec(file, env=self.env) for file in files]
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
            self.out("\n".join(deploy_text(result)))
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
def command_session(
    ctx: typer.Context,
    output: OutputFormat | None,
    log_format: LogFormat | None,
    log_level: LogLevel | None,
    *,
    changes_cloud: bool = False,
    records_action: bool = False,
    env: str | None = None,
) -> Iterator[Session]:
    """Set up output and logging for one command; map whatever it raises to an exit code.

    ``changes_cloud``: the command shows progress on a TTY (so info logs, which would
    repeat every line of it, are left out unless ``--log-level`` asks for them), and an
    unexpected crash may have left the cloud half-changed, so it exits 3, not 1.
    ``records_action``: the command's result goes to ``--metrics-file`` when given.
    ``env``: the command's ``--env``, before the global one.
    """
    given = ctx.obj if isinstance(ctx.obj, Globals) else Globals()
    session = Session(output or given.output, given.metrics_file if records_action else None,
                      ctx.info_name or "", env=env or given.env)
    fmt = log_format or given.log_format
    level = log_level or given.log_level
    if level is None:
        progress_shown = changes_cloud and Stderr().isatty() and fmt is not LogFormat.JSON
        level = LogLevel.WARNING if progress_shown else LogLevel.INFO
    try:
        from phoenix import log as plog

        plog.configure_logging(fmt=fmt.value, level=level.value, stream=cast(TextIO, Stderr()))
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
