"""The words a run reports with: how it ended, and what kind of progress an event is.

They are ``StrEnum``s, so they compare equal to (and serialise as) the strings that the
JSON output, the history records and the metrics' labels have always carried; code that
reads them gets a closed set to match on instead of string literals to keep in step.
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """How a deploy, rollback, failover, repave, heal or retire ended."""

    SUCCEEDED = "succeeded"  # it changed the cloud and reached its target
    UNCHANGED = "unchanged"  # the target held already: nothing was done
    ROLLED_BACK = "rolled-back"  # it failed, and what served before serves again
    FAILED = "failed"  # it failed, and could not put the previous state back
    INTERRUPTED = "interrupted"  # stopped (a signal, a lost lease) before it finished

    @property
    def ok(self) -> bool:
        return self in (Outcome.SUCCEEDED, Outcome.UNCHANGED)


class EventKind(StrEnum):
    """What a progress event tells a person watching."""

    STEPS = "steps"  # the steps of one poll, about to run
    WAITING = "waiting"  # what the run waits for, when that changes
    CONVERGED = "converged"  # the target is reached
    FAILED = "failed"  # the run failed; a rollback may follow
    ROLLBACK = "rollback"  # restoring what served before
