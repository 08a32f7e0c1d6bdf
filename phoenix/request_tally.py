"""The requests a provider sent to its cloud's API, by service, as the wire saw them.

The executor knows how many Protocol calls it made, but one call may be many requests
(a listing follows pagination links, a batch member update reads the pool first, the SDK
fetches a token or discovers an API version on its own) and a retried call may be one
request the SDK retried itself. So a provider that can see its SDK's requests (a session
hook in openstacksdk's keystoneauth session, libcloud's connection) counts them here; the
deploy result, its history record and ``phoenix_api_requests_total`` report these counts,
and only a provider without a tally falls back to the executor's count of calls.

A tally is shared by everything that uses one provider (engines of several regions or
apps in one process): a deploy reports the difference between two snapshots.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping

from phoenix import api_calls


class RequestTally:
    """A thread-safe count of one provider's API requests by service."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def count(self, service: str) -> None:
        """One more request to ``service``; also counted process-wide for the metrics."""
        with self._lock:
            self._counts[service] += 1
        api_calls.count(self.provider, service)

    def snapshot(self) -> dict[str, int]:
        """Requests so far, service -> count."""
        with self._lock:
            return dict(self._counts)


def since(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    """The requests made between two snapshots, without the services that saw none."""
    return {service: n - before.get(service, 0) for service, n in sorted(after.items())
            if n != before.get(service, 0)}


def snapshot_of(tally: RequestTally | None) -> dict[str, int] | None:
    """A provider's requests so far by service (None: it does not count them)."""
    return tally.snapshot() if tally is not None else None
