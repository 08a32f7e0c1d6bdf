"""One event loop and one HTTP client for every health probe of the process.

The engine is synchronous and polls every second or two; each poll probes the nodes that
are due. Running each round on a fresh event loop with a fresh ``httpx.AsyncClient``
would pay, every round, for a loop, a client, and the loop's resolver threads (asyncio
resolves even a literal address in its default executor). So the probes of every tracker
(every region's engine, every app ``phoenix watch`` looks after) run on one loop in a
daemon thread, through one client created on it, for the life of the process.

The client keeps no idle connections: each probe opens a new one, because a health check
must prove the node still *accepts* connections, which a reused keep-alive socket would
not. Concurrency is bounded per round by the tracker (``MAX_CONCURRENT_PROBES``); the
client's own limit is set well above it so that one app's slow round never makes
another's probes wait for a pooled connection slot.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx

T = TypeVar("T")

CLIENT_CONNECTION_LIMIT = 1024


class ProbeLoop:
    """An event loop running in a daemon thread, and the probe client that lives on it."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="phoenix-probes", daemon=True
        )
        self._thread.start()
        self._client: httpx.AsyncClient | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the loop and wait for its result (from any other thread)."""
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("ProbeLoop.run called from the probe loop itself")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def client(self) -> httpx.AsyncClient:
        """The shared probe client; only for code running on this loop."""
        if self._client is None:
            self._client = probe_client(CLIENT_CONNECTION_LIMIT)
        return self._client

    def owns_running_loop(self) -> bool:
        """True when called from a coroutine running on this loop."""
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def close(self) -> None:
        """Close the client and stop the loop (tests; the process exit does it otherwise)."""
        if self._client is not None:
            client, self._client = self._client, None
            asyncio.run_coroutine_threadsafe(client.aclose(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()


def probe_client(max_connections: int) -> httpx.AsyncClient:
    """An HTTP client for health probes, to be made on the loop it will run on.

    No idle connections (each probe proves the node accepts one); no redirects followed
    (a login redirect is not a healthy app); no TLS context, since probes only use plain
    http:// URLs and the default one would load the CA bundle (if https checks are ever
    added, pass a real verify context here); trust_env=False: straight to the node, never
    through a proxy named in the environment."""
    return httpx.AsyncClient(
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=0),
        follow_redirects=False,
        trust_env=False,
        verify=False,
    )


_shared: ProbeLoop | None = None
_shared_pid: int | None = None
_lock = threading.Lock()


def shared() -> ProbeLoop:
    """The process's probe loop, started on first use (and again in a forked child,
    which inherits the object but not the thread)."""
    global _shared, _shared_pid
    with _lock:
        if _shared is None or _shared_pid != os.getpid():
            _shared, _shared_pid = ProbeLoop(), os.getpid()
        return _shared
