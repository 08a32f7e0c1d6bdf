"""The seam between the local provider and a load-balancer process (one per region/pool).

Two implementations: ``haproxy.HaproxyBalancer`` (HAProxy's runtime API, as Octavia's
amphorae run it) and ``proxy.BuiltinBalancer`` (a zero-install asyncio reverse proxy).
Both run as detached processes that outlive ``phoenix deploy``, keep their desired
members in ``<pool_dir>/members.json`` so a restarted balancer is re-derived from state,
and balance per HTTP request (round robin over members that are SERVING and pass the
balancer's own health check), so draining works with keep-alive clients too.

Each running balancer has a supervisor (``supervisor.py``), started with it, that
restarts it from ``config.json`` and ``members.json`` when it dies: a cloud's load
balancer does not stay down until someone next runs a Phoenix command. Reads
(``list_members``) never start or restart a balancer; writers (``ensure_running`` and the
member changes) do.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from phoenix import errors
from phoenix.model import Member, MemberAction, MemberChange, MemberState

CONFIG_FILE = "config.json"
MEMBERS_FILE = "members.json"


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
    # Start a supervisor with the process that restarts it when it dies (supervisor.py).
    supervise: bool = True
    # While this file exists the balancer is meant to be down (a region outage's marker):
    # its supervisor leaves it dead instead of undoing the drill.
    hold_file: Path | None = None


class Balancer(Protocol):
    """One pool's balancer process. All methods are idempotent and safe across processes."""

    config: BalancerConfig

    def ensure_running(self) -> None:
        """Start the process if it is not running (restoring members from members.json),
        and its supervisor with it (``config.supervise``)."""
        ...

    def ensure_process(self) -> bool:
        """Only the process part of ``ensure_running`` (the supervisor's restart, which must
        not start another supervisor); True when it started a process."""
        ...

    def running(self) -> bool:
        ...

    def pid(self) -> int | None:
        """The balancer process's pid while it lives, else None. Cheap (no request), so a
        supervisor can ask it several times a second."""
        ...

    def url(self) -> str:
        """Where clients send requests, e.g. ``http://127.1.255.254:8080``."""
        ...

    def list_members(self) -> list[Member]:
        """Members with state SERVING/DRAINING and ``active_connections`` (in-flight requests).

        A read: it never starts the process; ``errors.Transient`` when it does not answer.
        """
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

    def change_members(self, changes: Sequence[MemberChange]) -> None:
        """Apply a batch (``MemberBatcher``) with one members.json update and one
        conversation with the process; each change as idempotent as its single call,
        except that draining a missing member is ignored. Adds go in first."""
        ...

    def stop(self) -> None:
        """Stop the process and its supervisor, leaving nothing running (members.json is
        kept); the supervisor does not bring a stopped balancer back."""
        ...


_BATCH_ORDER = {MemberAction.ADD: 0, MemberAction.DRAIN: 1, MemberAction.REMOVE: 2}


def batch_order(changes: Sequence[MemberChange]) -> list[MemberChange]:
    """``changes`` as a batch applies them: adds, then drains, then removals (stable)."""
    return sorted(changes, key=lambda change: _BATCH_ORDER[change.action])


def read_config(pool_dir: Path) -> BalancerConfig:
    """The config a balancer was last started with (``<pool_dir>/config.json``).

    How a restarted process (the built-in proxy, or a supervisor's restart) re-derives
    the balancer from state; both kinds write the same keys.
    """
    path = pool_dir / CONFIG_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        check_path = data.get("check_path")
        config = BalancerConfig(
            pool_dir=pool_dir,
            listen_host=str(data["listen_host"]),
            listen_port=int(data["listen_port"]),
            check_path=None if check_path is None else str(check_path),
            check_interval=float(data.get("check_interval", 0.5)),
            check_rise=int(data.get("check_rise", 1)),
            check_fall=int(data.get("check_fall", 2)),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise errors.InputError(f"{path}: cannot read the balancer config: {exc!r}") from exc
    if config.check_interval <= 0 or config.check_rise < 1 or config.check_fall < 1:
        raise errors.InputError(
            f"{path}: check_interval must be > 0, check_rise and check_fall >= 1"
        )
    return config


def saved_members(pool_dir: Path) -> list[Member]:
    """The desired members in ``members.json``, as a balancer that is not running serves
    them: nobody (``online=False``), in-flight requests unknown.

    The honest answer of a read while the process is down; both layouts are read
    (``{name: {address, port, state}}``, and the older list of ``{name, ...}``).
    """
    path = pool_dir / MEMBERS_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise errors.InputError(
            f"{path}: not a valid members file ({exc}); fix it, or delete it and re-add the"
            " members"
        ) from exc
    try:
        entries = (
            [{"name": name, **fields} for name, fields in raw.items()]
            if isinstance(raw, dict)
            else list(raw)
        )
        return [
            Member(
                name=str(entry["name"]),
                address=str(entry["address"]),
                port=int(entry["port"]),
                state=MemberState(entry.get("state", MemberState.SERVING.value)),
                active_connections=None,
                online=False,
            )
            for entry in entries
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise errors.InputError(
            f"{path}: not a valid members file ({exc!r}); fix it, or delete it and re-add"
            " the members"
        ) from exc
