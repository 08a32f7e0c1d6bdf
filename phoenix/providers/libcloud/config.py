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

SERVICES = ("compute", "load_balancer", "dns", "storage")
_TOP_LEVEL = (*SERVICES, "credentials")
_SERVICE_KEYS = {
    "compute": ("driver", "args"),
    "load_balancer": ("driver", "args"),
    "dns": ("driver", "args"),
    "storage": ("driver", "args", "container", "region"),
}
# Constructor arguments that carry secrets: they belong in env vars or the file.
_SECRET_ARGS = frozenset({"key", "secret", "token", "password", "api_key", "secret_key"})
DEFAULT_CONTAINER = "phoenix"


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
class LibcloudOptions:
    credentials: Credentials
    compute: ServiceOptions
    load_balancer: ServiceOptions
    storage: ServiceOptions
    container: str
    storage_region: str | None
    dns: ServiceOptions | None = None


def _bad(path: str, problem: str) -> errors.InputError:
    return errors.InputError(f"provider.options.{path}: {problem}")


def _service(name: str, raw: Any, *, required: bool) -> ServiceOptions | None:
    if raw is None:
        if required:
            raise _bad(name, f"missing: name the libcloud driver, e.g. `{name}: {{driver: ...}}`")
        return None
    if not isinstance(raw, Mapping):
        raise _bad(name, "a mapping with `driver` (and optional `args`)")
    for key in raw:
        if key not in _SERVICE_KEYS[name]:
            raise _bad(f"{name}.{key}", f"unknown key (known: {', '.join(_SERVICE_KEYS[name])})")
    driver = raw.get("driver")
    if not isinstance(driver, str) or not driver:
        raise _bad(f"{name}.driver", "the libcloud driver's name, e.g. ec2, elb, route53, s3")
    args = raw.get("args", {})
    if not isinstance(args, Mapping):
        raise _bad(f"{name}.args", "a mapping of driver constructor arguments")
    for arg in args:
        if str(arg).lower() in _SECRET_ARGS:
            raise _bad(
                f"{name}.args.{arg}",
                "credentials never go in the spec: use credentials.key_env/secret_env or"
                " credentials.file",
            )
    return ServiceOptions(driver=driver.lower(), args=dict(args))


def _credentials(raw: Any, environ: Mapping[str, str]) -> Credentials:
    if not isinstance(raw, Mapping):
        raise _bad(
            "credentials",
            "missing: give {key_env: VAR, secret_env: VAR} or {file: path} (never the"
            " secret itself)",
        )
    known = ("key_env", "secret_env", "token_env", "file")
    for key in raw:
        if key not in known:
            hint = " (secrets never go in the spec)" if key in _SECRET_ARGS else ""
            raise _bad(f"credentials.{key}", f"unknown key{hint}; known: {', '.join(known)}")
    if "file" in raw:
        return _credentials_file(raw["file"])
    values: dict[str, str | None] = {}
    for role in ("key", "secret", "token"):
        var = raw.get(f"{role}_env")
        if var is None:
            values[role] = None
            continue
        if not isinstance(var, str) or not var:
            raise _bad(f"credentials.{role}_env", "the name of an environment variable")
        value = environ.get(var)
        if not value:
            raise _bad(f"credentials.{role}_env", f"environment variable {var} is not set")
        values[role] = value
    key = values["key"]
    if key is None:
        raise _bad("credentials.key_env", "missing: the variable holding the access key")
    return Credentials(key=key, secret=values["secret"], token=values["token"])


def _credentials_file(raw: Any) -> Credentials:
    if not isinstance(raw, str) or not raw:
        raise _bad("credentials.file", "a path to a YAML file with key and secret")
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
    options: Mapping[str, Any], *, want_dns: bool, environ: Mapping[str, str] | None = None
) -> LibcloudOptions:
    """Validate the options; raises ``InputError`` naming the option and the fix."""
    for key in options:
        if key not in _TOP_LEVEL:
            raise _bad(str(key), f"unknown option (known: {', '.join(_TOP_LEVEL)})")
    compute = _service("compute", options.get("compute"), required=True)
    balancer = _service("load_balancer", options.get("load_balancer"), required=True)
    storage = _service("storage", options.get("storage"), required=True)
    dns = _service("dns", options.get("dns"), required=want_dns)
    assert compute is not None and balancer is not None and storage is not None
    raw_storage = options["storage"]
    container = raw_storage.get("container", DEFAULT_CONTAINER)
    if not isinstance(container, str) or not container or "/" in container:
        raise _bad("storage.container", f"a bucket/container name without '/', got {container!r}")
    region = raw_storage.get("region")
    if region is not None and not (isinstance(region, str) and region):
        raise _bad("storage.region", f"a region name, got {region!r}")
    credentials = _credentials(
        options.get("credentials"), os.environ if environ is None else environ
    )
    return LibcloudOptions(
        credentials=credentials,
        compute=compute,
        load_balancer=balancer,
        storage=storage,
        container=container,
        storage_region=region,
        dns=dns,
    )
