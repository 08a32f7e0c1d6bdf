"""`phoenix watch` as a user runs it: a long-running process serving /metrics, /healthz
and a status page on loopback, stopped by SIGTERM (the memory cloud's state file is
shared with the `phoenix deploy` run before it)."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.watch_process import clean_env, deployed_example, watch_process


def test_watch_serves_metrics_and_healthz_and_stops_on_sigterm(tmp_path: Path) -> None:
    spec, _ = deployed_example(tmp_path)
    with watch_process(spec, json=True) as (watch, url):
        metrics = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and 'health="HEALTHY"' not in metrics:
            metrics = httpx.get(f"{url}/metrics", timeout=5).text
            time.sleep(0.2)
        assert re.search(r'phoenix_nodes\{app="hello",health="HEALTHY",region="region-a",'
                         r'release="r\d+-[0-9a-f]+"\} 3\.0', metrics), metrics
        assert "phoenix_watch_last_round_timestamp_seconds" in metrics
        assert re.search(r'phoenix_api_requests_total\{provider="memory",service="compute"\}'
                         r' [1-9]', metrics), metrics
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        assert httpx.get(f"{url}/nope", timeout=5).status_code == 404

        watch.send_signal(signal.SIGTERM)
        out, err = watch.communicate(timeout=30)

    assert watch.returncode == 0, err
    assert '"state": "healthy"' in out


def test_the_status_page_as_a_person_sees_it_in_chromium(tmp_path: Path) -> None:
    """Headless Chromium (Debian's) loads watch's page and renders what status shows:
    the app, its region and state, the serving release, every node with its health."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium missing (apt-get install chromium)")
    spec, release = deployed_example(tmp_path)
    with watch_process(spec) as (_, url):
        deadline = time.monotonic() + 60
        while "hello in region-a" not in httpx.get(f"{url}/", timeout=5).text:
            assert time.monotonic() < deadline, "the page never showed the app"
            time.sleep(0.2)
        rendered = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", f"{url}/"],
            capture_output=True, text=True, timeout=120, check=False,
            env={**clean_env(), "HOME": str(tmp_path)},
        )

    dom = rendered.stdout
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    assert "<title>phoenix watch</title>" in dom
    assert re.search(r"<h2>hello in region-a: healthy</h2>", dom), dom
    assert f"Serving release: {release}." in dom
    rows = re.findall(r'<tr><td>(hello-[^<]+)</td><td>([^<]+)</td><td>ACTIVE</td>'
                      r'<td class="HEALTHY">HEALTHY</td><td>in the pool</td>', dom)
    assert len(rows) == 3 and {r[1] for r in rows} == {release}, dom
