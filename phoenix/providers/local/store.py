"""Object store and DNS stand-in for the local provider, as files in the state directory.

Writes are atomic (temp file + ``os.replace``) and ``create_exclusive`` uses ``O_EXCL``, so
two Phoenix processes on this machine (a deploy and a status, or two deploys racing for
the lock) see a consistent store, as they would with Swift or S3.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, unquote

from phoenix.model import DnsRecord


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write ``path`` so that a reader sees the old content or the new, never half of
    it, even across a crash (temp file in the same folder, fsync, ``os.replace``); the
    file is private (0600), its folder created 0700 if missing."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Serialise a read-modify-write across Phoenix processes on this machine (``flock``).

    The lock file is separate from the data file, which is replaced (not rewritten) by
    ``atomic_write`` and so cannot carry the lock itself.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class DirectoryStore:
    """Keys map to files under ``root`` (each key quoted into one file name)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, key: str) -> Path:
        return self.root / quote(key, safe="")

    def put(self, key: str, data: bytes) -> None:
        atomic_write(self._path(key), data)

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def list(self, prefix: str) -> list[str]:
        keys = (unquote(p.name) for p in self.root.iterdir() if not p.name.startswith(".tmp-"))
        return sorted(k for k in keys if k.startswith(prefix))

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def create_exclusive(self, key: str, data: bytes) -> bool:
        """The whole object appears at once or not at all (``link`` of a finished temp
        file fails if the name exists), so a reader never sees a half-written lease."""
        path = self._path(key)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-", suffix=".new")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            Path(tmp).unlink(missing_ok=True)
        return True


class FileDns:
    """Record sets in one JSON file: the local stand-in for Designate or Route53."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, dict[str, object]]:
        try:
            data: dict[str, dict[str, object]] = json.loads(self.path.read_text())
            return data
        except FileNotFoundError:
            return {}

    def get_record(self, zone: str, name: str) -> DnsRecord | None:
        found = self._load().get(f"{name}.{zone}")
        if found is None:
            return None
        values = found.get("values", [])
        ttl = found.get("ttl", 60)
        return DnsRecord(
            zone, name, tuple(str(v) for v in values) if isinstance(values, list) else (),
            int(ttl) if isinstance(ttl, int) else 60,
        )

    def set_record(self, zone: str, name: str, values: tuple[str, ...], ttl: int) -> None:
        # Locked: two records set at once by two processes must not lose one of them.
        with file_lock(self.path.with_name(f".{self.path.name}.lock")):
            records = self._load()
            records[f"{name}.{zone}"] = {"values": list(values), "ttl": ttl}
            atomic_write(self.path, json.dumps(records, indent=1, sort_keys=True).encode())
