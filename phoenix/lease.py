"""The app's lease: one actor (deploy, rollback, failover, destroy) per app at a time.

In ARCHITECTURE terms the lease is state in the cloud like everything else (the
provider's object store, no local file), and every write to it is keyed by a
deterministic name. It needs only the one atomic operation every store Phoenix has
really offers, *create if absent* (Swift and S3 ``If-None-Match: *``, ``O_EXCL`` in a
directory, a dict under a lock in memory); no compare-and-swap, no delete-then-create.

* **Generations.** The lease is a sequence of objects ``apps/APP/lease/000000000042``.
  Taking it means creating the *next* generation exclusively, so whatever the
  interleaving, exactly one contender wins each generation. The newest generation says
  who holds the lease (or that it was released). Only the actor that created a
  generation ever writes it again (renew, release), and nobody deletes the newest, so
  generation numbers only grow.
* **Fencing.** The generation is the fencing token: the holder of generation ``g`` has
  lost the lease as soon as ``g + 1`` exists. ``heartbeat`` checks that with one GET,
  once per poll, *after* the poll's reads and plan and right before its mutations (a
  stall in the middle of a read must not let a stale plan act); ``guard`` checks again
  before each further mutation only if the last check is over a quarter TTL old (after
  a stall, or a long retry back-off); a deploy that lost its lease raises
  ``LeaseLost`` (exit 4, "lost the lock to ...") and does nothing more: no rollback, no
  record. Servers and records carry the generation that made them.
* **Takeover.** A released generation is followed at once. One held by a dead process
  on this host is taken over at once (``kill -9``, then rerun). Otherwise a lease must
  *prove dead*: its expiry (by its holder's clock) has passed by ours, and then the
  object does not change for one whole TTL measured by our own clock (Kubernetes'
  leader election does the same). Clocks minutes apart can only make a contender wait
  longer: a live holder renews every quarter TTL, so a contender that thinks the lease
  expired sees it renewed, and backs off (``LockHeld``).
* **Renewal** comes from one place, ``heartbeat``, which the engine calls every poll
  and ``wait`` calls between slices of every long wait (the health gate at the load
  balancer, the DNS TTL wait of a failover).

What this does not give: a holder stopped (``SIGSTOP``, a laptop lid) while a
mutation's request is already on its way (or in the instant between a fresh check and
the call) may still see that one call land after the lease moved on; it stops before
its next one. The TTL bounds how long a dead holder blocks others.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta

from phoenix.errors import LeaseLost, LockHeld
from phoenix.processes import pid_alive
from phoenix.providers.base import Clock, Store

SCHEMA_VERSION = 1
WATCH_PREFIX = "watch-"
"""Deploy ids of ``phoenix watch``: a lease they hold is waited for by a deploy."""
KEEP_GENERATIONS = 8
"""Generations older than the holder's minus this many are deleted by the holder."""
_DIGITS = 12


@dataclass(frozen=True)
class LockInfo:
    """One generation's content."""

    owner: str
    host: str
    pid: int
    deploy_id: str
    expires_at: str
    generation: int = 0
    renewals: int = 0
    released: bool = False
    broken_by: str | None = None
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def parse(cls, data: bytes, generation: int) -> LockInfo | None:
        """The lease in ``data``, or None when unreadable; unknown fields are ignored (a
        newer Phoenix may add some)."""
        try:
            raw = json.loads(data)
            known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
            return replace(cls(**known), generation=generation)
        except (ValueError, TypeError, AttributeError):
            return None


