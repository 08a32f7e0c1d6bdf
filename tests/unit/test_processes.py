"""pid_alive: running processes, gone ones, and zombies (which count as dead)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from phoenix.processes import pid_alive


def test_running_gone_and_zombie() -> None:
    assert pid_alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # exited but not reaped: a zombie
        with open(f"/proc/{child.pid}/stat") as stat:
            if stat.read().rpartition(")")[2].split()[0] == "Z":
                break
        time.sleep(0.01)
    assert not pid_alive(child.pid)
    child.wait()
    assert not pid_alive(child.pid)
    assert not pid_alive(0)
