"""The built-in balancer's control channel: the messages, both ends of the wire.

The process (``proxy_server``) listens on ``<pool_dir>/control.sock``; the client
(``proxy.BuiltinBalancer``) sends one JSON object per line and reads one back. Requests
carry an ``op``: ``ping``, ``list``, ``add`` (``name``, ``address``, ``port``), ``drain`` and
``remove`` (``name``), and ``batch`` (``changes``: a list of ``{action, name[, address,
port]}``, checked whole before any is applied). A reply has ``ok``; a failed one has
``error`` (``not_found``, ``bad_request``, ``internal``) and ``message``.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from phoenix import errors
from phoenix.model import MemberAction, MemberChange

__all__ = ["SOCKET_FILE", "address_and_port", "encode_changes", "parse_changes", "request"]

SOCKET_FILE = "control.sock"
UNIX_PATH_MAX = 100  # sun_path is 108 bytes on Linux; longer paths go through /proc


# --- the process's side: reading requests -------------------------------------------------


def address_and_port(request: dict[str, Any]) -> tuple[str, int]:
    """An ``add``'s (or an added change's) address and port; ValueError when not valid."""
    address, port = request.get("address"), request.get("port")
    if not isinstance(address, str) or not address:
        raise ValueError("'address' must be a non-empty string")
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError("'port' must be an integer in 1..65535")
    return address, port


def parse_changes(raw: object) -> list[MemberChange]:
    """A ``batch`` request's ``changes``, all checked before any is applied."""
    if not isinstance(raw, list):
        raise ValueError("'changes' must be a list")
    changes = []
    for entry in raw:
        if not isinstance(entry, dict):
            raise ValueError("each change must be a JSON object")
        action, name = MemberAction(str(entry.get("action"))), entry.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError("'name' must be a non-empty string")
        if action is MemberAction.ADD:
            changes.append(MemberChange(action, name, *address_and_port(entry)))
        else:
            changes.append(MemberChange(action, name))
    return changes


# --- the client's side: sending them --------------------------------------------------------


def encode_changes(changes: Sequence[MemberChange]) -> list[dict[str, Any]]:
    """A ``batch`` request's ``changes``, in the order given."""
    return [
        {"action": c.action.value, "name": c.name, "address": c.address, "port": c.port}
        if c.action is MemberAction.ADD else {"action": c.action.value, "name": c.name}
        for c in changes
    ]


def request(pool_dir: Path, body: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Send one request to the process of ``pool_dir`` and return its reply (any reply,
    failed ones too); ``errors.Transient`` when there is none to read."""
    path = str(pool_dir / SOCKET_FILE)
    dir_fd: int | None = None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            if len(path.encode()) > UNIX_PATH_MAX:  # too long for sun_path
                dir_fd = os.open(pool_dir, os.O_RDONLY | os.O_DIRECTORY)
                path = f"/proc/self/fd/{dir_fd}/{SOCKET_FILE}"
            sock.connect(path)
            sock.sendall(json.dumps(body).encode() + b"\n")
            buffer = b""
            while not buffer.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the balancer closed the control connection")
                buffer += chunk
        reply = json.loads(buffer)
    except (OSError, ValueError) as exc:
        raise errors.Transient(
            f"balancer in {pool_dir}: control request {body.get('op')!r}"
            f" failed: {exc!r}"
        ) from exc
    finally:
        if dir_fd is not None:
            os.close(dir_fd)
    if not isinstance(reply, dict):
        raise errors.Transient(f"balancer in {pool_dir}: bad reply {reply!r}")
    return reply
