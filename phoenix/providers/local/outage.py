"""Region outages on the local provider: a power cut of one region, for failover drills.

The local counterpart of the memory provider's ``Faults.down_regions``. ``start_outage``
SIGKILLs every process of the region (each pool's balancer and every node's process
tree; SIGKILL, not SIGTERM, because a power cut gives nobody time to clean up) and
writes ``regions/<region>/outage.json``. While that marker exists, every region-scoped
call of ``LocalCompute`` and ``LocalLoadBalancer`` raises ``RegionUnavailable`` before
doing anything, as a cloud's unreachable regional API would, so nothing (in particular
no ``list_members``) brings a balancer of the dead region back up.

Each pool's balancer supervisor (``supervisor.py``) is not killed: it is the cloud's
control plane, which outlives a power cut of the data plane. It honours the marker
(its ``hold_file``): it leaves the balancer down while the marker exists, and kills one it
was restarting at the moment the outage began. ``end_outage`` removes the marker and
starts nothing itself: the region is "back" with its state on disk, the supervisors
restart the balancers from members.json within about a second (as a cloud's load
balancers come back after a real outage; a writer call would also start them), and the
dead nodes are reported ERROR ("node process died") by the existing code.

The marker lives in the state directory, so an outage started from one process (a test,
a drill script) is seen by ``phoenix deploy`` in another. The global front end
(``frontend.py``) lives outside ``regions/`` and is never part of an outage.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from phoenix import processes
from phoenix.errors import InputError, RegionUnavailable, Transient
from phoenix.providers.local import haproxy_config, proxy_server
from phoenix.providers.local.images import write_json_atomic
from phoenix.providers.local.nodes import kill_node_processes

__all__ = [
    "OUTAGE_FILE",
    "Outage",
    "check_region",
    "end_outage",
    "outage_of",
    "read_outage",
    "start_outage",
]

OUTAGE_FILE = "outage.json"
KILL_TIMEOUT = 5.0  # seconds a SIGKILLed balancer may take to disappear


@dataclass(frozen=True)
class Outage:
    """A region's outage as its marker records it."""

    region: str
    since: str  # ISO 8601, UTC
    reason: str

    def error(self) -> RegionUnavailable:
        """The error every region-scoped call raises while the region is down."""
        return RegionUnavailable(
            f"region {self.region} is unavailable: {self.reason} since {self.since}"
            " (a local outage: `phoenix drill recover` or `end_outage` ends it)",
            region=self.region,
        )


def start_outage(state_dir: Path, region: str, reason: str = "simulated outage") -> list[int]:
    """Power-cut ``region``: SIGKILL its balancers and node processes, then mark it down.

    Returns the pids killed. Idempotent: a second call kills whatever may have started
    since (normally nothing) and keeps the first call's ``since`` and ``reason``.
    The marker is written first so that no call of another process can restart a
    balancer between the kill and the marker; the kill sweep runs after it.
    """
    region_dir = _region_dir(state_dir, region)
    if read_outage(state_dir, region) is None:
        since = datetime.now(UTC).isoformat(timespec="seconds")
        region_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_json_atomic(
            region_dir / OUTAGE_FILE, {"since": since, "reason": reason}, mode=0o600
        )
    killed = _kill_balancers(region_dir / "pools")
    for node_dir in _node_dirs(region_dir):
        killed.extend(kill_node_processes(node_dir))
    return sorted(killed)


def end_outage(state_dir: Path, region: str) -> bool:
    """Mark ``region`` up again; False when it was not down. Nothing is started here: the
    balancers' supervisors bring them back, the dead nodes stay dead."""
    try:
        (_region_dir(state_dir, region) / OUTAGE_FILE).unlink()
    except FileNotFoundError:
        return False
    return True


def outage_of(state_dir: Path, region: str) -> str | None:
    """The reason ``region`` is down, or None when it is up."""
    outage = read_outage(state_dir, region)
    return None if outage is None else outage.reason


def read_outage(state_dir: Path, region: str) -> Outage | None:
    """The region's outage marker, or None. One failed ``open`` when the region is up, so
    every provider call can afford it."""
    path = _region_dir(state_dir, region) / OUTAGE_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        data = json.loads(text)
        return Outage(region, str(data["since"]), str(data["reason"]))
    except (ValueError, KeyError, TypeError):
        # A hand-edited marker still means "down": failing open would hide the drill.
        return Outage(region, "an unknown time", f"(unreadable {path})")


def check_region(state_dir: Path, region: str) -> None:
    """Raise ``RegionUnavailable`` when ``region`` is down; the guard of every call."""
    outage = read_outage(state_dir, region)
    if outage is not None:
        raise outage.error()


# --- helpers ----------------------------------------------------------------------------


def _region_dir(state_dir: Path, region: str) -> Path:
    if not region or region in (".", "..") or "/" in region or "\0" in region:
        raise InputError(f"region {region!r}: not a usable region name")
    return state_dir / "regions" / region


def _node_dirs(region_dir: Path) -> list[Path]:
    """Every node directory of every app. Hidden entries are skipped: a staging directory
    has no processes yet and a trash directory none any more."""
    return sorted(
        p for p in region_dir.glob("apps/*/nodes/*") if p.is_dir() and not p.name.startswith(".")
    )


def _kill_balancers(pools_dir: Path) -> list[int]:
    if not pools_dir.is_dir():
        return []
    found = [process for pool in pools_dir.iterdir() if pool.is_dir()
             for process in _balancers(pool)]
    left = processes.kill(found, timeout=KILL_TIMEOUT)
    if left:
        raise Transient(
            f"balancer process(es) {', '.join(map(str, sorted(left)))} survived SIGKILL"
            f" for {KILL_TIMEOUT:g}s; retry start_outage"
        )
    return sorted({process.pid for process in found})


def _balancers(pool_dir: Path) -> list[processes.Process]:
    """The live balancer processes of one pool: every process whose command line names
    this pool as a balancer's does, whatever ``haproxy.pid``/``proxy.pid`` say (a pid
    file may be lost or stale). A pid reused by an unrelated program is never included,
    nor the pool's supervisor (it names the pool too, but honours the outage marker)."""
    owned = _pool_arguments(pool_dir.resolve())
    return processes.find(argv=lambda argv: _runs(argv, owned))


def _pool_arguments(pool_dir: Path) -> set[bytes]:
    """The argv entries that only this pool's balancer carries: HAProxy runs
    ``haproxy -D -f <pool_dir>/haproxy.cfg``, the built-in one ``python -m <module>
    <pool_dir>``."""
    return {os.fsencode(pool_dir / haproxy_config.CONFIG_FILE), os.fsencode(pool_dir)}


def _runs(argv: list[bytes], owned: set[bytes]) -> bool:
    if not argv or not owned.intersection(argv):
        return False
    is_haproxy = os.path.basename(argv[0]) == b"haproxy"
    return is_haproxy or proxy_server.MODULE.encode() in argv
