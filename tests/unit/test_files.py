"""phoenix.files: the one atomic write and the one file lock (issue 16), with real files
and, for the locks, real second processes (an flock is about processes)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from phoenix import files
from phoenix.clock import FakeClock
from phoenix.files import atomic_write, create_exclusive, lock_held, locked, try_lock

ROOT = Path(__file__).resolve().parents[2]


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- atomic_write ---------------------------------------------------------------------


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    atomic_write(target, "first")
    atomic_write(target, b"second")
    assert target.read_bytes() == b"second"
    assert _names(tmp_path) == ["state.json"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600  # private by default


def test_atomic_write_gives_the_mode_asked_for(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "metrics.prom", "x", mode=0o644)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "metrics.prom").stat().st_mode) == 0o644


def test_a_failed_write_keeps_the_old_content_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new content goes to a temporary file first: a crash while writing it (here,
    the disk refusing the flush) leaves the old file whole."""
    target = tmp_path / "members.json"
    atomic_write(target, "old and whole")

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        atomic_write(target, "new " * 1000)
    assert target.read_text() == "old and whole"
    assert _names(tmp_path) == ["members.json"]


def test_atomic_write_makes_a_missing_folder_only_when_asked(tmp_path: Path) -> None:
    gone = tmp_path / "node" / "status.json"
    with pytest.raises(FileNotFoundError):
        atomic_write(gone, "late status of a deleted node")
    assert not gone.parent.exists()
    atomic_write(gone, "x", parents=True)
    assert gone.read_text() == "x"
    assert stat.S_IMODE(gone.parent.stat().st_mode) == 0o700


def test_create_exclusive_creates_once(tmp_path: Path) -> None:
    target = tmp_path / "lease-000001"
    assert create_exclusive(target, b"mine")
    assert not create_exclusive(target, b"theirs")
    assert target.read_bytes() == b"mine"
    assert _names(tmp_path) == ["lease-000001"]


# --- locks, against a second process ----------------------------------------------------

_HOLDER = """
import sys, time
from pathlib import Path
from phoenix.files import locked
print("trying", flush=True)
with locked(Path(sys.argv[1]), shared=sys.argv[2] == "shared"):
    print("held", flush=True)
    time.sleep(float(sys.argv[3]))
"""


@contextmanager
def _held_elsewhere(path: Path, *, shared: bool = False,
                    seconds: float = 30.0) -> Iterator[subprocess.Popen[str]]:
    """Another process holding ``locked(path)`` until the block ends (it is killed)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path), "shared" if shared else "exclusive",
         str(seconds)],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "trying"
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def _acquire_in_child(path: Path, *, shared: bool = False) -> subprocess.Popen[str]:
    """A process that is about to take ``locked(path)`` (it will say "held" and exit)."""
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path), "shared" if shared else "exclusive", "0"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "trying"
    return child


def test_locked_excludes_another_process_until_released(tmp_path: Path) -> None:
    lock = tmp_path / "pool.lock"
    with locked(lock):
        waiter = _acquire_in_child(lock)
        time.sleep(0.5)  # ample to take a free lock
        assert waiter.poll() is None  # still waiting for us
    out, _ = waiter.communicate(timeout=30)
    assert out.strip() == "held" and waiter.returncode == 0
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600


def test_shared_holders_coexist_and_an_exclusive_one_waits(tmp_path: Path) -> None:
    lock = tmp_path / "state.lock"
    with _held_elsewhere(lock, shared=True):
        with locked(lock, shared=True):
            pass  # did not block
        writer = _acquire_in_child(lock)
        time.sleep(0.5)
        assert writer.poll() is None
    out, _ = writer.communicate(timeout=30)
    assert out.strip() == "held"


def test_locked_does_not_create_a_missing_folder_unless_asked(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError), locked(tmp_path / "deleted-node" / ".lock"):
        pass
    with locked(tmp_path / "region" / ".lock", parents=True):
        assert lock_held(tmp_path / "region" / ".lock")


def test_lock_held_sees_a_live_holder_and_not_a_dead_one(tmp_path: Path) -> None:
    lock = tmp_path / "supervisor.lock"
    assert not lock_held(lock)
    assert not lock.exists()  # a probe never creates the file
    with _held_elsewhere(lock) as holder:
        assert lock_held(lock)
        holder.kill()
        holder.wait()
        assert not lock_held(lock)  # the kernel dropped it with its holder


def test_try_lock_waits_on_the_clock_and_gives_up(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    lock = tmp_path / "supervisor.lock"
    clock = FakeClock()
    start = clock.now()
    with _held_elsewhere(lock):
        monkeypatch.setattr(time, "sleep", _no_real_sleep)
        assert try_lock(lock, wait=5.0, clock=clock) is None
        monkeypatch.undo()
    assert (clock.now() - start).total_seconds() == pytest.approx(5.0)
    fd = try_lock(lock)
    assert fd is not None
    try:
        assert lock_held(lock)
    finally:
        os.close(fd)
    assert not lock_held(lock)


def _no_real_sleep(seconds: float) -> None:
    raise AssertionError(f"slept {seconds}s for real: the fake clock should drive this")
