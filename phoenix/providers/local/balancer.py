"""The seam between the local provider and a load-balancer process (one per region/pool).

Two implementations: ``haproxy.HaproxyBalancer`` (HAProxy's runtime API, as Octavia's
amphorae run it) and ``proxy.BuiltinBalancer`` (a zero-install asyncio reverse proxy).
Both run as detached processes that outlive ``phoenix deploy``, keep their desired
members in ``<pool_dir>/members.json`` so a restarted balancer is re-derived from state,
and balance per HTTP request (round robin over members that are SERVING and pass the
balancer's own health check), so draining works with keep-alive clients too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from phoenix.model import Member


@dataclass(frozen=True)
class BalancerConfig:
    """Everything a balancer process needs; written to ``<pool_dir>/config.json``."""

    pool_dir: Path  # state for this pool (mode 0700): config, members, pid, socket, logs
    listen_host: str  # e.g. "127.1.255.254"
    listen_port: int  # e.g. 8080
    check_path: str | None = "/healthz"  # HTTP check on each member; None: TCP connect check
    check_interval: float = 0.5  # seconds between the balancer's own checks of a member
    check_rise: int = 1  # consecutive successes before a member takes traffic
    check_fall: int = 2  # consecutive failures before a member stops taking traffic


class Balancer(Protocol):
    """One pool's balancer process. All methods are idempotent and safe across processes."""

    config: BalancerConfig

    def ensure_running(self) -> None:
        """Start the process if it is not running (restoring members from members.json)."""
        ...

    def running(self) -> bool:
        ...

    def url(self) -> str:
        """Where clients send requests, e.g. ``http://127.1.255.254:8080``."""
        ...

    def list_members(self) -> list[Member]:
        """Members with state SERVING/DRAINING and ``active_connections`` (in-flight requests)."""
        ...

    def add_member(self, name: str, address: str, port: int) -> None:
        """Add, or make SERVING again; it takes traffic once its check passes."""
        ...

    def drain_member(self, name: str) -> None:
        """No new requests; in-flight ones finish. Missing member: ``errors.NotFound``."""
        ...

    def remove_member(self, name: str) -> None:
        """Remove; a missing member is not an error."""
        ...

    def stop(self) -> None:
        """Stop the process and leave nothing running (members.json is kept)."""
        ...
