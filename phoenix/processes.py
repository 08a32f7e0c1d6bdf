"""Whether a process is alive, what it runs, and how Phoenix starts its own helpers.

Used by the deploy lock (a holder on this host that died is taken over at once) and by
the local provider's balancers and their supervisors. A zombie (dead, not yet reaped by
its parent; PID 1 in some sandboxes reaps late) counts as dead, which ``kill(pid, 0)``
alone would miss.
"""

from __future__ import annotations

import os
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """True for a running process; False for none, or a zombie waiting to be reaped."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: trust kill(0)
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def process_argv(pid: int) -> list[bytes] | None:
    """The command line of a live (non-zombie) process, or None when there is none.

    Phoenix finds its detached helpers again by their arguments (a pool directory, a
    module name), so a pid reused by an unrelated program is never mistaken for one.
    """
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if not argv or not pid_alive(pid):  # a zombie's command line reads empty
        return None
    return argv.rstrip(b"\0").split(b"\0")


def live_pids() -> list[int]:
    """Every process id on this machine (from /proc; empty without procfs)."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    return [int(entry) for entry in entries if entry.isdigit()]


# What a detached helper (a balancer, its supervisor, HAProxy) may see of the deployer's
# environment: enough to find programs and decode text, nothing else. The deployer's
# environment holds cloud credentials and secret vars; a process that outlives the deploy
# would keep them in /proc/<pid>/environ, readable by every process of the same user
# (node services included).
_KEPT_VARIABLES = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")


def minimal_env() -> dict[str, str]:
    """A detached process's environment: PATH and locale only (see _KEPT_VARIABLES)."""
    env = {name: os.environ[name] for name in _KEPT_VARIABLES if name in os.environ}
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    env.setdefault("LANG", "C.UTF-8")
    return env


def python_child_env() -> dict[str, str]:
    """``minimal_env``, with this copy of phoenix importable from any working directory.

    Detached helpers (``python -m phoenix...``) run from their state directory, so a
    Phoenix used from a source checkout rather than an installed package must be put on
    their ``PYTHONPATH``.
    """
    env = minimal_env()
    root = str(Path(__file__).resolve().parents[1])  # the directory holding ``phoenix``
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    # Phoenix writes only inside its state dir: not bytecode into its own source tree.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env
