"""Golden image retention: which images the app's releases use, and which may go.

A golden image is baked for every security update, so they pile up (Glance bills their
storage). ``phoenix image prune --keep N`` deletes the older ones, but never one a
recorded release could roll back to: a rollback rebuilds the release's nodes from its
image, and a pruned image would turn the safety net into an error.

What counts as the app's golden images is what the spec's ``image:`` would pick from:
the images of its ``name``, with its ``properties``, or imported from its ``path``
(an ``id`` pins one image: nothing to prune). Releases are read from the records of the
base spec and of every environment (``Spec.instances``): they share the images. A
release's image in a region is the one a rollback there would use (``image_in_region``:
the recorded id, else the newest of the recorded name), so the prune never changes
which image a rollback gets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from phoenix.errors import NotFound, UnknownResource
from phoenix.model import Image
from phoenix.providers.base import ImageQuery
from phoenix.records import ReleaseRecord
from phoenix.spec import Spec

ImageFinder = Callable[[ImageQuery], list[Image]]


@dataclass(frozen=True)
class ImageUse:
    """One image of a region: how old, and which recorded releases use it."""

    image: Image
    region: str
    age_seconds: float | None  # None: the provider does not say when it was made
    releases: tuple[str, ...]  # "app/release" of every recorded release using it
    golden: bool  # one the spec's image: picks from (a prune candidate)

    @property
    def used(self) -> bool:
        return bool(self.releases)


@dataclass(frozen=True)
class PruneChoice:
    """An image a prune keeps or deletes, and why."""

    use: ImageUse
    delete: bool
    why: str


def golden_query(spec: Spec) -> ImageQuery | None:
    """The query that finds every version of the spec's golden image (None: the spec pins
    one image by id, so there are no versions to choose between)."""
    image = spec.image
    if image.name is not None:
        return ImageQuery(name=image.name)
    if image.properties:
        return ImageQuery(properties=image.properties)
    if image.path is not None:
        folder = spec.image_dir
        return ImageQuery(name=folder.resolve().name) if folder is not None else None
    return None


def inventory(
    spec: Spec,
    region: str,
    find: ImageFinder,
    releases: Iterable[ReleaseRecord],
    now: datetime,
    *,
    every_image: bool = False,
) -> list[ImageUse]:
    """The images of the region that the app's releases use or its spec picks from
    (``every_image``: all the region's images), newest first, each with the releases
    that use it."""
    query = golden_query(spec)
    golden = find(query) if query is not None else []
    golden_ids = {image.id for image in golden}
    used_by: dict[str, list[str]] = {}
    known: dict[str, Image] = {image.id: image for image in golden}
    if every_image:
        known.update((image.id, image) for image in find(ImageQuery()))
    for record in releases:
        image = _release_image(record, find, known)
        if image is not None:
            known[image.id] = image
            used_by.setdefault(image.id, []).append(f"{record.app}/{record.id}")
    rows = [
        ImageUse(image, region, _age(image, now), tuple(sorted(used_by.get(image.id, ()))),
                 image.id in golden_ids)
        for image in known.values()
    ]
    return sorted(rows, key=_newest_first)


def choose(rows: Sequence[ImageUse], keep: int) -> list[PruneChoice]:
    """For one region's images: keep the ``keep`` newest golden images, every image a
    recorded release uses, and every image of unknown age; the other golden images go.
    Images outside the spec's ``image:`` are never touched."""
    if keep < 1:
        raise ValueError("keep at least the newest image: a deploy would have none to use")
    if len({row.region for row in rows}) > 1:
        raise ValueError("choose() judges one region at a time: each keeps its newest")
    choices: list[PruneChoice] = []
    newest = 0
    for row in sorted(rows, key=_newest_first):
        if not row.golden:
            choices.append(PruneChoice(row, False, "not one of the spec's golden images"))
            continue
        newest += 1
        if newest <= keep:
            choices.append(PruneChoice(row, False, f"one of the {keep} newest"))
        elif row.used:
            choices.append(PruneChoice(row, False, "release " + ", ".join(row.releases)
                                       + " could roll back to it"))
        elif row.age_seconds is None:
            choices.append(PruneChoice(row, False, "its age is unknown"))
        else:
            choices.append(PruneChoice(row, True, "older than the newest"
                                       f" {keep} and no recorded release uses it"))
    return choices


def one_per_image(choices: Sequence[PruneChoice]) -> list[PruneChoice]:
    """One choice per image id: an id listed in several regions (the local provider's
    regions share this machine's images; regions may share one Glance) is deleted only if
    no region keeps it, and kept for the first reason a region gives."""
    merged: dict[str, PruneChoice] = {}
    for choice in choices:
        first = merged.get(choice.use.image.id)
        if first is None or (first.delete and not choice.delete):
            merged[choice.use.image.id] = choice
    return list(merged.values())


def _release_image(record: ReleaseRecord, find: ImageFinder,
                   known: dict[str, Image]) -> Image | None:
    """The image a rollback of ``record`` would use in this region (see
    ``phoenix.release.image_in_region``), or None when the region has none."""
    if record.image_id in known:
        return known[record.image_id]
    try:
        by_id = find(ImageQuery(id=record.image_id))
    except (NotFound, UnknownResource):
        by_id = []  # EC2 answers a lookup of an id it does not have with an error
    if by_id:
        return by_id[0]
    same_name = find(ImageQuery(name=record.image_name))
    if not same_name:
        return None
    return max(same_name, key=lambda i: (i.created_at is not None, i.created_at))


def _age(image: Image, now: datetime) -> float | None:
    if image.created_at is None:
        return None
    return max(0.0, (now - image.created_at).total_seconds())


def _newest_first(row: ImageUse) -> tuple[bool, float]:
    # Unknown ages sort first: nothing is known to be older than them.
    return (row.age_seconds is not None, row.age_seconds or 0.0)
