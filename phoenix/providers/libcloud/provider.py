"""Assemble the libcloud provider from the spec: drivers built lazily, one per region."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from phoenix import errors
from phoenix.providers.base import Clock, Provider
from phoenix.providers.libcloud.balancer import LibcloudBalancer
from phoenix.providers.libcloud.compute import LibcloudCompute
from phoenix.providers.libcloud.config import Credentials, ServiceOptions, parse_options
from phoenix.providers.libcloud.dns import LibcloudDns
from phoenix.providers.libcloud.store import LibcloudStore
from phoenix.providers.trusted_health import TrustedStateHealth
from phoenix.request_tally import RequestTally
from phoenix.spec import LibcloudProvider, Spec


def _driver_class(kind: str, name: str) -> Any:
    """libcloud's driver class for ``name`` (a Provider constant) of ``kind``."""
    import importlib

    providers = importlib.import_module(f"libcloud.{kind}.providers")
    types = importlib.import_module(f"libcloud.{kind}.types")
    constant = getattr(types.Provider, name.upper(), None)
    if constant is None:
        known = sorted(k.lower() for k in vars(types.Provider) if not k.startswith("_"))
        service = {"compute": "compute", "loadbalancer": "load_balancer",
                   "dns": "dns", "storage": "storage"}[kind]
        raise errors.InputError(
            f"provider.options.{service}.driver: libcloud has no {kind} driver {name!r}"
            f" (some it has: {', '.join(known[:12])}, ...)"
        )
    return providers.get_driver(constant)


# What libcloud's BaseDriver takes from **kwargs for the connection, beside named ones.
_CONNECTION_ARGS = frozenset({"timeout", "retry_delay", "backoff", "proxy_url"})


def _known_args(cls: type) -> set[str]:
    """Constructor arguments the driver class names anywhere in its hierarchy (libcloud
    drivers pass unknown keyword arguments on and ignore them: a typo would go unseen)."""
    import inspect

    names = set(_CONNECTION_ARGS)
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for param in inspect.signature(init).parameters.values():
            if param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
                names.add(param.name)
    return names - {"self", "key", "secret"}


_SERVICE_OF_KIND = {"compute": "compute", "loadbalancer": "load_balancer", "dns": "dns",
                    "storage": "store"}


def _counted(driver: Any, kind: str, tally: RequestTally) -> Any:
    """``driver`` with every request of its connection counted in ``tally``.

    libcloud drivers send each API request through their connection's ``request``
    method (pagination and uploads included), so wrapping it on this one instance counts
    what the cloud served. The method is looked up at call time, so a patch applied to
    the connection class later still takes effect."""
    connection = getattr(driver, "connection", None)
    if connection is None:
        return driver
    service = _SERVICE_OF_KIND[kind]

    def request(*args: Any, **kwargs: Any) -> Any:
        tally.count(service)
        return type(connection).request(connection, *args, **kwargs)

    connection.request = request
    return driver


def _build(kind: str, service: ServiceOptions, credentials: Credentials,
           tally: RequestTally | None = None, **extra: Any) -> Any:
    cls = _driver_class(kind, service.driver)
    known = _known_args(cls)
    for arg in service.args:
        if arg not in known:
            section = "load_balancer" if kind == "loadbalancer" else kind
            raise errors.InputError(
                f"provider.options.{section}.args.{arg}: the {service.driver} driver does not"
                f" take it (it takes: {', '.join(sorted(known))})"
            )
    kwargs: dict[str, Any] = {**extra, **service.args}
    if credentials.token is not None:
        kwargs.setdefault("token", credentials.token)
    args = [credentials.key] + ([credentials.secret] if credentials.secret is not None else [])
    try:
        driver = cls(*args, **kwargs)
    except TypeError as exc:
        raise errors.InputError(
            f"provider.options: the {service.driver} driver does not take these arguments"
            f" ({', '.join(sorted(kwargs))}): {exc}"
        ) from exc
    return _counted(driver, kind, tally) if tally is not None else driver


class _PerRegion:
    """One driver per region, built on first use (no network I/O at build time)."""

    def __init__(self, build: Callable[[str], Any]) -> None:
        self._build = build
        self._drivers: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __call__(self, region: str) -> Any:
        with self._lock:
            if region not in self._drivers:
                self._drivers[region] = self._build(region)
            return self._drivers[region]


def open_libcloud_provider(
    spec: Spec, *, clock: Clock, environ: Mapping[str, str] | None = None
) -> Provider:
    """The libcloud provider for ``spec``; bad options raise ``InputError`` now."""
    if not isinstance(spec.provider, LibcloudProvider):
        raise errors.InputError(f"provider.name: {spec.provider.name!r} is not libcloud")
    options = parse_options(spec.provider.options, want_dns=spec.dns is not None,
                            environ=environ)
    creds = options.credentials
    tally = RequestTally("libcloud")
    # Build once now for every region: a wrong driver name or argument fails before any
    # call (libcloud constructors do no network I/O).
    compute_drivers = _PerRegion(
        lambda r: _build("compute", options.compute, creds, tally, region=r)
    )
    balancer_drivers = _PerRegion(
        lambda r: _build("loadbalancer", options.load_balancer, creds, tally, region=r)
    )
    for region in spec.regions:
        compute_drivers(region)
        balancer_drivers(region)
    storage_region = options.storage_region or spec.regions[0]
    storage_driver = _build("storage", options.storage, creds, tally,
                            region=storage_region)
    compute = LibcloudCompute(compute_drivers, clock)
    dns = None
    if options.dns is not None:
        dns = LibcloudDns(_build("dns", options.dns, creds, tally))
    return Provider(
        name="libcloud",
        compute=compute,
        load_balancer=LibcloudBalancer(balancer_drivers, compute),
        store=LibcloudStore(storage_driver, options.container, storage_region),
        dns=dns,
        health_source=(
            TrustedStateHealth("the compute API") if spec.health.mode == "provider" else None
        ),
        requests=tally,
    )
