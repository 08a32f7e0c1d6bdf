"""Running one lifecycle hook: a shell command or an HTTP POST, with the run's facts.

A hook runs on the deploying machine (a CI runner, a laptop), not on a node: it is how a
deploy reaches things Phoenix does not model (backing a node's data up before it goes,
shipping its logs, telling a chat channel, warming a cache). So a shell hook inherits
the caller's environment (it needs the same credentials the caller has), runs in the
spec's folder (so ``python3 hooks/backup.py`` means the file beside the spec), and gets
the facts twice: as ``PHOENIX_*`` variables for a one-line command, and as JSON on
stdin for a script. Its own session makes it a process group, so a timeout kills what
it started too (a ``curl`` left behind would outlive the deploy). What it prints is
kept bounded, masked of the spec's secrets and logged: a hook's output is the one place
a failure explains itself.

Deciding *when* a hook runs and what its failure means is ``phoenix.hook_points``'s job.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from phoenix import processes, secret_mask
from phoenix.log import get_logger
from phoenix.spec_hooks import HookSpec

__all__ = ["OUTPUT_LIMIT", "HookFacts", "HookResult", "facts_environment", "run_hook"]

log = get_logger("phoenix.hooks")

OUTPUT_LIMIT = 64 * 1024
"""Bytes of a hook's output kept (the last ones: where a failure says why)."""
DETAIL_LIMIT = 200  # characters of the one-line detail a result and the history keep
LOGGED_LIMIT = 4000  # characters of output put in the log
_NODE_VARS = ("PHOENIX_NODE_NAME", "PHOENIX_NODE_ADDRESS", "PHOENIX_NODE_RELEASE")
# After the hook's own process exits, how long its output pipe may stay open (held by
# something it left running in the background) before we stop reading.
_DRAIN_SECONDS = 2.0


@dataclass(frozen=True)
class HookFacts:
    """What a hook is told: the run, the moment, and the node for per-node moments."""

    app: str
    region: str
    release: str  # the release the run puts into service
    previous_release: str | None  # what served before the run (None: nothing)
    moment: str
    action: str  # deploy, rollback, failover, repave, heal, retire ...
    deploy_id: str
    node_name: str | None = None
    node_address: str | None = None  # None before a node exists (pre_create)
    node_release: str | None = None  # the node's own release (an old one when it leaves)

    def environment(self) -> dict[str, str]:
        """The facts as ``PHOENIX_*`` variables (empty strings for what is unknown)."""
        env = {
            "PHOENIX_APP": self.app,
            "PHOENIX_REGION": self.region,
            "PHOENIX_RELEASE": self.release,
            "PHOENIX_PREVIOUS_RELEASE": self.previous_release or "",
            "PHOENIX_HOOK_MOMENT": self.moment,
            "PHOENIX_ACTION": self.action,
            "PHOENIX_DEPLOY_ID": self.deploy_id,
        }
        if self.node_name is not None:
            env["PHOENIX_NODE_NAME"] = self.node_name
            env["PHOENIX_NODE_ADDRESS"] = self.node_address or ""
            env["PHOENIX_NODE_RELEASE"] = self.node_release or ""
        return env

    def payload(self) -> dict[str, Any]:
        """The facts as the JSON a hook reads on stdin (or a URL hook receives)."""
        node = None if self.node_name is None else {
            "name": self.node_name, "address": self.node_address, "release": self.node_release}
        return {
            "app": self.app, "region": self.region, "release": self.release,
            "previous_release": self.previous_release, "moment": self.moment,
            "action": self.action, "deploy_id": self.deploy_id, "node": node,
        }


@dataclass(frozen=True)
class HookResult:
    """How one hook ended: ``ok``, the seconds it took, a one-line ``detail`` and its
    (bounded) ``output``, both with secrets masked."""

    ok: bool
    seconds: float
    detail: str
    output: str = ""


def run_hook(hook: HookSpec, facts: HookFacts, *, cwd: Path,
             secrets: Iterable[str] = ()) -> HookResult:
    """Run ``hook`` with ``facts``; never raises for the hook's own failure (a non-zero
    exit, a timeout, a refused or failed POST): that is the result's ``ok``."""
    hidden = [s for s in secrets if s]
    # A hook is a real process on this machine: its seconds are the wall clock's, never
    # the run's (possibly fake) Clock.
    started = time.monotonic()
    if hook.run is not None:
        ok, detail, output = _run_command(hook.run, facts, cwd=cwd, timeout=hook.timeout)
    else:
        assert hook.url is not None  # the spec holds exactly one of run or url
        ok, detail, output = _post(hook.url, facts, timeout=hook.timeout)
    seconds = round(time.monotonic() - started, 3)
    output = secret_mask.mask(output, hidden)
    detail = _one_line(secret_mask.mask(detail, hidden))
    log.info("hook ran", moment=facts.moment, node=facts.node_name, hook=hook.describe(),
             ok=ok, seconds=seconds, detail=detail, output=output[-LOGGED_LIMIT:])
    return HookResult(ok, seconds, detail, output)


