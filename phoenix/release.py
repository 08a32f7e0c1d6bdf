"""Resolve what a release is: image, flavor, rendered user-data, and its deterministic id.

A release id is ``r{sequence}-{digest}``. The digest covers everything that defines the
servers (image id, flavor, network, server settings, user-data rendered with placeholder
identity), so the same spec always maps to the same release and a rerun after a crash
adopts the nodes it already built instead of starting a new release.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from phoenix.errors import InputError, NotFound, UnknownResource
from phoenix.log import get_logger
from phoenix.model import (
    TAG_APP,
    TAG_ATTEMPT,
    TAG_DEPLOY_ID,
    TAG_INDEX,
    TAG_LEASE,
    TAG_RELEASE,
    TAG_SPEC_DIGEST,
    Flavor,
    Image,
    NodeRequest,
)
from phoenix.providers.base import ImageImporter, ImageQuery, Provider
from phoenix.records import ReleaseRecord
from phoenix.render import RenderContext, render_recorded, render_user_data, template_sources
from phoenix.spec import Spec
from phoenix.steps import CreateNode

log = get_logger("phoenix.release")
PLACEHOLDER_RELEASE = "RELEASE"
PLACEHOLDER_REGION = "REGION"


@dataclass(frozen=True)
class Release:
    """A resolved release: its record plus where to render user-data from."""

    record: ReleaseRecord
    template_dir: Path | None  # the spec's template folder; None: render from the record
    vars: Mapping[str, Any]  # secrets included; never persisted
    flavor: Flavor | None = None
    # The release's golden image as this region knows it, when its id differs from the
    # record's (a release moved to another region: AMI and Glance ids are per region).
    image_id: str | None = None

    @property
    def id(self) -> str:
        return self.record.id

    def user_data(self, index: int, region: str) -> str:
        context = RenderContext(
            app=self.record.app, release=self.id, region=region, index=index, vars=self.vars
        )
        if self.template_dir is None:  # a recorded release: its templates, from memory
            return render_recorded(self.record.templates, self.record.template_name, context,
                                   shown=f"{self.record.template_name} (release {self.id})")
        return render_user_data(self.template_dir / self.record.template_name, context)

    def node_request(
        self, step: CreateNode, *, region: str, spec_digest: str, deploy_id: str,
        lease: int | None = None,
    ) -> NodeRequest:
        server = self.record.server
        fenced = {TAG_LEASE: str(lease)} if lease is not None else {}
        return NodeRequest(
            name=step.name,
            image_id=self.image_id or self.record.image_id,
            flavor=self.record.flavor,
            network=self.record.network,
            user_data=self.user_data(step.index, region),
            metadata={
                TAG_APP: self.record.app,
                TAG_RELEASE: self.id,
                TAG_INDEX: str(step.index),
                TAG_ATTEMPT: str(step.attempt),
                TAG_SPEC_DIGEST: spec_digest,
                TAG_DEPLOY_ID: deploy_id,
                **fenced,
            },
            key_name=server.get("key_name"),
            security_groups=tuple(server.get("security_groups") or ()),
            availability_zone=server.get("availability_zone"),
            server_group=server.get("server_group"),
        )


def spec_digest(spec: Spec) -> str:
    """A short digest of the whole spec, tagged on servers for `status` to compare."""
    text = json.dumps(spec.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class StaleImage(InputError):
    """The newest matching image is older than ``image.max_age`` (``image`` says which)."""

    def __init__(self, message: str, image: Image) -> None:
        super().__init__(message)
        self.image = image


def choose_image(images: list[Image], spec: Spec, region: str, now: datetime) -> Image:
    """The newest matching image, refusing one older than ``image.max_age``."""
    wanted = spec.image.id or spec.image.name or spec.image.properties
    if not images:
        raise UnknownResource(
            f"image: no image matches {wanted!r} in region {region}; check the name, id or"
            " properties under image: in the spec, or upload the golden image"
        )
    newest = max(images, key=lambda i: (i.created_at is not None, i.created_at or now))
    if spec.image.max_age is not None and newest.created_at is not None:
        age = (now - newest.created_at).total_seconds()
        if age > spec.image.max_age:
            raise StaleImage(
                f"image: the newest image matching {wanted!r} ({newest.name}, {newest.id}) is"
                f" {age / 86400:.1f} days old, older than image.max_age"
                f" ({spec.image.max_age / 86400:.1f} days); bake a fresh golden image",
                newest,
            )
    return newest


Caller = Callable[[Callable[[], Any], str], Any]
"""Calls a provider function of a service ("compute", "image"), e.g. ``Executor.call``
(retrying transient errors, counting calls by service)."""


def _direct(fn: Callable[[], Any], service: str) -> Any:
    return fn()


def find_image(
    spec: Spec,
    provider: Provider,
    *,
    region: str,
    now: datetime,
    call: Caller = _direct,
) -> Image:
    """The spec's golden image in ``region``; ``image.path`` is imported first."""
    source = spec.image_dir
    if source is not None:
        if not source.is_dir():
            raise InputError(f"image.path: {source} is not a directory")
        compute = provider.compute
        if not isinstance(compute, ImageImporter):
            raise InputError(
                f"image.path: the {provider.name} provider cannot import a directory as an"
                " image; give image.name or image.id of an image in the cloud"
            )
        importer = compute
        image: Image = call(lambda: importer.import_image(region, source, None), "image")
        return image
    query = ImageQuery(
        id=spec.image.id, name=spec.image.name, properties=spec.image.properties or {}
    )
    found: list[Image] = call(lambda: provider.compute.find_images(region, query), "image")
    return choose_image(found, spec, region, now)


