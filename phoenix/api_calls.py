"""How many requests this process sent to each provider's API, by service.

A provider that sees its SDK's requests counts them itself (``phoenix.request_tally``:
openstacksdk's session, libcloud's connection, the memory cloud), which includes what
the SDK does on its own (tokens, version discovery, each page of a listing); for any
other provider the executor counts each attempt of each call. ``phoenix watch`` exports
the counts as ``phoenix_api_requests_total{provider,service}``, so an operator sees what
the reconciler costs the cloud's control plane, and a retry storm shows as a rate. A
process-wide count rather than one per engine: watch runs many engines (one per app and
round), and Prometheus wants one monotonic counter.
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
