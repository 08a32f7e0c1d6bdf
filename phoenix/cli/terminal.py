"""What a person at a terminal sees while a command runs: the confirmation asked before a
destructive action, and the progress display (rich, on a TTY's stderr) of a deploy."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import typer

from phoenix.cli.session import Session, Stderr
from phoenix.errors import ExitCode, InputError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.status import Status

    from phoenix.engine import Event, EventSink


def confirm(action: str, question: str, *, yes: bool) -> None:
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
def progress(session: Session, title: str) -> Iterator[EventSink | None]:
    """An event sink showing progress on a TTY's stderr; none otherwise (logs suffice)."""
    if not Stderr().isatty():
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
