"""Release records, deploy history and the deploy lock, kept in the provider's store.

They live in the cloud (Swift, libcloud storage, a directory) rather than on the machine
that ran the deploy, so that any machine can resume, roll back or show history. Secrets
are never written: a record keeps the names of secret vars and the template sources, and
a rollback re-reads the secret values from the spec's env/files.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from phoenix.providers.base import Store
from phoenix.results import DeployResult

NO_RELEASE = "none"  # the "release" of a region the app was taken out of
SCHEMA_VERSION = 1
"""Written into every record. A reader ignores fields it does not know, so the records
of a newer Phoenix never break an older one's ``history`` or ``rollback``."""


HISTORY_LIMIT = 2000
"""Records kept in the history index (each whole record also has its own object)."""


def _known_fields(cls: type, data: bytes) -> dict[str, Any]:
    return _known(cls, json.loads(data))


def _known(cls: type, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise TypeError(f"a {cls.__name__} is a JSON object")
    fields = cls.__dataclass_fields__  # type: ignore[attr-defined]
    return {key: value for key, value in raw.items() if key in fields}


@dataclass(frozen=True)
class ReleaseRecord:
    """Everything needed to build a release's nodes again (minus secret values)."""

    app: str
    id: str
    seq: int
    digest: str
    image_id: str
    image_name: str
    flavor: str
    network: str | None
    server: dict[str, Any]
    template_name: str
    templates: dict[str, str]
    vars: dict[str, Any]
    secret_names: list[str]
    created_at: str
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> ReleaseRecord:
        return cls(**_known_fields(cls, data))


@dataclass(frozen=True)
class DeployRecord:
    """One attempt of deploy/rollback/failover, as shown by ``phoenix history``."""

    deploy_id: str
    app: str
    action: str
    release: str
    region: str
    strategy: str
    started_at: str
    finished_at: str
    outcome: str  # succeeded | rolled-back | failed | interrupted
    previous_release: str | None = None
    reason: str | None = None
    steps: int = 0
    provider_calls: int | None = None
    provider_requests: dict[str, int] | None = None  # by service
    events: list[str] = field(default_factory=list)
    lease: int | None = None  # the lease generation of the actor that wrote it
    # The lifecycle hooks the run ran: moment, node, hook, outcome, seconds, detail.
    hooks: list[dict[str, Any]] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def of(cls, result: DeployResult, *, strategy: str, started: datetime,
           finished: datetime, lease: int | None) -> DeployRecord:
        """The history record of a finished run (its last 200 events kept)."""
        return cls(
            deploy_id=result.deploy_id,
            app=result.app,
            action=result.action,
            release=result.release,
            region=result.region,
            strategy=strategy,
            started_at=started.isoformat(),
            finished_at=finished.isoformat(),
            # "unchanged" is a result's word for a success that built nothing
            outcome="succeeded" if result.outcome == "unchanged" else str(result.outcome),
            previous_release=result.previous_release,
            reason=result.reason,
            steps=result.steps,
            provider_calls=result.provider_calls,
            provider_requests=result.provider_requests,
            events=list(result.history[-200:]),
            lease=lease,
            hooks=[asdict(run) for run in result.hooks[-200:]],
        )

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> DeployRecord:
        return cls(**_known_fields(cls, data))


@dataclass(frozen=True)
class AttemptRecord:
    """The run that is acting on a region now (deploy, rollback, failover...).

    Written when a run starts to change a region and removed when it ends cleanly, so a
    run that finds another run's record knows that one stopped half-way (killed, crashed,
    or left a failed restore): it records the interruption in the history, and restores
    the release that served *before* that run if its own attempt fails, rather than
    whatever the half-done run left serving."""

    deploy_id: str
    action: str
    release: str
    region: str
    started_at: str
    previous_release: str | None
    previous_count: int
    # running: the run was alive when last seen; restore-failed: it ended (and is in the
    # history) but could not bring the previous release back.
    state: str = "running"
    lease: int | None = None
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> AttemptRecord:
        return cls(**_known_fields(cls, data))


@dataclass(frozen=True)
class ServingRecord:
    """Where the app's DNS record points, as Phoenix last set it.

    DNS is the truth for traffic; this record maps its values back to a region even when
    that region is down and cannot be asked for its load balancer's address."""

    region: str
    release: str
    values: list[str]
    since: str
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> ServingRecord:
        return cls(**_known_fields(cls, data))


class Records:
    """Typed access to one app's objects in the store."""

    def __init__(self, store: Store, app: str) -> None:
        self.store = store
        self.app = app

    def _release_key(self, release: str) -> str:
        return f"apps/{self.app}/releases/{release}.json"

    def save_release(self, record: ReleaseRecord) -> None:
        self.store.put(self._release_key(record.id), record.to_json())

    def release(self, release: str) -> ReleaseRecord | None:
        data = self.store.get(self._release_key(release))
        return ReleaseRecord.from_json(data) if data is not None else None

    def _objects(self, folder: str) -> Iterator[bytes]:
        for key in self.store.list(f"apps/{self.app}/{folder}/"):
            data = self.store.get(key)
            if data is not None:
                yield data

    def releases(self) -> list[ReleaseRecord]:
        found = [ReleaseRecord.from_json(data) for data in self._objects("releases")]
        return sorted(found, key=lambda r: r.seq)

    @property
    def _history_key(self) -> str:
        return f"apps/{self.app}/history.json"

    def save_deploy(self, record: DeployRecord) -> None:
        """Append ``record`` to the app's history index (written under the lease: one
        actor at a time), and keep it whole in its own object too (events included)."""
        index = self.deploys()
        index.append(dataclasses.replace(record, events=[]))
        kept = index[-HISTORY_LIMIT:]
        self.store.put(self._history_key, json.dumps({
            "schema_version": SCHEMA_VERSION,
            "records": [asdict(r) for r in kept],
        }, sort_keys=True).encode())
        # One deploy id may act in several regions (a failover): each has its record.
        key = (f"apps/{self.app}/deploys/{record.started_at}-{record.deploy_id}"
               f"-{record.region}-{record.action}.json")
        self.store.put(key, record.to_json())

    def deploys(self) -> list[DeployRecord]:
        """The history, oldest first: one GET of the index (a store written by an older
        Phoenix, without one, is read record by record once)."""
        data = self.store.get(self._history_key)
        if data is not None:
            try:
                raw = json.loads(data)
                found = [DeployRecord(**_known(DeployRecord, r)) for r in raw["records"]]
            except (ValueError, TypeError, KeyError):
                found = self._deploys_one_by_one()  # a damaged index: rebuilt on next save
        else:
            found = self._deploys_one_by_one()
        return sorted(found, key=lambda r: (r.started_at, r.finished_at))

    def _deploys_one_by_one(self) -> list[DeployRecord]:
        return [DeployRecord.from_json(data) for data in self._objects("deploys")]

    def recent_good_releases(self, *, excluding: str, limit: int) -> list[str]:
        """The newest ``limit`` distinct releases that deployed successfully, newest first."""
        found: list[str] = []
        for record in reversed(self.deploys()):
            if len(found) >= limit:
                break
            if (
                record.outcome == "succeeded"
                and record.release not in (excluding, NO_RELEASE, *found)
            ):
                found.append(record.release)
        return found

    def last_good_release(
        self, *, excluding: str | None = None, region: str | None = None
    ) -> str | None:
        """The release of the newest deploy that succeeded, other than ``excluding``.

        With ``region``: what that region last ran, or None when the app was retired from
        it since (its traffic moved to another region)."""
        for record in reversed(self.deploys()):
            if record.outcome != "succeeded" or record.release == excluding:
                continue
            if region is None:
                if record.release != NO_RELEASE:
                    return record.release
            elif record.region == region:
                return None if record.release == NO_RELEASE else record.release
        return None

    def _attempt_key(self, region: str) -> str:
        return f"apps/{self.app}/attempts/{region}.json"

    def save_attempt(self, attempt: AttemptRecord) -> None:
        self.store.put(self._attempt_key(attempt.region), attempt.to_json())

    def attempt(self, region: str) -> AttemptRecord | None:
        """The run last acting on ``region`` that has not ended cleanly, if any."""
        data = self.store.get(self._attempt_key(region))
        if data is None:
            return None
        try:
            return AttemptRecord.from_json(data)
        except (ValueError, TypeError):
            return None

    def clear_attempt(self, region: str) -> None:
        self.store.delete(self._attempt_key(region))

    def save_serving(self, serving: ServingRecord) -> None:
        self.store.put(f"apps/{self.app}/serving.json", serving.to_json())

    def serving(self) -> ServingRecord | None:
        """Which region the app's DNS record was last switched to, by Phoenix."""
        data = self.store.get(f"apps/{self.app}/serving.json")
        if data is None:
            return None
        try:
            return ServingRecord.from_json(data)
        except (ValueError, TypeError):
            return None
