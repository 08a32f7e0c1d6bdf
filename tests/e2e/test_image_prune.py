"""``image prune`` on the memory cloud: old golden images go, but never one a recorded
release (of any environment) could roll back to, and a rollback still works after it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

import phoenix
from phoenix.model import Image
from phoenix.providers.base import ImageQuery
from phoenix.spec import Spec
from phoenix.spec_loader import load_spec

from .conftest import REGION, World, make_world


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


def bake(world: World, image_id: str, day: int) -> None:
    """A new version of the golden image, as a nightly bake makes it."""
    world.cloud.add_image(Image(image_id, "golden", datetime(2026, 2, day, tzinfo=UTC),
                                {"git_sha": f"sha-{image_id}"}))


def golden_ids(world: World, region: str = REGION) -> set[str]:
    compute = world.cloud.provider().compute
    return {i.id for i in compute.find_images(region, ImageQuery(name="golden"))}


def deploy(world: World, spec: Spec) -> phoenix.DeployResult:
    result = phoenix.deploy(spec, provider=world.provider(), clock=world.clock)
    assert result.outcome == "succeeded"
    return result


def prune(world: World, spec: Spec, keep: int, *, dry_run: bool = False) -> set[str]:
    choices = phoenix.api.prune_images(spec, keep=keep, dry_run=dry_run,
                                       provider=world.provider(), clock=world.clock)
    return {c.use.image.id for c in choices if c.delete}


def with_staging(world: World, spec: Spec) -> tuple[Spec, Spec]:
    assert spec.path is not None
    with spec.path.open("a") as out:
        out.write("environments: {staging: {count: 1}}\n")
    return load_spec(spec.path), load_spec(spec.path, env="staging")


def test_prune_keeps_the_newest_and_every_release_image(world: World) -> None:
    spec = world.spec()
    first = deploy(world, spec)  # built from img-1, the only golden image
    bake(world, "img-3", 10)
    second = deploy(world, spec)  # a new image is a new release
    assert second.release != first.release
    bake(world, "img-4", 11)
    bake(world, "img-5", 12)  # never deployed
    bake(world, "img-6", 13)  # the newest: what the next deploy would use

    inventory = phoenix.api.image_inventory(spec, region=REGION, provider=world.provider(),
                                            clock=world.clock)
    used = {row.image.id: row.releases for row in inventory}
    assert used["img-1"] == (f"web/{first.release}",)
    assert used["img-3"] == (f"web/{second.release}",)
    assert used["img-5"] == ()
    ages = [row.age_seconds for row in inventory]
    assert ages == sorted(ages)  # type: ignore[type-var]  # newest first

    assert prune(world, spec, keep=1, dry_run=True) == {"img-4", "img-5"}
    assert golden_ids(world) == {"img-1", "img-3", "img-4", "img-5", "img-6"}  # dry run

    assert prune(world, spec, keep=1) == {"img-4", "img-5"}
    assert golden_ids(world) == {"img-1", "img-3", "img-6"}
    assert "img-2" in {i.id for i in world.cloud.provider().compute.find_images(
        REGION, ImageQuery())}  # golden-v2 is not the spec's image: never touched

    # The safety net still holds: back to the first release, from its own image.
    back = phoenix.rollback(spec, to_release=first.release, provider=world.provider(),
                            clock=world.clock)
    assert back.outcome == "succeeded"
    assert set(world.serving().values()) == {first.release}

    assert prune(world, spec, keep=1) == set()  # converged: a rerun deletes nothing


def test_prune_keeps_what_another_environment_runs(world: World) -> None:
    prod, staging = with_staging(world, world.spec())
    deploy(world, prod)  # img-1
    bake(world, "img-3", 10)
    staging_release = deploy(world, staging)  # staging tries the new image first
    bake(world, "img-4", 11)
    bake(world, "img-5", 12)

    # Pruned from prod's spec, the image staging runs stays.
    assert prune(world, prod, keep=1) == {"img-4"}
    assert golden_ids(world) == {"img-1", "img-3", "img-5"}
    rows = phoenix.api.image_inventory(prod, region=REGION, provider=world.provider(),
                                       clock=world.clock)
    assert {r.image.id: r.releases for r in rows}["img-3"] == (
        f"web-staging/{staging_release.release}",)


def test_keep_must_leave_the_newest(world: World) -> None:
    with pytest.raises(phoenix.InputError, match="--keep"):
        prune(world, world.spec(), keep=0)
    assert golden_ids(world) == {"img-1"}


def test_a_pinned_image_has_no_versions_to_prune(world: World) -> None:
    spec = world.spec(image="golden")
    deploy(world, spec)
    bake(world, "img-3", 10)
    pinned = world.spec()
    assert pinned.path is not None
    pinned.path.write_text(pinned.path.read_text().replace("image: {name: golden}",
                                                           "image: {id: img-3}"))
    assert prune(world, load_spec(pinned.path), keep=1) == set()
    assert golden_ids(world) == {"img-1", "img-3"}
