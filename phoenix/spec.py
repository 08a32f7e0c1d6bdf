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
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    field_validator,
    model_validator,
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$")


def parse_duration(value: Any) -> float:
    """Accept seconds as a number or a string like ``30s``, ``5m``, ``1.5h``, ``7d``."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 5m or 2h, got a boolean")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError(f"expected a duration like 30s, 5m or 2h, got {value!r}")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def parse_count_or_percent(value: Any) -> int | str:
    """Accept a non-negative whole number or a percentage string such as ``25%``."""
    if isinstance(value, bool):
        raise ValueError("expected a count like 1 or a percentage like 25%")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("cannot be negative")
        return value
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+", text):
            return int(text)
        if re.fullmatch(r"\d+%", text):
            if int(text[:-1]) > 100:
                raise ValueError("a percentage cannot exceed 100%")
            return text
    raise ValueError(f"expected a count like 1 or a percentage like 25%, got {value!r}")


Duration = Annotated[float, BeforeValidator(parse_duration)]
CountOrPercent = Annotated[int | str, BeforeValidator(parse_count_or_percent)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderSpec(_Strict):
    """Which backend to use and how to connect to it (credentials never go here)."""

    name: Literal["memory", "local", "openstack", "libcloud"] = "local"
    cloud: str | None = Field(
        default=None, description="OpenStack: the cloud's name in clouds.yaml"
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="provider-specific settings"
    )


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
    max_age: Duration | None = Field(
        default=None, description="refuse images older than this (e.g. 30d)"
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


class HttpCheck(_Strict):
    path: str = "/healthz"
    port: int = Field(ge=1, le=65535)
    expect: int = Field(default=200, ge=100, le=599, description="expected HTTP status")

    @field_validator("path")
    @classmethod
    def _absolute(cls, path: str) -> str:
        if not path.startswith("/"):
            raise ValueError("must start with /")
        return path


class TcpCheck(_Strict):
    port: int = Field(ge=1, le=65535)


class HealthSpec(_Strict):
    """How a node proves it is healthy before it takes traffic."""

    mode: Literal["active", "provider"] = Field(
        default="active",
        description="active: Phoenix probes each node; provider: trust the provider's status",
    )
    http: HttpCheck | None = None
    tcp: TcpCheck | None = None
    interval: Duration = 2.0
    timeout: Duration = 1.0
    healthy_threshold: int = Field(default=2, ge=1, le=100)
    unhealthy_threshold: int = Field(default=3, ge=1, le=100)
    grace: Duration = Field(default=0.0, description="failures in this window do not count")
    deadline: Duration = Field(
        default=300.0, description="a node not healthy this long after creation fails the deploy"
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
    size: CountOrPercent = 1
    bake: Duration = 60.0


class RolloutSpec(_Strict):
    strategy: Literal["blue-green", "rolling", "canary"] = "blue-green"
    max_surge: CountOrPercent = "25%"
    max_unavailable: CountOrPercent = 0
    canary: CanarySpec = Field(default_factory=CanarySpec)
    drain_timeout: Duration = 30.0
    keep_previous: int = Field(
        default=0, ge=0, le=10, description="previous releases whose nodes stay up (out of the LB)"
    )
    max_boot_retries: int = Field(default=2, ge=0, le=10)
    deadline: Duration = Field(default=1800.0, description="the whole deploy's deadline")


class LoadBalancerSpec(_Strict):
    pool: str = Field(min_length=1)
    member_port: int = Field(ge=1, le=65535)


class DnsSpec(_Strict):
    zone: str = Field(min_length=1)
    record: str = Field(min_length=1)
    ttl: int = Field(default=60, ge=1, le=86400)


class Spec(_Strict):
    """A validated ``phoenix.yaml``."""

    app: str = Field(description="lowercase letters, digits and dashes; names every server")
    provider: ProviderSpec = Field(default_factory=ProviderSpec)
    regions: list[str] = Field(min_length=1, description="in priority order; first is primary")
    image: ImageSpec
    flavor: str = Field(min_length=1)
    network: str | None = None
    count: int = Field(ge=1, le=1000)
    server: ServerSpec = Field(default_factory=ServerSpec)
    template: str = Field(min_length=1, description="cloud-init template, relative to the spec")
    vars: dict[str, VarValue] = Field(default_factory=dict)
    health: HealthSpec
    rollout: RolloutSpec = Field(default_factory=RolloutSpec)
    load_balancer: LoadBalancerSpec
    dns: DnsSpec | None = None

    _path: Path | None = PrivateAttr(default=None)
    _resolved_vars: dict[str, Any] = PrivateAttr(default_factory=dict)
    _secret_names: frozenset[str] = PrivateAttr(default=frozenset())

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
            if not region:
                raise ValueError("a region name cannot be empty")
            if region in seen:
                raise ValueError(f"region {region!r} is listed twice")
            seen.add(region)
        return regions

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
        return (self.base_dir / self.template).resolve()

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

    def attach(
        self, path: Path | None, resolved_vars: dict[str, Any], secret_names: frozenset[str]
    ) -> Spec:
        """Bind the spec to its file and resolved vars (done once by the loader)."""
        self._path = path
        self._resolved_vars = dict(resolved_vars)
        self._secret_names = secret_names
        return self
