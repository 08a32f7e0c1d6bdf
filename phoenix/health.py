"""Health checks: may a freshly built server take traffic yet?

A single probe is noise: a server answers 503 while its app warms up, a packet gets
lost, a GC pause outlasts the timeout. So, like AWS ELB target groups and Octavia health
monitors, Phoenix separates the raw *probe* (one HTTP GET, one TCP connect, or asking
the provider) from the *conclusion* (``HEALTHY`` / ``UNHEALTHY`` / ``UNKNOWN``), which
only changes after ``healthy_threshold`` or ``unhealthy_threshold`` consecutive results
agree. Failures during a node's boot ``grace`` do not count, and a node is not probed
more often than ``interval`` however often the engine asks, so the engine may poll in a
tight loop without hammering servers.

All probes of a round run concurrently on one event loop, each bounded by ``timeout``,
so checking 100 nodes takes about one timeout rather than a hundred. Time comes from a
``Clock`` so the threshold, interval and grace logic is testable without sleeping.

The counters live in memory only: they are measurements, not deploy progress. A
restarted engine re-measures from ``UNKNOWN``, which is the safe direction.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx

from phoenix import probe_loop
from phoenix.errors import InputError, Transient
from phoenix.model import Health, Node, NodeHealth, NodeState
from phoenix.providers.base import Clock, HealthSource
from phoenix.spec import HealthSpec, HttpCheck, TcpCheck

__all__ = [
    "HealthTracker",
    "Probe",
    "ProbeResult",
    "ProbeSession",
    "build_tracker",
    "http_probe",
    "http_session",
    "source_probe",
    "tcp_probe",
]

# At most this many probes are in flight at once: keeps file descriptors bounded for
# very large fleets while a ~100-node fleet is still probed in a single wave.
MAX_CONCURRENT_PROBES = 128


@dataclass(frozen=True)
class ProbeResult:
    """The raw outcome of one probe, before thresholds are applied."""

    ok: bool
    detail: str  # e.g. "HTTP 200", "HTTP 503", "connect refused", "timeout after 1.0s"
    conclusive: bool = True
    """False when the probe learnt nothing about the node (the provider's API failed,
    or it does not know yet): such a result moves no counter either way."""


Probe = Callable[[Node], Awaitable[ProbeResult]]
"""Checks one node once. May raise; the tracker counts an exception as a failure."""

ProbeSession = Callable[[], AbstractAsyncContextManager[Probe]]
"""Opens a probe for one round (inside that round's event loop) and cleans up after."""


def _timeout_detail(timeout: float) -> str:
    return f"timeout after {float(timeout)}s"


def _host(address: str) -> str:
    # An IPv6 literal needs brackets in a URL.
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


def _is_refused(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ConnectionRefusedError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return "refused" in str(exc).lower()


def http_probe(check: HttpCheck, timeout: float, client: httpx.AsyncClient) -> Probe:
    """A probe that GETs ``http://{address}:{port}{path}``; ok iff the status is ``expect``.

    Redirects are not followed: a login redirect is not a healthy app. The caller owns
    ``client`` (see ``http_session`` for one scoped to a round).
    """

    async def probe(node: Node) -> ProbeResult:
        if not node.address:
            return ProbeResult(False, "no address yet")
        url = f"http://{_host(node.address)}:{check.port}{check.path}"
        try:
            response = await client.get(url, timeout=timeout, follow_redirects=False)
        except httpx.TimeoutException:
            return ProbeResult(False, _timeout_detail(timeout))
        except httpx.ConnectError as exc:
            if _is_refused(exc):
                return ProbeResult(False, "connect refused")
            return ProbeResult(False, f"connect failed: {exc}")
        except httpx.HTTPError as exc:
            return ProbeResult(False, f"{type(exc).__name__}: {exc}")
        return ProbeResult(response.status_code == check.expect, f"HTTP {response.status_code}")

    return probe


@asynccontextmanager
async def http_session(check: HttpCheck, timeout: float) -> AsyncIterator[Probe]:
    """An ``http_probe`` for one round.

    On the process's probe loop (``phoenix.probe_loop``, where ``check_sync`` runs every
    round) it uses the loop's long-lived client. Awaited on any other loop, it makes a
    client for the round and closes it after: a client belongs to the loop it was made on.
    """
    probes = probe_loop.shared()
    if probes.owns_running_loop():
        yield http_probe(check, timeout, probes.client())
        return
    async with probe_loop.probe_client(MAX_CONCURRENT_PROBES) as client:
        yield http_probe(check, timeout, client)


def tcp_probe(check: TcpCheck, timeout: float) -> Probe:
    """A probe that succeeds when a TCP connection to ``check.port`` is accepted."""

    async def probe(node: Node) -> ProbeResult:
        if not node.address:
            return ProbeResult(False, "no address yet")
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(node.address, check.port), timeout
            )
        except TimeoutError:
            return ProbeResult(False, _timeout_detail(timeout))
        except ConnectionRefusedError:
            return ProbeResult(False, "connect refused")
        except OSError as exc:
            return ProbeResult(False, f"connect failed: {exc}")
        writer.close()
        # The connect succeeded, which is all this probe asks; a messy close is fine.
        with suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), timeout)
        return ProbeResult(True, f"TCP {check.port} open")

    return probe


