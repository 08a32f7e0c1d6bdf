"""`phoenix watch` as a user runs it: a long-running process serving /metrics and
/healthz on loopback, stopped by SIGTERM (the memory cloud's state file is shared with
the `phoenix deploy` run before it)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "memory-hello"


def test_watch_serves_metrics_and_healthz_and_stops_on_sigterm(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLE, tmp_path / "app")
    spec = tmp_path / "app" / "phoenix.yaml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_")}
    phoenix = [sys.executable, "-m", "phoenix"]
    deployed = subprocess.run([*phoenix, "deploy", str(spec)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120, check=False)
    assert deployed.returncode == 0, deployed.stderr

    watch = subprocess.Popen(
        [*phoenix, "--output", "json", "watch", "--interval", "0.5s", "--listen",
         "127.0.0.1:0", str(spec)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        url = None
        deadline = time.monotonic() + 60
        assert watch.stderr is not None
        while url is None and time.monotonic() < deadline:
            line = watch.stderr.readline()
            found = re.search(r"metrics at (http://127\.0\.0\.1:\d+)/metrics", line)
            url = found.group(1) if found else None
        assert url is not None, "watch never said where its metrics are"
        metrics = ""
        while time.monotonic() < deadline and 'health="HEALTHY"' not in metrics:
            metrics = httpx.get(f"{url}/metrics", timeout=5).text
            time.sleep(0.2)
        assert re.search(r'phoenix_nodes\{app="hello",health="HEALTHY",region="region-a",'
                         r'release="r\d+-[0-9a-f]+"\} 3\.0', metrics), metrics
        assert "phoenix_watch_last_round_timestamp_seconds" in metrics
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        assert httpx.get(f"{url}/nope", timeout=5).status_code == 404

        watch.send_signal(signal.SIGTERM)
        out, err = watch.communicate(timeout=30)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()

    assert watch.returncode == 0, err
    assert '"state": "healthy"' in out


def test_the_status_page_as_a_person_sees_it_in_chromium(tmp_path: Path) -> None:
    """Headless Chromium (Debian's) loads watch's page and renders what status shows:
    the app, its region and state, the serving release, every node with its health."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        import pytest

        pytest.skip("chromium missing (apt-get install chromium)")
    shutil.copytree(EXAMPLE, tmp_path / "app")
    spec = tmp_path / "app" / "phoenix.yaml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_")}
    phoenix = [sys.executable, "-m", "phoenix"]
    deployed = subprocess.run([*phoenix, "--output", "json", "deploy", str(spec)],
                              cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120, check=False)
    assert deployed.returncode == 0, deployed.stderr
    release = re.search(r'"release": "([^"]+)"', deployed.stdout).group(1)  # type: ignore[union-attr]
    watch = subprocess.Popen(
        [*phoenix, "watch", "--interval", "0.5s", "--listen", "127.0.0.1:0", str(spec)],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert watch.stderr is not None
        line = watch.stderr.readline()
        found = re.search(r"(http://127\.0\.0\.1:\d+)/metrics", line)
        assert found, line
        url = found.group(1) + "/"
        deadline = time.monotonic() + 60
        while "hello in region-a" not in httpx.get(url, timeout=5).text:
            assert time.monotonic() < deadline, "the page never showed the app"
            time.sleep(0.2)
        rendered = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", url],
            capture_output=True, text=True, timeout=120, check=False,
            env={**env, "HOME": str(tmp_path)},
        )
    finally:
        watch.send_signal(signal.SIGTERM)
        watch.wait(timeout=30)

    dom = rendered.stdout
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    assert "<title>phoenix watch</title>" in dom
    assert re.search(r"<h2>hello in region-a: healthy</h2>", dom), dom
    assert f"Serving release: {release}." in dom
    rows = re.findall(r'<tr><td>(hello-[^<]+)</td><td>([^<]+)</td><td>ACTIVE</td>'
                      r'<td class="HEALTHY">HEALTHY</td><td>in the pool</td>', dom)
    assert len(rows) == 3 and {r[1] for r in rows} == {release}, dom
