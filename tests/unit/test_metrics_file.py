"""Issue 14: one-shot commands add their metrics to ``--metrics-file`` (node_exporter's
textfile collector): counters accumulate across runs and writers, the latest run's
gauges replace the previous ones, the file passes ``promtool check metrics``, and a bad
path fails before the cloud is touched."""

from __future__ import annotations

import shutil
import subprocess
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from phoenix import textfile
from phoenix.errors import ExitCode, InputError
from tests.unit.test_cli import Project, run
from tests.unit.test_cli import project as project  # the fixture

WHEN = datetime(2026, 12, 1, tzinfo=UTC)


def _record(path: Path, outcome: str = "succeeded", app: str = "web", **calls: int) -> None:
    textfile.record_action(path, app=app, action="deploy", outcome=outcome, seconds=12.5,
                           finished=WHEN, api_calls={("memory", k): v for k, v in calls.items()})


def test_counters_accumulate_and_the_last_run_sets_the_gauges(tmp_path: Path) -> None:
    path = tmp_path / "phoenix.prom"
    _record(path, compute=7, store=3)
    _record(path, outcome="rolled-back", compute=5)

    samples = textfile.read(path)
    assert samples["phoenix_deploys_total"] == {("web", "deploy", "succeeded"): 1.0,
                                                ("web", "deploy", "rolled-back"): 1.0}
    assert samples["phoenix_api_requests_total"] == {("memory", "compute"): 12.0,
                                                     ("memory", "store"): 3.0}
    assert samples["phoenix_last_action_succeeded"] == {("web", "deploy"): 0.0}
    assert samples["phoenix_last_action_duration_seconds"] == {("web", "deploy"): 12.5}
    assert samples["phoenix_last_action_timestamp_seconds"] == {("web", "deploy"): WHEN.timestamp()}


def test_writers_at_once_lose_no_count(tmp_path: Path) -> None:
    """CI jobs of several apps may share one file: the read-add-replace is serialised."""
    path = tmp_path / "phoenix.prom"

    def writer(app: str) -> None:
        for _ in range(10):
            _record(path, app=app, compute=1)

    threads = [threading.Thread(target=writer, args=(f"app{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    samples = textfile.read(path)
    assert samples["phoenix_api_requests_total"] == {("memory", "compute"): 60.0}
    assert sum(samples["phoenix_deploys_total"].values()) == 60.0


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool missing (apt-get install prometheus)")
def test_the_file_passes_promtool(tmp_path: Path) -> None:
    path = tmp_path / "phoenix.prom"
    _record(path, compute=7)
    _record(path, outcome="failed", compute=1)
    checked = subprocess.run(["promtool", "check", "metrics"], input=path.read_text(),
                             capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_file_in_another_format_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "phoenix.prom"
    path.write_text("this is { not prometheus\n")
    with pytest.raises(InputError, match="not in the Prometheus text format"):
        _record(path, compute=1)
    assert path.read_text() == "this is { not prometheus\n"


def test_deploy_with_a_metrics_file_records_each_run(project: Project, tmp_path: Path) -> None:
    path = tmp_path / "metrics" / "phoenix.prom"
    path.parent.mkdir()
    first = run("--metrics-file", path, "deploy", project.spec)
    again = run("--metrics-file", path, "deploy", project.spec)

    assert first.exit_code == 0 and again.exit_code == 0, first.stderr + again.stderr
    samples = textfile.read(path)
    assert samples["phoenix_deploys_total"] == {("demo", "deploy", "succeeded"): 1.0,
                                                ("demo", "deploy", "unchanged"): 1.0}
    requests = samples["phoenix_api_requests_total"]
    assert requests[("memory", "compute")] > 0 and requests[("memory", "load_balancer")] > 0
    assert samples["phoenix_last_action_succeeded"] == {("demo", "deploy"): 1.0}


def test_a_failed_deploy_is_recorded_too(project: Project, tmp_path: Path) -> None:
    path = tmp_path / "phoenix.prom"
    project.write_spec(faults="    faults:\n      unhealthy_images: [img-golden]\n",
                       health_deadline="0.3s")
    failed = run("--metrics-file", path, "deploy", project.spec)

    assert failed.exit_code == ExitCode.DEPLOY_FAILED, failed.stderr
    samples = textfile.read(path)
    assert samples["phoenix_last_action_succeeded"] == {("demo", "deploy"): 0.0}
    assert list(samples["phoenix_deploys_total"]) == [("demo", "deploy", "rolled-back")]


def test_a_metrics_file_in_a_missing_folder_fails_before_the_cloud_is_touched(
    project: Project, tmp_path: Path
) -> None:
    result = run("--metrics-file", tmp_path / "nope" / "phoenix.prom", "deploy", project.spec)

    assert result.exit_code == ExitCode.BAD_INPUT
    assert "--metrics-file" in result.stderr and "does not exist" in result.stderr
    assert not project.state.exists()  # the memory cloud was never opened
