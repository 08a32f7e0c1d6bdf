"""How many calls this process made to each provider's API, by service.

Counted in one place, the executor, which makes every provider call Phoenix makes
(each attempt of a retried call counts: a 503 was a request too). ``phoenix watch``
exports the counts as ``phoenix_api_requests_total{provider,service}``, so an operator
sees what the reconciler costs the cloud's control plane, and a retry storm shows as a
rate. A process-wide count rather than one per engine: watch runs many engines (one per
app and round), and Prometheus wants one monotonic counter.
"""

from __future__ import annotations

import threading
from collections import Counter

SERVICES = ("compute", "image", "load_balancer", "dns", "store")
"""The services a call is counted under (the provider Protocol's parts, and images)."""

_counts: Counter[tuple[str, str]] = Counter()
_lock = threading.Lock()


def count(provider: str, service: str) -> None:
    """One more call to ``provider``'s ``service``."""
    with _lock:
        _counts[(provider, service)] += 1


def snapshot() -> dict[tuple[str, str], int]:
    """The counts so far, (provider, service) -> calls."""
    with _lock:
        return dict(_counts)
