"""One-shot commands' metrics, for node_exporter's textfile collector.

``phoenix watch`` is what Prometheus scrapes. A deploy run by CI is over before any
scrape could see it, so with ``--metrics-file PATH`` (or ``PHOENIX_METRICS_FILE``) the
commands that change the cloud (deploy, rollback, repave, failover, failback) add what
they did to a file in the Prometheus text format, which node_exporter's textfile
collector exposes (or a CI job keeps as an artifact; a Pushgateway can take it with
``curl --data-binary @FILE``). The names are watch's, so one dashboard shows both:

* ``phoenix_deploys_total{app,action,outcome}`` and
  ``phoenix_api_requests_total{provider,service}``: counters, *accumulated* across runs
  (the file is read, added to, and replaced);
* ``phoenix_last_action_timestamp_seconds{app,action}``,
  ``phoenix_last_action_duration_seconds{app,action}`` and
  ``phoenix_last_action_succeeded{app,action}`` (1 or 0): the latest run of each.

Several deploys may share one file: a sidecar ``PATH.lock`` (flock) serialises the
read-add-replace, and the replacement is atomic (a scrape never sees half a file).
A file that is not in the text format is left alone: the command warns and its exit
code stays what the deploy made it, metrics being secondary to the deploy itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from phoenix.errors import InputError
from phoenix.files import atomic_write, locked

_COUNTERS = {
    "phoenix_deploys_total": ("Actions by outcome", ("app", "action", "outcome")),
    "phoenix_api_requests_total": ("Requests made to the provider's API, by service",
                                   ("provider", "service")),
}
_GAUGES = {
    "phoenix_last_action_timestamp_seconds": "When the app's latest action of this kind ended",
    "phoenix_last_action_duration_seconds": "How long it took",
    "phoenix_last_action_succeeded": "1 when it succeeded or changed nothing, else 0",
}
_SUCCEEDED = ("succeeded", "unchanged")

Samples = dict[str, dict[tuple[str, ...], float]]


def check_writable(path: Path) -> None:
    """Before any change to the cloud: the file's folder exists and can be written, so
    a typo fails at once instead of after a twenty-minute deploy."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise InputError(f"--metrics-file {path}: is a directory; give a file name")
    if not folder.is_dir():
        raise InputError(f"--metrics-file {path}: folder {folder} does not exist; create it")
    if not os.access(folder, os.W_OK):
        raise InputError(f"--metrics-file {path}: folder {folder} is not writable")


def record_action(
    path: Path,
    *,
    app: str,
    action: str,
    outcome: str,
    seconds: float,
    finished: datetime,
    api_calls: Mapping[tuple[str, str], int],
) -> None:
    """Add one finished action (and its API calls) to the file."""
    with locked(Path(f"{path}.lock")):
        samples = _read(path)
        counters = {name: samples.get(name, {}) for name in _COUNTERS}
        deploys = counters["phoenix_deploys_total"]
        key = (app, action, outcome)
        deploys[key] = deploys.get(key, 0.0) + 1
        requests = counters["phoenix_api_requests_total"]
        for labels, calls in api_calls.items():
            requests[labels] = requests.get(labels, 0.0) + calls
        gauges = {name: samples.get(name, {}) for name in _GAUGES}
        gauges["phoenix_last_action_timestamp_seconds"][(app, action)] = finished.timestamp()
        gauges["phoenix_last_action_duration_seconds"][(app, action)] = seconds
        gauges["phoenix_last_action_succeeded"][(app, action)] = float(outcome in _SUCCEEDED)
        _write(path, counters, gauges)


def read(path: Path) -> Samples:
    """The file's samples, name -> label values (in the names' label order) -> value."""
    return _read(path)


def _read(path: Path) -> Samples:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    found: Samples = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                names = _label_names(sample.name)
                if names is None:
                    continue
                labels = tuple(sample.labels.get(n, "") for n in names)
                found.setdefault(sample.name, {})[labels] = sample.value
    except ValueError as exc:
        raise InputError(
            f"--metrics-file {path}: not in the Prometheus text format ({exc});"
            " move it away or give another file"
        ) from exc
    return found


def _label_names(name: str) -> tuple[str, ...] | None:
    if name in _COUNTERS:
        return _COUNTERS[name][1]
    if name in _GAUGES:
        return ("app", "action")
    return None


def _write(path: Path, counters: Samples, gauges: Samples) -> None:
    """Replace the file atomically. Metric families, not live Counters: a counter's
    ``_created`` sample would say "now" on every run, as if it had been reset."""
    families: list[Metric] = []
    for name, values in counters.items():
        help_text, labels = _COUNTERS[name]
        counter = CounterMetricFamily(name, help_text, labels=labels)
        for key, value in sorted(values.items()):
            counter.add_metric(key, value)
        families.append(counter)
    for name, values in gauges.items():
        gauge = GaugeMetricFamily(name, _GAUGES[name], labels=("app", "action"))
        for key, value in sorted(values.items()):
            gauge.add_metric(key, value)
        families.append(gauge)
    registry = CollectorRegistry()
    registry.register(_Fixed(families))
    # Readable by node_exporter, which runs as another user (the umask permitting).
    atomic_write(path, generate_latest(registry), mode=0o644)


class _Fixed(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families
