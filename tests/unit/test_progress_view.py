"""The terminal's progress display (phoenix.cli.terminal): engine events driven into a
rich console that believes it is a terminal, and what a person would read there."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

from rich.console import Console
from rich.text import Text

from phoenix.cli import terminal
from phoenix.results import Event, Progress
from phoenix.steps import Counts
from phoenix.vocabulary import EventKind, Wait, WaitReason

START = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def progress_event(counts: Counts, elapsed: float, deadline: float = 600) -> Event:
    return Event(EventKind.PROGRESS, counts.describe(), progress=Progress(
        counts, START, START + timedelta(seconds=elapsed), START + timedelta(seconds=deadline)))


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def render(*events: Event, ticks: Ticks | None = None, advance: float = 0) -> str:
    """What the display drew, as plain text (escape codes stripped)."""
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=160)
    ticks = ticks or Ticks()
    with terminal.progress_display(console) as display:
        view = terminal._ProgressView(console, display, lambda text: text,
                                      title="deploying demo", monotonic=ticks)
        for event in events:
            view(event)
        ticks.now += advance
        display.refresh()
    return Text.from_ansi(buffer.getvalue()).plain


def last_frame(text: str) -> str:
    return [line for line in text.splitlines() if "booted" in line][-1]


def test_the_display_shows_the_counts_the_clock_and_the_wait() -> None:
    text = render(
        Event(EventKind.STEPS, "3 step(s)", ("create demo-r1-0",)),
        progress_event(Counts(3, 2, 1, 1), elapsed=42),
        Event(EventKind.WAITING, "waiting for", ("demo-r1-1 to pass its health check",
                                                 "demo-r1-2 to boot"),
              waits=(Wait(WaitReason.HEALTH_CHECK, "demo-r1-1",
                          "demo-r1-1 to pass its health check"),
                     Wait(WaitReason.BOOTING, "demo-r1-2", "demo-r1-2 to boot"))),
    )
    frame = last_frame(text)
    assert "booted 2/3, healthy 1/3, in pool 1/3" in frame
    assert "0:42 elapsed, 9:18 left" in frame
    assert "waiting for demo-r1-1 to pass its health check (+1 more)" in frame
    assert "-> create demo-r1-0" in text  # steps stay as lines above the display


def test_newer_counts_replace_older_ones() -> None:
    text = render(progress_event(Counts(3, 1, 0, 0), elapsed=5),
                  progress_event(Counts(3, 3, 3, 3), elapsed=50))
    assert "booted 3/3, healthy 3/3, in pool 3/3" in last_frame(text)


def test_the_clock_ticks_on_between_events() -> None:
    frame = last_frame(render(progress_event(Counts(2, 0, 0, 0), elapsed=10, deadline=3660),
                              advance=65))
    assert "1:15 elapsed, 59:45 left" in frame


def test_an_hour_and_a_deadline_passed() -> None:
    frame = last_frame(render(progress_event(Counts(1, 1, 0, 0), elapsed=3725, deadline=3600)))
    assert "1:02:05 elapsed, 0:00 left" in frame


def test_without_a_live_display_counts_are_lines() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=False, width=160)
    view = terminal._ProgressView(console, None, lambda text: text)
    view(progress_event(Counts(3, 2, 1, 0), elapsed=61))
    assert buffer.getvalue() == "  booted 2/3, healthy 1/3, in pool 0/3 (1:01 elapsed, 8:59 left)\n"
