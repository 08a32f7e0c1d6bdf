"""The hello app baked into the golden image.

It reads the configuration cloud-init wrote (etc/hello/config.json under the node's root),
binds the node's own loopback address, answers every request with its release and node on
the first line, and serves /healthz for Phoenix's and the load balancer's health checks.

It also keeps data, as a real app would: each request to / appends a line to
var/lib/hello/visits.log on the node's disk, and GET /data returns that file. The node is
cattle, its data is not: the spec's pre_terminate hook (hooks/backup.py) saves it before
Phoenix deletes the node.
"""

from __future__ import annotations

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
        if self.path == "/data":
            with _write:
                data = DATA.read_text() if DATA.exists() else ""
            self._reply(200, data)
            return
        record_visit(self.path)
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
