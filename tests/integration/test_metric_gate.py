"""The metric gate asks a real Prometheus (Debian's package) about a real app: an app
started by the test serves request counters by release and status code; Prometheus
scrapes it every second; the gate's PromQL tells a good canary from a bad one."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from phoenix.errors import Transient
from phoenix.metric_gate import MetricCheck, evaluate, query_value

pytestmark = pytest.mark.skipif(shutil.which("prometheus") is None,
                                reason="prometheus missing (apt-get install prometheus)")

ERROR_RATIO = MetricCheck(
    name="error-ratio",
    query='sum(rate(http_requests_total{release="{{ release }}",code=~"5.."}[5s]))'
          ' / sum(rate(http_requests_total{release="{{ release }}"}[5s]))',
    max=0.2,
    max_vs_baseline=2.0,
    tolerance=0.01,
)
# release -> (requests per tick, errors per tick)
TRAFFIC = {"r1-base": (100, 1), "r2-good": (100, 1), "r3-bad": (100, 40)}


class _Counters:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts = {(release, code): 0 for release in TRAFFIC for code in ("200", "500")}

    def tick(self) -> None:
        with self.lock:
            for release, (total, errors) in TRAFFIC.items():
                self.counts[(release, "200")] += total - errors
                self.counts[(release, "500")] += errors

    def exposition(self) -> bytes:
        with self.lock:
            lines = ["# TYPE http_requests_total counter"] + [
                f'http_requests_total{{release="{release}",code="{code}"}} {n}'
                for (release, code), n in sorted(self.counts.items())]
        return ("\n".join(lines) + "\n").encode()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[str]:
    counters = _Counters()

    class Metrics(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = counters.exposition()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    app = ThreadingHTTPServer(("127.0.0.1", 0), Metrics)
    stop = threading.Event()
    threading.Thread(target=app.serve_forever, daemon=True).start()

    def traffic() -> None:
        while not stop.wait(0.2):
            counters.tick()

    threading.Thread(target=traffic, daemon=True).start()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: app\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{app.server_address[1]}']}}]\n"
    )
    port = _free_port()
    process = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:  # until a rate over the window can be computed
            assert process.poll() is None, process.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "prometheus had no rate after 60 s"
            time.sleep(0.5)
            try:
                if query_value(url, 'sum(rate(http_requests_total[5s]))'):
                    break
            except Transient:
                continue  # not listening yet
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        stop.set()
        app.shutdown()
        app.server_close()


def test_the_gate_tells_a_good_canary_from_a_bad_one(prometheus: str) -> None:
    good = evaluate(ERROR_RATIO, prometheus, canary="r2-good", baseline="r1-base")
    assert good.passed is True, good.detail
    assert good.canary == pytest.approx(0.01, abs=0.005)
    assert good.baseline == pytest.approx(0.01, abs=0.005)

    bad = evaluate(ERROR_RATIO, prometheus, canary="r3-bad", baseline="r1-base")
    assert bad.passed is False, bad.detail
    assert bad.canary == pytest.approx(0.4, abs=0.05)
    assert "> max 0.2" in bad.detail and "> baseline" in bad.detail

    unknown = evaluate(ERROR_RATIO, prometheus, canary="r9-none", baseline="r1-base")
    assert unknown.passed is None and "no data yet" in unknown.detail


def test_a_prometheus_that_does_not_answer_is_transient() -> None:
    with pytest.raises(Transient, match="prometheus at"):
        query_value(f"http://127.0.0.1:{_free_port()}", "up", timeout=1)
