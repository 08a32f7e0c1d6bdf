"""An in-memory cloud that behaves like a real one, failures included.

Why it exists: the engine must be tested against a cloud that boots servers slowly,
loses responses, runs out of quota and loses whole regions, and those tests must run in
milliseconds and reproduce exactly. So this cloud ships in the package (like httpx's
``MockTransport``) and serves as the fake for every engine test, for dry runs and for
benchmarks. It follows every rule of ``phoenix.providers.base`` (the contract suite in
``tests/contract`` runs against it like against any other provider).

How it stays honest without threads:

* Time comes from a ``Clock``. A server is BUILD until ``boot_seconds`` (plus
  ``Faults.slow_boot_seconds``) have passed *by that clock*, then ACTIVE or ERROR; a
  deleted server is DELETING for ``delete_seconds``, then gone. Transitions are computed
  lazily whenever a call looks at the region, so a ``FakeClock`` makes boot instant.
* Failures come from ``Faults``. Each draw is a hash of the seed, the call and what it
  acts on (a server's name, a store key) and how many times that was drawn before, so a
  failing run replays exactly even when the executor's worker threads interleave their
  calls differently. ``api_error_rate`` fails a call *before* it acts;
  ``lost_response_rate`` fails a mutating call *after* it acted, which is what proves the
  engine idempotent (``lost_read_rate`` does the same to reads). ``Faults.windows`` hold
  faults in force for a span of the cloud's clock only: an outage that starts and ends
  mid-deploy, a node whose health flaps.
* One ``RLock`` guards everything: calls may come from the executor's worker threads.
* With a ``state_file`` the cloud lives in a JSON file, re-read when another process
  changed it and written atomically (tmp + ``os.replace``) under an ``fcntl`` lock file,
  so ``phoenix deploy`` and a later ``phoenix status`` see the same cloud.

* ``Latency`` makes the cloud as slow as a real one, for honest benchmarks: boot times
  spread over a range, a load balancer that is PENDING_UPDATE for a while after each
  member write and refuses writes meanwhile (Octavia's 409), and a request rate per
  service beyond which calls get 429 with Retry-After. All zero by default: instant.

``calls`` counts every Protocol call (failed ones too) by ``"<part>.<method>"``, so tests
and benchmarks can assert how much API traffic a deploy costs. The inspection helpers
(``servers``, ``members``, ``user_data``) are not counted and inject no faults.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import dataclasses
import fcntl
import hashlib
import heapq
import json
import os
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from phoenix import errors
from phoenix.clock import FakeClock
from phoenix.model import (
    TAG_APP,
    TAG_ATTEMPT,
    TAG_INDEX,
    TAG_RELEASE,
    DnsRecord,
    Flavor,
    Health,
    Image,
    Member,
    MemberAction,
    MemberChange,
    MemberState,
    Node,
    NodeHealth,
    NodeRequest,
    NodeState,
    Quota,
)
from phoenix.provider_options import (
    MEMORY_STATE_FILE,
    MemoryFaults,
    MemoryFlavor,
    MemoryImage,
    MemoryOptions,
    memory_region_problems,
    parse_options,
)
from phoenix.providers.base import Clock, ImageQuery, Provider
from phoenix.request_tally import RequestTally

__all__ = [
    "DEFAULT_STATE_FILE",
    "FaultWindow",
    "Faults",
    "MemoryCloud",
    "open_memory_provider",
]

DEFAULT_STATE_FILE = Path(MEMORY_STATE_FILE)
_STATE_VERSION = 1
_DEFAULT_IMAGE = Image(id="img-golden", name="golden", created_at=datetime(2026, 1, 1, tzinfo=UTC))
_DEFAULT_FLAVOR = Flavor(id="flv-m1.small", name="m1.small", vcpus=1, ram_mb=512)
BOOT_FAILED = "boot failed"
NO_VALID_HOST = "No valid host was found. There are not enough hosts available. (simulated)"


@dataclass(frozen=True)
class FaultWindow:
    """Faults in force from ``start`` until (not including) ``end``, by the cloud's clock:
    a region outage that begins and ends mid-deploy, a node whose health flaps. Each set
    adds to the ``Faults`` field of the same name while the window is open."""

    start: datetime
    end: datetime
    down_regions: frozenset[str] = frozenset()
    no_host_regions: frozenset[str] = frozenset()
    unhealthy_regions: frozenset[str] = frozenset()
    unhealthy_nodes: frozenset[str] = frozenset()
    boot_fail_names: frozenset[str] = frozenset()
    """Judged at the moment a server finishes booting."""

    def open_at(self, when: datetime) -> bool:
        return self.start <= when < self.end


@dataclass
class Faults:
    """What goes wrong, and how often. Mutable: tests flip faults mid-run."""

    api_error_rate: float = 0.0
    """Fraction of calls that raise ``Transient`` before doing anything."""
    lost_response_rate: float = 0.0
    """Fraction of mutating calls that make the change, then raise ``Transient``."""
    boot_fail_images: set[str] = field(default_factory=set)
    """Image ids whose servers go to ERROR instead of ACTIVE."""
    boot_fail_names: set[str] = field(default_factory=set)
    """Server names that go to ERROR instead of ACTIVE."""
    boot_fail_rate: float = 0.0
    """Fraction of new servers that go to ERROR (drawn when the server is created)."""
    slow_boot_seconds: float = 0.0
    """Added to the boot time of servers created from now on."""
    unhealthy_images: set[str] = field(default_factory=set)
    """Image ids whose ACTIVE servers never pass health."""
    unhealthy_nodes: set[str] = field(default_factory=set)
    """Server names currently failing health (add/remove to flap a node)."""
    down_regions: set[str] = field(default_factory=set)
    """Regions where every call raises ``RegionUnavailable``."""
    no_host_regions: set[str] = field(default_factory=set)
    """Regions whose new servers fault with Nova's "No valid host" (no capacity)."""
    unhealthy_regions: set[str] = field(default_factory=set)
    """Regions where no ACTIVE server passes health (a broken network, say)."""
    retry_after: float | None = None
    """Retry-After hint carried by injected ``Transient`` errors."""
    lost_read_rate: float = 0.0
    """Fraction of read-only calls that answer, then raise ``Transient`` (the answer lost)."""
    windows: list[FaultWindow] = field(default_factory=list)
    """Faults in force for a span of time only (see ``FaultWindow``)."""

    def region_down(self, region: str, when: datetime) -> bool:
        return region in self.down_regions or any(
            region in w.down_regions and w.open_at(when) for w in self.windows
        )

    def region_no_host(self, region: str, when: datetime) -> bool:
        return region in self.no_host_regions or any(
            region in w.no_host_regions and w.open_at(when) for w in self.windows
        )

    def region_unhealthy(self, region: str, when: datetime) -> bool:
        return region in self.unhealthy_regions or any(
            region in w.unhealthy_regions and w.open_at(when) for w in self.windows
        )

    def node_unhealthy(self, name: str, when: datetime) -> bool:
        return name in self.unhealthy_nodes or any(
            name in w.unhealthy_nodes and w.open_at(when) for w in self.windows
        )

    def boot_fails(self, name: str, image_id: str, when: datetime) -> bool:
        return (
            image_id in self.boot_fail_images
            or name in self.boot_fail_names
            or any(name in w.boot_fail_names and w.open_at(when) for w in self.windows)
        )


