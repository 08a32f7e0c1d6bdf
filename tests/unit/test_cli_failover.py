"""The failover commands of the CLI against the memory cloud: a deploy that lands in the
next region prints the regions it tried, `failover`/`failback` move the DNS record,
`status` shows where it points, and bad requests exit 2 before anything changes."""

from __future__ import annotations

import pytest

from phoenix.errors import ExitCode
from tests.unit.test_cli import Project, project, run, run_json

__all__ = ["project"]  # the fixture, shared with test_cli

DNS = "dns: {zone: example.com., record: demo, ttl: 1}\n"


def with_dns(project: Project, *, faults: str = "") -> None:
    project.write_spec(faults=faults)
    project.spec.write_text(project.spec.read_text() + DNS)


def test_a_deploy_refused_by_quota_lands_in_the_next_region(project: Project) -> None:
    with_dns(project, faults="    quota:\n      region-a: {instances: 1}\n")

    result, data = run_json("deploy", project.spec)

    assert result.exit_code == 0, result.stderr
    assert data["region"] == "region-b"
    assert [(a["region"], a["outcome"], a["radius"]) for a in data["attempts"]] == [
        ("region-a", "failed", "region"), ("region-b", "succeeded", None)]
    assert data["dns"] == "127.2.255.254"
    text = run("status", project.spec).stdout
    assert "region-b [DNS points here]" in text
    assert "dns demo.example.com.: 127.2.255.254 (region-b serves)" in text


def test_failover_and_failback_move_the_record_and_say_so(project: Project) -> None:
    with_dns(project)
    assert run("deploy", project.spec).exit_code == 0

    moved = run("failover", project.spec, "--to", "region-b", "--yes")
    assert moved.exit_code == 0, moved.stderr
    assert "demo: failover succeeded in region-b" in moved.stdout
    assert "dns       127.2.255.254" in moved.stdout
    status = run_json("status", project.spec)[1]
    assert status["serving_region"] == "region-b"
    assert [r["dns_points_here"] for r in status["regions"]] == [False, True]
    # region-a was retired after the switch
    assert {n["state"] for n in status["regions"][0]["nodes"]} <= {"DELETING"}
    assert "failover" in (status["last_move"] or "")

    back, data = run_json("failback", project.spec, "--yes")
    assert back.exit_code == 0, back.stderr
    assert (data["region"], data["action"], data["dns"]) == ("region-a", "failback",
                                                           "127.1.255.254")
    history = run("history", project.spec).stdout
    assert "failover" in history and "failback" in history and "retire" in history


def test_every_region_failing_exits_1_listing_each(project: Project) -> None:
    with_dns(project, faults="    faults:\n      unhealthy_images: [img-golden]\n")

    result, data = run_json("deploy", project.spec)

    assert result.exit_code == ExitCode.DEPLOY_FAILED
    assert "every region failed" in result.stderr
    assert [a["region"] for a in data["attempts"]] == ["region-a", "region-b"]
    assert all(a["radius"] == "region" for a in data["attempts"])
    regions = run_json("status", project.spec)[1]["regions"]
    assert all(node["state"] == "DELETING" for r in regions for node in r["nodes"])


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--to", "region-b", "--yes"], "dns: failover and failback switch"),
        (["--yes"], "--to REGION"),
        (["--to", "region-z", "--yes"], "region-z"),
    ],
)
def test_bad_failover_requests_exit_2(project: Project, args: list[str], expected: str) -> None:
    if args[0] == "--to" and args[1] == "region-z":
        with_dns(project)
    result = run("failover", project.spec, *args)
    assert result.exit_code == ExitCode.BAD_INPUT, result.stdout
    assert expected in result.stderr


def test_failover_asks_for_yes_without_a_tty(project: Project) -> None:
    with_dns(project)
    result = run("failover", project.spec, "--to", "region-b")
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "--yes" in result.stderr
