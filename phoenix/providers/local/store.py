"""Object store and DNS stand-in for the local provider, as files in the state directory.

Writes are atomic (``phoenix.files.atomic_write``) and ``create_exclusive`` links a
finished file into place, so two Phoenix processes on this machine (a deploy and a
status, or two deploys racing for the lock) see a consistent store, as they would with
Swift or S3.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote, unquote

from phoenix.files import atomic_write, create_exclusive, locked
from phoenix.model import DnsRecord


class DirectoryStore:
    """Keys map to files under ``root`` (each key quoted into one file name)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, key: str) -> Path:
        return self.root / quote(key, safe="")

    def put(self, key: str, data: bytes) -> None:
        atomic_write(self._path(key), data, parents=True)

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def list(self, prefix: str) -> list[str]:
        keys = (unquote(p.name) for p in self.root.iterdir() if not _temporary(p.name))
        return sorted(k for k in keys if k.startswith(prefix))

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def create_exclusive(self, key: str, data: bytes) -> bool:
        """The whole object appears at once or not at all (``link`` of a finished temp
        file fails if the name exists), so a reader never sees a half-written lease."""
        return create_exclusive(self._path(key), data)


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
        with locked(self.path.with_name(f".{self.path.name}.lock"), parents=True):
            records = self._load()
            records[f"{name}.{zone}"] = {"values": list(values), "ttl": ttl}
            atomic_write(self.path, json.dumps(records, indent=1, sort_keys=True).encode())


def _temporary(name: str) -> bool:
    """A write in flight (``phoenix.files``' ``.<name>.<hex>.tmp``), or one that an
    earlier version's crashed ``create_exclusive`` left (``.tmp-*``): not a key."""
    return name.startswith(".tmp-") or (name.startswith(".") and name.endswith(".tmp"))
