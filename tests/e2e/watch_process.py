"""`phoenix watch` in a real process, for the tests that look at it from outside (its
endpoints, its status page, Prometheus): the memory example deployed in a temporary
folder, then watch started on a free loopback port."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "memory-hello"
PHOENIX = [sys.executable, "-m", "phoenix"]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_")}


def deployed_example(tmp_path: Path) -> tuple[Path, str]:
    """The memory example copied into ``tmp_path/app`` and deployed: (spec, release)."""
    shutil.copytree(EXAMPLE, tmp_path / "app")
    spec = tmp_path / "app" / "phoenix.yaml"
    deployed = subprocess.run([*PHOENIX, "--output", "json", "deploy", str(spec)],
                              cwd=tmp_path, env=clean_env(), capture_output=True, text=True,
                              timeout=120, check=False)
    assert deployed.returncode == 0, deployed.stderr
    found = re.search(r'"release": "([^"]+)"', deployed.stdout)
    assert found, deployed.stdout
    return spec, found.group(1)


@contextmanager
def watch_process(spec: Path, *, json: bool = False) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``phoenix watch --interval 0.5s --listen 127.0.0.1:0`` of ``spec``: yields the
    process and its base URL (``http://127.0.0.1:PORT``); stopped with SIGTERM after."""
    output = ["--output", "json"] if json else []
    process = subprocess.Popen(
        [*PHOENIX, *output, "watch", "--interval", "0.5s", "--listen", "127.0.0.1:0",
         str(spec)],
        cwd=spec.parent.parent, env=clean_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stderr is not None
        line, deadline = "", time.monotonic() + 60
        while "metrics at" not in line and time.monotonic() < deadline:
            line = process.stderr.readline()
        found = re.search(r"(http://127\.0\.0\.1:\d+)/metrics", line)
        assert found, f"watch never said where its metrics are: {line!r}"
        yield process, found.group(1)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
