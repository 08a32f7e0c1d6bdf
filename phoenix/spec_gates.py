"""``gates:`` in the spec: what a release must show before it takes the traffic.

* ``load_test``: Locust, headless, against the new nodes before the switch
  (``phoenix.load_gate``); thresholds on the failure ratio and the p95 latency.
* ``metrics``: during a canary's bake, PromQL checks of the canary against the baseline
  (``phoenix.metric_gate``).

A gate that is not met fails the run, which rolls back: the old release keeps serving.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from phoenix.spec_types import HOUR, MINUTE, Duration
from phoenix.spec_types import Strict as _Strict
from phoenix.spec_types import within as _within

_URL = re.compile(r"^https?://[^\s/?#@]+(?:/\S*)?$", re.IGNORECASE)
RELEASE_PLACEHOLDER = "{{ release }}"


class LoadTestGate(_Strict):
    """Locust against the new release's nodes (all of them, round robin) before the switch."""

    locustfile: str = Field(min_length=1, description="relative to the spec's folder")
    users: int = Field(default=10, ge=1, le=1000, description="simulated users, 1-1000")
    spawn_rate: float = Field(default=10.0, gt=0, le=1000,
                              description="users started per second")
    duration: Annotated[Duration, _within(1.0, HOUR)] = Field(
        default=20.0, description="how long the load runs; 1s-1h")
    max_failure_ratio: float = Field(default=0.01, ge=0, le=1,
                                     description="failed requests / requests, 0-1")
    max_p95: Annotated[Duration, _within(0.001, MINUTE)] = Field(
        default=1.0, description="the 95th percentile response time at most, e.g. 500ms;"
        " 1ms-1m")


class MetricCheckSpec(_Strict):
    """One PromQL check; ``{{ release }}`` in the query stands for the release asked about."""

    name: str = Field(min_length=1, max_length=64)
    query: str = Field(min_length=1, max_length=4000)
    max: float | None = Field(default=None, description="the canary's value at most")
    max_vs_baseline: float | None = Field(
        default=None, gt=0, description="the canary's value at most this times the"
        " baseline's (plus tolerance)")
    tolerance: float = Field(default=0.0, ge=0)

    @field_validator("query")
    @classmethod
    def _names_the_release(cls, query: str) -> str:
        if RELEASE_PLACEHOLDER not in query:
            raise ValueError(f"write {RELEASE_PLACEHOLDER} where the release goes, e.g."
                             f' http_requests_total{{release="{RELEASE_PLACEHOLDER}"}}')
        return query

    @model_validator(mode="after")
    def _a_limit(self) -> MetricCheckSpec:
        if self.max is None and self.max_vs_baseline is None:
            raise ValueError("give max, max_vs_baseline or both")
        return self


class MetricGate(_Strict):
    """Prometheus checks of the canary, asked every ``interval`` during the bake."""

    prometheus: str = Field(max_length=2000, description="e.g. http://127.0.0.1:9090")
    interval: Annotated[Duration, _within(1.0, 10 * MINUTE)] = Field(
        default=10.0, description="how often to ask; 1s-10m")
    checks: list[MetricCheckSpec] = Field(min_length=1, max_length=20)

    @field_validator("prometheus")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not _URL.match(url):
            raise ValueError("use an http:// or https:// URL with a host, e.g."
                             " http://127.0.0.1:9090")
        return url


class GatesSpec(_Strict):
    """What a release must show before it takes the traffic (see the module docstring)."""

    load_test: LoadTestGate | None = None
    metrics: MetricGate | None = None
