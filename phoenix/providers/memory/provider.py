"""Open the memory cloud from a spec's ``provider.options`` (checked by
``phoenix.provider_options.MemoryOptions``), as the CLI does."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from phoenix import errors
from phoenix.model import Flavor, Image
from phoenix.provider_options import (
    MemoryFaults,
    MemoryFlavor,
    MemoryImage,
    MemoryOptions,
    memory_region_problems,
    parse_options,
)
from phoenix.providers.base import Clock, Provider
from phoenix.providers.memory.cloud import MemoryCloud
from phoenix.providers.memory.faults import Faults

_DEFAULT_IMAGE = Image(id="img-golden", name="golden", created_at=datetime(2026, 1, 1, tzinfo=UTC))
_DEFAULT_FLAVOR = Flavor(id="flv-m1.small", name="m1.small", vcpus=1, ram_mb=512)


def open_memory_provider(
    options: Mapping[str, Any] | MemoryOptions, regions: Sequence[str], *, clock: Clock
) -> Provider:
    """The memory cloud as the CLI opens it, from the spec's ``provider.options``
    (``phoenix.provider_options.MemoryOptions``; a plain mapping is validated first).

    Without images, the image ``golden`` (id ``img-golden``) exists; without flavors,
    the flavor ``m1.small``. Raises ``InputError`` naming the option when one is wrong.
    """
    cloud = _cloud_from_options(options, regions, clock=clock)
    return cloud.provider()


def _cloud_from_options(
    raw: Mapping[str, Any] | MemoryOptions, regions: Sequence[str], *, clock: Clock
) -> MemoryCloud:
    options = parse_options(MemoryOptions, raw)
    problems = memory_region_problems(options, regions)
    if problems:
        raise errors.InputError(
            "\n".join(f"provider.options.{at}: {problem}" for at, problem in problems)
        )
    cloud = MemoryCloud(
        regions,
        clock=clock,
        boot_seconds=options.boot_seconds,
        faults=_faults(options.faults),
        seed=options.seed,
        state_file=Path.cwd() / options.state_file if options.state_file else None,
    )
    for image in [_image(i) for i in options.images or []] or [_DEFAULT_IMAGE]:
        cloud.add_image(image)
    for flavor in [_flavor(f) for f in options.flavors or []] or [_DEFAULT_FLAVOR]:
        cloud.add_flavor(flavor)
    for region, limits in (options.quota or {}).items():
        cloud.set_quota(
            region, instances=limits.instances, vcpus=limits.vcpus, ram_mb=limits.ram_mb
        )
    return cloud


def _image(option: MemoryImage) -> Image:
    created_at = option.created_at
    if created_at is not None and created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=UTC)
    return Image(
        id=option.id or f"img-{option.name}",
        name=option.name,
        created_at=created_at,
        properties={key: str(value) for key, value in option.properties.items()},
    )


def _flavor(option: MemoryFlavor) -> Flavor:
    return Flavor(
        id=option.id or f"flv-{option.name}",
        name=option.name,
        vcpus=option.vcpus,
        ram_mb=option.ram_mb,
    )


def _faults(option: MemoryFaults) -> Faults:
    return Faults(
        api_error_rate=option.api_error_rate,
        lost_response_rate=option.lost_response_rate,
        lost_read_rate=option.lost_read_rate,
        boot_fail_rate=option.boot_fail_rate,
        boot_fail_images=set(option.boot_fail_images),
        boot_fail_names=set(option.boot_fail_names),
        unhealthy_images=set(option.unhealthy_images),
        unhealthy_nodes=set(option.unhealthy_nodes),
        down_regions=set(option.down_regions),
        no_host_regions=set(option.no_host_regions),
        unhealthy_regions=set(option.unhealthy_regions),
        slow_boot_seconds=option.slow_boot_seconds,
        retry_after=option.retry_after,
    )
