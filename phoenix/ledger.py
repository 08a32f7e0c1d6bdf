"""The pool ledger: when each node of a region started serving, and started draining.

The planner needs both moments (a drain ends after ``drain_timeout``; a node that served
is "in ERROR", not "failed to boot", when it dies). They used to be stamped on each
server's metadata: two metadata writes per replaced node, which on a real cloud are two
rate-limited API calls each. The ledger keeps them in one object per region in the
app's store (``apps/APP/ledger/REGION.json``), written at most once per poll whatever
the number of nodes (issue 15: at most create, delete and O(1) per poll).

Safe because only the lease holder writes it (the write is fenced like every change),
so its read-modify-write has no competitor; keyed by server id, which a cloud never
reuses, so a new server with an old name inherits nothing. Entries of servers that are
gone are dropped at the next write. Stamps still found on a server's metadata (written
by an older Phoenix) are honoured: the ledger's entry wins where both exist.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence

from phoenix.model import META_DRAIN_SINCE, META_SERVING_SINCE, Node
from phoenix.providers.base import Store

FIELDS = (META_SERVING_SINCE, META_DRAIN_SINCE)
Entries = dict[str, dict[str, str]]  # server id -> field -> ISO time ("" = cleared)


class Ledger:
    """One region's ledger in ``store`` (a retrying store: its calls are counted)."""

    def __init__(self, store: Store, app: str, region: str) -> None:
        self.store = store
        self.key = f"apps/{app}/ledger/{region}.json"
        self.alive: set[str] | None = None  # server ids seen by the last observe
        # While this actor holds the app's lease the ledger is its alone: read once, then
        # kept in step with its own writes (one GET per run, not one per poll).
        self._holding = False
        self._held: Entries | None = None

    def hold(self) -> None:
        """This actor now holds the lease (read afresh once, then trust its own writes)."""
        self._holding, self._held = True, None

    def release(self) -> None:
        """The lease is gone: read the store again every time."""
        self._holding, self._held = False, None

    def read(self) -> Entries:
        if self._held is not None:
            return {k: dict(v) for k, v in self._held.items()}
        entries = self._read_store()
        if self._holding:
            self._held = {k: dict(v) for k, v in entries.items()}
        return entries

    def _read_store(self) -> Entries:
        data = self.store.get(self.key)
        if data is None:
            return {}
        try:
            raw = json.loads(data)
            entries = raw.get("nodes", {})
            return {str(k): {f: str(v[f]) for f in FIELDS if f in v}
                    for k, v in entries.items() if isinstance(v, dict)}
        except (ValueError, AttributeError, TypeError):
            return {}  # unreadable: as if empty; the stamps are written again

    def stamp(self, updates: Mapping[str, Mapping[str, str]]) -> None:
        """Merge ``updates`` (server id -> fields) in, dropping servers that are gone."""
        entries = self.read()
        for server_id, fields in updates.items():
            entries.setdefault(server_id, {}).update(fields)
        if self.alive is not None:
            entries = {k: v for k, v in entries.items() if k in self.alive or k in updates}
        body = {"schema_version": 1, "nodes": dict(sorted(entries.items()))}
        self._held = None  # if the write fails, whether it landed is unknown: read again
        self.store.put(self.key, json.dumps(body, sort_keys=True).encode())
        if self._holding:
            self._held = {k: dict(v) for k, v in entries.items()}

    def merged(self, nodes: Sequence[Node], entries: Entries) -> tuple[Node, ...]:
        """``nodes`` with their ledger entries laid over their metadata."""
        self.alive = {n.id for n in nodes}
        return tuple(_with(node, entries.get(node.id)) for node in nodes)


def _with(node: Node, entry: Mapping[str, str] | None) -> Node:
    if not entry:
        return node
    metadata = dict(node.metadata)
    for field, value in entry.items():
        if value:
            metadata[field] = value
        else:
            metadata.pop(field, None)
    return dataclasses.replace(node, metadata=metadata)
