"""Issue 14: Phoenix's alert rules pass promtool (check and unit tests), and a real
Prometheus (Debian's package) scrapes `phoenix watch` on loopback: the nodes it reports
are read back through Prometheus's query API, and the rules load."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.watch_process import deployed_example, watch_process

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "examples" / "monitoring"
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="promtool missing (apt-get install prometheus)")


@needs_promtool
@pytest.mark.parametrize("args", [["check", "rules", "alerts.yml"],
                                  ["check", "config", "prometheus.yml"],
                                  ["test", "rules", "alerts_test.yml"]],
                         ids=["check-rules", "check-config", "test-rules"])
def test_the_shipped_monitoring_passes_promtool(args: list[str]) -> None:
    result = subprocess.run(["promtool", *args], cwd=MONITORING, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def watching(tmp_path: Path) -> Iterator[str]:
    """`phoenix watch` of the memory example, deployed first; yields its host:port."""
    spec, _ = deployed_example(tmp_path)
    with watch_process(spec) as (_, url):
        yield url.removeprefix("http://")


@pytest.mark.skipif(shutil.which("prometheus") is None,
                    reason="prometheus missing (apt-get install prometheus)")
def test_a_real_prometheus_scrapes_watch(watching: str, tmp_path: Path) -> None:
    config = tmp_path / "prometheus.yml"
    config.write_text(
        (MONITORING / "prometheus.yml").read_text()
        .replace("scrape_interval: 15s", "scrape_interval: 1s")
        .replace("evaluation_interval: 15s", "evaluation_interval: 1s")
        .replace("127.0.0.1:9464", watching)
    )
    shutil.copy(MONITORING / "alerts.yml", tmp_path / "alerts.yml")
    port = _free_port()
    prometheus = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    api = f"http://127.0.0.1:{port}/api/v1"
    try:
        nodes: list[dict[str, object]] = []
        deadline = time.monotonic() + 60
        while not nodes and time.monotonic() < deadline:
            assert prometheus.poll() is None, prometheus.communicate()[1][-2000:]
            time.sleep(0.5)
            try:
                answer = httpx.get(f"{api}/query", timeout=5, params={
                    "query": 'phoenix_nodes{app="hello",health="HEALTHY"}'}).json()
            except httpx.TransportError:
                continue  # not listening yet
            nodes = answer["data"]["result"]
        assert nodes, "Prometheus never scraped phoenix_nodes from watch"
        [sample] = nodes
        assert sample["metric"]["region"] == "region-a"  # type: ignore[index]
        assert sample["value"][1] == "3"  # type: ignore[index]
        up = httpx.get(f"{api}/query", params={"query": 'up{job="phoenix-watch"}'},
                       timeout=5).json()["data"]["result"]
        assert [u["value"][1] for u in up] == ["1"]
        groups = httpx.get(f"{api}/rules", timeout=5).json()["data"]["groups"]
        names = {rule["name"] for group in groups for rule in group["rules"]}
        assert {"PhoenixWatchDown", "PhoenixFleetBelowCount", "PhoenixCircuitOpen"} <= names
    finally:
        prometheus.terminate()
        try:
            prometheus.wait(timeout=30)
        except subprocess.TimeoutExpired:
            prometheus.kill()
            prometheus.wait()
