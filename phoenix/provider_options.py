"""``provider.options``: one typed model per provider, chosen by ``provider.name``.

The options were plain mappings that each provider checked when it was opened, so
``validate`` said ok and ``plan`` then refused the same spec, without a file or line.
Declaring them here, in the core and without any SDK, lets the spec loader check them
with everything else (``file:line: provider.options.x: ...``), lets ``phoenix schema``
describe them, and gives every provider one parser (``parse_options``) for the options a
library caller passes as a plain mapping.

What depends on the machine rather than the spec (an environment variable that must be
set, HAProxy installed, a libcloud driver present) is still checked when the provider
opens, before anything is touched, and the error names the option.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from phoenix.errors import InputError
from phoenix.model_paths import field_names_at

_Model = TypeVar("_Model", bound=BaseModel)

DAY = 86400.0
MEMORY_STATE_FILE = ".phoenix/memory-cloud.json"
LOCAL_STATE_DIR = ".phoenix/local"
_MAX_NAME = 255
# Constructor arguments that carry secrets: they belong in env vars or a file.
SECRET_ARGS = frozenset({"key", "secret", "token", "password", "api_key", "secret_key"})


class _Options(BaseModel):
    """Unknown keys are errors; a number is a number (``true`` is not 1, ``"8080"`` is
    not a port)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _finite(value: float) -> float:
    if math.isnan(value) or math.isinf(value):
        raise ValueError("must be a finite number")
    return value


Seconds = Annotated[float, AfterValidator(_finite)]
Name = Annotated[str, Field(min_length=1, max_length=_MAX_NAME)]


def _container_name(value: str) -> str:
    if "/" in value:
        raise ValueError("a bucket/container name cannot contain '/'")
    return value


ContainerName = Annotated[str, Field(min_length=1, max_length=_MAX_NAME),
                          AfterValidator(_container_name)]


# --- memory -----------------------------------------------------------------------------


class MemoryImage(_Options):
    id: Name | None = Field(default=None, description="default: img-<name>")
    name: Name
    properties: dict[str, str | int | float | bool] = Field(default_factory=dict)
    created_at: datetime | None = Field(
        default=None, strict=False, description="ISO 8601; default: now"
    )


class MemoryFlavor(_Options):
    id: Name | None = Field(default=None, description="default: flv-<name>")
    name: Name
    vcpus: int = Field(default=1, ge=0, le=1_000_000)
    ram_mb: int = Field(default=512, ge=0, le=1_000_000_000)


class MemoryLimits(_Options):
    """A region's quota; a missing limit is unlimited."""

    instances: int | None = Field(default=None, ge=0, le=1_000_000)
    vcpus: int | None = Field(default=None, ge=0, le=1_000_000_000)
    ram_mb: int | None = Field(default=None, ge=0, le=1_000_000_000_000)


def _rate() -> Any:
    return Field(default=0.0, ge=0.0, le=1.0, description="a fraction, 0 to 1")


class MemoryFaults(_Options):
    """Faults injected into the memory cloud (``phoenix.providers.memory.Faults``)."""

    api_error_rate: Seconds = _rate()
    lost_response_rate: Seconds = _rate()
    lost_read_rate: Seconds = _rate()
    boot_fail_rate: Seconds = _rate()
    boot_fail_images: list[Name] = Field(default_factory=list)
    boot_fail_names: list[Name] = Field(default_factory=list)
    unhealthy_images: list[Name] = Field(default_factory=list)
    unhealthy_nodes: list[Name] = Field(default_factory=list)
    down_regions: list[Name] = Field(default_factory=list)
    no_host_regions: list[Name] = Field(default_factory=list)
    unhealthy_regions: list[Name] = Field(default_factory=list)
    slow_boot_seconds: Seconds = Field(default=0.0, ge=0.0, le=DAY)
    retry_after: Seconds | None = Field(default=None, ge=0.0, le=DAY)


class MemoryOptions(_Options):
    """The in-memory cloud (tests, demos, fault campaigns)."""

    state_file: str | None = Field(
        default=MEMORY_STATE_FILE,
        max_length=4096,
        description="relative to the current directory; null or '' keeps the cloud in"
        " this process only",
    )
    boot_seconds: Seconds = Field(default=1.0, ge=0.0, le=DAY)
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    images: list[MemoryImage] | None = Field(
        default=None, max_length=10_000, description="default: the image 'golden'"
    )
    flavors: list[MemoryFlavor] | None = Field(
        default=None, max_length=10_000, description="default: the flavor 'm1.small'"
    )
    quota: dict[str, MemoryLimits] | None = Field(default=None, description="per region")
    faults: MemoryFaults = Field(default_factory=MemoryFaults)


def memory_region_problems(options: MemoryOptions, regions: Sequence[str]) -> list[tuple[str, str]]:
    """(option path, problem) for each region the options name that the spec does not."""
    problems: list[tuple[str, str]] = []
    listed = ", ".join(regions)
    for region in options.quota or {}:
        if region not in regions:
            problems.append((f"quota.{region}", f"not one of the spec's regions ({listed})"))
    unknown = sorted(set(options.faults.down_regions) - set(regions))
    if unknown:
        problems.append(
            ("faults.down_regions", f"not among the spec's regions: {', '.join(unknown)}")
        )
    return problems


# --- local ------------------------------------------------------------------------------


