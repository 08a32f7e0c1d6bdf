"""Open the provider a spec names. Imports are lazy so unused SDKs cost nothing.

The cloud SDKs are optional extras (``pip install 'phoenix-deploy[openstack]'``,
``[libcloud]``): a user of the local provider does not install openstacksdk's tree. A
spec naming a provider whose SDK is missing fails with the extra to install.
"""

from __future__ import annotations

from collections.abc import Callable

from phoenix.errors import InputError
from phoenix.providers.base import Clock, Provider
from phoenix.spec import LocalProvider, MemoryProvider, OpenStackProvider, Spec

# The modules each extra brings, as ``ModuleNotFoundError.name`` reports them.
EXTRAS = {
    "openstack": ("openstack", "keystoneauth1", "os_service_types"),
    "libcloud": ("libcloud", "requests"),
}


def _sdk_opener(extra: str, load: Callable[[], Callable[..., Provider]]) -> Callable[..., Provider]:
    """``load()``, or an ``InputError`` naming the extra when its SDK is not installed."""
    try:
        return load()
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing not in EXTRAS[extra]:
            raise  # a bug or a broken install, not a missing extra
        raise InputError(
            f"provider.name: {extra} needs {missing}, which is not installed;"
            f" install the extra: pip install 'phoenix-deploy[{extra}]'"
        ) from exc


def _openstack() -> Callable[..., Provider]:
    import keystoneauth1  # noqa: F401  (the SDKs first: a missing one names the extra)
    import openstack  # noqa: F401

    from phoenix.providers.openstack import open_openstack_provider

    return open_openstack_provider


def _libcloud() -> Callable[..., Provider]:
    import libcloud  # noqa: F401  (the SDK first: a missing one names the extra)
    import requests  # noqa: F401

    from phoenix.providers.libcloud import open_libcloud_provider

    return open_libcloud_provider


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
        return _sdk_opener("openstack", _openstack)(spec, clock=clock)
    return _sdk_opener("libcloud", _libcloud)(spec, clock=clock)
