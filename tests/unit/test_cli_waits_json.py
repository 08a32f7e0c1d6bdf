"""``--output json`` carries the typed waits: the reason code, the node and the text of
what a failed deploy still waited for when its deadline passed (the memory cloud, the
CLI in-process, as in test_cli)."""

from __future__ import annotations

import time

from phoenix.errors import ExitCode
from tests.unit.test_cli import Project, run_json
from tests.unit.test_cli import project as project  # the fixture


def test_a_deploy_past_its_deadline_reports_its_waits_as_data(project: Project) -> None:
    project.write_spec(faults="    faults: {slow_boot_seconds: 1000}\n")
    text = project.spec.read_text(encoding="utf-8")
    project.spec.write_text(
        text.replace("  drain_timeout: 0.1s\n", "  drain_timeout: 0.1s\n  deadline: 1s\n"),
        encoding="utf-8")

    began = time.monotonic()
    result, data = run_json("deploy", project.spec)

    assert result.exit_code == ExitCode.DEPLOY_FAILED, result.stderr
    assert time.monotonic() - began < 60
    assert "rollout.deadline" in data["reason"]
    nodes = [f"demo-{data['release']}-{i}" for i in range(3)]
    assert data["waits"] == [
        {"reason": "booting", "node": name, "text": f"{name} to boot"} for name in nodes]
