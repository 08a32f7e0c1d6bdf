"""Cancelling a real `phoenix deploy` process (SIGTERM from CI, SIGINT from Ctrl-C) leaves
the old release serving and nothing half-built, and the same command then converges."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

PHOENIX = [sys.executable, "-m", "phoenix"]

SPEC = """\
app: sig
provider:
  name: memory
  options: {{state_file: {state}, boot_seconds: 4}}
regions: [region-a]
image: {{name: golden}}
flavor: m1.small
count: 2
template: t.yaml.j2
vars: {{greeting: {greeting}}}
health: {{http: {{port: 8080}}, interval: 0.2s, timeout: 0.1s, healthy_threshold: 1}}
load_balancer: {{pool: sig-pool, member_port: 8080}}
"""


def run(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PHOENIX, *args], cwd=tmp, capture_output=True, text=True, timeout=120, check=False
    )


def write_spec(tmp: Path, greeting: str) -> Path:
    (tmp / "t.yaml.j2").write_text(
        "#cloud-config\nwrite_files: [{path: /g, content: '{{ vars.greeting }}'}]\n"
    )
    path = tmp / "phoenix.yaml"
    path.write_text(SPEC.format(state=tmp / "cloud.json", greeting=greeting))
    return path


def status(tmp: Path) -> dict[str, object]:
    done = run(tmp, "--output", "json", "status", "phoenix.yaml")
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def releases(report: dict[str, object]) -> tuple[str | None, set[str]]:
    """The serving release, and the releases of servers that are not being deleted (a
    server the rollback deleted stays DELETING for a moment when status looks at once)."""
    region = report["regions"][0]  # type: ignore[index]
    nodes = [n for n in region["nodes"] if n["state"] != "DELETING"]  # type: ignore[index]
    return region["serving_release"], {n["release"] for n in nodes}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_cancelled_deploy_rolls_back_then_rerun_converges(tmp_path: Path, sig: int) -> None:
    write_spec(tmp_path, "one")
    first = run(tmp_path, "--output", "json", "deploy", "phoenix.yaml")
    assert first.returncode == 0, first.stderr
    old_release = json.loads(first.stdout)["release"]

    write_spec(tmp_path, "two")
    proc = subprocess.Popen(
        [*PHOENIX, "--output", "json", "deploy", "phoenix.yaml"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    # Signal once the new servers are being built (they boot for 4 s): a fixed sleep
    # raced a slow start of the CLI on a loaded machine.
    lines: list[str] = []
    stderr = proc.stderr
    assert stderr is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(stderr.readline, "")))
    reader.start()
    deadline = time.monotonic() + 60
    while not any('"CreateNode"' in line for line in lines) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(sig)
    out = proc.stdout.read() if proc.stdout else ""
    proc.wait(timeout=60)
    reader.join(timeout=10)
    err = "".join(lines)
    assert proc.returncode == 130, err
    assert json.loads(out)["outcome"] == "interrupted"

    serving, present = releases(status(tmp_path))
    assert serving == old_release
    assert present == {old_release}  # the half-built release was removed

    again = run(tmp_path, "--output", "json", "deploy", "phoenix.yaml")
    assert again.returncode == 0, again.stderr
    new_release = json.loads(again.stdout)["release"]
    assert new_release != old_release
    serving, present = releases(status(tmp_path))
    assert serving == new_release and present == {new_release}