@dataclass
class _Server:
    """A server as the cloud stores it (mutable; ``Node`` is the frozen view)."""

    id: str
    name: str
    region: str
    image_id: str
    flavor_id: str
    vcpus: int
    ram_mb: int
    address: str
    created_at: datetime
    ready_at: datetime
    metadata: dict[str, str]
    user_data: str = ""
    state: NodeState = NodeState.BUILD
    fault: str | None = None
    boot_fail: bool = False
    deleted_at: datetime | None = None
    _node: Node | None = field(default=None, repr=False, compare=False)

    def changed(self) -> None:
        """Forget the cached ``Node``; call after every mutation."""
        self._node = None

    def to_node(self) -> Node:
        """The frozen view (cached: listing thousands of servers is a benchmark path)."""
        if self._node is None:
            self._node = self._build_node()
        return self._node

    def _build_node(self) -> Node:
        return Node(
            id=self.id,
            name=self.name,
            region=self.region,
            app=self.metadata.get(TAG_APP, ""),
            release=self.metadata.get(TAG_RELEASE, ""),
            index=_int_tag(self.metadata.get(TAG_INDEX)),
            state=self.state,
            created_at=self.created_at,
            address=self.address,
            attempt=_int_tag(self.metadata.get(TAG_ATTEMPT)),
            fault=self.fault,
            metadata=dict(self.metadata),
            capacity_fault=self.fault == NO_VALID_HOST,
        )


@dataclass(frozen=True)
class _Usage:
    instances: int
    vcpus: int
    ram_mb: int


@dataclass
class _Limits:
    instances: int | None = None
    vcpus: int | None = None
    ram_mb: int | None = None


@dataclass
class Latency:
    """How slow the cloud is (``MemoryCloud(latency=...)``); zeros: instant."""

    boot_jitter_seconds: float = 0.0
    """Each server boots in ``boot_seconds`` plus a draw in [0, this) (seeded by name)."""
    lb_update_seconds: float = 0.0
    """After a member write, the region's balancer is PENDING_UPDATE this long; member
    writes meanwhile fail with a 409 (``Transient``), as Octavia's do."""
    requests_per_second: float = 0.0
    """Per service (compute, lb, store, dns), with a burst of one second's worth;
    beyond it a call fails with 429 and Retry-After. 0: no limit."""


@dataclass
class _Bucket:
    tokens: float
    at: datetime


