"""What the local-provider integration tests share: a tiny HTTP backend to put behind a
balancer, and process helpers that find and kill whatever a test started (by the test's
own directory in a command line or environment), so nothing outlives a test."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

BACKEND = r"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME, HOST = sys.argv[1], sys.argv[2]

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = b"ok" if self.path == "/healthz" else NAME.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):  # checks close with a reset
            super().handle_error(request, client_address)

server = Server((HOST, 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""
"""A backend answering every path with its NAME (``/healthz`` with "ok"); it prints
its port once it listens. Run as ``python -c BACKEND NAME HOST``."""


def alive(pid: int) -> bool:
    """Running, by /proc (a zombie waiting for its parent does not count)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def processes_mentioning(root: Path) -> set[int]:
    """Live processes whose command line or environment names a path under ``root``:
    balancers and supervisors (their pool dir is an argument), node agents, services
    and backends' scripts."""
    needle = str(root).encode()
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            text = Path(f"/proc/{entry}/cmdline").read_bytes()
            text += Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if needle in text and alive(int(entry)):
            found.add(int(entry))
    return found


def kill_everything_under(root: Path) -> None:
    """SIGKILL every process ``processes_mentioning(root)``; fail if one survives."""
    def gone() -> bool:
        return not processes_mentioning(root)

    # A dying agent's child, or a balancer a supervisor restarts, may appear meanwhile.
    for _ in range(3):
        for pid in processes_mentioning(root):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(AssertionError):
            wait_for(gone, 5.0, "leftovers to die")
    assert gone(), f"processes left behind: {processes_mentioning(root)}"


def wait_for(condition: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def free_port(hosts: list[str]) -> int:
    """A port that is free on every one of ``hosts``."""
    for _ in range(100):
        port = random.randint(20000, 60000)
        try:
            for host in hosts:
                with socket.socket() as probe:
                    probe.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError(f"no port free on all of {hosts}")
