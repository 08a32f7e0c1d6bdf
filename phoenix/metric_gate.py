"""A metric gate: during a canary's bake, ask Prometheus whether the canary is worse.

One health endpoint says a node is up; telemetry says whether it serves well (Kayenta's
canary analysis, Flagger's metric templates). A check is a PromQL query written with
``{{ release }}`` where the release goes (e.g. ``sum(rate(http_requests_total{release=
"{{ release }}",code=~"5.."}[1m])) / sum(rate(http_requests_total{release=
"{{ release }}"}[1m]))``). It is asked for the canary's release and, when the check
compares, for the baseline (the release serving beside it), then judged:

* ``max``: the canary's value must not exceed it (an absolute ceiling);
* ``max_vs_baseline``: nor the baseline's value times this factor, plus ``tolerance``
  (an error ratio of 0 beside 0 is fine; 0.02 beside 0.001 is not).

A query that returns nothing (no traffic yet, a label that does not match) is not a
pass: the check is undecided, and the gate asks again until its time is up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import httpx

from phoenix.errors import Transient


@dataclass(frozen=True)
class MetricCheck:
    """One PromQL check of the canary (see the module docstring)."""

    name: str
    query: str
    max: float | None = None
    max_vs_baseline: float | None = None
    tolerance: float = 0.0


@dataclass(frozen=True)
class MetricVerdict:
    """One check's answer: None for ``passed`` while undecided (no data yet)."""

    check: str
    canary: float | None
    baseline: float | None
    passed: bool | None
    detail: str


def promql_for(check: MetricCheck, release: str) -> str:
    """The check's query for ``release`` (release ids are ``r<seq>-<hex>``: no quoting
    is needed, and none is possible to smuggle in)."""
    return check.query.replace("{{ release }}", release).replace("{{release}}", release)


def query_value(prometheus: str, promql: str, *, timeout: float = 5.0) -> float | None:
    """The scalar value of an instant query (the first series of a vector); None when
    the query returns nothing. Raises ``Transient`` when Prometheus does not answer."""
    try:
        response = httpx.get(f"{prometheus.rstrip('/')}/api/v1/query",
                             params={"query": promql}, timeout=timeout)
        answer = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise Transient(f"prometheus at {prometheus}: {exc}") from exc
    if answer.get("status") != "success":
        raise Transient(f"prometheus at {prometheus}: {answer.get('error', answer)}")
    data = answer.get("data", {})
    result = data.get("result")
    if data.get("resultType") == "scalar" and isinstance(result, list):
        value = result[1]
    elif data.get("resultType") == "vector" and result:
        value = result[0]["value"][1]
    else:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def evaluate(check: MetricCheck, prometheus: str, *, canary: str,
             baseline: str | None) -> MetricVerdict:
    """Ask Prometheus about ``canary`` (and ``baseline`` when the check compares) and
    judge."""
    canary_value = query_value(prometheus, promql_for(check, canary))
    baseline_value = None
    if check.max_vs_baseline is not None and baseline is not None:
        baseline_value = query_value(prometheus, promql_for(check, baseline))
    return judge(check, canary_value, baseline_value,
                 compares=check.max_vs_baseline is not None and baseline is not None)


def judge(check: MetricCheck, canary: float | None, baseline: float | None, *,
          compares: bool) -> MetricVerdict:
    """The verdict on the values (pure)."""
    if canary is None or (compares and baseline is None):
        return MetricVerdict(check.name, canary, baseline, None,
                             f"{check.name}: no data yet")
    misses = []
    if check.max is not None and canary > check.max:
        misses.append(f"{canary:g} > max {check.max:g}")
    if compares and check.max_vs_baseline is not None and baseline is not None:
        limit = baseline * check.max_vs_baseline + check.tolerance
        if canary > limit:
            misses.append(f"{canary:g} > baseline {baseline:g} x {check.max_vs_baseline:g}"
                          f" + {check.tolerance:g}")
    shown = f"{check.name}: canary {canary:g}" + (
        f", baseline {baseline:g}" if baseline is not None else "")
    return MetricVerdict(check.name, canary, baseline, not misses,
                         shown if not misses else f"{shown}: " + "; ".join(misses))