@dataclass
class _State:
    """Everything a state file persists (faults, counters and config are per process)."""

    next_server: int = 1
    region_numbers: dict[str, int] = field(default_factory=dict)
    address_counters: dict[str, int] = field(default_factory=dict)
    servers: dict[str, dict[str, _Server]] = field(default_factory=dict)  # region -> id ->
    pools: dict[str, dict[str, dict[str, Member]]] = field(default_factory=dict)
    images: dict[str, Image] = field(default_factory=dict)
    image_regions: dict[str, set[str]] = field(default_factory=dict)
    flavors: dict[str, Flavor] = field(default_factory=dict)
    limits: dict[str, _Limits] = field(default_factory=dict)
    dns: dict[tuple[str, str], DnsRecord] = field(default_factory=dict)
    objects: dict[str, bytes] = field(default_factory=dict)
    # Not persisted: (due time, server id) of BUILD/DELETING servers per region, so a
    # call costs O(transitions due) rather than O(servers).
    due: dict[str, list[tuple[datetime, str]]] = field(default_factory=dict)

    def schedule(self, region: str, when: datetime, server_id: str) -> None:
        heapq.heappush(self.due.setdefault(region, []), (when, server_id))

    def add_region(self, region: str) -> bool:
        """Give a new region its stable address number; True when it was new."""
        if region in self.region_numbers:
            return False
        self.region_numbers[region] = max(self.region_numbers.values(), default=0) + 1
        self.address_counters.setdefault(region, 0)
        self.servers.setdefault(region, {})
        self.pools.setdefault(region, {})
        self.limits.setdefault(region, _Limits())
        return True


_SERVICE_OF_CALL = {"compute": "compute", "compute.find_images": "image", "lb": "load_balancer",
                    "dns": "dns", "store": "store"}
"""The service a memory call (or its prefix) stands for; ``health`` probes are not counted."""


