"""Open the provider a spec names. Imports are lazy so unused SDKs cost nothing."""

from __future__ import annotations

from phoenix.errors import InputError
from phoenix.providers.base import Clock, Provider
from phoenix.spec import Spec

_NOT_YET: dict[str, str] = {}


def open_provider(spec: Spec, *, clock: Clock) -> Provider:
    """The Provider for ``spec.provider``; raises ``InputError`` when it is unknown."""
    name = spec.provider.name
    if name == "memory":
        from phoenix.providers.memory import open_memory_provider

        return open_memory_provider(spec.provider.options, spec.regions, clock=clock)
    if name == "local":
        from phoenix.providers.local.provider import open_local_provider

        check_path = spec.health.http.path if spec.health.http is not None else None
        return open_local_provider(
            spec.provider.options, spec.regions, clock=clock, check_path=check_path
        )
    if name == "openstack":
        from phoenix.providers.openstack import open_openstack_provider

        return open_openstack_provider(spec, clock=clock)
    if name == "libcloud":
        from phoenix.providers.libcloud import open_libcloud_provider

        return open_libcloud_provider(spec, clock=clock)
    if name in _NOT_YET:
        raise InputError(
            f"provider.name: {_NOT_YET[name]} is not part of this version of Phoenix yet;"
            " use `provider: {name: memory}` to run the whole cycle against the built-in"
            " in-memory cloud"
        )
    raise InputError(f"provider.name: unknown provider {name!r}")
