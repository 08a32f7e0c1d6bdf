"""Calling a provider with retries: what every caller of the cloud shares.

Transient errors (5xx, 429 with Retry-After, timeouts) are retried with exponential
backoff and jitter, bounded in attempts, honouring Retry-After; permanent ones (quota,
auth, bad request) fail at once. A change to the cloud may carry a *guard*, run before
every attempt (the lease's fence: a stalled actor must not write after losing the
lease), and waits go through an injected ``sleep`` (the clock's, or the lease's, which
renews the lease while it waits). The engine's executor, the region mover, ``plan``,
``status`` and ``destroy`` all call through one of these, so none needs an engine to
borrow retries from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from phoenix import api_calls
from phoenix.errors import Transient
from phoenix.log import get_logger
from phoenix.providers.base import Clock, Provider

T = TypeVar("T")
log = get_logger("phoenix.executor")


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to retry a transient failure before giving up on a step."""

    attempts: int = 6
    initial: float = 0.2
    maximum: float = 10.0
    jitter: float = 0.5


class RetryingCaller:
    """Calls one provider's API with retries (see the module docstring)."""

    def __init__(
        self,
        provider: Provider,
        *,
        clock: Clock,
        retry: RetryPolicy | None = None,
        guard: Callable[[], None] | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.provider = provider
        self.retry = retry or RetryPolicy()
        # Called before every attempt of a mutation: the lease's fence, which raises
        # LeaseLost when the poll's check went stale (a stall, a long back-off).
        self.guard = guard
        # How a back-off waits: the lease's wait renews the lease meanwhile (a
        # Retry-After of a minute must not cost a 5 s lease).
        self.sleep = sleep or clock.sleep

    def call(self, fn: Callable[[], T], service: str = "compute") -> T:
        """Call the provider's ``service``, retrying transient errors (honouring
        Retry-After). Each attempt is counted (``phoenix.api_calls``) unless the provider
        counts its own requests (``Provider.requests``), which is the truer number."""
        return self._retrying(fn, service, guarded=False)

    def mutate(self, fn: Callable[[], T], service: str) -> T:
        """``call`` for a change to the cloud: the guard runs before every attempt."""
        return self._retrying(fn, service, guarded=True)

    def _retrying(self, fn: Callable[[], T], service: str, *, guarded: bool) -> T:
        guard = self.guard if guarded else None
        provider = self.provider.name
        counted_by_provider = self.provider.requests is not None

        def attempt() -> T:
            if not counted_by_provider:
                api_calls.count(provider, service)
            return fn()

        retrying = Retrying(
            retry=retry_if_exception_type(Transient),
            stop=stop_after_attempt(self.retry.attempts),
            wait=self._wait,
            sleep=self.sleep,
            reraise=True,
            before=(lambda _state: guard()) if guard is not None else (lambda _state: None),
            before_sleep=_log_retry,
        )
        return retrying(attempt)

    def _wait(self, state: RetryCallState) -> float:
        backoff = wait_exponential_jitter(
            multiplier=self.retry.initial, max=self.retry.maximum, jitter=self.retry.jitter
        )(state)
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, Transient) and error.retry_after is not None:
            return max(backoff, min(error.retry_after, self.retry.maximum * 6))
        return backoff


def _log_retry(state: RetryCallState) -> None:
    outcome = state.outcome
    error = outcome.exception() if outcome is not None else None
    log.warning(
        "transient provider error, retrying",
        attempt=state.attempt_number,
        error=str(error),
    )
