"""Whether a process is alive, the one way Phoenix asks it.

Used by the deploy lock (a holder on this host that died is taken over at once) and by
the local provider's balancers. A zombie (dead, not yet reaped by its parent; PID 1 in
some sandboxes reaps late) counts as dead, which ``kill(pid, 0)`` alone would miss.
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
