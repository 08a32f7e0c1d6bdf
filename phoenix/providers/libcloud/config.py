"""``provider.options`` of the libcloud provider, validated before any driver is built.

    provider:
      name: libcloud
      options:
        credentials: {key_env: AWS_ACCESS_KEY_ID, secret_env: AWS_SECRET_ACCESS_KEY}
        # or: credentials: {file: ~/.config/phoenix/aws.yaml}   (YAML: key, secret[, token])
        compute: {driver: ec2}                 # spec.regions are the driver's regions
        load_balancer: {driver: elb}           # a pool is a load balancer's name
        dns: {driver: route53}                 # used by failover (spec.dns)
        storage: {driver: s3, container: phoenix-records, region: us-east-1}
        # each service may add `args:` passed to the driver's constructor (host, port,
        # secure, signature_version, ...): never credentials.

Driver names are libcloud's ``Provider`` constants, case-insensitive (``ec2``, ``elb``,
``route53``, ``s3``, ``openstack``, ``gce`` ...).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from phoenix import errors
from phoenix.provider_options import (
    LibcloudCredentials,
    LibcloudOptions,
    LibcloudService,
)
from phoenix.provider_options import parse_options as parse_typed

SERVICES = ("compute", "load_balancer", "dns", "storage")


@dataclass(frozen=True)
class Credentials:
    key: str
    secret: str | None = field(repr=False)
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ServiceOptions:
    driver: str
    args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LibcloudSettings:
    """The options with the credentials read and driver names normalised."""

    credentials: Credentials
    compute: ServiceOptions
    load_balancer: ServiceOptions
    storage: ServiceOptions
    container: str
    storage_region: str | None
    dns: ServiceOptions | None = None


def _bad(path: str, problem: str) -> errors.InputError:
    return errors.InputError(f"provider.options.{path}: {problem}")


def _service(option: LibcloudService) -> ServiceOptions:
    return ServiceOptions(driver=option.driver.lower(), args=dict(option.args))


def _credentials(option: LibcloudCredentials, environ: Mapping[str, str]) -> Credentials:
    if option.file is not None:
        return _credentials_file(option.file)
    values: dict[str, str | None] = {}
    for role, var in (("key", option.key_env), ("secret", option.secret_env),
                      ("token", option.token_env)):
        if var is None:
            values[role] = None
            continue
        value = environ.get(var)
        if not value:
            raise _bad(f"credentials.{role}_env", f"environment variable {var} is not set")
        values[role] = value
    key = values["key"]
    if key is None:  # LibcloudCredentials requires key_env without a file
        raise _bad("credentials.key_env", "missing: the variable holding the access key")
    return Credentials(key=key, secret=values["secret"], token=values["token"])


def _credentials_file(raw: str) -> Credentials:
    path = Path(raw).expanduser()
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise _bad("credentials.file", f"cannot read {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise _bad("credentials.file", f"{path} is not valid YAML") from exc
    if not isinstance(loaded, Mapping) or not isinstance(loaded.get("key"), str):
        raise _bad("credentials.file", f"{path} must be a YAML mapping with `key` and `secret`")
    secret, token = loaded.get("secret"), loaded.get("token")
    return Credentials(
        key=str(loaded["key"]),
        secret=str(secret) if secret is not None else None,
        token=str(token) if token is not None else None,
    )


def parse_options(
    options: Mapping[str, Any] | LibcloudOptions,
    *,
    want_dns: bool,
    environ: Mapping[str, str] | None = None,
) -> LibcloudSettings:
    """Validate the options (``phoenix.provider_options.LibcloudOptions``) and read the
    credentials; raises ``InputError`` naming the option and the fix."""
    typed = parse_typed(LibcloudOptions, options)
    if want_dns and typed.dns is None:
        raise _bad(
            "dns", "missing: failover (dns:) needs a DNS driver, e.g. `dns: {driver: route53}`"
        )
    return LibcloudSettings(
        credentials=_credentials(typed.credentials, os.environ if environ is None else environ),
        compute=_service(typed.compute),
        load_balancer=_service(typed.load_balancer),
        storage=_service(typed.storage),
        container=typed.storage.container,
        storage_region=typed.storage.region,
        dns=_service(typed.dns) if typed.dns is not None else None,
    )
