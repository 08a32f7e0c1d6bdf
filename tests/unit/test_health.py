"""Tests for phoenix.health against real servers on 127.0.0.1.

The network calls are real (threaded HTTP servers, a TCP listener, a bound-but-not-
listening port for "connection refused"); time is a FakeClock advanced between rounds,
so interval, threshold and grace logic is deterministic.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from phoenix.clock import FakeClock
from phoenix.errors import InputError
from phoenix.health import (
    HealthTracker,
    Probe,
    ProbeResult,
    build_tracker,
    http_probe,
    source_probe,
    tcp_probe,
)
from phoenix.model import Health, Node, NodeHealth, NodeState
from phoenix.providers.trusted_health import TrustedStateHealth
from phoenix.spec import HealthSpec, HttpCheck, TcpCheck

LOOPBACK = "127.0.0.1"


# --- real servers ------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    """An HTTP server whose status and delay a test can switch while it runs."""

    daemon_threads = True
    request_queue_size = 128  # 50 concurrent connects must not overflow the backlog

    def __init__(self) -> None:
        super().__init__((LOOPBACK, 0), _Handler)
        self.status = 200
        self.location: str | None = None
        self.delay = 0.0
        self.paths: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self.release = threading.Event()  # wakes sleeping handlers at teardown

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def requests(self) -> int:
        with self.lock:
            return len(self.paths)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        srv = self.server
        with srv.lock:
            srv.paths.append(self.path)
            srv.in_flight += 1
            srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
        try:
            if srv.delay:
                srv.release.wait(srv.delay)
            self.send_response(srv.status)
            if srv.location:
                self.send_header("Location", srv.location)
            self.send_header("Content-Length", "0")
            self.end_headers()
        finally:
            with srv.lock:
                srv.in_flight -= 1

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield srv
    srv.release.set()
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound but not listening: connects are refused, and no one can take it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((LOOPBACK, 0))
    yield int(sock.getsockname()[1])
    sock.close()


@pytest.fixture
def tcp_listener() -> Iterator[int]:
    sock = socket.create_server((LOOPBACK, 0), backlog=16)
    yield int(sock.getsockname()[1])
    sock.close()


# --- helpers -----------------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_node(
    clock: FakeClock,
    name: str = "web-1",
    *,
    state: NodeState = NodeState.ACTIVE,
    address: str | None = LOOPBACK,
    age: float = 3600.0,
    fault: str | None = None,
) -> Node:
    return Node(
        id=f"id-{name}",
        name=name,
        region="r1",
        app="web",
        release="r-1",
        index=0,
        state=state,
        created_at=clock.now() - timedelta(seconds=age),
        address=address,
        fault=fault,
    )


def http_spec(port: int, **overrides: object) -> HealthSpec:
    fields: dict[str, object] = {
        "http": HttpCheck(port=port, path="/healthz"),
        "interval": 2.0,
        "timeout": 1.0,
        "healthy_threshold": 2,
        "unhealthy_threshold": 3,
    }
    fields.update(overrides)
    return HealthSpec.model_validate(fields)


def http_tracker(spec: HealthSpec, clock: FakeClock) -> HealthTracker:
    return build_tracker(spec, clock=clock, health_source=None, region="r1")


def rounds(
    tracker: HealthTracker, clock: FakeClock, node: Node, count: int, step: float = 2.0
) -> list[NodeHealth]:
    """Run ``count`` check rounds, advancing the clock by ``step`` after each."""
    seen = []
    for _ in range(count):
        seen.append(tracker.check_sync([node])[node.name])
        clock.advance(step)
    return seen


def run_probe(probe: Probe, node: Node) -> ProbeResult:
    async def go() -> ProbeResult:
        return await probe(node)

    return asyncio.run(go())


def probe_once(check: HttpCheck, node: Node, timeout: float = 1.0) -> ProbeResult:
    async def go() -> ProbeResult:
        async with httpx.AsyncClient(trust_env=False) as client:
            return await http_probe(check, timeout, client)(node)

    return asyncio.run(go())


# --- thresholds, interval, grace ---------------------------------------------------------


def test_healthy_after_healthy_threshold(server: _Server, clock: FakeClock) -> None:
    tracker = http_tracker(http_spec(server.port), clock)
    node = make_node(clock)

    first, second = rounds(tracker, clock, node, 2)

    assert first == NodeHealth(Health.UNKNOWN, "HTTP 200 (1/2 successes)")
    assert second == NodeHealth(Health.HEALTHY, "HTTP 200 (2/2 successes)")
    assert server.paths == ["/healthz", "/healthz"]


def test_unhealthy_after_unhealthy_threshold(server: _Server, clock: FakeClock) -> None:
    server.status = 503
    tracker = http_tracker(http_spec(server.port), clock)
    node = make_node(clock)

    seen = rounds(tracker, clock, node, 3)

    assert [h.status for h in seen] == [Health.UNKNOWN, Health.UNKNOWN, Health.UNHEALTHY]
    assert [h.detail for h in seen] == [
        "HTTP 503 (1/3 failures)",
        "HTTP 503 (2/3 failures)",
        "HTTP 503 (3/3 failures)",
    ]


def test_not_probed_more_often_than_interval(server: _Server, clock: FakeClock) -> None:
    tracker = http_tracker(http_spec(server.port, interval=2.0), clock)
    node = make_node(clock)

    first = tracker.check_sync([node])[node.name]
    again = tracker.check_sync([node])[node.name]
    clock.advance(1.9)
    still = tracker.check_sync([node])[node.name]
    assert server.requests == 1
    assert again == still == first

    clock.advance(0.1)
    due = tracker.check_sync([node])[node.name]
    assert server.requests == 2
    assert due.status is Health.HEALTHY


def test_failures_in_grace_do_not_count(server: _Server, clock: FakeClock) -> None:
    server.status = 503
    tracker = http_tracker(http_spec(server.port, grace=10.0), clock)
    node = make_node(clock, age=0.0)

    in_grace = rounds(tracker, clock, node, 5)  # t = 0, 2, 4, 6, 8

    assert all(h.status is Health.UNKNOWN for h in in_grace)
    assert in_grace[0].detail == "HTTP 503 (in grace, 10s left)"
    assert all("in grace" in h.detail for h in in_grace)

    after = rounds(tracker, clock, node, 3)  # t = 10, 12, 14: grace is over
    assert [h.status for h in after] == [Health.UNKNOWN, Health.UNKNOWN, Health.UNHEALTHY]
    assert after[0].detail == "HTTP 503 (1/3 failures)"


def test_success_in_grace_counts(server: _Server, clock: FakeClock) -> None:
    tracker = http_tracker(http_spec(server.port, grace=60.0), clock)
    node = make_node(clock, age=0.0)

    assert rounds(tracker, clock, node, 2)[-1].status is Health.HEALTHY


def test_flapping_node_turns_unhealthy_and_back(server: _Server, clock: FakeClock) -> None:
    tracker = http_tracker(http_spec(server.port), clock)
    node = make_node(clock)
    assert rounds(tracker, clock, node, 2)[-1].status is Health.HEALTHY

    server.status = 503
    failing = rounds(tracker, clock, node, 3)
    # It keeps its conclusion until the threshold, and the detail shows the trend.
    assert failing[0] == NodeHealth(Health.HEALTHY, "HTTP 503 (1/3 failures)")
    assert failing[1] == NodeHealth(Health.HEALTHY, "HTTP 503 (2/3 failures)")
    assert failing[2] == NodeHealth(Health.UNHEALTHY, "HTTP 503 (3/3 failures)")

    server.status = 200
    recovering = rounds(tracker, clock, node, 2)
    assert recovering[0] == NodeHealth(Health.UNHEALTHY, "HTTP 200 (1/2 successes)")
    assert recovering[1].status is Health.HEALTHY


def test_a_success_resets_the_failure_count(server: _Server, clock: FakeClock) -> None:
    tracker = http_tracker(http_spec(server.port), clock)
    node = make_node(clock)
    server.status = 503
    rounds(tracker, clock, node, 2)
    server.status = 200
    rounds(tracker, clock, node, 1)
    server.status = 503

    seen = rounds(tracker, clock, node, 2)

    assert [h.detail for h in seen] == ["HTTP 503 (1/3 failures)", "HTTP 503 (2/3 failures)"]
    assert all(h.status is Health.UNKNOWN for h in seen)


def test_forget_drops_the_counters(server: _Server, clock: FakeClock) -> None:
    tracker = http_tracker(http_spec(server.port), clock)
    node = make_node(clock)
    assert rounds(tracker, clock, node, 2)[-1].status is Health.HEALTHY

    tracker.forget([node.name, "never-seen"])

    again = tracker.check_sync([node])[node.name]  # probed at once, from scratch
    assert again == NodeHealth(Health.UNKNOWN, "HTTP 200 (1/2 successes)")
    assert server.requests == 3


# --- what a single probe reports -----------------------------------------------------


def test_timeout_is_reported_and_bounded(server: _Server, clock: FakeClock) -> None:
    server.delay = 5.0
    tracker = http_tracker(http_spec(server.port, timeout=0.2, interval=1.0), clock)
    node = make_node(clock)

    started = time.monotonic()
    health = tracker.check_sync([node])[node.name]

    assert time.monotonic() - started < 2.0
    assert health == NodeHealth(Health.UNKNOWN, "timeout after 0.2s (1/3 failures)")


def test_wrong_status_fails(server: _Server, clock: FakeClock) -> None:
    server.status = 404
    result = probe_once(HttpCheck(port=server.port), make_node(clock))
    assert result == ProbeResult(False, "HTTP 404")


def test_expected_status_is_configurable(server: _Server, clock: FakeClock) -> None:
    server.status = 204
    result = probe_once(HttpCheck(port=server.port, expect=204), make_node(clock))
    assert result == ProbeResult(True, "HTTP 204")


def test_redirects_are_not_followed(server: _Server, clock: FakeClock) -> None:
    server.status = 302
    server.location = "/healthz-elsewhere"
    result = probe_once(HttpCheck(port=server.port), make_node(clock))
    assert result == ProbeResult(False, "HTTP 302")
    assert server.paths == ["/healthz"]


def test_connection_refused(closed_port: int, clock: FakeClock) -> None:
    tracker = http_tracker(http_spec(closed_port), clock)
    node = make_node(clock)

    health = tracker.check_sync([node])[node.name]

    assert health == NodeHealth(Health.UNKNOWN, "connect refused (1/3 failures)")


def test_node_without_address(clock: FakeClock) -> None:
    result = probe_once(HttpCheck(port=1), make_node(clock, address=None))
    assert result == ProbeResult(False, "no address yet")


def test_tcp_open_port(tcp_listener: int, clock: FakeClock) -> None:
    result = run_probe(tcp_probe(TcpCheck(port=tcp_listener), 1.0), make_node(clock))
    assert result.ok
    assert str(tcp_listener) in result.detail


def test_tcp_refused(closed_port: int, clock: FakeClock) -> None:
    result = run_probe(tcp_probe(TcpCheck(port=closed_port), 1.0), make_node(clock))
    assert result == ProbeResult(False, "connect refused")


def test_tcp_tracker_from_spec(tcp_listener: int, clock: FakeClock) -> None:
    spec = HealthSpec(tcp=TcpCheck(port=tcp_listener), healthy_threshold=1)
    tracker = build_tracker(spec, clock=clock, health_source=None, region="r1")
    node = make_node(clock)

    assert tracker.check_sync([node])[node.name].status is Health.HEALTHY


# --- node states, errors, concurrency ----------------------------------------------------


def test_only_active_nodes_are_probed(server: _Server, clock: FakeClock) -> None:
    tracker = http_tracker(http_spec(server.port), clock)
    nodes = [
        make_node(clock, "building", state=NodeState.BUILD),
        make_node(clock, "going", state=NodeState.DELETING),
        make_node(clock, "broken", state=NodeState.ERROR, fault="No valid host was found"),
        make_node(clock, "broken-quietly", state=NodeState.ERROR),
    ]

    result = tracker.check_sync(nodes)

    assert server.requests == 0
    assert result["building"].status is Health.UNKNOWN
    assert "not active yet" in result["building"].detail
    assert result["going"].status is Health.UNKNOWN
    assert result["broken"].status is Health.UNHEALTHY
    assert "No valid host was found" in result["broken"].detail
    assert result["broken-quietly"].status is Health.UNHEALTHY


def test_a_probe_that_raises_is_a_failure(clock: FakeClock) -> None:
    async def probe(node: Node) -> ProbeResult:
        if node.name == "bad":
            raise RuntimeError("boom")
        return ProbeResult(True, "fine")

    spec = HealthSpec(mode="provider", healthy_threshold=1, unhealthy_threshold=1)
    tracker = HealthTracker(spec, probe, clock)

    result = tracker.check_sync([make_node(clock, "bad"), make_node(clock, "good")])

    assert result["bad"].status is Health.UNHEALTHY
    assert "boom" in result["bad"].detail
    assert result["good"].status is Health.HEALTHY


def test_fifty_nodes_are_probed_concurrently(server: _Server, clock: FakeClock) -> None:
    server.delay = 0.2
    tracker = http_tracker(http_spec(server.port, healthy_threshold=1), clock)
    nodes = [make_node(clock, f"web-{i}") for i in range(50)]

    started = time.monotonic()
    result = tracker.check_sync(nodes)
    elapsed = time.monotonic() - started

    assert len(result) == 50
    assert all(h.status is Health.HEALTHY for h in result.values())
    assert server.requests == 50
    assert elapsed < 5.0  # one at a time would take 50 * 0.2s = 10s
    assert server.max_in_flight > 10


def test_check_sync_twice_in_a_row(server: _Server, clock: FakeClock) -> None:
    # Each asyncio.run is a new event loop; the HTTP client must not outlive its loop.
    tracker = http_tracker(http_spec(server.port), clock)
    node = make_node(clock)

    first = tracker.check_sync([node])
    clock.advance(2.0)
    second = tracker.check_sync([node])
    clock.advance(2.0)
    third = tracker.check_sync([node])

    assert first[node.name].status is Health.UNKNOWN
    assert second[node.name].status is Health.HEALTHY
    assert third[node.name].status is Health.HEALTHY
    assert server.requests == 3


def test_check_from_a_running_loop(server: _Server, clock: FakeClock) -> None:
    tracker = http_tracker(http_spec(server.port, healthy_threshold=1), clock)
    node = make_node(clock)

    result = asyncio.run(tracker.check([node]))

    assert result[node.name].status is Health.HEALTHY


# --- trusting the provider ---------------------------------------------------------------


class StubHealthSource:
    """A provider that reports health itself; records who asked, from which thread."""

    def __init__(self, answers: dict[str, NodeHealth]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, str]] = []
        self.threads: set[int] = set()

    def node_health(self, region: str, node: Node) -> NodeHealth:
        self.calls.append((region, node.name))
        self.threads.add(threading.get_ident())
        answer = self.answers[node.name]
        if answer.detail == "raise":
            raise ConnectionError("provider API unreachable")
        return answer


def test_source_probe_maps_provider_health(clock: FakeClock) -> None:
    source = StubHealthSource(
        {
            "up": NodeHealth(Health.HEALTHY, "lb member ONLINE"),
            "down": NodeHealth(Health.UNHEALTHY, "lb member ERROR"),
            "unsure": NodeHealth(Health.UNKNOWN, "lb member NO_MONITOR"),
        }
    )
    probe = source_probe(source, "r7")

    async def go() -> list[ProbeResult]:
        nodes = [make_node(clock, name) for name in ("up", "down", "unsure")]
        return list(await asyncio.gather(*(probe(n) for n in nodes)))

    up, down, unsure = asyncio.run(go())

    assert up == ProbeResult(True, "lb member ONLINE")
    assert down == ProbeResult(False, "lb member ERROR")
    # UNKNOWN says nothing about the node: it must not count as a failure.
    assert unsure == ProbeResult(False, "lb member NO_MONITOR", conclusive=False)
    assert {region for region, _ in source.calls} == {"r7"}
    assert threading.get_ident() not in source.threads  # ran in worker threads


def test_build_tracker_prefers_the_health_source(clock: FakeClock) -> None:
    source = StubHealthSource(
        {"up": NodeHealth(Health.HEALTHY), "flaky": NodeHealth(Health.UNHEALTHY, "raise")}
    )
    # An active http spec, but the (memory) provider supplies health: trust it.
    spec = http_spec(1, healthy_threshold=1, unhealthy_threshold=1)
    tracker = build_tracker(spec, clock=clock, health_source=source, region="r2")

    result = tracker.check_sync([make_node(clock, "up"), make_node(clock, "flaky")])

    assert result["up"] == NodeHealth(Health.HEALTHY, "healthy (1/1 successes)")
    assert result["flaky"].status is Health.UNHEALTHY
    assert "provider API unreachable" in result["flaky"].detail
    assert ("r2", "up") in source.calls


@pytest.mark.parametrize("in_memory", [True, False])
def test_an_in_memory_source_is_asked_inline_without_threads(
    clock: FakeClock, in_memory: bool
) -> None:
    """Issue 15: an event loop and a thread per probe cost far more than an in-memory
    answer; a source without I/O is asked in the caller's thread, with the same
    conclusions (thresholds, errors as failed checks) as through threads."""
    names = [f"n{i}" for i in range(50)]
    source = StubHealthSource({**{n: NodeHealth(Health.HEALTHY) for n in names},
                               "flaky": NodeHealth(Health.UNHEALTHY, "raise")})
    source.answers_inline = in_memory  # type: ignore[attr-defined]
    spec = http_spec(1, healthy_threshold=1, unhealthy_threshold=1)
    tracker = build_tracker(spec, clock=clock, health_source=source, region="r2")

    result = tracker.check_sync([make_node(clock, n) for n in [*names, "flaky"]])

    assert all(result[n] == NodeHealth(Health.HEALTHY, "healthy (1/1 successes)")
               for n in names)
    assert "provider API unreachable" in result["flaky"].detail
    inline = source.threads == {threading.get_ident()}
    assert inline is in_memory


def test_provider_mode_without_a_health_source_is_an_input_error(clock: FakeClock) -> None:
    with pytest.raises(InputError, match="provider"):
        build_tracker(HealthSpec(mode="provider"), clock=clock, health_source=None, region="r1")


class FlakyHealthSource:
    """A provider whose health API fails transiently on every call."""

    def node_health(self, region: str, node: Node) -> NodeHealth:
        from phoenix.errors import Transient

        raise Transient("HTTP 503 from the health API")


def test_provider_api_errors_are_inconclusive_not_failures(clock: FakeClock) -> None:
    spec = HealthSpec(mode="provider", unhealthy_threshold=1, interval=1, timeout=0.5)
    tracker = build_tracker(spec, clock=clock, health_source=FlakyHealthSource(), region="r")
    node = make_node(clock, "n1")
    for _ in range(5):
        result = tracker.check_sync([node])["n1"]
        clock.advance(1)
        assert result.status is Health.UNKNOWN
    assert "inconclusive" in result.detail


def test_the_last_failure_is_kept_after_a_success(server: _Server, clock: FakeClock) -> None:
    """A gate that runs out of time on "HTTP 200 (1/2 successes)" must still be able to
    say what failed before (issue 12: the reason showed only the last success)."""
    server.status = 503
    tracker = http_tracker(http_spec(server.port, unhealthy_threshold=5), clock)
    node = make_node(clock)
    rounds(tracker, clock, node, 2)
    server.status = 200

    (last,) = rounds(tracker, clock, node, 1)

    assert last.status is Health.UNKNOWN and last.detail == "HTTP 200 (1/2 successes)"
    assert last.passing is True and last.last_failure == "HTTP 503"


def test_http_rounds_share_one_loop_and_client_and_start_no_thread(
    server: _Server, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 15: the engine probes every poll; a round must not pay for a new event loop,
    a new client or new threads. After the first round (which may start the process's
    probe loop), rounds make no client and start no thread, and every probe still
    reaches the server."""
    spec = http_spec(server.port, interval=1.0, healthy_threshold=1)
    tracker = build_tracker(spec, clock=clock, health_source=None, region="r1")
    nodes = [make_node(clock, f"n{i}") for i in range(5)]
    tracker.check_sync(nodes)
    started: list[str] = []
    real_start = threading.Thread.start

    def counting_start(thread: threading.Thread) -> None:
        if "process_request_thread" not in thread.name:  # the test server's own
            started.append(thread.name)
        real_start(thread)

    clients: list[httpx.AsyncClient] = []
    real_init = httpx.AsyncClient.__init__

    def counting_init(client: httpx.AsyncClient, *args: object, **kwargs: object) -> None:
        clients.append(client)
        real_init(client, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(threading.Thread, "start", counting_start)
    monkeypatch.setattr(httpx.AsyncClient, "__init__", counting_init)
    for _ in range(5):
        clock.advance(1.0)
        health = tracker.check_sync(nodes)
        assert all(h.status is Health.HEALTHY for h in health.values()), health
    monkeypatch.undo()
    assert started == []
    assert clients == []
    assert server.requests == 30


def test_provider_mode_trusts_the_listing_inline(clock: FakeClock) -> None:
    """``health.mode: provider`` on OpenStack/libcloud judges from the listing the engine
    just read: no I/O, so no thread or event loop per probe (issue 15)."""
    seen: list[int] = []

    class Watching(TrustedStateHealth):
        def node_health(self, region: str, node: Node) -> NodeHealth:
            seen.append(threading.get_ident())
            return super().node_health(region, node)

    tracker = build_tracker(HealthSpec(mode="provider", healthy_threshold=1), clock=clock,
                            health_source=Watching("Nova"), region="r1")
    health = tracker.check_sync([make_node(clock, f"n{i}") for i in range(8)])
    assert {h.status for h in health.values()} == {Health.HEALTHY}
    assert set(seen) == {threading.get_ident()}
