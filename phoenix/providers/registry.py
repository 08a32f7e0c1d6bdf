"""Open the provider a spec names. Imports are lazy so unused SDKs cost nothing."""

from __future__ import annotations

from phoenix.providers.base import Clock, Provider
from phoenix.spec import LocalProvider, MemoryProvider, OpenStackProvider, Spec


def open_provider(spec: Spec, *, clock: Clock) -> Provider:
    """The Provider for ``spec.provider`` (its options were typed when the spec loaded)."""
    provider = spec.provider
    if isinstance(provider, MemoryProvider):
        from phoenix.providers.memory import open_memory_provider

        return open_memory_provider(provider.options, spec.regions, clock=clock)
    if isinstance(provider, LocalProvider):
        from phoenix.providers.local.provider import open_local_provider

        check_path = spec.health.http.path if spec.health.http is not None else None
        return open_local_provider(
            provider.options, spec.regions, clock=clock, check_path=check_path
        )
    if isinstance(provider, OpenStackProvider):
        from phoenix.providers.openstack import open_openstack_provider

        return open_openstack_provider(spec, clock=clock)
    from phoenix.providers.libcloud import open_libcloud_provider

    return open_libcloud_provider(spec, clock=clock)