def _run_command(command: str, facts: HookFacts, *, cwd: Path,
                 timeout: float) -> tuple[bool, str, str]:
    env = facts_environment(facts, os.environ)
    try:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command], cwd=cwd, env=env, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
    except OSError as exc:
        return False, f"could not start: {exc}", ""
    assert proc.stdin is not None and proc.stdout is not None
    output = _Tail(proc.stdout)
    try:
        _feed(proc.stdin, json.dumps(facts.payload()).encode() + b"\n")
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            output.finish(_DRAIN_SECONDS)
            return False, f"timed out after {timeout:g}s (its process group was killed)", \
                output.text()
    finally:
        if proc.poll() is None:  # interrupted (Ctrl-C): nothing of it outlives the run
            _kill_group(proc)
    output.finish(_DRAIN_SECONDS)
    text = output.text()
    if code != 0:
        last = _last_line(text)
        return False, f"exit {code}" + (f": {last}" if last else ""), text
    return True, _last_line(text), text


def _feed(stdin: IO[bytes], data: bytes) -> None:
    """The facts on stdin, then EOF; a hook that does not read them is no failure."""
    try:
        stdin.write(data)
        stdin.close()
    except (BrokenPipeError, OSError):
        pass


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the hook's whole process group (its own session, led by ``proc``)."""
    leader = processes.get(proc.pid)
    processes.kill([leader] if leader is not None else [], timeout=5.0, group=proc.pid)
    try:
        proc.wait(timeout=5.0)
    except subprocess.TimeoutExpired:
        log.warning("a hook's process did not die after SIGKILL", pid=proc.pid)


class _Tail:
    """Reads a pipe to its end on a thread, keeping only its last ``OUTPUT_LIMIT`` bytes."""

    def __init__(self, pipe: IO[bytes]) -> None:
        self._pipe = pipe
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._dropped = False
        self._thread = threading.Thread(target=self._read, daemon=True, name="hook-output")
        self._thread.start()

    def _read(self) -> None:
        while chunk := os.read(self._pipe.fileno(), 8192):
            self._chunks.append(chunk)
            self._size += len(chunk)
            while self._size - len(self._chunks[0]) >= OUTPUT_LIMIT:
                self._size -= len(self._chunks.popleft())
                self._dropped = True

    def finish(self, seconds: float) -> None:
        self._thread.join(seconds)

    def text(self) -> str:
        data = b"".join(list(self._chunks))[-OUTPUT_LIMIT:]
        text = data.decode("utf-8", "replace")
        return ("[...]\n" + text) if self._dropped or self._size > OUTPUT_LIMIT else text


def _post(url: str, facts: HookFacts, *, timeout: float) -> tuple[bool, str, str]:
    """POST the facts as JSON; a 2xx answer is success. The whole exchange is bounded by
    ``timeout`` (a server that answers byte by byte does not hold the run)."""
    body = json.dumps(facts.payload()).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "phoenix-hook",
        "X-Phoenix-Moment": facts.moment})
    answer: dict[str, tuple[bool, str, str]] = {}

    def exchange() -> None:
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                text = response.read(OUTPUT_LIMIT).decode("utf-8", "replace")
                answer["done"] = (True, f"HTTP {response.status}", text)
        except urllib.error.HTTPError as exc:
            text = exc.read(OUTPUT_LIMIT).decode("utf-8", "replace")
            last = _last_line(text)
            answer["done"] = (False, f"HTTP {exc.code}" + (f": {last}" if last else ""), text)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            answer["done"] = (False, f"POST failed: {reason}", "")

    worker = threading.Thread(target=exchange, daemon=True, name="hook-post")
    worker.start()
    worker.join(timeout)
    return answer.get("done", (False, f"timed out after {timeout:g}s", ""))


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return _one_line(lines[-1]) if lines else ""


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= DETAIL_LIMIT else text[: DETAIL_LIMIT - 3] + "..."


def facts_environment(facts: HookFacts, base: Mapping[str, str]) -> dict[str, str]:
    """``base`` (the caller's environment) with the facts' variables over it; the
    caller's own ``PHOENIX_NODE_*``, if any, are dropped (they would name the wrong node,
    or a node at a moment that has none)."""
    env = {k: v for k, v in base.items() if k not in _NODE_VARS}
    env.update(facts.environment())
    return env
