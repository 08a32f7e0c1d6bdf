"""The deploy spec (``phoenix.yaml``): pydantic models, validated strictly.

Unknown keys are errors (``extra="forbid"``) because a misspelt key silently ignored is
how deploys go wrong. ``load_spec`` (in ``phoenix.spec_loader``) maps every validation
error back to ``file:line: field: message``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from phoenix.input_files import resolve_inside
from phoenix.provider_options import (
    LibcloudOptions,
    LocalOptions,
    MemoryOptions,
    OpenStackOptions,
    memory_region_problems,
)
from phoenix.spec_gates import GatesSpec
from phoenix.spec_hooks import (
    HooksSpec,
    _none_is_empty,
)
from phoenix.spec_types import (
    DAY,
    HOUR,
    Duration,
)
from phoenix.spec_types import Strict as _Strict
from phoenix.spec_types import within as _within

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$")
# Names reach directory names, shell commands and balancer config files, so they are
# held to a character set that means the same in all of them: no whitespace, quotes,
# slashes or shell and config syntax. Regions allow capitals (OpenStack's RegionOne).
_REGION = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")
_POOL = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,61}[a-z0-9])?$")
_DNS_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_ZONE = re.compile(rf"^{_DNS_LABEL}(?:\.{_DNS_LABEL})*\.?$")
_RECORD = re.compile(rf"^{_DNS_LABEL}(?:\.{_DNS_LABEL})*$")
# An HTTP check path also lands in a balancer's config line: unreserved and a few
# sub-delimiter characters only (percent-encode anything else).
_CHECK_PATH = re.compile(r"^/[A-Za-z0-9._~%/?=&:@+,;-]{0,200}$")

# The largest number of nodes (per region) and the largest percentage-free count.
MAX_COUNT = 10_000



def parse_count_or_percent(value: Any) -> int | str:
    """Accept a whole number up to ``MAX_COUNT`` or a percentage string such as ``25%``."""
    if isinstance(value, bool):
        raise ValueError("expected a count like 1 or a percentage like 25%")
    if isinstance(value, str) and re.fullmatch(r"\s*\d{1,6}\s*", value):
        value = int(value)
    if isinstance(value, int):
        if value < 0:
            raise ValueError("cannot be negative")
        if value > MAX_COUNT:
            raise ValueError(f"must be at most {MAX_COUNT}")
        return value
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d{1,6}%", text):
            if int(text[:-1]) > 100:
                raise ValueError("a percentage cannot exceed 100%")
            return text
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
    raise ValueError(f"expected a count like 1 or a percentage like 25%, got {shown}")


def _at_least_one(value: int | str) -> int | str:
    if value in (0, "0%"):
        raise ValueError("must be at least 1 (or 1%)")
    return value


def _region_name(region: str) -> str:
    if not _REGION.match(region):
        raise ValueError(
            "use 1-63 letters, digits, dots, dashes and underscores, starting and ending"
            " with a letter or digit"
        )
    return region


CountOrPercent = Annotated[int | str, BeforeValidator(parse_count_or_percent)]
RegionName = Annotated[str, AfterValidator(_region_name)]


class MemoryProvider(_Strict):
    """The in-memory cloud: tests, demos and fault campaigns."""

    name: Literal["memory"]
    options: MemoryOptions = Field(default_factory=MemoryOptions)


class LocalProvider(_Strict):
    """Real processes on loopback addresses behind a real balancer (the default)."""

    name: Literal["local"] = "local"
    options: LocalOptions = Field(default_factory=LocalOptions)


class OpenStackProvider(_Strict):
    """OpenStack through openstacksdk (credentials come from clouds.yaml or OS_*)."""

    name: Literal["openstack"]
    cloud: str | None = Field(
        default=None, max_length=255, description="the cloud's name in clouds.yaml"
    )
    options: OpenStackOptions = Field(default_factory=OpenStackOptions)


class LibcloudProvider(_Strict):
    """Any cloud apache-libcloud drives (credentials come from env vars or a file)."""

    name: Literal["libcloud"]
    options: LibcloudOptions


_PROVIDERS = ("memory", "local", "openstack", "libcloud")


def _provider_name(value: Any) -> str | None:
    """The tag of ``provider:``; a missing name is the local provider (the default)."""
    name = value.get("name", "local") if isinstance(value, dict) else getattr(value, "name", None)
    return name if isinstance(name, str) and name in _PROVIDERS else None


ProviderSpec = Annotated[
    Annotated[MemoryProvider, Tag("memory")]
    | Annotated[LocalProvider, Tag("local")]
    | Annotated[OpenStackProvider, Tag("openstack")]
    | Annotated[LibcloudProvider, Tag("libcloud")],
    Discriminator(
        _provider_name,
        custom_error_type="provider_name",
        custom_error_message=f"unknown provider; use one of {', '.join(_PROVIDERS)}",
        custom_error_context={"at": "name"},
    ),
]
"""Which backend to use and its options, typed per provider (credentials never go here)."""


class ImageSpec(_Strict):
    """The golden image: exactly one of ``id``, ``name``, ``properties`` or ``path``."""

    id: str | None = None
    name: str | None = None
    properties: dict[str, str] | None = Field(
        default=None, description="pick the newest image having all these properties"
    )
    path: str | None = Field(
        default=None,
        description="local provider: a directory (relative to the spec) imported as an"
        " immutable, content-addressed image; a changed directory is a new release",
    )
    max_age: Annotated[Duration, _within(1.0, 3650 * DAY)] | None = Field(
        default=None, description="refuse images older than this (e.g. 30d); 1s to 3650d"
    )

    @model_validator(mode="after")
    def _exactly_one_way(self) -> ImageSpec:
        given = [k for k in ("id", "name", "properties", "path") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of id, name, properties or path"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self


class ServerSpec(_Strict):
    """Optional placement and access settings passed to the compute API."""

    key_name: str | None = None
    security_groups: list[str] = Field(default_factory=list)
    availability_zone: str | None = None
    server_group: str | None = Field(
        default=None, description="an (anti-affinity) server group's name or id"
    )


class SecretVar(_Strict):
    """A template variable read from the spec, the environment or a file."""

    value: str | int | float | bool | None = None
    env: str | None = None
    file: str | None = None
    secret: bool = False

    @model_validator(mode="after")
    def _exactly_one_source(self) -> SecretVar:
        given = [k for k in ("value", "env", "file") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of value, env or file")
        return self

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # A secret given inline must not leak through repr() into logs.
        for name, value in super().__repr_args__():
            yield name, ("***" if self.secret and name == "value" else value)


_SECRET_VAR_KEYS = frozenset({"value", "env", "file", "secret"})


def _var_kind(value: Any) -> str:
    # A mapping that says ``secret`` or uses only SecretVar keys is a SecretVar, so a
    # mistake in it (two sources, a misspelt key) is an error, not a plain dict var.
    if isinstance(value, SecretVar):
        return "SecretVar"
    if isinstance(value, dict) and value and ("secret" in value or set(value) <= _SECRET_VAR_KEYS):
        return "SecretVar"
    return "plain"


VarValue = Annotated[
    Annotated[SecretVar, Tag("SecretVar")]
    | Annotated[str | int | float | bool | list[Any] | dict[str, Any] | None, Tag("plain")],
    Discriminator(_var_kind),
]


def _port(description: str = "a TCP port, 1-65535") -> Any:
    return Field(strict=True, ge=1, le=65535, description=description)


class HttpCheck(_Strict):
    path: str = Field(
        default="/healthz",
        description="starts with /; letters, digits and ._~%/?=&:@+,;- (percent-encode others)",
    )
    port: int = _port()
    expect: int = Field(
        default=200, strict=True, ge=100, le=599, description="expected HTTP status, 100-599"
    )

    @field_validator("path")
    @classmethod
    def _absolute(cls, path: str) -> str:
        if not path.startswith("/"):
            raise ValueError("must start with /")
        if not _CHECK_PATH.match(path):
            raise ValueError(
                "use at most 200 of letters, digits and ._~%/?=&:@+,;- after the /"
                " (percent-encode anything else, e.g. %20 for a space)"
            )
        return path


class TcpCheck(_Strict):
    port: int = _port()


class HealthSpec(_Strict):
    """How a node proves it is healthy before it takes traffic."""

    mode: Literal["active", "provider"] = Field(
        default="active",
        description="active: Phoenix probes each node; provider: trust the provider's status",
    )
    http: HttpCheck | None = None
    tcp: TcpCheck | None = None
    interval: Annotated[Duration, _within(0.01, HOUR)] = Field(
        default=2.0, description="time between probes of a node; 10ms to 1h"
    )
    timeout: Annotated[Duration, _within(0.01, HOUR)] = Field(
        default=1.0, description="one probe's timeout; 10ms to 1h, at most interval"
    )
    healthy_threshold: int = Field(
        default=2, strict=True, ge=1, le=100, description="passes in a row to be healthy; 1-100"
    )
    unhealthy_threshold: int = Field(
        default=3, strict=True, ge=1, le=100, description="failures in a row to be unhealthy; 1-100"
    )
    grace: Annotated[Duration, _within(0.0, 7 * DAY)] = Field(
        default=0.0, description="failures in this window do not count; 0 to 7d"
    )
    deadline: Annotated[Duration, _within(0.01, 7 * DAY)] = Field(
        default=300.0,
        description="a node not healthy this long after creation fails the deploy; 10ms to 7d",
    )

    @model_validator(mode="after")
    def _one_check(self) -> HealthSpec:
        if self.http is not None and self.tcp is not None:
            raise ValueError("give either http or tcp, not both")
        if self.mode == "active" and self.http is None and self.tcp is None:
            raise ValueError("mode active needs an http or a tcp check")
        if self.timeout > self.interval:
            raise ValueError("timeout must not exceed interval")
        return self


class CanarySpec(_Strict):
    size: Annotated[CountOrPercent, AfterValidator(_at_least_one)] = Field(
        default=1, description="nodes in the canary batch: 1 to count, or 1%-100% of count"
    )
    bake: Annotated[Duration, _within(0.0, 7 * DAY)] = Field(
        default=60.0, description="how long the canary serves before the rest follow; 0 to 7d"
    )


class HealSpec(_Strict):
    """What ``phoenix watch`` does about sick nodes of the serving release."""

    max_parallel: int = Field(
        default=1, strict=True, ge=1, le=MAX_COUNT,
        description=f"sick nodes replaced at once; 1-{MAX_COUNT}",
    )
    max_unhealthy: CountOrPercent = Field(
        default="34%",
        description="when more of the fleet than this is sick at once, nothing is replaced"
        " (an outage or a bad release, not a sick node): the circuit opens and watch alerts;"
        " a count or 0%-100% of count",
    )


class FailoverSpec(_Strict):
    """When ``phoenix watch`` moves the app to another region without a person."""

    after: Annotated[Duration, _within(1.0, DAY)] = Field(
        default=30.0,
        description="how long the serving region must fail to serve (its API unavailable,"
        " or every node sick) before watch fails over, health-gated; 1s to 1d",
    )
    auto_failback: bool = Field(
        default=False, description="move back to the primary once it has been up for"
        " failback_after (health-gated, like `phoenix failback`)",
    )
    failback_after: Annotated[Duration, _within(1.0, 7 * DAY)] = Field(
        default=600.0, description="how long the primary must answer before a failback;"
        " 1s to 7d",
    )


class RolloutSpec(_Strict):
    strategy: Literal["blue-green", "rolling", "canary"] = "blue-green"
    max_surge: CountOrPercent = Field(
        default="25%", description=f"extra nodes during a rollout: 0-{MAX_COUNT} or 0%-100%"
    )
    max_unavailable: CountOrPercent = Field(
        default=0, description=f"nodes that may be out during a rollout: 0-{MAX_COUNT} or 0%-100%"
    )
    canary: CanarySpec = Field(default_factory=CanarySpec)
    drain_timeout: Annotated[Duration, _within(0.0, DAY)] = Field(
        default=30.0, description="how long a leaving node may finish its requests; 0 to 1d"
    )
    keep_previous: int = Field(
        default=0,
        strict=True,
        ge=0,
        le=10,
        description="previous releases whose nodes stay up (out of the LB); 0-10",
    )
    max_boot_retries: int = Field(
        default=2, strict=True, ge=0, le=10, description="new nodes per failed boot; 0-10"
    )
    deadline: Annotated[Duration, _within(1.0, 7 * DAY)] = Field(
        default=1800.0, description="the whole deploy's deadline; 1s to 7d"
    )
    max_parallel_calls: int = Field(
        default=8,
        strict=True,
        ge=1,
        le=64,
        description="create, delete and metadata calls in flight at once in each region;"
        " lower it for a cloud that rate-limits its API; 1-64",
    )
    lease_ttl: Annotated[Duration, _within(5.0, DAY)] = Field(
        default=120.0,
        description="how long an actor holding the app's lease may go without renewing it"
        " (it renews every quarter of this) before another may take over; 5s to 1d",
    )


class LoadBalancerSpec(_Strict):
    pool: str = Field(
        description="1-63 lowercase letters, digits, dots, dashes and underscores,"
        " starting and ending with a letter or digit"
    )
    member_port: int = _port("the port each node serves on, 1-65535")

    @field_validator("pool")
    @classmethod
    def _pool_name(cls, pool: str) -> str:
        if not _POOL.match(pool):
            raise ValueError(
                "use 1-63 lowercase letters, digits, dots, dashes and underscores,"
                " starting and ending with a letter or digit"
            )
        return pool


class DnsSpec(_Strict):
    zone: str = Field(
        description="a DNS name such as example.com. (lowercase labels of letters, digits"
        " and dashes, separated by dots; a final dot is allowed)"
    )
    record: str = Field(
        description="the record's name in the zone, e.g. www (lowercase DNS labels, no final dot)"
    )
    ttl: int = Field(default=60, strict=True, ge=1, le=86400, description="seconds, 1-86400")

    @field_validator("zone")
    @classmethod
    def _zone_name(cls, zone: str) -> str:
        if len(zone) > 254 or not _ZONE.match(zone):
            raise ValueError(
                "use a DNS name such as example.com.: lowercase labels of letters, digits"
                " and dashes (not at either end), separated by dots"
            )
        return zone

    @field_validator("record")
    @classmethod
    def _record_name(cls, record: str) -> str:
        if len(record) > 253 or not _RECORD.match(record):
            raise ValueError(
                "use a name such as www or api.v2: lowercase labels of letters, digits"
                " and dashes (not at either end), separated by dots"
            )
        return record



class Spec(_Strict):
    """A validated ``phoenix.yaml``."""

    app: str = Field(description="lowercase letters, digits and dashes; names every server")
    provider: ProviderSpec = Field(
        default_factory=LocalProvider,
        description="the backend (memory, local, openstack, libcloud) and its options;"
        " local by default",
    )
    regions: list[RegionName] = Field(
        min_length=1,
        max_length=100,
        description="in priority order; first is primary. Each 1-63 letters, digits, dots,"
        " dashes and underscores, starting and ending with a letter or digit",
    )
    image: ImageSpec
    flavor: str = Field(min_length=1)
    network: str | None = None
    count: int = Field(
        strict=True, ge=1, le=MAX_COUNT, description=f"nodes per deploy, 1-{MAX_COUNT}"
    )
    server: ServerSpec = Field(default_factory=ServerSpec)
    template: str = Field(min_length=1, description="cloud-init template, relative to the spec")
    vars: dict[str, VarValue] = Field(default_factory=dict)
    health: HealthSpec
    rollout: RolloutSpec = Field(default_factory=RolloutSpec)
    load_balancer: LoadBalancerSpec
    dns: DnsSpec | None = None
    heal: HealSpec = Field(default_factory=HealSpec)
    failover: FailoverSpec | None = Field(
        default=None,
        description="phoenix watch fails over (and back) by itself; needs dns:",
    )
    max_node_age: Annotated[Duration, _within(60.0, 3650 * DAY)] | None = Field(
        default=None,
        description="phoenix watch replaces nodes older than this, one at a time, oldest"
        " first (e.g. 7d); 1m to 3650d",
    )
    hooks: Annotated[HooksSpec, BeforeValidator(_none_is_empty)] = Field(
        default_factory=HooksSpec,
        description="commands or URLs run at moments of a deploy: pre_create, post_healthy,"
        " pre_switch, post_switch, pre_drain, pre_terminate, post_deploy, on_rollback",
    )
    gates: Annotated[GatesSpec, BeforeValidator(_none_is_empty)] = Field(
        default_factory=GatesSpec,
        description="what a release must show before it takes the traffic: load_test"
        " (Locust before the switch), metrics (Prometheus checks during a canary's bake)",
    )

    _path: Path | None = PrivateAttr(default=None)
    _resolved_vars: dict[str, Any] = PrivateAttr(default_factory=dict)
    _secret_names: frozenset[str] = PrivateAttr(default=frozenset())
    _environment: str | None = PrivateAttr(default=None)
    _environments: tuple[str, ...] = PrivateAttr(default=())
    _instances: tuple[str, ...] = PrivateAttr(default=())

    @field_validator("app")
    @classmethod
    def _app_name(cls, app: str) -> str:
        if not _NAME.match(app):
            raise ValueError(
                "use 2-40 lowercase letters, digits and dashes, starting with a letter"
            )
        return app

    @field_validator("regions")
    @classmethod
    def _unique_regions(cls, regions: list[str]) -> list[str]:
        seen: set[str] = set()
        for region in regions:
            if region in seen:
                raise ValueError(f"region {region!r} is listed twice")
            seen.add(region)
        return regions

    @model_validator(mode="after")
    def _canary_fits(self) -> Spec:
        size = self.rollout.canary.size
        if isinstance(size, int) and size > self.count:
            raise PydanticCustomError(
                "out_of_range",
                f"the canary cannot be larger than count ({self.count}), got {size}",
                {"at": "rollout.canary.size"},
            )
        return self

    @model_validator(mode="after")
    def _metrics_need_a_canary(self) -> Spec:
        if self.gates.metrics is not None and self.rollout.strategy != "canary":
            raise PydanticCustomError(
                "gates",
                "the metrics gate compares a canary with the release it bakes beside; use"
                " rollout.strategy: canary (with rollout.canary)",
                {"at": "gates.metrics"},
            )
        return self

    @model_validator(mode="after")
    def _provider_fits(self) -> Spec:
        """Options that name the spec's other parts must agree with them."""
        provider = self.provider
        if isinstance(provider, MemoryProvider):
            problems = memory_region_problems(provider.options, self.regions)
            if problems:
                at, problem = problems[0]
                raise PydanticCustomError(
                    "provider_options", problem, {"at": f"provider.options.{at}"}
                )
        if (
            isinstance(provider, LibcloudProvider)
            and self.dns is not None
            and provider.options.dns is None
        ):
            raise PydanticCustomError(
                "provider_options",
                "missing: failover (dns:) needs a DNS driver, e.g. `dns: {driver: route53}`",
                {"at": "provider.options.dns"},
            )
        if self.image.path is not None and not isinstance(provider, LocalProvider):
            raise PydanticCustomError(
                "provider_options",
                f"the {provider.name} provider cannot import a directory as an image; give"
                " image.name or image.id of an image in the cloud",
                {"at": "image.path"},
            )
        return self

    @model_validator(mode="after")
    def _failover_needs_dns(self) -> Spec:
        if self.failover is not None and (self.dns is None or len(self.regions) < 2):
            raise PydanticCustomError(
                "failover_needs_dns",
                "failover: moving the app between regions switches its DNS record: give"
                " dns: {zone: ..., record: ...} and at least two regions",
                {"at": "failover"},
            )
        return self

    @property
    def path(self) -> Path | None:
        """The file this spec was loaded from (None when built in code)."""
        return self._path

    @property
    def base_dir(self) -> Path:
        """Where relative paths in the spec (template, var files) are resolved from."""
        return self._path.parent if self._path else Path.cwd()

    @property
    def template_path(self) -> Path:
        """The template, which must be inside the spec's folder (``InputFileError``)."""
        return resolve_inside(self.base_dir, self.template)

    @property
    def image_dir(self) -> Path | None:
        """``image.path``, which must be inside the spec's folder (``InputFileError``)."""
        return None if self.image.path is None else resolve_inside(self.base_dir, self.image.path)

    @property
    def resolved_vars(self) -> dict[str, Any]:
        """Template variables with env/file references read (secrets included)."""
        return dict(self._resolved_vars)

    @property
    def secret_values(self) -> list[str]:
        """The values that must never appear in logs or output."""
        return [
            str(self._resolved_vars[name])
            for name in self._secret_names
            if name in self._resolved_vars and str(self._resolved_vars[name])
        ]

    @property
    def secret_names(self) -> frozenset[str]:
        return self._secret_names

    @property
    def environment(self) -> str | None:
        """The environment this spec was loaded for (``--env``); None: the base spec."""
        return self._environment

    @property
    def environments(self) -> tuple[str, ...]:
        """Every environment the spec file (or a file beside it) defines."""
        return self._environments

    @property
    def instances(self) -> tuple[str, ...]:
        """The app names of the base spec and each of its environments (this one
        included): the apps sharing its golden images."""
        return self._instances or (self.app,)

    def attach(
        self, path: Path | None, resolved_vars: dict[str, Any], secret_names: frozenset[str],
        *, environment: str | None = None, environments: tuple[str, ...] = (),
        instances: tuple[str, ...] = (),
    ) -> Spec:
        """Bind the spec to its file and resolved vars (done once by the loader)."""
        self._path = path
        self._resolved_vars = dict(resolved_vars)
        self._secret_names = secret_names
        self._environment = environment
        self._environments = environments
        self._instances = instances
        return self
