"""The machinery every call into the memory cloud goes through: counting, injected
faults, rate limits, seeded draws, lazy state transitions by the clock, and the state
file (re-read when another process changed it, written atomically under a lock)."""

from __future__ import annotations

import collections
import contextlib
import hashlib
import heapq
import json
import os
import threading
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path

from phoenix import errors
from phoenix.clock import FakeClock
from phoenix.files import atomic_write, locked
from phoenix.model import NodeState
from phoenix.providers.base import Clock
from phoenix.providers.memory.faults import Faults, Latency, RateLimits
from phoenix.providers.memory.state import (
    BOOT_FAILED,
    NO_VALID_HOST,
    CloudState,
    state_from_json,
    state_to_json,
)
from phoenix.request_tally import RequestTally

_SERVICE_OF_CALL = {"compute": "compute", "compute.find_images": "image",
                    "compute.delete_image": "image", "lb": "load_balancer", "dns": "dns",
                    "store": "store"}
"""The service a memory call (or its prefix) stands for; ``health`` probes are not counted."""


class CloudCore:
    """The memory cloud's state and its call path. ``MemoryCloud`` adds the setup and
    inspection helpers and assembles the ``Provider``; each Protocol part (``compute.py``,
    ``balancer.py``, ...) acts on the state through ``call``.

    ``clock`` defaults to a fresh ``FakeClock`` (exposed as ``self.clock``).
    """

    delete_seconds: float = 0.5
    """How long a deleted server stays DELETING before it disappears."""

    def __init__(
        self,
        regions: Sequence[str] = ("region-a", "region-b"),
        *,
        clock: Clock | None = None,
        boot_seconds: float = 1.0,
        faults: Faults | None = None,
        seed: int = 0,
        state_file: Path | None = None,
        latency: Latency | None = None,
    ) -> None:
        self.clock: Clock = clock if clock is not None else FakeClock()
        self.boot_seconds = boot_seconds
        self.faults = faults if faults is not None else Faults()
        self.latency = latency if latency is not None else Latency()
        self._rate_limits = RateLimits()
        self.calls: collections.Counter[str] = collections.Counter()
        # The control-plane requests, by service, as a real cloud's SDK would count them
        # (health probes are traffic to the nodes, not requests to the cloud's API).
        self.requests = RequestTally("memory")
        self.state_file = Path(state_file) if state_file is not None else None
        self._seed = seed
        self._draws: collections.Counter[str] = collections.Counter()
        self.lock = threading.RLock()
        self._state = CloudState()
        self.dirty = False
        self._seen_fd: int | None = None  # the state file version we last read or wrote
        self._file_depth = 0  # the file lock is taken once per outermost operation
        with self.lock, self._persisted(writes=False):
            for region in regions:
                if self._state.add_region(region):
                    self.dirty = True

    def total_calls(self) -> int:
        """All Protocol calls made so far, failed ones included."""
        with self.lock:
            return sum(self.calls.values())

    # --- the call path every Protocol method takes -----------------------------------

    @contextlib.contextmanager
    def call(
        self, name: str, region: str | None, *, mutating: bool = False, key: str = ""
    ) -> Iterator[CloudState]:
        """Count the call, inject faults, advance the region, persist; yield the state.

        ``key`` names what the call acts on (a server, a member, a store key), so that its
        fault draws do not depend on the order in which threads make their calls."""
        with self.lock:
            self.calls[name] += 1
            service = _SERVICE_OF_CALL.get(name) or _SERVICE_OF_CALL.get(name.partition(".")[0])
            if service is not None:
                self.requests.count(service)
            where = f"{name}|{region}|{key}"
            with self._persisted(writes=mutating):
                if region is not None:
                    self._known_region(region)
                    if self.faults.region_down(region, self.clock.now()):
                        raise errors.RegionUnavailable(
                            f"{name}: region {region} is unavailable (simulated outage)",
                            region=region,
                        )
                self._rate_limits.check(name, region, mutating=mutating, latency=self.latency,
                                       now=self.clock.now())
                if self.chance(self.faults.api_error_rate, "api", where):
                    raise errors.Transient(
                        f"{name}: HTTP 503 from the API (simulated); retry",
                        region=region,
                        retry_after=self.faults.retry_after,
                    )
                if region is not None:
                    self.advance(region)
                yield self._state
            lost = self.faults.lost_response_rate if mutating else self.faults.lost_read_rate
            if self.chance(lost, "lost", where):
                what = "the change was made" if mutating else "the call was answered"
                raise errors.Transient(
                    f"{name}: the response was lost (simulated; {what}); retry",
                    region=region,
                    retry_after=self.faults.retry_after,
                )

    def uniform(self, kind: str, key: str) -> float:
        """A seeded draw in [0, 1) for ``kind`` and ``key`` (the same every run)."""
        digest = hashlib.blake2b(f"{self._seed}|{kind}|{key}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64

    def chance(self, rate: float, kind: str, key: str) -> bool:
        """A draw that depends only on the seed, ``kind``, ``key`` and how many times that
        pair was drawn before (not on other calls, nor on thread order)."""
        # Draw only when the fault is on, so enabling one fault does not reshuffle others.
        if rate <= 0:
            return False
        slot = f"{kind}|{key}"
        number = self._draws[slot]
        self._draws[slot] = number + 1
        digest = hashlib.blake2b(
            f"{self._seed}|{slot}|{number}".encode(), digest_size=8
        ).digest()
        return int.from_bytes(digest, "big") / 2**64 < rate

    def _known_region(self, region: str) -> None:
        if region not in self._state.region_numbers:
            known = ", ".join(self._state.region_numbers) or "none"
            raise errors.UnknownResource(
                f"region {region!r} does not exist in the memory cloud (regions: {known});"
                " fix the spec's regions"
            )

    def advance(self, region: str) -> None:
        """Apply every transition the clock says has happened (BUILD->..., DELETING->gone)."""
        due = self._state.due.get(region)
        if not due:
            return
        now = self.clock.now()
        servers = self._state.servers[region]
        while due and due[0][0] <= now:
            _, server_id = heapq.heappop(due)
            server = servers.get(server_id)
            if server is None:
                continue
            if server.state is NodeState.BUILD and now >= server.ready_at:
                # Judged as of the moment the boot finished, however late we look.
                failed = server.boot_fail or self.faults.boot_fails(
                    server.name, server.image_id, server.ready_at
                )
                no_host = self.faults.region_no_host(server.region, server.ready_at)
                server.state = NodeState.ERROR if failed or no_host else NodeState.ACTIVE
                server.fault = NO_VALID_HOST if no_host else BOOT_FAILED if failed else None
                server.changed()
                self.dirty = True
            elif server.state is NodeState.DELETING and server.deleted_at is not None:
                gone_at = server.deleted_at + timedelta(seconds=self.delete_seconds)
                if now >= gone_at:
                    del servers[server_id]
                    self.dirty = True
                else:  # e.g. the boot entry of a server deleted while building
                    heapq.heappush(due, (gone_at, server_id))

    def new_server_id(self) -> str:
        """The next server id (``srv-000001``, ...), never reused."""
        number = self._state.next_server
        self._state.next_server += 1
        return f"srv-{number:06d}"

    def new_address(self, region: str) -> str:
        """The region's next address (``127.<region number>.*``)."""
        n = self._state.address_counters.get(region, 0)
        self._state.address_counters[region] = n + 1
        return f"127.{self._state.region_numbers[region]}.{(n // 254) % 256}.{n % 254 + 1}"

    # --- persistence ---------------------------------------------------------------

    @contextlib.contextmanager
    def _persisted(self, *, writes: bool = True) -> Iterator[None]:
        """Under the file lock: reload if another process wrote, save if we changed.

        Without a state file yet, what cannot change the cloud (reads, and the setup
        every process applies from the spec: regions, images, flavors, quotas) stays in
        memory: ``phoenix plan``, ``validate`` and ``status`` create no file. The first
        write saves it all."""
        if (
            self.state_file is None
            or self._file_depth
            or (not writes and not self.state_file.exists())
        ):
            try:
                yield
            finally:
                if self.state_file is None:
                    self.dirty = False
            return
        path = self.state_file
        path.parent.mkdir(parents=True, exist_ok=True)
        with locked(path.with_name(path.name + ".lock")):
            self._file_depth += 1
            try:
                self._reload_if_changed(path)
                try:
                    yield
                finally:
                    if self.dirty:
                        self._save(path)
                        self.dirty = False
            finally:
                self._file_depth -= 1

    def _reload_if_changed(self, path: Path) -> None:
        # Every writer replaces the file, never edits it in place, and we keep the version
        # we last read or wrote open (so its inode cannot be reused): same inode at the
        # path means nobody wrote since.
        try:
            st = path.stat()
        except FileNotFoundError:
            return
        if self._seen_fd is not None:
            seen = os.fstat(self._seen_fd)
            if (seen.st_dev, seen.st_ino) == (st.st_dev, st.st_ino):
                return
        fd = os.open(path, os.O_RDONLY)
        try:
            with open(fd, encoding="utf-8", closefd=False) as state_file:
                loaded = state_from_json(json.loads(state_file.read()))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            os.close(fd)
            raise errors.InputError(
                f"{path}: not a valid memory-cloud state file ({exc});"
                " delete it to start with an empty cloud"
            ) from exc
        except BaseException:
            os.close(fd)
            raise
        # Regions this process knows but the file does not (yet) keep their place.
        for region in self._state.region_numbers:
            if loaded.add_region(region):
                self.dirty = True
        self._state = loaded
        self._remember(fd)

    def _save(self, path: Path) -> None:
        text = json.dumps(state_to_json(self._state), indent=1, sort_keys=True)
        atomic_write(path, text)
        # Under the lock nobody else writes, so what is at the path now is what we wrote.
        self._remember(os.open(path, os.O_RDONLY))

    def _remember(self, fd: int) -> None:
        if self._seen_fd is not None:
            os.close(self._seen_fd)
        self._seen_fd = fd

    def close(self) -> None:
        """Let go of the state file's descriptor; the next call simply re-reads the file."""
        with self.lock:
            if self._seen_fd is not None:
                os.close(self._seen_fd)
                self._seen_fd = None


    def region_number(self, region: str) -> int:
        """The region's stable number (its addresses are ``127.<number>.*``); 0 if unknown."""
        with self.lock:
            return self._state.region_numbers.get(region, 0)
