"""What a pool's HAProxy is told: its ``haproxy.cfg``, and the names it knows members by.

Pure: :func:`render_config` writes nothing and :func:`server_name` / :func:`member_name`
map Phoenix member names to HAProxy server names and back. ``haproxy`` (the balancer)
writes the config and ``haproxy_runtime`` speaks these names over the admin socket.
"""

from __future__ import annotations

import re

from phoenix import errors
from phoenix.providers.local.balancer import BalancerConfig

__all__ = [
    "BACKEND",
    "CONFIG_FILE",
    "FRONTEND",
    "PID_FILE",
    "SOCKET_FILE",
    "check_options",
    "host_port",
    "member_name",
    "render_config",
    "server_name",
]

BACKEND = "pool"
FRONTEND = "listener"
CONFIG_FILE = "haproxy.cfg"
SOCKET_FILE = "admin.sock"
PID_FILE = "haproxy.pid"

_SAFE_NAME_CHARS = re.compile(r"[A-Za-z0-9.-]")
_CONFIG_WORD = re.compile(r"[A-Za-z0-9._~/%?=&:@+,;-]+")
_ESCAPE = re.compile(r"_([0-9a-f]{2})")


def server_name(member: str) -> str:
    """The HAProxy server name for a Phoenix member name (reversible, see ``member_name``).

    HAProxy accepts ``[A-Za-z0-9._:-]`` in names. Phoenix names (``[a-z0-9-]``) map to
    themselves; any other character becomes ``_xx`` per UTF-8 byte (``_`` itself too,
    so decoding is unambiguous).
    """
    if not member:
        raise errors.InputError("a load-balancer member needs a non-empty name")
    return "".join(
        ch if _SAFE_NAME_CHARS.fullmatch(ch) else "".join(f"_{b:02x}" for b in ch.encode())
        for ch in member
    )


def member_name(server: str) -> str:
    """The Phoenix member name for an HAProxy server name made by ``server_name``."""
    out = bytearray()
    pos = 0
    for escape in _ESCAPE.finditer(server):
        out += server[pos : escape.start()].encode()
        out.append(int(escape.group(1), 16))
        pos = escape.end()
    out += server[pos:].encode()
    return out.decode("utf-8", errors="replace")


def host_port(host: str, port: int) -> str:
    """``host:port``, or ``[host]:port`` for an IPv6 address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def check_options(config: BalancerConfig) -> str:
    """The check timing of every server: dynamic ones do not inherit ``default-server``."""
    return (
        f"inter {_milliseconds(config.check_interval)}ms"
        f" rise {config.check_rise} fall {config.check_fall}"
    )


def _config_word(value: str, what: str) -> str:
    """``value`` if it is one plain word in HAProxy's config language, else InputError.

    The spec validates names and the check path already; this is the last line of
    defence, so no whitespace, quote, ``#``, ``$`` or backslash can end a line or start
    a directive (an injected ``stats socket ... level admin``) in a written config.
    """
    if not _CONFIG_WORD.fullmatch(value):
        raise errors.InputError(
            f"{what} {value[:80]!r} cannot go into an HAProxy config: use only letters,"
            " digits and ._~/%?=&:@+,;- (no spaces, quotes or line breaks)"
        )
    return value


def render_config(config: BalancerConfig) -> str:
    """The ``haproxy.cfg`` for a pool: a frontend and an empty backend (pure).

    Raises ``errors.InputError`` when a path, host or check path holds anything that
    HAProxy's config parser would read as more than one plain word.
    """
    pool_dir = config.pool_dir.resolve()
    _config_word(str(pool_dir), "the pool directory")
    _config_word(config.listen_host, "the listen host")
    if config.check_path is None:
        check = "    # no check_path: plain TCP connect checks"
    else:
        check = f"    option httpchk GET {_config_word(config.check_path, 'the check path')}"
    return f"""\
# Written by Phoenix (phoenix.providers.local.haproxy) on every start; do not edit.
# Members are dynamic servers added over the admin socket, restored from members.json.
global
    # Relative to the start directory (the pool_dir, {pool_dir}):
    # an absolute path would limit how deep the pool_dir may be.
    stats socket unix@{SOCKET_FILE} mode 600 level admin
    stats timeout 30s
    pidfile {pool_dir / PID_FILE}
    # A taken port must fail the start instead of being shared with its owner.
    noreuseport

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout check 2s
    # Keep-alive on both sides; every request is load-balanced on its own
    # (no prefer-last-server), so draining works for keep-alive clients too.
    option http-keep-alive
    # A failed connect is retried, each time on another server.
    retries 3
    option redispatch 1

frontend {FRONTEND}
    bind {host_port(config.listen_host, config.listen_port)}
    default_backend {BACKEND}

backend {BACKEND}
    balance roundrobin
{check}
    # Dynamic servers do not inherit this; add_member passes the same options.
    default-server {check_options(config)}
"""