class LocalOptions(_Options):
    """Real processes on loopback addresses behind a real balancer, on this machine."""

    state_dir: str = Field(
        default=LOCAL_STATE_DIR,
        min_length=1,
        max_length=4096,
        description="where everything the local cloud keeps lives; relative to the"
        " current directory",
    )
    balancer: Literal["auto", "haproxy", "builtin"] = Field(
        default="auto", description="auto: HAProxy when installed, else the built-in one"
    )
    lb_port: int = Field(default=8080, ge=1, le=65535, description="1-65535")
    max_nodes: int = Field(
        default=64, ge=1, le=64516, description="nodes per region (loopback addresses)"
    )
    flavors: list[Name] = Field(default_factory=lambda: ["local"], min_length=1, max_length=100)


# --- openstack --------------------------------------------------------------------------


class OpenStackOptions(_Options):
    interface: Literal["public", "internal", "admin"] | None = None
    api_timeout: Seconds | None = Field(default=None, gt=0.0, le=DAY, description="seconds")
    container: ContainerName = Field(
        default="phoenix", description="Swift container for release records and the lock"
    )
    lb_wait_timeout: Seconds = Field(
        default=120.0, ge=0.0, le=DAY,
        description="seconds to wait for a load balancer in PENDING_*",
    )
    store_region: Name | None = Field(default=None, description="default: the first region")
    dns_region: Name | None = Field(
        default=None, description="default: the first region whose Designate answers"
    )
    store_dir: str | None = Field(
        default=None, min_length=1, max_length=4096,
        description="keep records and the lock in this directory instead of Swift (then"
        " only this machine can resume or roll back)",
    )


# --- libcloud ---------------------------------------------------------------------------


def _no_secret_args(args: dict[str, Any]) -> dict[str, Any]:
    for arg in args:
        if str(arg).lower() in SECRET_ARGS:
            raise PydanticCustomError(
                "secret_in_spec",
                "credentials never go in the spec; use credentials.key_env/secret_env or"
                " credentials.file",
                {"at": str(arg)},
            )
    return args


DriverArgs = Annotated[dict[str, Any], AfterValidator(_no_secret_args)]


class LibcloudService(_Options):
    driver: Name = Field(description="libcloud's Provider constant, e.g. ec2, elb, route53")
    args: DriverArgs = Field(
        default_factory=dict,
        description="the driver constructor's arguments (host, port, secure...), never"
        " credentials",
    )


class LibcloudStorage(LibcloudService):
    container: ContainerName = Field(
        default="phoenix", description="bucket/container for release records and the lock"
    )
    region: Name | None = Field(default=None, description="default: the first region")


class LibcloudCredentials(_Options):
    """Where the credentials are, never the credentials themselves."""

    key_env: Name | None = Field(default=None, description="the variable with the access key")
    secret_env: Name | None = None
    token_env: Name | None = None
    file: str | None = Field(
        default=None, min_length=1, max_length=4096,
        description="a YAML file with key, secret[, token]",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_secrets(cls, raw: Any) -> Any:
        for key in raw if isinstance(raw, dict) else ():
            if str(key).lower() in SECRET_ARGS:
                raise PydanticCustomError(
                    "secret_in_spec",
                    "unknown key (secrets never go in the spec): name the variable with"
                    " key_env/secret_env, or a file",
                    {"at": str(key)},
                )
        return raw

    @model_validator(mode="after")
    def _one_source(self) -> LibcloudCredentials:
        if self.file is None and self.key_env is None:
            raise ValueError(
                "give {key_env: VAR, secret_env: VAR} or {file: path} (never the secret"
                " itself)"
            )
        if self.file is not None and self.key_env is not None:
            raise ValueError("give key_env/secret_env or file, not both")
        return self


class LibcloudOptions(_Options):
    """Any cloud libcloud drives; see ``phoenix.providers.libcloud.config``."""

    credentials: LibcloudCredentials
    compute: LibcloudService
    load_balancer: LibcloudService
    storage: LibcloudStorage
    dns: LibcloudService | None = Field(default=None, description="needed with spec.dns")


# --- parsing a plain mapping --------------------------------------------------------------


def parse_options(model: type[_Model], raw: Mapping[str, Any] | _Model | None) -> _Model:
    """``raw`` as ``model``; raises ``InputError`` naming each wrong option
    (``provider.options.images[0].name: ...``)."""
    if isinstance(raw, model):
        return raw
    try:
        return model.model_validate({} if raw is None else raw)
    except ValidationError as exc:
        raise InputError("\n".join(_problems(model, exc))) from None


def _problems(model: type[BaseModel], exc: ValidationError) -> list[str]:
    lines = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        at = (error.get("ctx") or {}).get("at")
        if isinstance(at, str):  # a check on a mapping that names the key it is about
            loc = (*loc, *at.split("."))
        where = option_path(loc)
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            known = ", ".join(sorted(field_names_at(model, error["loc"][:-1])))
            message = f"unknown key (known: {known})"
        elif error["type"] == "missing":
            message = "required option missing"
        value = error.get("input")
        if error["type"] not in ("missing", "extra_forbidden", "value_error") and isinstance(
            value, str | int | float | bool
        ) and len(repr(value)) <= 60:
            message += f", got {value!r}"
        name = "provider.options" + (f".{where}" if where else "")
        lines.append(f"{name}: {message}")
    return lines


def option_path(loc: Sequence[int | str]) -> str:
    """``("images", 0, "name")`` -> ``images[0].name``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
