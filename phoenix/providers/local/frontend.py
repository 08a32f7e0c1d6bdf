"""The local DNS stand-in that serves: each record set is a global front-end balancer.

A real DNS failover moves clients from one region's load balancer to another's by
changing a record. On one machine nothing resolves names, so ``LocalDns`` makes the
record *serve* instead: every record ``<name>.<zone>`` gets a front-end balancer process
(the kind the provider uses: HAProxy or the built-in proxy) listening on
``127.0.<k>.254:<lb_port>``, whose members are the record's values, i.e. the region
balancers' addresses (``127.<region>.255.254``) on ``lb_port``. Clients use
``LocalDns.url(zone, name)`` as they would use the DNS name, and ``set_record`` is the
failover switch.

Why a switch drops no request: the new values are added first, ``set_record`` waits
(bounded by ``switch_timeout``) until the front end's own health check (the regions'
check path, through the region balancer) lets them take traffic, and only then removes
the values that left the record. Removal is immediate rather than a long drain, because
the old region may be dead; in-flight requests on it still finish (both balancers stop
new requests at once and let running ones end). A value that stays is not touched.

State: record sets in ``dns.json`` (``FileDns``, unchanged), front-end numbers in
``frontends.json``, each front end under ``frontends/<name>.<zone>/`` (its balancer's
config, members.json, pid and log). dns.json is the desired state. A front end whose
process dies is restarted within about a second by its supervisor (``supervisor.py``),
from its members.json, which ``set_record`` keeps equal to the record's values;
``ensure_frontend`` and the next ``set_record`` also restart it and re-derive it from
dns.json. Reads (``get_record``, ``url``, ``record_problems``) never start one. Front
ends live outside ``regions/``, so a region outage never touches them: like DNS, they
are global.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from phoenix import log as plog
from phoenix.clock import SystemClock
from phoenix.errors import BadRequest, InputError, NotFound, Transient
from phoenix.files import locked
from phoenix.model import DnsRecord, Member, MemberState
from phoenix.providers.base import Clock
from phoenix.providers.local.balancer import Balancer, BalancerConfig
from phoenix.providers.local.images import write_json_atomic
from phoenix.providers.local.store import FileDns
from phoenix.providers.local.supervisor import LOG_FILE as SUPERVISOR_LOG
from phoenix.providers.local.supervisor import stopped_on_purpose, supervisor_running
from phoenix.waiting import wait_until


class FrontendHost(Protocol):
    """What the front ends need from the local cloud (``LocalCloud`` is one): where its
    state lives, how its balancers are made and checked. A Protocol, so that this module
    does not import the provider that imports it."""

    state_dir: Path
    lb_port: int
    check_path: str | None
    check_interval: float

    def make_balancer(self, config: BalancerConfig) -> Balancer: ...

__all__ = ["MAX_FRONTENDS", "SWITCH_TIMEOUT", "LocalDns", "frontend_host", "parse_value"]

log = plog.get_logger("phoenix.providers.local.frontend")

MAX_FRONTENDS = 250  # 127.0.<k>.254 for k in 1..250, as regions are 127.<n>.x.y
SWITCH_TIMEOUT = 15.0  # seconds set_record waits for new values to take traffic
FRONTENDS_FILE = "frontends.json"
FRONTENDS_DIR = "frontends"
LOCK_FILE = "frontend.lock"  # not the balancers' own lock files: those are held inside
_POLL_SECONDS = 0.05


def frontend_host(number: int) -> str:
    """The loopback address of front end ``number`` (``127.0.<number>.254``)."""
    return f"127.0.{number}.254"


class LocalDns:
    """``Dns`` for the local provider: ``FileDns`` records, each served by a front end.

    ``cloud`` gives the state directory, the balancer kind, ``lb_port`` and the check
    path and interval (the same as the region balancers', so a region counts as up by
    the same test at both levels).
    """

    def __init__(
        self,
        cloud: FrontendHost,
        *,
        switch_timeout: float = SWITCH_TIMEOUT,
        clock: Clock | None = None,
    ) -> None:
        self.cloud = cloud
        self.switch_timeout = switch_timeout
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.records = FileDns(cloud.state_dir / "dns.json")

    # --- Dns ------------------------------------------------------------------------

    def get_record(self, zone: str, name: str) -> DnsRecord | None:
        return self.records.get_record(zone, name)

    def set_record(self, zone: str, name: str, values: tuple[str, ...], ttl: int) -> None:
        """Write the record, then move the front end's traffic to ``values``.

        Values the front end can serve are loopback IPv4 addresses (the region
        balancers'), optionally as ``address:port`` or ``http://address:port``. Any
        other value is recorded, as DNS would, but not served: a record with no servable
        value starts no front end (one already running is emptied). Raises
        ``Transient`` when a new value does not take traffic within ``switch_timeout``:
        the old values then keep serving and a retry (or ``ensure_frontend``) finishes
        the switch.
        """
        key = _record_key(zone, name)
        targets = self._targets(values)
        self.records.set_record(zone, name, values, ttl)
        if targets or self._number(key, allocate=False) is not None:
            self._reconcile(key, targets)

    # --- the front end --------------------------------------------------------------

    def url(self, zone: str, name: str) -> str:
        """Where clients send requests for the record, e.g. ``http://127.0.1.254:8080``."""
        number = self._number(_record_key(zone, name))
        assert number is not None  # allocated on demand
        return f"http://{frontend_host(number)}:{self.cloud.lb_port}"

    def ensure_frontend(self, zone: str, name: str) -> None:
        """Start the record's front end if it is not running and make its members the
        record's values (dns.json is the truth); a restarted one serves on return.
        ``NotFound`` when there is no record; ``Transient`` when none of its values
        takes traffic within ``switch_timeout``."""
        record = self.get_record(zone, name)
        if record is None:
            raise NotFound(f"no DNS record {name}.{zone} in {self.records.path}")
        self._reconcile(_record_key(zone, name), self._targets(record.values))

    def stop_frontend(self, zone: str, name: str) -> None:
        """Stop the record's front-end process and its supervisor (destroy); the record
        and number stay."""
        key = _record_key(zone, name)
        number = self._number(key, allocate=False)
        if number is not None:
            self._balancer(key, number).stop()

    def record_problems(self, zone: str, name: str) -> list[str]:
        """What is wrong with the record's front end, for ``phoenix status``: one that
        should serve and whose process is not running. A read: it starts nothing."""
        key = _record_key(zone, name)
        number = self._number(key, allocate=False)
        if number is None:
            return []
        balancer = self._balancer(key, number)
        pool_dir = balancer.config.pool_dir
        if not pool_dir.exists() or stopped_on_purpose(pool_dir) or balancer.pid() is not None:
            return []
        what = f"DNS front end of {key} ({balancer.url()})"
        if supervisor_running(pool_dir):
            return [f"{what} is not running; its supervisor is restarting it (see"
                    f" {pool_dir / SUPERVISOR_LOG})"]
        return [f"{what} is not running and has no supervisor to restart it; the next"
                " switch of the record (a deploy, failover or failback) restarts both"]

    # --- helpers ----------------------------------------------------------------------

    def _reconcile(self, key: str, targets: dict[str, tuple[str, int]]) -> None:
        """Add what is missing, wait until it takes traffic, then remove the rest."""
        number = self._number(key)
        assert number is not None
        balancer = self._balancer(key, number)
        balancer.config.pool_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with locked(balancer.config.pool_dir / LOCK_FILE, parents=True):
            restarted = not balancer.running()
            balancer.ensure_running()  # restarted from its members.json if it died
            current = {m.name: m for m in balancer.list_members()}
            added = [n for n, t in targets.items() if not _serves(current.get(n), t)]
            for member in added:
                address, port = targets[member]
                balancer.add_member(member, address, port)
            if added:
                self._await_online(key, balancer, added)
            elif restarted and targets:
                # A restarted HAProxy re-adds members unchecked: serve before returning.
                self._await_online(key, balancer, list(targets), any_of=True)
            removed = sorted(set(current) - set(targets))
            for member in removed:
                balancer.remove_member(member)
        if added or removed:
            log.info("dns front end switched", record=key, url=balancer.url(),
                     added=added, removed=removed)

    def _await_online(
        self, key: str, balancer: Balancer, names: list[str], *, any_of: bool = False
    ) -> None:
        """Until every one of ``names`` (``any_of``: one of them) takes traffic, by the
        balancer's own check; ``Transient`` after ``switch_timeout``."""
        pending: list[str] = []

        def online() -> bool:
            nonlocal pending
            members = {m.name: m for m in balancer.list_members()}
            pending = [n for n in names if n not in members or members[n].online is not True]
            return not pending or (any_of and len(pending) < len(names))

        if wait_until(online, self.switch_timeout, self.clock, interval=_POLL_SECONDS):
            return
        check = self.cloud.check_path or "a TCP connect"
        raise Transient(
            f"DNS front end for {key} ({balancer.url()}): {', '.join(pending)} not"
            f" taking traffic after {self.switch_timeout:g}s (the front end checks"
            f" {check} through each region's load balancer); the record's other"
            " values keep serving; retry set_record once that region serves"
        )

    def _balancer(self, key: str, number: int) -> Balancer:
        return self.cloud.make_balancer(
            BalancerConfig(
                pool_dir=self.cloud.state_dir / FRONTENDS_DIR / key,
                listen_host=frontend_host(number),
                listen_port=self.cloud.lb_port,
                check_path=self.cloud.check_path,
                check_interval=self.cloud.check_interval,
            )
        )

    def _number(self, key: str, *, allocate: bool = True) -> int | None:
        """The record's front-end number k, persisted so its address never changes."""
        path = self.cloud.state_dir / FRONTENDS_FILE
        with locked(self.cloud.state_dir / f".{FRONTENDS_FILE}.lock", parents=True):
            numbers: dict[str, int] = json.loads(path.read_text()) if path.exists() else {}
            if key not in numbers and allocate:
                free = sorted(set(range(1, MAX_FRONTENDS + 1)) - set(numbers.values()))
                if not free:
                    raise InputError(
                        f"the local provider supports at most {MAX_FRONTENDS} DNS records"
                        f" with a front end ({path})"
                    )
                numbers[key] = free[0]
                write_json_atomic(path, numbers, mode=0o600)
            return numbers.get(key)

    def _targets(self, values: tuple[str, ...]) -> dict[str, tuple[str, int]]:
        """The servable values as front-end members, by member name."""
        targets: dict[str, tuple[str, int]] = {}
        for value in values:
            target = parse_value(value, self.cloud.lb_port)
            if target is None:
                log.info("dns value not served by the local front end (not a loopback"
                         " IPv4 address)", value=value)
                continue
            targets[f"{target[0]}:{target[1]}"] = target
        return targets


def parse_value(value: str, default_port: int) -> tuple[str, int] | None:
    """A record value as (address, port) when the front end can serve it, else None.

    Servable: ``127.2.255.254``, ``127.2.255.254:8080`` or ``http://127.2.255.254:8080``
    (the port defaults to the region balancers' lb_port). Only loopback IPv4: the front
    end can reach nothing else, and a host name would need the resolver this replaces.
    """
    text = value.strip()
    host, port = text, default_port
    try:
        if "://" in text:
            parts = urlsplit(text)
            host, port = parts.hostname or "", parts.port or default_port
        elif text.count(":") == 1:
            host, port_text = text.split(":")
            port = int(port_text)
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if not isinstance(address, ipaddress.IPv4Address) or not address.is_loopback:
        return None
    return (str(address), port) if 0 < port < 65536 else None


def _record_key(zone: str, name: str) -> str:
    """``<name>.<zone>``, as dns.json keys it; also the front end's directory name."""
    key = f"{name}.{zone}"
    if not name or not zone or "/" in key or "\0" in key or key.startswith("."):
        raise BadRequest(f"DNS record {name!r} in zone {zone!r}: not a usable name")
    return key


def _serves(member: Member | None, target: tuple[str, int]) -> bool:
    """The member is there, at the target, and not on its way out: leave it alone."""
    return (
        member is not None
        and (member.address, member.port) == target
        and member.state is MemberState.SERVING
    )
