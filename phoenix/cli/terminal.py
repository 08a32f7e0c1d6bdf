"""What a person at a terminal sees while a command runs: the confirmation asked before a
destructive action, and the progress display (rich, on a TTY's stderr) of a deploy."""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import typer

from phoenix.cli.session import Session, Stderr
from phoenix.errors import ExitCode, InputError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from phoenix.results import Event, EventSink
    from phoenix.results import Progress as RunProgress


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

    console = Console(stderr=True, highlight=False)
    with progress_display(console) as display:
        yield _ProgressView(console, display, session.mask, title=title)


def progress_display(console: Console) -> Progress:
    """rich's progress display, one line: a spinner, the share of the target in the pool
    as a bar, the counts, the clock (elapsed, time left to the deadline) and what the run
    does. Transient, as the spinner was: what stays on the terminal are the step lines
    and the outcome."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

    return Progress(
        SpinnerColumn(),
        BarColumn(bar_width=12),
        TextColumn("{task.fields[counts]}"),
        TextColumn("{task.fields[clock]}", style="dim"),
        TextColumn("{task.description}"),
        console=console,
        transient=True,
    )


class _Clock:
    """Elapsed time and time left to the deadline, as of a progress event and ticking
    on from it: a display refreshes many times between two events, and the engine sends
    one only when the counts change. Rendered through ``str()`` by a text column."""

    def __init__(self, event: RunProgress, monotonic: Callable[[], float]) -> None:
        self.elapsed = event.elapsed
        self.left = event.left
        self.monotonic = monotonic
        self.anchor = monotonic()

    def __str__(self) -> str:
        since = max(0.0, self.monotonic() - self.anchor)
        # Elapsed rounds down and the time left up, as clocks and countdowns do.
        return (f"{_duration(int(self.elapsed + since))} elapsed,"
                f" {_duration(math.ceil(max(0.0, self.left - since)))} left")


def _duration(seconds: int) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour on."""
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class _ProgressView:
    """Renders engine events: steps as lines; waits, counts and the clock in the live
    display (as lines without one); outcomes marked."""

    def __init__(
        self, console: Console, display: Progress | None, mask: Callable[[str], str],
        *, title: str = "", monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        from rich.markup import escape

        self.console = console
        self.display = display
        self.mask = mask
        self.monotonic = monotonic
        self.task = (display.add_task(escape(mask(title)), total=None, counts="", clock="")
                     if display is not None else None)

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
            if self.display is None:
                self.console.print(f"  {text}")
            self._spin(text)
        elif event.kind == "progress":
            self._progress(event)
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

    def _progress(self, event: Event) -> None:
        if event.progress is None:
            return
        counts = event.progress.counts
        clock = _Clock(event.progress, self.monotonic)
        if self.display is None or self.task is None:
            self.console.print(f"  {counts.describe()} ({clock})", highlight=False)
            return
        self.display.update(
            self.task, counts=counts.describe(), clock=clock,
            total=counts.target or None, completed=counts.in_pool,
        )

    def _spin(self, text: str) -> None:
        if self.display is not None and self.task is not None:
            self.display.update(self.task, description=text)
