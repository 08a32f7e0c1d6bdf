"""The load-test gate runs real Locust against a real server started by the test."""

from __future__ import annotations

import importlib.util
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from phoenix.load_gate import LoadTest, judge, run_load_test

# Looked up, not imported: importing Locust would patch pytest's process with gevent.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("locust") is None,
                                reason="Locust is the [load] extra (the test extra has it)")

LOCUSTFILE = """\
from locust import HttpUser, constant, task


class Visitor(HttpUser):
    wait_time = constant(0.01)

    @task
    def index(self):
        self.client.get("/")
"""


class _App(BaseHTTPRequestHandler):
    delay = 0.0
    status = 200

    def do_GET(self) -> None:
        time.sleep(type(self).delay)
        self.send_response(type(self).status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def app() -> Iterator[tuple[str, type[_App]]]:
    handler = type("Handler", (_App,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def gate(tmp_path: Path, **limits: float) -> LoadTest:
    (tmp_path / "locustfile.py").write_text(LOCUSTFILE)
    return LoadTest(Path("locustfile.py"), users=4, spawn_rate=4, seconds=2, **limits)


def test_a_healthy_release_passes(tmp_path: Path, app: tuple[str, type[_App]]) -> None:
    host, _ = app
    result = run_load_test(gate(tmp_path, max_p95_ms=500), host, cwd=tmp_path)
    assert result.passed, result.detail
    assert result.requests > 20 and result.failures == 0
    assert result.p95_ms is not None and result.p95_ms <= 500


def test_errors_fail_the_gate(tmp_path: Path, app: tuple[str, type[_App]]) -> None:
    host, handler = app
    handler.status = 500
    result = run_load_test(gate(tmp_path), host, cwd=tmp_path)
    assert not result.passed
    assert result.failures == result.requests > 0
    assert "failure ratio 100.00% > 1.00%" in result.detail


def test_an_impossible_p95_fails_the_gate(tmp_path: Path, app: tuple[str, type[_App]]) -> None:
    host, handler = app
    handler.delay = 0.05
    result = run_load_test(gate(tmp_path, max_p95_ms=1), host, cwd=tmp_path)
    assert not result.passed
    assert result.failures == 0 and "p95" in result.detail and "> 1 ms" in result.detail


def test_a_broken_locustfile_fails_with_locusts_words(tmp_path: Path) -> None:
    (tmp_path / "locustfile.py").write_text("this is not python\n")
    test = LoadTest(Path("locustfile.py"), users=1, spawn_rate=1, seconds=1)
    result = run_load_test(test, "http://127.0.0.1:9", cwd=tmp_path)
    assert not result.passed and "locust exited with" in result.detail


def test_judge_thresholds() -> None:
    test = LoadTest(Path("x"), max_failure_ratio=0.1, max_p95_ms=100)
    row = {"Request Count": "100", "Failure Count": "10", "95%": "100"}
    assert judge(test, "h", row).passed  # at the limits: a pass
    assert not judge(test, "h", {**row, "Failure Count": "11"}).passed
    assert not judge(test, "h", {**row, "95%": "101"}).passed
    assert not judge(test, "h", {"Request Count": "0", "Failure Count": "0", "95%": "N/A"}).passed
