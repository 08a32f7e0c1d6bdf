"""Opening the OpenStack provider from a spec: the options, the shared cloud, the parts."""

from __future__ import annotations

from pathlib import Path

from phoenix import errors
from phoenix.provider_options import OpenStackOptions
from phoenix.providers.base import Clock, Provider, Store
from phoenix.providers.openstack.balancer import OpenStackLoadBalancer
from phoenix.providers.openstack.cloud import OpenStackCloud
from phoenix.providers.openstack.compute import OpenStackCompute
from phoenix.providers.openstack.dns import OpenStackDns
from phoenix.providers.openstack.store import SwiftStore
from phoenix.providers.trusted_health import TrustedStateHealth
from phoenix.spec import OpenStackProvider, Spec


def _store(options: OpenStackOptions, cloud: OpenStackCloud) -> Store:
    """Swift by default; ``options.store_dir`` keeps records and the lock in a directory
    instead, for clouds without Swift (then only this machine can resume or roll back)."""
    if options.store_dir is None:
        return SwiftStore(cloud)
    from phoenix.providers.local.store import DirectoryStore

    return DirectoryStore(Path(options.store_dir).expanduser().resolve())


def open_openstack_provider(spec: Spec, *, clock: Clock) -> Provider:
    """The OpenStack provider for ``spec`` (``provider: {name: openstack, cloud: ...}``).

    Credentials come from clouds.yaml (``provider.cloud`` names the entry) or, without a
    cloud name, from ``OS_*`` variables. The options are
    ``phoenix.provider_options.OpenStackOptions`` (interface, api_timeout, container,
    lb_wait_timeout, store_region, dns_region, store_dir).
    The configuration is loaded for every region now (no network I/O), so a missing
    cloud or region raises ``InputError`` before anything is touched.
    """
    if not isinstance(spec.provider, OpenStackProvider):
        raise errors.InputError(f"provider.name: {spec.provider.name!r} is not openstack")
    options = spec.provider.options
    store_region = options.store_region
    dns_region = options.dns_region
    regions = list(spec.regions)
    extra_regions = [r for r in (store_region, dns_region) if r and r not in regions]
    cloud = OpenStackCloud(
        spec.provider.cloud,
        regions + extra_regions,
        clock=clock,
        interface=options.interface,
        api_timeout=options.api_timeout,
        container=options.container,
        lb_wait_seconds=options.lb_wait_timeout,
        store_region=store_region,
        dns_region=dns_region,
    )
    cloud.check_config()
    # Failover walks only the spec's regions; extra ones serve the store or DNS.
    cloud.regions = tuple(regions)
    return Provider(
        name="openstack",
        compute=OpenStackCompute(cloud),
        load_balancer=OpenStackLoadBalancer(cloud),
        store=_store(options, cloud),
        dns=OpenStackDns(cloud) if spec.dns is not None else None,
        health_source=TrustedStateHealth("Nova") if spec.health.mode == "provider" else None,
        requests=cloud.requests,
    )