class DeployLock:
    """The lease on one app for one actor (``deploy_id``); see the module docstring."""

    def __init__(self, store: Store, app: str, deploy_id: str, ttl: float = 120.0) -> None:
        self.store = store
        self.app = app
        self.prefix = f"apps/{app}/lease/"
        self.deploy_id = deploy_id
        self.ttl = ttl
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.generation: int | None = None
        self._renewals = 0
        self._renewed_at: datetime | None = None
        self._fenced_at: datetime | None = None

    # --- keys --------------------------------------------------------------------------

    def key(self, generation: int) -> str:
        return f"{self.prefix}{generation:0{_DIGITS}d}"

    def _generations(self) -> list[int]:
        found = []
        for key in self.store.list(self.prefix):
            tail = key[len(self.prefix):]
            if tail.isdigit() and len(tail) == _DIGITS:
                found.append(int(tail))
        return sorted(found)

    def newest(self) -> tuple[int, bytes | None]:
        """The newest generation and its bytes (0 and None when there is none).

        A listing may lag behind a create (Swift's container listings are updated
        asynchronously), so the generations after the listed newest are probed by GET,
        which is consistent."""
        listed = self._generations()
        generation = listed[-1] if listed else 0
        data = self.store.get(self.key(generation)) if generation else None
        while True:
            following = self.store.get(self.key(generation + 1))
            if following is None:
                return generation, data
            generation, data = generation + 1, following

    def holder(self) -> LockInfo | None:
        """Who holds the lease now (None when nobody does or it was released)."""
        held = self._held()
        if held is None:
            return None
        generation, info = held
        return info or LockInfo("?", "?", 0, "?", "?", generation=generation)

    def _held(self) -> tuple[int, LockInfo | None] | None:
        """The newest generation and its content (None if unreadable), unless there is
        none or it was released."""
        generation, data = self.newest()
        if data is None:
            return None
        info = LockInfo.parse(data, generation)
        if info is not None and info.released:
            return None
        return generation, info

    # --- acquire -----------------------------------------------------------------------

    @property
    def owner(self) -> str:
        return f"{self.deploy_id}@{self.host}:{self.pid}"

    def _info(self, now: datetime, generation: int, *, released: bool = False,
              broken_by: str | None = None) -> bytes:
        info = LockInfo(
            owner=self.owner,
            host=self.host,
            pid=self.pid,
            deploy_id=self.deploy_id,
            expires_at=(now + timedelta(seconds=self.ttl)).isoformat(),
            generation=generation,
            renewals=self._renewals,
            released=released,
            broken_by=broken_by,
        )
        return json.dumps(asdict(info)).encode()

    def acquire(self, clock: Clock, *, patience: float = 0.0) -> int:
        """Take the lease, or raise ``LockHeld``; returns the generation now held.

        May wait up to one TTL for a lease that looks expired to prove dead. With
        ``patience``, a lease held by ``phoenix watch`` (a heal takes a boot and a health
        gate) is waited for up to that many seconds: a deploy does not fail because the
        reconciler happened to be replacing a node."""
        started = clock.now()
        while True:
            try:
                return self._acquire(clock)
            except LockHeld as held:
                waited = (clock.now() - started).total_seconds()
                if not held.owner.startswith(WATCH_PREFIX) or waited >= patience:
                    raise
                clock.sleep(min(2.0, max(0.05, self.ttl / 8)))

    def _acquire(self, clock: Clock) -> int:
        for _ in range(5):
            generation, data = self.newest()
            info = LockInfo.parse(data, generation) if data is not None else None
            if info is not None and info.deploy_id == self.deploy_id and not info.released:
                # Our own create whose response was lost (the retry found it taken).
                return self._hold(generation, clock.now())
            taken = data is not None and not (info is not None and info.released)
            if taken and not self._takeover_allowed(info, generation, data or b"", clock):
                shown = info or LockInfo("?", "?", 0, "?", "?")
                raise LockHeld(self.app, shown.owner, shown.expires_at)
            now = clock.now()
            following = generation + 1
            if self.store.create_exclusive(self.key(following), self._info(now, following)):
                return self._hold(following, now)
            # Another contender won that generation: look again (it will usually hold).
        held = self.holder()
        raise LockHeld(self.app, held.owner if held else "?", held.expires_at if held else "?")

    def _hold(self, generation: int, now: datetime) -> int:
        self.generation = generation
        self._renewed_at = self._fenced_at = now
        self._forget_old(generation)
        return generation

    def _takeover_allowed(
        self, info: LockInfo | None, generation: int, data: bytes, clock: Clock
    ) -> bool:
        if (info is not None and info.host == self.host and info.pid != self.pid
                and not pid_alive(info.pid)):
            return True  # killed on this machine: no need to wait
        if info is not None and not self._expired(info, clock.now()):
            return False
        return self._proves_dead(generation, data, clock)

    def _expired(self, info: LockInfo, now: datetime) -> bool:
        try:
            return datetime.fromisoformat(info.expires_at) <= now
        except (TypeError, ValueError):
            return True  # unreadable: let it prove dead

    def _proves_dead(self, generation: int, data: bytes, clock: Clock) -> bool:
        """True when generation ``generation`` still reads exactly ``data`` (its holder
        never writes the same bytes twice: each renewal counts) one whole TTL, by our own
        clock, after we first read it, and has no successor: its holder did not renew
        for a TTL, so it is dead or stalled, and will be fenced if it wakes up.

        The TTL is measured from *after* the first read to *before* the last one, so the
        object is known unchanged for at least that long, however long a read took."""
        started = clock.now()
        step = max(0.05, min(self.ttl / 8, 5.0))
        while True:
            clock.sleep(step)
            before_read = clock.now()
            if self.store.get(self.key(generation)) != data:
                return False  # renewed or released: it is alive (or moved on)
            if self.store.get(self.key(generation + 1)) is not None:
                return False  # someone else took it meanwhile
            if (before_read - started).total_seconds() >= self.ttl:
                return True

    def _forget_old(self, generation: int) -> None:
        """Delete generations long superseded (never the newest few, which ``status``
        and a stalled actor's fence check may still read)."""
        for old in self._generations():
            if old < generation - KEEP_GENERATIONS:
                self.store.delete(self.key(old))

    # --- hold: fence, renew, release -----------------------------------------------------

    def fence(self, now: datetime | None = None) -> None:
        """Raise ``LeaseLost`` when a newer generation exists (one GET); ``now`` (when
        the check started) is remembered for ``guard``."""
        if self.generation is None:
            raise LeaseLost(self.app, "nobody (this actor never held the lock)")
        data = self.store.get(self.key(self.generation + 1))
        if data is not None:
            info = LockInfo.parse(data, self.generation + 1)
            who = info.broken_by or info.owner if info is not None else "?"
            raise LeaseLost(self.app, f"{who} (generation {self.generation + 1})")
        if now is not None:
            self._fenced_at = now

    def guard(self, now: datetime) -> None:
        """Before a mutation: fence again only when the last check is older than a
        quarter TTL. In a normal poll that costs nothing (the poll's heartbeat is
        fresh); after a stall (``SIGSTOP``, a slept laptop, a long retry back-off) in
        the middle of a poll it is what stops the poll's remaining steps. A takeover
        needs the lease unchanged for a TTL after it expired, so a check less than a
        quarter TTL old cannot have missed one."""
        if self._fenced_at is None or (now - self._fenced_at).total_seconds() >= self.ttl / 4:
            self.fence(now)

    def heartbeat(self, now: datetime) -> None:
        """Fence, then renew when a quarter of the TTL has passed since the last renewal."""
        self.fence(now)
        if self._renewed_at is None or (now - self._renewed_at).total_seconds() >= self.ttl / 4:
            self.renew(now)

    def renew(self, now: datetime) -> None:
        """Rewrite our own generation with a later expiry (after checking we hold it)."""
        self.fence(now)
        assert self.generation is not None
        self._renewals += 1
        self.store.put(self.key(self.generation), self._info(now, self.generation))
        self._renewed_at = now

    def wait(self, clock: Clock, seconds: float) -> None:
        """Sleep ``seconds``, with a heartbeat between slices of at most a quarter TTL."""
        end = clock.now() + timedelta(seconds=max(0.0, seconds))
        while (left := (end - clock.now()).total_seconds()) > 0:
            clock.sleep(min(left, self.ttl / 4))
            self.heartbeat(clock.now())

    def release(self, now: datetime) -> None:
        """Mark our generation released, if it is still the newest; never touches
        another actor's generation."""
        generation, self.generation = self.generation, None
        if generation is None:
            return
        if self.store.get(self.key(generation + 1)) is not None:
            return  # lost meanwhile: the lease is someone else's
        self.store.put(self.key(generation), self._info(now, generation, released=True))

    # --- a person breaking the lease -------------------------------------------------------

    def break_lease(self, now: datetime, *, force: bool, by: str) -> LockInfo | None:
        """End the current holder's lease (``phoenix unlock``): create the next generation
        as a released one, so the holder's next fence check stops it. Refuses a holder
        that looks alive unless ``force``. Returns whom it broke (None: nobody held it)."""
        held = self._held()
        if held is None:
            return None
        generation, info = held
        if not force and info is not None and self._looks_alive(info, now):
            raise LockHeld(
                self.app, info.owner, info.expires_at,
                hint="it looks alive; stop it first, or `phoenix unlock --force` if you are"
                " sure it is dead",
            )
        tombstone = self._info(now, generation + 1, released=True, broken_by=by)
        if not self.store.create_exclusive(self.key(generation + 1), tombstone):
            return self.break_lease(now, force=force, by=by)  # it moved on: look again
        return info or LockInfo("?", "?", 0, "?", "?", generation=generation)

    def _looks_alive(self, info: LockInfo, now: datetime) -> bool:
        if info.host == self.host:
            return pid_alive(info.pid)
        return not self._expired(info, now)

