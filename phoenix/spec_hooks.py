"""``hooks:`` in the spec: commands or URLs run at moments of a run (``phoenix.hooks``)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from phoenix.spec_types import HOUR, Duration
from phoenix.spec_types import Strict as _Strict
from phoenix.spec_types import within as _within

HOOK_MOMENTS = (
    "pre_create", "post_healthy", "pre_switch", "post_switch",
    "pre_drain", "pre_terminate", "post_deploy", "on_rollback",
)
"""The moments of a run a hook can attach to, in the order a deploy meets them."""
NODE_MOMENTS = frozenset({"pre_create", "post_healthy", "pre_drain", "pre_terminate"})
"""The moments that concern one node (the others concern the release or the run)."""
_HOOK_URL = re.compile(r"^https?://[^\s/?#@]+(?:[/?#]\S*)?$", re.IGNORECASE)


class HookSpec(_Strict):
    """One hook: a shell command or an HTTP POST, run from the deploying machine."""

    run: str | None = Field(
        default=None, min_length=1, max_length=10_000,
        description="a shell command (/bin/sh -c), run in the spec's folder with the facts"
        " as PHOENIX_* variables and as JSON on stdin",
    )
    url: str | None = Field(
        default=None, max_length=2000,
        description="an http:// or https:// URL the facts are POSTed to as JSON; a 2xx"
        " answer is success",
    )
    timeout: Annotated[Duration, _within(0.1, HOUR)] = Field(
        default=60.0, description="how long the hook may take; 100ms to 1h (a shell hook's"
        " whole process group is killed then)",
    )
    on_failure: Literal["abort", "continue"] = Field(
        default="abort", description="abort: the run fails and rolls back (the old release"
        " serving); continue: a warning. A restore never aborts",
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None and not _HOOK_URL.match(url):
            raise ValueError("use an http:// or https:// URL with a host, e.g."
                             " http://deploys.example.com/hook")
        return url

    @model_validator(mode="after")
    def _run_or_url(self) -> HookSpec:
        if (self.run is None) == (self.url is None):
            raise ValueError("give exactly one of run or url")
        return self

    def describe(self) -> str:
        """The hook as history shows it (a long command cut short)."""
        text = f"run: {self.run}" if self.run is not None else f"url: {self.url}"
        return text if len(text) <= 80 else text[:77] + "..."


HookList = list[HookSpec]


def _none_is_empty(value: Any) -> Any:
    """``hooks:`` with every hook commented out under it (YAML null) means no hooks."""
    return {} if value is None else value


class HooksSpec(_Strict):
    """Commands or URLs run at moments of a run (``HOOK_MOMENTS``), each moment's in order.

    Per node: ``pre_create``, ``post_healthy`` (proven healthy, before it joins the
    pool), ``pre_drain``, ``pre_terminate`` (a node that has an address, before its
    delete: back its data up, ship its logs). Per run: ``pre_switch`` (before the new
    release's first member joins), ``post_switch`` (the pool serves only it),
    ``post_deploy`` (the run succeeded), ``on_rollback`` (the old release serves again)."""

    pre_create: HookList = Field(default_factory=list, max_length=20)
    post_healthy: HookList = Field(default_factory=list, max_length=20)
    pre_switch: HookList = Field(default_factory=list, max_length=20)
    post_switch: HookList = Field(default_factory=list, max_length=20)
    pre_drain: HookList = Field(default_factory=list, max_length=20)
    pre_terminate: HookList = Field(default_factory=list, max_length=20)
    post_deploy: HookList = Field(default_factory=list, max_length=20)
    on_rollback: HookList = Field(default_factory=list, max_length=20)

    def at(self, moment: str) -> list[HookSpec]:
        """The hooks of ``moment`` (one of ``HOOK_MOMENTS``)."""
        hooks: list[HookSpec] = getattr(self, moment)
        return hooks

    @property
    def any(self) -> bool:
        return any(self.at(moment) for moment in HOOK_MOMENTS)
