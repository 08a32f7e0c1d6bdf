"""A load-test gate: Locust, headless, against a release before it takes the traffic.

A release is proven only once it has carried load (../shared/seeds: Locust in the
pipeline; Flagger's load tester). The gate runs the spec's locustfile with Locust's own
CLI (``python -m locust --headless``, the ``[load]`` extra) for a fixed time against a
URL, reads Locust's CSV statistics (the ``Aggregated`` row), and judges two thresholds:
the failure ratio and the 95th percentile response time. A miss is a failed gate, which
the deploy answers with a rollback.

Locust runs as a child process in a folder of its own (its CSV files), in its own
process group, and is killed whole when it overruns its time by a margin: a hung load
test must not hold a deploy past its deadline.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from phoenix import processes
from phoenix.errors import InputError

# Locust needs a moment to start and to stop its users after the run time.
_START_AND_STOP_SECONDS = 30.0
_LOG_TAIL = 2000


@dataclass(frozen=True)
class LoadTest:
    """What to run and what it must show."""

    locustfile: Path
    users: int = 10
    spawn_rate: float = 10.0
    seconds: float = 20.0
    max_failure_ratio: float = 0.01
    max_p95_ms: float = 1000.0


@dataclass(frozen=True)
class LoadResult:
    """What Locust measured, and the verdict."""

    host: str
    requests: int
    failures: int
    p95_ms: float | None
    passed: bool
    detail: str

    @property
    def failure_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 1.0


def run_load_test(test: LoadTest, host: str, *, cwd: Path,
                  env: dict[str, str] | None = None) -> LoadResult:
    """Run ``test`` against ``host`` (``http://address:port``) and judge it. ``cwd``:
    where the locustfile's relative imports and files are found (the spec's folder)."""
    _require_locust()
    with tempfile.TemporaryDirectory(prefix="phoenix-load-") as folder:
        prefix = Path(folder) / "run"
        command = [
            sys.executable, "-m", "locust", "-f", str(test.locustfile), "--headless",
            "-u", str(test.users), "-r", f"{test.spawn_rate:g}", "-t", f"{test.seconds:g}s",
            "--host", host, "--csv", str(prefix), "--only-summary", "--exit-code-on-error",
            "0", "--loglevel", "WARNING",
        ]
        process = subprocess.Popen(
            command, cwd=cwd, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            output, _ = process.communicate(timeout=test.seconds + _START_AND_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            processes.kill(lambda: processes.find(group=process.pid), timeout=5.0,
                           group=process.pid)
            process.communicate()
            return LoadResult(host, 0, 0, None, False,
                              f"locust did not finish within {test.seconds:g}s plus"
                              f" {_START_AND_STOP_SECONDS:g}s; killed")
        log = output.decode("utf-8", "replace")[-_LOG_TAIL:]
        stats = Path(f"{prefix}_stats.csv")
        if process.returncode != 0 or not stats.is_file():
            return LoadResult(host, 0, 0, None, False,
                              f"locust exited with {process.returncode}: {log.strip()}")
        return judge(test, host, _aggregated(stats))


def judge(test: LoadTest, host: str, row: dict[str, str]) -> LoadResult:
    """The verdict on Locust's ``Aggregated`` row."""
    requests = int(row.get("Request Count") or 0)
    failures = int(row.get("Failure Count") or 0)
    p95_text = row.get("95%") or ""
    p95 = float(p95_text) if p95_text not in ("", "N/A") else None
    misses = []
    if requests == 0:
        misses.append("no request was made")
    ratio = failures / requests if requests else 1.0
    if ratio > test.max_failure_ratio:
        misses.append(f"failure ratio {ratio:.2%} > {test.max_failure_ratio:.2%}")
    if p95 is None or p95 > test.max_p95_ms:
        misses.append(f"p95 {p95 if p95 is not None else '?'} ms > {test.max_p95_ms:g} ms")
    summary = (f"{requests} requests, {failures} failed ({ratio:.2%}),"
               f" p95 {p95 if p95 is not None else '?'} ms")
    return LoadResult(host, requests, failures, p95, not misses,
                      summary if not misses else f"{summary}: " + "; ".join(misses))


def _aggregated(stats: Path) -> dict[str, str]:
    with stats.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row.get("Name") == "Aggregated":
                return row
    return {}


def _require_locust() -> None:
    # Looked up, not imported: importing Locust patches this process with gevent.
    if importlib.util.find_spec("locust") is None:
        raise InputError(
            "gates.load_test: Locust is not installed; install the load extra"
            " (pip install 'phoenix-deploy[load]')"
        )
