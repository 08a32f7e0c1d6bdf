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
