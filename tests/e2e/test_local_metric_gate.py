"""A canary with a Prometheus metric gate on the local provider: a real Prometheus
(Debian's package) scrapes every node of the example app (its /metrics, found through a
file_sd targets file the test keeps up to date, as a cloud's service discovery would),
while users' requests flow through the load balancer. A release whose canary answers as
well as the baseline is promoted; one told to fail half its requests (vars.error_ratio)
is rolled back by the gate during its bake, the baseline serving.

Run under ``flock /tmp/phoenix-local-tests.lock`` like every local-provider test."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import phoenix
from phoenix.errors import DeployFailed, Transient
from phoenix.metric_gate import query_value
from phoenix.results import HookOutcome

from .test_local_e2e import App, example_app, free_port, under_load

pytestmark = pytest.mark.skipif(shutil.which("prometheus") is None,
                                reason="prometheus missing (apt-get install prometheus)")

ERROR_RATIO = (
    '(sum(rate(hello_requests_total{release="{{ release }}",code="500"}[4s])) or vector(0))'
    ' / sum(rate(hello_requests_total{release="{{ release }}"}[4s]))'
)


def gated(prometheus: str) -> str:
    """The example as a canary of one node baking 12 s, gated on its error ratio."""
    return (
        "gates:\n  metrics:\n"
        f"    prometheus: {prometheus}\n    interval: 1s\n    checks:\n"
        f"      - {{name: error-ratio, max: 0.1, max_vs_baseline: 3, tolerance: 0.02,\n"
        f"         query: {json.dumps(ERROR_RATIO)}}}\n"
    )


class Targets:
    """Keeps Prometheus's file_sd targets equal to the nodes that exist."""

    def __init__(self, state: Path, path: Path) -> None:
        self.state = state
        self.path = path
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last = None
        while not self.stop.wait(0.3):
            addresses = sorted(
                f"{json.loads(p.read_text())['address']}:8081"
                for p in self.state.glob("regions/*/apps/*/nodes/*/node.json")
                if p.is_file())
            if addresses != last:
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps([{"targets": addresses}]))
                tmp.replace(self.path)
                last = addresses


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[App, str]]:
    with example_app(tmp_path, monkeypatch) as the_app:
        yield from _with_prometheus(the_app, tmp_path)


def _with_prometheus(the_app: App, tmp_path: Path) -> Iterator[tuple[App, str]]:
    root = the_app.root
    the_app.set("  strategy: blue-green\n",
                "  strategy: canary\n  canary: {size: 1, bake: 12s}\n")
    targets = Targets(root / ".phoenix" / "local", tmp_path / "targets.json")
    targets.path.write_text("[]")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n  - job_name: hello\n"
        f"    file_sd_configs: [{{files: ['{targets.path}'], refresh_interval: 1s}}]\n")
    prom_port = free_port("127.0.0.1")
    prometheus = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{prom_port}"
    targets.thread.start()
    try:
        deadline = time.monotonic() + 60
        while True:
            assert prometheus.poll() is None, prometheus.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "prometheus did not answer within 60 s"
            try:
                query_value(url, "vector(1)")
                break
            except Transient:
                time.sleep(0.3)
        yield the_app, url
    finally:
        targets.stop.set()
        prometheus.terminate()
        prometheus.wait(timeout=30)


def test_a_good_canary_is_promoted_and_a_failing_one_rolled_back(
        app: tuple[App, str]) -> None:
    the_app, prometheus = app
    first = phoenix.deploy(the_app.spec())  # the baseline (no gate without one)
    the_app.set("hooks:\n", gated(prometheus) + "hooks:\n")

    the_app.change_image("release two")
    load, second = under_load(the_app, lambda: phoenix.deploy(the_app.spec()), minimum=2000)
    assert isinstance(second, phoenix.DeployResult), second
    assert second.outcome == "succeeded" and second.release != first.release
    looks = [h for h in second.hooks if h.hook == "gate: metric error-ratio"]
    assert looks and looks[-1].outcome is HookOutcome.OK, looks
    assert "baseline" in looks[-1].detail  # measured against the release beside it
    assert load.failed == [], load.failed[:5]

    the_app.set("error_ratio: 0 ", "error_ratio: 0.5 ")  # a release that fails half
    load, outcome = under_load(the_app, lambda: phoenix.deploy(the_app.spec()),
                               minimum=2000)
    assert isinstance(outcome, DeployFailed), outcome
    assert "gate: metric error-ratio failed" in str(outcome), str(outcome)
    report = phoenix.status(the_app.spec())
    assert report.regions[0].serving_release == second.release
    assert {n.release for n in report.regions[0].nodes} == {second.release}
    result = outcome.result
    assert isinstance(result, phoenix.DeployResult) and result.outcome == "rolled-back"
    # Caught during the bake (not by the last look before promotion), on the canary's
    # measured errors.
    assert "when the bake ended" not in str(outcome)
    failed = [h for h in result.hooks if h.outcome is HookOutcome.FAILED]
    assert failed and failed[0].detail.startswith("error-ratio: canary 0.")