def _digest(parts: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:8]


def resolve_release(
    spec: Spec,
    provider: Provider,
    *,
    region: str,
    now: datetime,
    known: list[ReleaseRecord],
    observed_releases: set[str],
    call: Caller = _direct,
) -> Release:
    """Turn the spec into a Release: look up image and flavor, render, digest, name it.

    ``call`` wraps each provider call (the engine passes its retrying caller: a 503 from
    an image lookup must not fail a deploy that a retry would have saved)."""
    stale: StaleImage | None = None
    try:
        image = find_image(spec, provider, region=region, now=now, call=call)
    except StaleImage as exc:
        # Checked below, once the release is known: max_age stops a *new* build from a
        # stale image; it must not fail an unchanged rerun because time passed.
        stale, image = exc, exc.image
    flavor: Flavor = call(lambda: provider.compute.get_flavor(region, spec.flavor), "compute")
    template_path = spec.template_path
    sample = render_user_data(
        template_path,
        RenderContext(
            app=spec.app,
            release=PLACEHOLDER_RELEASE,
            region=PLACEHOLDER_REGION,
            index=0,
            vars=spec.resolved_vars,
        ),
    )
    server = spec.server.model_dump(mode="json")
    digest = _digest(
        {
            "image": image.id,
            "flavor": flavor.id,
            "network": spec.network,
            "server": server,
            "user_data": hashlib.sha256(sample.encode()).hexdigest(),
        }
    )
    existing = next((r for r in reversed(known) if r.digest == digest), None)
    if existing is not None:
        release_id, seq = existing.id, existing.seq
    else:
        seqs = [r.seq for r in known] + [_seq_of(r) for r in observed_releases]
        seq = max(seqs, default=0) + 1
        release_id = f"r{seq}-{digest}"
    if stale is not None:
        if release_id not in observed_releases:
            raise stale
        log.warning("the image the region runs is older than image.max_age; bake a fresh"
                    " golden image", image=image.name, image_id=image.id)
    secret_names = sorted(spec.secret_names)
    record = ReleaseRecord(
        app=spec.app,
        id=release_id,
        seq=seq,
        digest=digest,
        image_id=image.id,
        image_name=image.name,
        flavor=flavor.name,
        network=spec.network,
        server=server,
        template_name=template_path.name,
        templates=template_sources(template_path),
        vars={k: v for k, v in spec.resolved_vars.items() if k not in spec.secret_names},
        secret_names=secret_names,
        created_at=existing.created_at if existing else now.isoformat(),
    )
    return Release(record, template_path.parent, spec.resolved_vars, flavor)


def image_in_region(
    record: ReleaseRecord, provider: Provider, *, region: str
) -> str:
    """The id of the release's golden image in ``region``: the recorded id where the
    region has it, else the newest image of the recorded name (a golden image copied to
    every region gets a new id in each)."""
    compute = provider.compute
    try:
        if compute.find_images(region, ImageQuery(id=record.image_id)):
            return record.image_id
    except (NotFound, UnknownResource):
        pass  # EC2 answers a lookup of an id it does not have with an error, not []
    same_name = compute.find_images(region, ImageQuery(name=record.image_name))
    if not same_name:
        raise UnknownResource(
            f"release {record.id} was built from image {record.image_name}"
            f" ({record.image_id}), which region {region} does not have, by id or by name;"
            f" copy the golden image to {region}"
        )
    newest = max(same_name, key=lambda i: (i.created_at is not None, i.created_at))
    return newest.id


def release_from_record(record: ReleaseRecord, spec: Spec) -> Release:
    """Rebuild a past release (for rollback) from its record and today's secret values."""
    missing = [name for name in record.secret_names if name not in spec.resolved_vars]
    if missing:
        raise InputError(
            f"release {record.id} needs secret var(s) {', '.join(missing)}, which the spec no"
            " longer defines; add them under vars: to roll back to it"
        )
    values = dict(record.vars)
    values.update({name: spec.resolved_vars[name] for name in record.secret_names})
    # A record comes from a store that may have been tampered with: every name must be
    # one the loader could have recorded. Nothing is written: it renders from memory.
    for name in [record.template_name, *record.templates]:
        if not _is_plain_relative(name):
            raise InputError(
                f"release {record.id}: its record names template {name!r}, which is not a"
                " plain relative path; the record is damaged or was tampered with — deploy"
                " the release from its spec instead of rolling back to it"
            )
    if record.template_name not in record.templates:
        raise InputError(
            f"release {record.id}: its record lacks the text of its template"
            f" {record.template_name!r}; deploy the release from its spec instead"
        )
    return Release(record, None, values)


def _is_plain_relative(name: str) -> bool:
    """``a/b.j2``: not empty, not absolute, no ``..`` part, no backslash.

    ``./a.j2`` passes: records written before names were normalised keep tags as written.
    """
    return (
        bool(name.strip("/."))
        and not name.startswith("/")
        and "\\" not in name
        and "\0" not in name
        and ".." not in name.split("/")
    )


def _seq_of(release_id: str) -> int:
    head = release_id.split("-", 1)[0]
    return int(head[1:]) if head.startswith("r") and head[1:].isdigit() else 0


class LazyRelease:
    """A recorded release, looked up (image in this region, templates on disk) on first
    use only; thread-safe, since the executor builds nodes from worker threads."""

    def __init__(self, load: Callable[[], Release]) -> None:
        self._load = load
        self._release: Release | None = None
        self._lock = threading.Lock()

    def get(self) -> Release:
        with self._lock:
            if self._release is None:
                self._release = self._load()
            return self._release
