"""What ``phoenix watch`` tells Prometheus, and its small HTTP face.

One registry per watcher (not prometheus-client's global one), filled from each round's
reports and observations, served at ``/metrics`` in the Prometheus text format;
``/healthz``, which answers 503 when the control loop has not finished a round for three
intervals (stuck, or dead in all but name), so that a liveness probe restarts it; and
``/``, a read-only status page for a person (``phoenix.status_page``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from phoenix import api_calls
from phoenix.model import Node


class WatchMetrics:
    """The metrics named in the README's "Keep it running" section."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.nodes = Gauge("phoenix_nodes", "Nodes of the app by release and health",
                           ["app", "region", "release", "health"], registry=r)
        self.node_age = Gauge("phoenix_node_age_seconds", "Age of each node",
                              ["app", "region", "node"], registry=r)
        self.heals = Counter("phoenix_heals_total", "Heals and repaves watch carried out",
                             ["app", "region", "reason"], registry=r)
        self.actions = Counter("phoenix_deploys_total", "Actions by outcome",
                               ["app", "action", "outcome"], registry=r)
        self.step_seconds = Histogram("phoenix_step_duration_seconds",
                                      "How long one app's round took", ["app"], registry=r)
        self.lease_held = Gauge("phoenix_lease_held", "1 while an actor holds the app's lease",
                                ["app"], registry=r)
        self.circuit_open = Gauge("phoenix_circuit_open",
                                  "1 while too much of the fleet is sick to heal",
                                  ["app"], registry=r)
        self.desired = Gauge("phoenix_desired_nodes", "Nodes the spec asks for (count)",
                             ["app", "region"], registry=r)
        self.image_age = Gauge("phoenix_image_age_seconds",
                               "Age of the serving release's golden image",
                               ["app", "region", "release"], registry=r)
        self.image_max_age = Gauge("phoenix_image_max_age_seconds",
                                   "The spec's image.max_age (absent: none set)",
                                   ["app"], registry=r)
        r.register(_ApiCalls())
        self.last_round = Gauge("phoenix_watch_last_round_timestamp_seconds",
                                "When watch last finished a round", registry=r)
        # Label sets set for each app last time, so nodes that are gone leave the gauges.
        self._counted: dict[str, set[tuple[str, str, str, str]]] = {}
        self._aged: dict[str, set[tuple[str, ...]]] = {}

    def observe_nodes(self, app: str, region: str, nodes: Iterable[tuple[Node, str]],
                      now: datetime) -> None:
        """Replace the app's node gauges with what was just seen ((node, health) pairs)."""
        for gauge, labels in ((self.nodes, self._counted), (self.node_age, self._aged)):
            for key in labels.pop(app, set()):
                gauge.remove(*key)
        counts: dict[tuple[str, str, str, str], int] = {}
        aged: set[tuple[str, ...]] = set()
        for node, health in nodes:
            key = (app, region, node.release, health)
            counts[key] = counts.get(key, 0) + 1
            self.node_age.labels(app, region, node.name).set(
                max(0.0, (now - node.created_at).total_seconds()))
            aged.add((app, region, node.name))
        for key, count in counts.items():
            self.nodes.labels(*key).set(count)
        self._counted[app] = set(counts)
        self._aged[app] = aged

    def text(self) -> bytes:
        return generate_latest(self.registry)


class _ApiCalls(Collector):
    """``phoenix_api_requests_total``, read from ``phoenix.api_calls`` at each scrape
    (the executor counts every attempt; nothing to keep in step here)."""

    def collect(self) -> Iterable[CounterMetricFamily]:
        family = CounterMetricFamily(
            "phoenix_api_requests", "Requests made to the provider's API, by service",
            labels=["provider", "service"])
        for (provider, service), calls in sorted(api_calls.snapshot().items()):
            family.add_metric([provider, service], calls)
        yield family


class Endpoints:
    """``/metrics`` and ``/healthz`` on ``host:port`` (loopback by default), in a thread."""

    def __init__(self, host: str, port: int, metrics: WatchMetrics,
                 alive: Callable[[], bool], page: Callable[[], str] | None = None) -> None:
        handler = _handler(metrics, alive, page or (lambda: "<p>phoenix watch</p>"))
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                       name="phoenix-watch-http")

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(metrics: WatchMetrics, alive: Callable[[], bool],
             page: Callable[[], str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/":
                self._send(200, page().encode(), "text/html; charset=utf-8")
            elif self.path == "/metrics":
                self._send(200, metrics.text(), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                ok = alive()
                self._send(200 if ok else 503, b"ok\n" if ok else b"stuck\n", "text/plain")
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # scrapes are not news

    return Handler
