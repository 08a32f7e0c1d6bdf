"""Files several Phoenix processes share: the one atomic write and the one file lock.

A deploy, a ``phoenix status``, a balancer's supervisor and a node's agent read and write
the same small files (status.json, members.json, the memory cloud's state, a metrics
file) at the same moment. Two habits keep them consistent, and each lives here once:

* a file is **replaced, never rewritten in place**: a reader sees the old content or the
  new, never half of either, even across a crash or a power cut (``atomic_write``);
* a read-modify-write holds an **flock** on a separate lock file (the data file is
  replaced, so it cannot carry the lock itself); the kernel drops the lock when its
  holder dies, so no crash leaves a stale lock behind (``locked``, ``try_lock``,
  ``lock_held``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from phoenix.clock import SystemClock
from phoenix.waiting import wait_until

if TYPE_CHECKING:  # a type only: the node agent and supervisor processes start lighter
    from phoenix.providers.base import Clock

__all__ = ["atomic_write", "create_exclusive", "lock_held", "locked", "try_lock"]


def atomic_write(
    path: Path, data: bytes | str, *, mode: int = 0o600, parents: bool = False
) -> None:
    """Replace ``path`` with ``data`` (``str`` is written as UTF-8) atomically and durably.

    A temporary file in the same folder is written, flushed to disk and renamed over
    ``path``, then the folder itself is flushed so that the rename survives a power cut.
    ``mode`` is the new file's permissions (less the umask); private by default, since
    most of what Phoenix writes (user-data, node records, state) holds secrets or is
    nobody else's business. ``parents``: create a missing folder (0700) first. Off by
    default: a missing folder usually means its owner was deleted meanwhile, and must
    stay so (a node directory being removed must not come back with a late status).
    """
    if parents:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = _written(path, data, mode)
    try:
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def create_exclusive(path: Path, data: bytes | str, *, mode: int = 0o600) -> bool:
    """Create ``path`` with ``data`` unless it exists (False then, the file untouched).

    Like ``atomic_write``, the whole file appears at once or not at all: a finished
    temporary file is hard-linked to the name, which fails if the name is taken, so a
    reader never sees a half-written file (a lease, say) and two creators never both win.
    """
    temporary = _written(path, data, mode)
    try:
        os.link(temporary, path)
    except FileExistsError:
        return False
    finally:
        temporary.unlink(missing_ok=True)
    _fsync_folder(path.parent)
    return True


def _written(path: Path, data: bytes | str, mode: int) -> Path:
    """A new temporary file next to ``path`` holding ``data``, flushed to disk."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable; a file system that cannot (some network or
    FUSE mounts) keeps the rename, just not its durability."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked(path: Path, *, shared: bool = False, parents: bool = False) -> Iterator[None]:
    """Hold an ``flock`` on ``path`` (created 0600 if missing) for the ``with`` block:
    exclusive, or ``shared`` with other shared holders.

    ``parents``: create a missing folder (0700) first. Off by default: a lock in a folder
    that is gone raises ``FileNotFoundError``, which tells the caller that what it meant
    to change was deleted meanwhile. Threads of one process exclude each other too (each
    ``with`` opens the file anew, and an flock belongs to the open file).
    """
    if parents:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def try_lock(
    path: Path, *, wait: float = 0.0, clock: Clock | None = None, interval: float = 0.05
) -> int | None:
    """An open descriptor holding an exclusive ``flock`` on ``path``, or None when someone
    else holds it for ``wait`` seconds more (a predecessor may be exiting).

    For a lock held for a process's whole life (one supervisor per pool): the lock is
    released when the descriptor is closed, or the process ends.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def taken() -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    try:
        if wait_until(taken, wait, clock if clock is not None else SystemClock(),
                      interval=interval):
            return fd
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return None


def lock_held(path: Path) -> bool:
    """Whether some open file holds an exclusive ``flock`` on ``path`` (a live holder);
    False when the file does not exist. Never creates it, never blocks."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
