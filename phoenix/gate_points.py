"""Where the load-test gate runs in a deploy: at the switch, against the new nodes.

``HookPoints`` calls a switch gate right after the ``pre_switch`` hooks, once per
attempt, when the new release's first members are about to join the pool; the gate gets
the addresses of the nodes joining in that poll (all of a blue-green fleet, the first
batch of a rolling one). No traffic has reached them yet, so a release that fails under
load never serves a user: the run fails and rolls back. A canary is load-tested during
its bake instead, once its nodes serve beside the baseline (the canary's purpose is to
meet real traffic; the load test adds to it), and a miss ends the bake with a rollback.

During a canary's bake, ``MetricBakeGate`` asks Prometheus about the canary against
the baseline, and once more before the release is promoted.

Locust talks to one host, so for several nodes a *test listener* stands in for the load
balancer: a round-robin TCP relay on 127.0.0.1 of the deploying machine, which spreads
Locust's connections over the nodes (each connection keeps its node, as a balancer's
would). It lives for the length of the load test only.
"""

from __future__ import annotations

import contextlib
import itertools
import selectors
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from phoenix.errors import Permanent, Transient
from phoenix.load_gate import LoadResult, LoadTest, run_load_test
from phoenix.log import get_logger
from phoenix.metric_gate import MetricCheck, MetricVerdict
from phoenix.metric_gate import evaluate as evaluate_check
from phoenix.results import HookOutcome, HookRun
from phoenix.spec import Spec

log = get_logger("phoenix.gates")

KEEPALIVE_SECONDS = 5.0  # how often the lease is looked after while the load runs


class GateFailed(Permanent):
    """A release did not meet a gate: the run fails and rolls back."""


class LoadTestGate:
    """The spec's ``gates.load_test``, run against the nodes about to join."""

    def __init__(self, spec: Spec, *, keepalive: Callable[[], None] = lambda: None,
                 runner: Callable[[LoadTest, str], LoadResult] | None = None) -> None:
        gate = spec.gates.load_test
        assert gate is not None
        self.test = LoadTest(
            locustfile=Path(gate.locustfile), users=gate.users, spawn_rate=gate.spawn_rate,
            seconds=gate.duration, max_failure_ratio=gate.max_failure_ratio,
            max_p95_ms=gate.max_p95 * 1000.0)
        self.described = f"gate: load test {gate.locustfile}"
        self.keepalive = keepalive
        self.runner = runner or (lambda test, host: run_load_test(test, host,
                                                                  cwd=spec.base_dir))

    def __call__(self, nodes: Sequence[tuple[str, int]]) -> HookRun:
        """Load ``nodes`` (address, port) for the gate's duration; the verdict as a run
        of the ``pre_switch`` moment (so it shows in the result and history)."""
        started = time.monotonic()
        with test_listener(nodes) as host, ThreadPoolExecutor(1) as pool:
            future = pool.submit(self.runner, self.test, host)
            while not future.done():
                with contextlib.suppress(TimeoutError):
                    future.result(timeout=KEEPALIVE_SECONDS)
                    break
                self.keepalive()
            result = future.result()
        outcome = HookOutcome.OK if result.passed else HookOutcome.FAILED
        log.info("load test", nodes=len(nodes), passed=result.passed, detail=result.detail)
        return HookRun("pre_switch", None, self.described, outcome,
                       round(time.monotonic() - started, 3), result.detail)


@contextlib.contextmanager
def test_listener(nodes: Sequence[tuple[str, int]]) -> Iterator[str]:
    """``http://127.0.0.1:PORT`` relaying each connection to the next of ``nodes``."""
    if len(nodes) == 1:
        address, port = nodes[0]
        yield f"http://{address}:{port}"
        return
    order = itertools.cycle(list(nodes))
    lock = threading.Lock()

    class Relay(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            with lock:
                target = next(order)
            try:
                upstream = socket.create_connection(target, timeout=10)
            except OSError:
                return  # the client sees the connection close: a failed request
            with upstream:
                _pipe(self.request, upstream)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Relay)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="test-listener", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _pipe(client: socket.socket, upstream: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    with selectors.DefaultSelector() as selector:
        selector.register(client, selectors.EVENT_READ, upstream)
        selector.register(upstream, selectors.EVENT_READ, client)
        while True:
            for key, _ in selector.select(timeout=60):
                source: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    data = source.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                key.data.sendall(data)


class MetricBakeGate:
    """The spec's ``gates.metrics``: Prometheus checks of a canary during its bake.

    While the canary serves beside the baseline, each check is asked every ``interval``
    (``phoenix.metric_gate``); one that fails fails the run at once. Before the release
    is promoted (the rest of its nodes built, or the baseline drained) every check is
    asked once more and must pass: a check still without data then fails too, as a
    canary nobody measured has not proven anything."""

    def __init__(self, spec: Spec, *,
                 evaluate: Callable[..., MetricVerdict] | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        gate = spec.gates.metrics
        assert gate is not None
        self.prometheus = gate.prometheus
        self.interval = gate.interval
        self.checks = [MetricCheck(c.name, c.query, c.max, c.max_vs_baseline, c.tolerance)
                       for c in gate.checks]
        self.evaluate = evaluate
        self.monotonic = monotonic
        self._asked_at: float | None = None

    def during_bake(self, canary: str, baseline: str | None) -> list[HookRun]:
        """A look during the bake (paced by ``interval``): the decided verdicts."""
        now = self.monotonic()
        if self._asked_at is not None and now - self._asked_at < self.interval:
            return []
        self._asked_at = now
        return [self._run(v, final=False) for v in self._ask(canary, baseline)
                if v.passed is not None]

    def before_promotion(self, canary: str, baseline: str | None) -> list[HookRun]:
        """The last look: every check must pass now."""
        return [self._run(v, final=True) for v in self._ask(canary, baseline)]

    def _ask(self, canary: str, baseline: str | None) -> list[MetricVerdict]:
        verdicts = []
        for check in self.checks:
            try:
                ask = self.evaluate or evaluate_check
                verdicts.append(ask(check, self.prometheus, canary=canary, baseline=baseline))
            except Transient as exc:  # Prometheus down: undecided, asked again
                verdicts.append(MetricVerdict(check.name, None, None, None, str(exc)))
        return verdicts

    @staticmethod
    def _run(verdict: MetricVerdict, *, final: bool) -> HookRun:
        outcome = HookOutcome.OK if verdict.passed else HookOutcome.FAILED
        detail = verdict.detail if verdict.passed is not None or not final else (
            f"{verdict.detail} when the bake ended (is Prometheus scraping the canary?)")
        return HookRun("canary_bake", None, f"gate: metric {verdict.check}", outcome, 0.0,
                       detail)