def source_probe(source: HealthSource, region: str) -> Probe:
    """A probe that asks the provider; its (synchronous) call runs in a worker thread."""

    async def probe(node: Node) -> ProbeResult:
        return await asyncio.to_thread(ask_source, source, region, node)

    return probe


def ask_source(source: HealthSource, region: str, node: Node) -> ProbeResult:
    """The provider's answer for one node, as a probe result."""
    try:
        health = source.node_health(region, node)
    except Transient as exc:
        return ProbeResult(False, f"provider could not tell: {exc}", conclusive=False)
    detail = health.detail or health.status.value.lower()
    if health.status is Health.UNKNOWN:
        return ProbeResult(False, detail, conclusive=False)
    return ProbeResult(health.status is Health.HEALTHY, detail)


@asynccontextmanager
async def _fixed(probe: Probe) -> AsyncIterator[Probe]:
    yield probe


@dataclass
class _Counters:
    last_probe_at: datetime
    successes: int = 0
    failures: int = 0
    status: Health = Health.UNKNOWN
    detail: str = ""
    passing: bool | None = None  # the latest conclusive probe's result
    last_failure: str | None = None  # the latest failed probe's detail

    @property
    def health(self) -> NodeHealth:
        return NodeHealth(self.status, self.detail, self.passing, self.last_failure)


