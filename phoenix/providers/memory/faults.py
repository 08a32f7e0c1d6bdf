"""What goes wrong in the memory cloud, and how slow it is: ``Faults`` (with their
``FaultWindow``s), ``Latency``, and the rate limits and balancer updates it imposes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from phoenix import errors


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
class RateBucket:
    """A service's token bucket (``Latency.requests_per_second``)."""

    tokens: float
    at: datetime


class RateLimits:
    """``Latency`` in force: each service's request rate, and each region's balancer
    PENDING_UPDATE after a member write."""

    def __init__(self) -> None:
        self._buckets: dict[str, RateBucket] = {}  # service -> its rate limit
        self._lb_busy_until: dict[str, datetime] = {}  # region -> end of PENDING_UPDATE

    def check(
        self, name: str, region: str | None, *, mutating: bool, latency: Latency, now: datetime
    ) -> None:
        """Raise the 429 or 409 a call named ``name`` gets at ``now``; else count it."""
        service = name.split(".", 1)[0]
        if latency.requests_per_second > 0:
            rate = latency.requests_per_second
            bucket = self._buckets.setdefault(service, RateBucket(rate, now))
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