class MemoryCloud:
    """An OpenStack-ish cloud in memory: servers, images, flavors, quota, LB, DNS, store.

    ``clock`` defaults to a fresh ``FakeClock`` (exposed as ``self.clock``): give the
    engine under test the same clock so its waits advance the cloud's boot times.
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
        self._lb_busy_until: dict[str, datetime] = {}  # region -> end of PENDING_UPDATE
        self._buckets: dict[str, _Bucket] = {}  # service -> its rate limit
        self.calls: collections.Counter[str] = collections.Counter()
        # The control-plane requests, by service, as a real cloud's SDK would count them
        # (health probes are traffic to the nodes, not requests to the cloud's API).
        self.requests = RequestTally("memory")
        self.state_file = Path(state_file) if state_file is not None else None
        self._seed = seed
        self._draws: collections.Counter[str] = collections.Counter()
        self._lock = threading.RLock()
        self._state = _State()
        self._dirty = False
        self._seen_fd: int | None = None  # the state file version we last read or wrote
        self._file_depth = 0  # the file lock is taken once per outermost operation
        with self._lock, self._persisted(writes=False):
            for region in regions:
                if self._state.add_region(region):
                    self._dirty = True

    # --- setup and inspection (not counted, no faults) --------------------------------

    def add_image(self, image: Image, regions: Sequence[str] | None = None) -> None:
        """Make an image visible in ``regions`` (default: all); replaces one with its id."""
        with self._lock, self._persisted(writes=False):
            targets = list(self._state.region_numbers) if regions is None else list(regions)
            for region in targets:
                self._known_region(region)
            self._state.images[image.id] = image
            self._state.image_regions.setdefault(image.id, set()).update(targets)
            self._dirty = True

    def add_flavor(self, flavor: Flavor) -> None:
        """Make a flavor available in every region; replaces one with the same id."""
        with self._lock, self._persisted(writes=False):
            self._state.flavors[flavor.id] = flavor
            self._dirty = True

    def set_quota(
        self,
        region: str,
        *,
        instances: int | None = None,
        vcpus: int | None = None,
        ram_mb: int | None = None,
    ) -> None:
        """Set the region's total limits (not headroom); each call sets all three,
        ``None`` meaning unlimited."""
        with self._lock, self._persisted(writes=False):
            self._known_region(region)
            self._state.limits[region] = _Limits(instances, vcpus, ram_mb)
            self._dirty = True

    def provider(self) -> Provider:
        """This cloud assembled as a ``Provider`` named ``memory``."""
        return Provider(
            name="memory",
            compute=_MemoryCompute(self),
            load_balancer=_MemoryLoadBalancer(self),
            store=_MemoryStore(self),
            dns=_MemoryDns(self),
            health_source=_MemoryHealth(self),
            requests=self.requests,
        )

    def servers(self, region: str) -> list[Node]:
        """Every server in the region regardless of tags (inspection; not counted)."""
        with self._lock, self._persisted(writes=False):
            self._known_region(region)
            self._advance(region)
            return [s.to_node() for s in self._state.servers[region].values()]

    def members(self, region: str, pool: str) -> list[Member]:
        """The pool's members (inspection; not counted)."""
        with self._lock, self._persisted(writes=False):
            self._known_region(region)
            return list(self._state.pools[region].get(pool, {}).values())

    def user_data(self, region: str, node_id: str) -> str:
        """The user data a server was created with (inspection; not counted)."""
        with self._lock, self._persisted(writes=False):
            self._known_region(region)
            server = self._state.servers[region].get(node_id)
            if server is None:
                raise errors.NotFound(f"no server {node_id!r} in {region}", region=region)
            return server.user_data

    def dns_record(self, zone: str, name: str) -> DnsRecord | None:
        """A DNS record as it is (inspection; not counted, no faults)."""
        with self._lock, self._persisted(writes=False):
            return self._state.dns.get((zone, name))

    def objects(self) -> dict[str, bytes]:
        """Everything in the object store (inspection; not counted, no faults)."""
        with self._lock, self._persisted(writes=False):
            return dict(self._state.objects)

    def put_object(self, key: str, data: bytes) -> None:
        """Write an object into the store directly (setup; not counted, no faults): e.g.
        what a deploy killed with -9 would have left there."""
        with self._lock, self._persisted():
            self._state.objects[key] = bytes(data)
            self._dirty = True

    def total_calls(self) -> int:
        """All Protocol calls made so far, failed ones included."""
        with self._lock:
            return sum(self.calls.values())

    # --- the call path every Protocol method takes -----------------------------------

    @contextlib.contextmanager
    def _call(
        self, name: str, region: str | None, *, mutating: bool = False, key: str = ""
    ) -> Iterator[_State]:
        """Count the call, inject faults, advance the region, persist; yield the state.

        ``key`` names what the call acts on (a server, a member, a store key), so that its
        fault draws do not depend on the order in which threads make their calls."""
        with self._lock:
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
                self._throttle(name, region, mutating=mutating)
                if self._chance(self.faults.api_error_rate, "api", where):
                    raise errors.Transient(
                        f"{name}: HTTP 503 from the API (simulated); retry",
                        region=region,
                        retry_after=self.faults.retry_after,
                    )
                if region is not None:
                    self._advance(region)
                yield self._state
            lost = self.faults.lost_response_rate if mutating else self.faults.lost_read_rate
            if self._chance(lost, "lost", where):
                what = "the change was made" if mutating else "the call was answered"
                raise errors.Transient(
                    f"{name}: the response was lost (simulated; {what}); retry",
                    region=region,
                    retry_after=self.faults.retry_after,
                )

    def _throttle(self, name: str, region: str | None, *, mutating: bool) -> None:
        """``Latency``: the service's rate limit, and the balancer's PENDING_UPDATE."""
        latency, now = self.latency, self.clock.now()
        service = name.split(".", 1)[0]
        if latency.requests_per_second > 0:
            rate = latency.requests_per_second
            bucket = self._buckets.setdefault(service, _Bucket(rate, now))
            elapsed = (now - bucket.at).total_seconds()
            bucket.tokens, bucket.at = min(rate, bucket.tokens + elapsed * rate), now
            if bucket.tokens < 1:
                raise errors.Transient(
                    f"{name}: HTTP 429 Too Many Requests (simulated, {rate:g}/s)",
                    region=region, retry_after=(1 - bucket.tokens) / rate)
            bucket.tokens -= 1
        if service == "lb" and mutating and region is not None and latency.lb_update_seconds > 0:
            busy_until = self._lb_busy_until.get(region)
            if busy_until is not None and now < busy_until:
                # Octavia sends no Retry-After; a provider adapter learns the same by
                # polling the balancer's status (as the OpenStack one does) until ACTIVE.
                raise errors.Transient(
                    f"{name}: HTTP 409 the load balancer in {region} is immutable while"
                    " PENDING_UPDATE (simulated)", region=region,
                    retry_after=(busy_until - now).total_seconds())
            self._lb_busy_until[region] = now + timedelta(seconds=latency.lb_update_seconds)

    def _uniform(self, kind: str, key: str) -> float:
        """A seeded draw in [0, 1) for ``kind`` and ``key`` (the same every run)."""
        digest = hashlib.blake2b(f"{self._seed}|{kind}|{key}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64

    def _chance(self, rate: float, kind: str, key: str) -> bool:
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

    def _advance(self, region: str) -> None:
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
                self._dirty = True
            elif server.state is NodeState.DELETING and server.deleted_at is not None:
                gone_at = server.deleted_at + timedelta(seconds=self.delete_seconds)
                if now >= gone_at:
                    del servers[server_id]
                    self._dirty = True
                else:  # e.g. the boot entry of a server deleted while building
                    heapq.heappush(due, (gone_at, server_id))

    def _new_server_id(self) -> str:
        number = self._state.next_server
        self._state.next_server += 1
        return f"srv-{number:06d}"

    def _new_address(self, region: str) -> str:
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
                    self._dirty = False
            return
        path = self.state_file
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(path.name + ".lock"), "a") as lock_file:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
            self._file_depth += 1
            try:
                self._reload_if_changed(path)
                try:
                    yield
                finally:
                    if self._dirty:
                        self._save(path)
                        self._dirty = False
            finally:
                self._file_depth -= 1
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)

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
                loaded = _state_from_json(json.loads(state_file.read()))
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
                self._dirty = True
        self._state = loaded
        self._remember(fd)

    def _save(self, path: Path) -> None:
        text = json.dumps(_state_to_json(self._state), indent=1, sort_keys=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        try:
            with open(fd, "w", encoding="utf-8", closefd=False) as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._remember(fd)

    def _remember(self, fd: int) -> None:
        if self._seen_fd is not None:
            os.close(self._seen_fd)
        self._seen_fd = fd

    def close(self) -> None:
        """Let go of the state file's descriptor; the next call simply re-reads the file."""
        with self._lock:
            if self._seen_fd is not None:
                os.close(self._seen_fd)
                self._seen_fd = None


# --- the Protocol facades ---------------------------------------------------------------


class _MemoryCompute:
    """``Compute`` over a ``MemoryCloud``."""

    def __init__(self, cloud: MemoryCloud) -> None:
        self._cloud = cloud

    def close(self) -> None:
        self._cloud.close()

    def total_calls(self) -> int:
        """The cloud's API call count (the engine reports it when a provider offers it)."""
        return self._cloud.total_calls()

    def list_nodes(self, region: str, app: str) -> list[Node]:
        with self._cloud._call("compute.list_nodes", region) as state:
            return [
                s.to_node()
                for s in state.servers[region].values()
                if s.metadata.get(TAG_APP) == app
            ]

    def create_node(self, region: str, request: NodeRequest) -> Node:
        cloud = self._cloud
        with cloud._call("compute.create_node", region, mutating=True,
                         key=request.name) as state:
            servers = state.servers[region]
            app = request.metadata.get(TAG_APP)
            for existing in servers.values():
                if (
                    existing.name == request.name
                    and existing.metadata.get(TAG_APP) == app
                    and existing.state is not NodeState.DELETING
                ):
                    return existing.to_node()
            if region not in state.image_regions.get(request.image_id, set()):
                raise errors.UnknownResource(
                    f"image {request.image_id!r} not found in {region};"
                    " check the spec's image or upload the image to that region"
                )
            flavor = _lookup_flavor(state, region, request.flavor)
            _check_quota(state, region, flavor)
            now = cloud.clock.now()
            boot = cloud.boot_seconds + cloud.faults.slow_boot_seconds
            if cloud.latency.boot_jitter_seconds > 0:
                boot += cloud.latency.boot_jitter_seconds * cloud._uniform("boot", request.name)
            server = _Server(
                id=cloud._new_server_id(),
                name=request.name,
                region=region,
                image_id=request.image_id,
                flavor_id=flavor.id,
                vcpus=flavor.vcpus,
                ram_mb=flavor.ram_mb,
                address=cloud._new_address(region),
                created_at=now,
                ready_at=now + timedelta(seconds=max(0.0, boot)),
                metadata=dict(request.metadata),
                user_data=request.user_data,
                boot_fail=cloud._chance(cloud.faults.boot_fail_rate, "boot", request.name),
            )
            servers[server.id] = server
            state.schedule(region, server.ready_at, server.id)
            cloud._dirty = True
            cloud._advance(region)  # a zero boot time means ACTIVE at once
            return server.to_node()

    def delete_node(self, region: str, node_id: str) -> None:
        cloud = self._cloud
        with cloud._call("compute.delete_node", region, mutating=True, key=node_id) as state:
            server = state.servers[region].get(node_id)
            if server is None or server.state is NodeState.DELETING:
                return
            server.state = NodeState.DELETING
            server.deleted_at = cloud.clock.now()
            server.changed()
            state.schedule(
                region, server.deleted_at + timedelta(seconds=cloud.delete_seconds), server.id
            )
            cloud._dirty = True
            cloud._advance(region)

    def set_metadata(self, region: str, node_id: str, metadata: Mapping[str, str]) -> None:
        cloud = self._cloud
        with cloud._call("compute.set_metadata", region, mutating=True, key=node_id) as state:
            server = state.servers[region].get(node_id)
            if server is None:
                raise errors.NotFound(f"no server {node_id!r} in {region}", region=region)
            server.metadata.update(metadata)
            server.changed()
            cloud._dirty = True

    def find_images(self, region: str, query: ImageQuery) -> list[Image]:
        with self._cloud._call("compute.find_images", region) as state:
            return [
                image
                for image in state.images.values()
                if region in state.image_regions.get(image.id, set())
                and (query.id is None or image.id == query.id)
                and (query.name is None or image.name == query.name)
                and all(image.properties.get(k) == v for k, v in query.properties.items())
            ]

    def get_flavor(self, region: str, name: str) -> Flavor:
        with self._cloud._call("compute.get_flavor", region) as state:
            return _lookup_flavor(state, region, name)

    def quota(self, region: str) -> Quota:
        with self._cloud._call("compute.quota", region) as state:
            used = _usage(state, region)
            limits = state.limits[region]

            def headroom(limit: int | None, in_use: int) -> int | None:
                return None if limit is None else max(0, limit - in_use)

            return Quota(
                instances=headroom(limits.instances, used.instances),
                vcpus=headroom(limits.vcpus, used.vcpus),
                ram_mb=headroom(limits.ram_mb, used.ram_mb),
            )


_BATCH_ORDER = {MemberAction.ADD: 0, MemberAction.DRAIN: 1, MemberAction.REMOVE: 2}


class _MemoryLoadBalancer:
    """``LoadBalancer`` over a ``MemoryCloud``; pools appear on first use."""

    def __init__(self, cloud: MemoryCloud) -> None:
        self._cloud = cloud

    def list_members(self, region: str, pool: str) -> list[Member]:
        with self._cloud._call("lb.list_members", region) as state:
            return list(state.pools[region].get(pool, {}).values())

    def add_member(self, region: str, pool: str, name: str, address: str, port: int) -> None:
        with self._cloud._call("lb.add_member", region, mutating=True, key=name) as state:
            members = state.pools[region].setdefault(pool, {})
            members[name] = Member(
                name=name,
                address=address,
                port=port,
                state=MemberState.SERVING,
                active_connections=0,
            )
            self._cloud._dirty = True

    def drain_member(self, region: str, pool: str, name: str) -> None:
        with self._cloud._call("lb.drain_member", region, mutating=True, key=name) as state:
            members = state.pools[region].setdefault(pool, {})
            member = members.get(name)
            if member is None:
                raise errors.NotFound(
                    f"no member {name!r} in pool {pool!r} in {region}", region=region
                )
            members[name] = Member(
                name=member.name,
                address=member.address,
                port=member.port,
                state=MemberState.DRAINING,
                active_connections=0,
            )
            self._cloud._dirty = True

    def remove_member(self, region: str, pool: str, name: str) -> None:
        with self._cloud._call("lb.remove_member", region, mutating=True, key=name) as state:
            if state.pools[region].setdefault(pool, {}).pop(name, None) is not None:
                self._cloud._dirty = True

    def change_members(self, region: str, pool: str, changes: Sequence[MemberChange]) -> None:
        """One call for any number of changes (``MemberBatcher``), like Octavia's batch
        member update: adds first, then drains, then removals."""
        key = ",".join(sorted(f"{c.action}:{c.name}" for c in changes))
        with self._cloud._call("lb.change_members", region, mutating=True, key=key) as state:
            members = state.pools[region].setdefault(pool, {})
            for change in sorted(changes, key=lambda c: _BATCH_ORDER[c.action]):
                current = members.get(change.name)
                if change.action is MemberAction.ADD:
                    members[change.name] = Member(change.name, change.address, change.port,
                                                  MemberState.SERVING, active_connections=0)
                elif change.action is MemberAction.DRAIN and current is not None:
                    members[change.name] = dataclasses.replace(
                        current, state=MemberState.DRAINING, active_connections=0)
                elif change.action is MemberAction.REMOVE:
                    members.pop(change.name, None)
            self._cloud._dirty = True

    def url(self, region: str, pool: str) -> str:
        """A made-up VIP per region, so DNS failover has an address to point at."""
        with self._cloud._lock:
            number = self._cloud._state.region_numbers.get(region, 0)
        return f"http://127.{number}.255.254/"


class _MemoryDns:
    """``Dns`` over a ``MemoryCloud`` (global, like a DNS service)."""

    def __init__(self, cloud: MemoryCloud) -> None:
        self._cloud = cloud

    def get_record(self, zone: str, name: str) -> DnsRecord | None:
        with self._cloud._call("dns.get_record", None) as state:
            return state.dns.get((zone, name))

    def set_record(self, zone: str, name: str, values: tuple[str, ...], ttl: int) -> None:
        with self._cloud._call("dns.set_record", None, mutating=True) as state:
            state.dns[(zone, name)] = DnsRecord(zone=zone, name=name, values=tuple(values), ttl=ttl)
            self._cloud._dirty = True


class _MemoryStore:
    """``Store`` over a ``MemoryCloud``; ``create_exclusive`` is atomic under the lock."""

    def __init__(self, cloud: MemoryCloud) -> None:
        self._cloud = cloud

    def put(self, key: str, data: bytes) -> None:
        with self._cloud._call("store.put", None, mutating=True, key=key) as state:
            state.objects[key] = bytes(data)
            self._cloud._dirty = True

    def get(self, key: str) -> bytes | None:
        with self._cloud._call("store.get", None, key=key) as state:
            return state.objects.get(key)

    def list(self, prefix: str) -> list[str]:
        with self._cloud._call("store.list", None) as state:
            return sorted(key for key in state.objects if key.startswith(prefix))

    def delete(self, key: str) -> None:
        with self._cloud._call("store.delete", None, mutating=True, key=key) as state:
            if state.objects.pop(key, None) is not None:
                self._cloud._dirty = True

    def create_exclusive(self, key: str, data: bytes) -> bool:
        with self._cloud._call("store.create_exclusive", None, mutating=True,
                               key=key) as state:
            if key in state.objects:
                return False
            state.objects[key] = bytes(data)
            self._cloud._dirty = True
            return True


class _MemoryHealth:
    """``HealthSource``: what an HTTP probe of the simulated app would conclude."""

    answers_inline = True  # no I/O: the health tracker asks inline, without threads

    def __init__(self, cloud: MemoryCloud) -> None:
        self._cloud = cloud

    def node_health(self, region: str, node: Node) -> NodeHealth:
        faults = self._cloud.faults
        with self._cloud._call("health.node_health", region, key=node.id) as state:
            server = state.servers[region].get(node.id)
            if server is None:
                return NodeHealth(Health.UNHEALTHY, "server not found (simulated)")
            if server.state is NodeState.BUILD:
                return NodeHealth(Health.UNKNOWN, "server is still building")
            if server.state is NodeState.DELETING:
                return NodeHealth(Health.UNHEALTHY, "server is being deleted")
            if server.state is NodeState.ERROR:
                return NodeHealth(Health.UNHEALTHY, f"server in ERROR: {server.fault}")
            now = self._cloud.clock.now()
            if (
                server.image_id in faults.unhealthy_images
                or faults.node_unhealthy(server.name, now)
                or faults.region_unhealthy(region, now)
            ):
                return NodeHealth(Health.UNHEALTHY, "HTTP 503 (simulated)")
            return NodeHealth(Health.HEALTHY, "HTTP 200 (simulated)")


# --- helpers ------------------------------------------------------------------------------


def _int_tag(value: str | None) -> int:
    """Decode an integer tag; servers not created by Phoenix read as 0."""
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


def _lookup_flavor(state: _State, region: str, name_or_id: str) -> Flavor:
    flavor = state.flavors.get(name_or_id)
    if flavor is not None:
        return flavor
    for candidate in state.flavors.values():
        if candidate.name == name_or_id:
            return candidate
    known = ", ".join(sorted(f.name for f in state.flavors.values())) or "none"
    raise errors.UnknownResource(
        f"flavor {name_or_id!r} not found in {region} (flavors: {known}); fix the spec's flavor"
    )


def _usage(state: _State, region: str) -> _Usage:
    # Like Nova, every server counts until it is gone: BUILD, ERROR and DELETING too.
    servers = state.servers[region].values()
    return _Usage(
        instances=len(servers),
        vcpus=sum(s.vcpus for s in servers),
        ram_mb=sum(s.ram_mb for s in servers),
    )


def _check_quota(state: _State, region: str, flavor: Flavor) -> None:
    limits = state.limits[region]
    if limits.instances is None and limits.vcpus is None and limits.ram_mb is None:
        return
    used = _usage(state, region)
    problems = []
    for what, limit, in_use, wanted in (
        ("instances", limits.instances, used.instances, 1),
        ("vcpus", limits.vcpus, used.vcpus, flavor.vcpus),
        ("ram_mb", limits.ram_mb, used.ram_mb, flavor.ram_mb),
    ):
        if limit is not None and in_use + wanted > limit:
            problems.append(f"{what}: {in_use} in use + {wanted} requested > limit {limit}")
    if problems:
        raise errors.QuotaExceeded(
            f"quota exceeded in {region}: {'; '.join(problems)};"
            " delete unused servers or ask for a higher quota",
            region=region,
        )


# --- state file (de)serialization ---------------------------------------------------------


def _dt(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _parse_dt(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _state_to_json(state: _State) -> dict[str, Any]:
    return {
        "version": _STATE_VERSION,
        "next_server": state.next_server,
        "region_numbers": state.region_numbers,
        "address_counters": state.address_counters,
        "servers": {
            region: [
                {
                    "id": s.id,
                    "name": s.name,
                    "image_id": s.image_id,
                    "flavor_id": s.flavor_id,
                    "vcpus": s.vcpus,
                    "ram_mb": s.ram_mb,
                    "address": s.address,
                    "created_at": _dt(s.created_at),
                    "ready_at": _dt(s.ready_at),
                    "metadata": s.metadata,
                    "user_data": s.user_data,
                    "state": s.state.value,
                    "fault": s.fault,
                    "boot_fail": s.boot_fail,
                    "deleted_at": _dt(s.deleted_at),
                }
                for s in servers.values()
            ]
            for region, servers in state.servers.items()
        },
        "pools": {
            region: {
                pool: [
                    {"name": m.name, "address": m.address, "port": m.port, "state": m.state.value}
                    for m in members.values()
                ]
                for pool, members in pools.items()
            }
            for region, pools in state.pools.items()
        },
        "images": [
            {
                "id": i.id,
                "name": i.name,
                "created_at": _dt(i.created_at),
                "properties": dict(i.properties),
                "regions": sorted(state.image_regions.get(i.id, set())),
            }
            for i in state.images.values()
        ],
        "flavors": [
            {"id": f.id, "name": f.name, "vcpus": f.vcpus, "ram_mb": f.ram_mb}
            for f in state.flavors.values()
        ],
        "quotas": {
            region: {"instances": q.instances, "vcpus": q.vcpus, "ram_mb": q.ram_mb}
            for region, q in state.limits.items()
        },
        "dns": [
            {"zone": r.zone, "name": r.name, "values": list(r.values), "ttl": r.ttl}
            for r in state.dns.values()
        ],
        "objects": {k: base64.b64encode(v).decode("ascii") for k, v in state.objects.items()},
    }


def _state_from_json(data: Any) -> _State:
    if not isinstance(data, dict) or data.get("version") != _STATE_VERSION:
        raise ValueError(f"expected an object with version {_STATE_VERSION}")
    state = _State(next_server=int(data["next_server"]))
    for region, number in data["region_numbers"].items():
        state.region_numbers[str(region)] = int(number)
        state.servers[str(region)] = {}
        state.pools[str(region)] = {}
        state.limits[str(region)] = _Limits()
    state.address_counters = {str(k): int(v) for k, v in data["address_counters"].items()}
    for region, servers in data["servers"].items():
        for s in servers:
            created_at = _parse_dt(s["created_at"])
            ready_at = _parse_dt(s["ready_at"])
            if created_at is None or ready_at is None:
                raise ValueError(f"server {s.get('id')!r} has no created_at/ready_at")
            server = _Server(
                id=str(s["id"]),
                name=str(s["name"]),
                region=str(region),
                image_id=str(s["image_id"]),
                flavor_id=str(s["flavor_id"]),
                vcpus=int(s["vcpus"]),
                ram_mb=int(s["ram_mb"]),
                address=str(s["address"]),
                created_at=created_at,
                ready_at=ready_at,
                metadata={str(k): str(v) for k, v in s["metadata"].items()},
                user_data=str(s.get("user_data", "")),
                state=NodeState(s["state"]),
                fault=None if s.get("fault") is None else str(s["fault"]),
                boot_fail=bool(s.get("boot_fail", False)),
                deleted_at=_parse_dt(s.get("deleted_at")),
            )
            state.servers.setdefault(str(region), {})[server.id] = server
            if server.state is NodeState.BUILD:
                state.schedule(server.region, server.ready_at, server.id)
            elif server.state is NodeState.DELETING and server.deleted_at is not None:
                # _advance re-schedules it by this process's delete_seconds.
                state.schedule(server.region, server.deleted_at, server.id)
    for region, pools in data["pools"].items():
        for pool, members in pools.items():
            state.pools.setdefault(str(region), {})[str(pool)] = {
                str(m["name"]): Member(
                    name=str(m["name"]),
                    address=str(m["address"]),
                    port=int(m["port"]),
                    state=MemberState(m["state"]),
                    active_connections=0,
                )
                for m in members
            }
    for i in data["images"]:
        image = Image(
            id=str(i["id"]),
            name=str(i["name"]),
            created_at=_parse_dt(i.get("created_at")),
            properties={str(k): str(v) for k, v in i.get("properties", {}).items()},
        )
        state.images[image.id] = image
        state.image_regions[image.id] = {str(r) for r in i["regions"]}
    for f in data["flavors"]:
        flavor = Flavor(
            id=str(f["id"]), name=str(f["name"]), vcpus=int(f["vcpus"]), ram_mb=int(f["ram_mb"])
        )
        state.flavors[flavor.id] = flavor
    for region, q in data["quotas"].items():
        state.limits[str(region)] = _Limits(
            _opt_int(q.get("instances")), _opt_int(q.get("vcpus")), _opt_int(q.get("ram_mb"))
        )
    for r in data["dns"]:
        record = DnsRecord(
            zone=str(r["zone"]),
            name=str(r["name"]),
            values=tuple(str(v) for v in r["values"]),
            ttl=int(r["ttl"]),
        )
        state.dns[(record.zone, record.name)] = record
    state.objects = {
        str(k): base64.b64decode(str(v), validate=True) for k, v in data["objects"].items()
    }
    return state


# --- opening from a spec's provider.options ----------------------------------------------

def open_memory_provider(
    options: Mapping[str, Any] | MemoryOptions, regions: Sequence[str], *, clock: Clock
) -> Provider:
    """The memory cloud as the CLI opens it, from the spec's ``provider.options``
    (``phoenix.provider_options.MemoryOptions``; a plain mapping is validated first).

    Without images, the image ``golden`` (id ``img-golden``) exists; without flavors,
    the flavor ``m1.small``. Raises ``InputError`` naming the option when one is wrong.
    """
    cloud = _cloud_from_options(options, regions, clock=clock)
    return cloud.provider()


def _cloud_from_options(
    raw: Mapping[str, Any] | MemoryOptions, regions: Sequence[str], *, clock: Clock
) -> MemoryCloud:
    options = parse_options(MemoryOptions, raw)
    problems = memory_region_problems(options, regions)
    if problems:
        raise errors.InputError(
            "\n".join(f"provider.options.{at}: {problem}" for at, problem in problems)
        )
    cloud = MemoryCloud(
        regions,
        clock=clock,
        boot_seconds=options.boot_seconds,
        faults=_faults(options.faults),
        seed=options.seed,
        state_file=Path.cwd() / options.state_file if options.state_file else None,
    )
    for image in [_image(i) for i in options.images or []] or [_DEFAULT_IMAGE]:
        cloud.add_image(image)
    for flavor in [_flavor(f) for f in options.flavors or []] or [_DEFAULT_FLAVOR]:
        cloud.add_flavor(flavor)
    for region, limits in (options.quota or {}).items():
        cloud.set_quota(
            region, instances=limits.instances, vcpus=limits.vcpus, ram_mb=limits.ram_mb
        )
    return cloud


def _image(option: MemoryImage) -> Image:
    created_at = option.created_at
    if created_at is not None and created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=UTC)
    return Image(
        id=option.id or f"img-{option.name}",
        name=option.name,
        created_at=created_at,
        properties={key: str(value) for key, value in option.properties.items()},
    )


def _flavor(option: MemoryFlavor) -> Flavor:
    return Flavor(
        id=option.id or f"flv-{option.name}",
        name=option.name,
        vcpus=option.vcpus,
        ram_mb=option.ram_mb,
    )


def _faults(option: MemoryFaults) -> Faults:
    return Faults(
        api_error_rate=option.api_error_rate,
        lost_response_rate=option.lost_response_rate,
        lost_read_rate=option.lost_read_rate,
        boot_fail_rate=option.boot_fail_rate,
        boot_fail_images=set(option.boot_fail_images),
        boot_fail_names=set(option.boot_fail_names),
        unhealthy_images=set(option.unhealthy_images),
        unhealthy_nodes=set(option.unhealthy_nodes),
        down_regions=set(option.down_regions),
        no_host_regions=set(option.no_host_regions),
        unhealthy_regions=set(option.unhealthy_regions),
        slow_boot_seconds=option.slow_boot_seconds,
        retry_after=option.retry_after,
    )