class HealthTracker:
    """Applies thresholds/grace/interval to raw probe results; keeps per-node counters in memory.

    ``check`` probes the ``ACTIVE`` nodes that are due (all at once) and returns every
    given node's conclusion. A node keeps its previous conclusion until enough
    consecutive results agree, so a HEALTHY node turns UNHEALTHY after
    ``unhealthy_threshold`` failures in a row (and back after ``healthy_threshold``
    successes).
    """

    def __init__(self, spec: HealthSpec, probe: Probe, clock: Clock) -> None:
        self._spec = spec
        self._clock = clock
        self._session: ProbeSession = lambda: _fixed(probe)
        # A probe without I/O (an in-memory source) runs inline: an event loop and a
        # thread per probe would cost far more than the answer (issue 15).
        self._inline: Callable[[Node], ProbeResult] | None = None
        self._nodes: dict[str, _Counters] = {}
        # check_sync may be called from worker threads; guard the counters.
        self._lock = threading.Lock()

    @classmethod
    def with_session(cls, spec: HealthSpec, session: ProbeSession, clock: Clock) -> HealthTracker:
        """A tracker whose probe is opened per round (e.g. an HTTP client per event loop)."""
        tracker = cls(spec, _never_called, clock)
        tracker._session = session
        return tracker

    @classmethod
    def inline(cls, spec: HealthSpec, probe: Callable[[Node], ProbeResult],
               clock: Clock) -> HealthTracker:
        """A tracker whose probe answers at once (no I/O): called in the caller's thread."""
        tracker = cls(spec, _never_called, clock)
        tracker._inline = probe
        return tracker

    async def check(self, nodes: Sequence[Node]) -> dict[str, NodeHealth]:
        """Probe the due nodes concurrently; every node's health, keyed by node name."""
        now = self._clock.now()
        result, due = self._due(nodes, now)
        if not due:
            return result
        if self._inline is not None:
            return self._recorded(result, due, [self._probe_inline(n) for n in due], now)
        semaphore = asyncio.Semaphore(MAX_CONCURRENT_PROBES)
        async with self._session() as probe:
            probed = await asyncio.gather(*(self._run(probe, node, semaphore) for node in due))
        return self._recorded(result, due, probed, now)

    def _probe_inline(self, node: Node) -> ProbeResult:
        assert self._inline is not None
        try:
            return self._inline(node)
        except Exception as exc:  # a broken probe is a failed check, not a crash
            return ProbeResult(False, f"probe error: {type(exc).__name__}: {exc}")

    def _recorded(self, result: dict[str, NodeHealth], due: Sequence[Node],
                  probed: Sequence[ProbeResult], now: datetime) -> dict[str, NodeHealth]:
        with self._lock:
            for node, outcome in zip(due, probed, strict=True):
                result[node.name] = self._record(node, outcome, now)
        return result

    def _due(self, nodes: Sequence[Node], now: datetime) -> tuple[dict[str, NodeHealth],
                                                                 list[Node]]:
        """Every node's known health, and the nodes due for a probe now."""
        interval = timedelta(seconds=self._spec.interval)
        result: dict[str, NodeHealth] = {}
        due: list[Node] = []
        with self._lock:
            for node in nodes:
                if node.state is NodeState.ERROR:
                    fault = node.fault or "no fault reported"
                    result[node.name] = NodeHealth(Health.UNHEALTHY, f"server in ERROR: {fault}")
                elif node.state is not NodeState.ACTIVE:
                    result[node.name] = NodeHealth(
                        Health.UNKNOWN, f"not active yet ({node.state.value})"
                    )
                elif (counters := self._nodes.get(node.name)) is not None and (
                    timedelta(0) <= now - counters.last_probe_at < interval
                ):
                    result[node.name] = counters.health
                else:
                    due.append(node)
        return result, due

    def check_sync(self, nodes: Sequence[Node]) -> dict[str, NodeHealth]:
        """``check`` for synchronous callers: run on the process's long-lived probe loop
        (``phoenix.probe_loop``). An inline probe needs no loop at all."""
        if self._inline is not None:
            now = self._clock.now()
            result, due = self._due(nodes, now)
            return self._recorded(result, due, [self._probe_inline(n) for n in due], now)
        return probe_loop.shared().run(self.check(nodes))

    def forget(self, names: Iterable[str]) -> None:
        """Drop the counters of nodes that are gone (deleted, or rebuilt under a name)."""
        with self._lock:
            for name in names:
                self._nodes.pop(name, None)

    async def _run(self, probe: Probe, node: Node, semaphore: asyncio.Semaphore) -> ProbeResult:
        timeout = self._spec.timeout
        async with semaphore:
            try:
                return await asyncio.wait_for(probe(node), timeout)
            except TimeoutError:
                return ProbeResult(False, _timeout_detail(timeout))
            except Exception as exc:  # a broken probe is a failed check, not a crash
                return ProbeResult(False, f"probe error: {type(exc).__name__}: {exc}")

    def _record(self, node: Node, outcome: ProbeResult, now: datetime) -> NodeHealth:
        spec = self._spec
        counters = self._nodes.get(node.name)
        if counters is None:
            counters = self._nodes[node.name] = _Counters(last_probe_at=now)
        counters.last_probe_at = now
        grace_ends = node.created_at + timedelta(seconds=spec.grace)
        if not outcome.conclusive:
            counters.detail = f"{outcome.detail} (inconclusive)"
            return counters.health
        counters.passing = outcome.ok
        if not outcome.ok:
            counters.last_failure = outcome.detail
        if outcome.ok:
            counters.failures = 0
            counters.successes = min(counters.successes + 1, spec.healthy_threshold)
            if counters.successes >= spec.healthy_threshold:
                counters.status = Health.HEALTHY
            detail = f"{outcome.detail} ({counters.successes}/{spec.healthy_threshold} successes)"
        elif now < grace_ends:
            # Booting apps fail checks; that must not condemn them, nor count as a success.
            counters.successes = 0
            left = (grace_ends - now).total_seconds()
            detail = f"{outcome.detail} (in grace, {left:g}s left)"
        else:
            counters.successes = 0
            counters.failures = min(counters.failures + 1, spec.unhealthy_threshold)
            if counters.failures >= spec.unhealthy_threshold:
                counters.status = Health.UNHEALTHY
            detail = f"{outcome.detail} ({counters.failures}/{spec.unhealthy_threshold} failures)"
        counters.detail = detail
        return counters.health


async def _never_called(node: Node) -> ProbeResult:  # pragma: no cover - placeholder
    raise AssertionError("with_session replaces the probe")


def build_tracker(
    spec: HealthSpec, *, clock: Clock, health_source: HealthSource | None, region: str
) -> HealthTracker:
    """The tracker the spec asks for in ``region``.

    Mode ``provider``, or any provider that supplies a ``HealthSource`` (the in-memory
    cloud, whose nodes have no real address), trusts the provider; otherwise Phoenix
    probes each node over HTTP or TCP as the spec says.
    """
    if health_source is not None:
        if getattr(health_source, "answers_inline", False):  # no I/O: ask inline
            source = health_source
            return HealthTracker.inline(spec, lambda node: ask_source(source, region, node),
                                        clock)
        return HealthTracker(spec, source_probe(health_source, region), clock)
    if spec.mode == "provider":
        raise InputError(
            "health.mode is 'provider' but this provider cannot report node health;"
            " use mode 'active' with an http or tcp check"
        )
    if spec.http is not None:
        check = spec.http
        return HealthTracker.with_session(spec, lambda: http_session(check, spec.timeout), clock)
    if spec.tcp is not None:
        return HealthTracker(spec, tcp_probe(spec.tcp, spec.timeout), clock)
    raise ValueError("health needs an http or a tcp check")  # HealthSpec validation forbids it
