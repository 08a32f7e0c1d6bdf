"""The hello app baked into the golden image.

It reads the configuration cloud-init wrote (etc/hello/config.json under the node's root),
binds the node's own loopback address, answers every request with its release and node on
the first line, and serves /healthz for Phoenix's and the load balancer's health checks.

GET /metrics gives its request counters by release and status code in Prometheus's text
format (what a canary's metric gate asks about), and with ``error_ratio`` (0-1) in its
configuration that share of requests to / fails with 500: a bad release, on purpose.

It also keeps data, as a real app would: each request to / appends a line to
var/lib/hello/visits.log on the node's disk, and GET /data returns that file. The node is
cattle, its data is not: the spec's pre_terminate hook (hooks/backup.py) saves it before
Phoenix deletes the node.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CONFIG = json.loads(Path("etc/hello/config.json").read_text())
ADDRESS = os.environ.get("PHOENIX_NODE_ADDRESS", "127.0.0.1")
NODE = os.environ.get("PHOENIX_NODE_NAME", "hello")
DATA = Path("var/lib/hello/visits.log")  # relative to the node's root (the cwd)
_write = threading.Lock()
_counts = {"200": 0, "500": 0}  # requests to / by status code
_count_lock = threading.Lock()
_sequence = itertools.count()
ERROR_EVERY = (round(1 / CONFIG["error_ratio"]) if CONFIG.get("error_ratio", 0) > 0 else 0)


def count(code: str) -> None:
    with _count_lock:
        _counts[code] += 1


def metrics() -> str:
    release = CONFIG["release"]
    with _count_lock:
        lines = [f'hello_requests_total{{release="{release}",node="{NODE}",code="{code}"}} {n}'
                 for code, n in sorted(_counts.items())]
    return "# TYPE hello_requests_total counter\n" + "\n".join(lines) + "\n"


def record_visit(path: str) -> None:
    with _write, DATA.open("a") as log:
        log.write(f"{time.time():.3f} {NODE} {path}\n")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/healthz":
            healthy = CONFIG.get("healthy", True)
            self._reply(200 if healthy else 503, "ok\n" if healthy else "unhealthy\n")
            return
        if self.path == "/metrics":
            self._reply(200, metrics())
            return
        if self.path == "/data":
            with _write:
                data = DATA.read_text() if DATA.exists() else ""
            self._reply(200, data)
            return
        if ERROR_EVERY and next(_sequence) % ERROR_EVERY == 0:
            count("500")
            self._reply(500, f"release {CONFIG['release']} node {NODE}\nerror (error_ratio)\n")
            return
        record_visit(self.path)
        count("200")
        body = f"release {CONFIG['release']} node {NODE}\n{CONFIG['greeting']}\n"
        self._reply(200, body)

    def _reply(self, status: int, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # quiet console.log
        pass


def main() -> None:
    DATA.parent.mkdir(parents=True, exist_ok=True)
    server = ThreadingHTTPServer((ADDRESS, int(CONFIG["port"])), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"hello {CONFIG['release']} listening on {ADDRESS}:{CONFIG['port']}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
