"""Tests for phoenix.cli: every command against the memory cloud, exit codes, JSON output,
bad input stopped before any provider call, and secrets kept off the terminal.

Most tests drive the typer app in-process with ``CliRunner`` (stdin is not a TTY there);
a few run the installed ``phoenix`` script in subprocesses, as a user would.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from phoenix import api
from phoenix import cli as phoenix_cli
from phoenix.cli import terminal as cli_terminal
from phoenix.clock import SystemClock
from phoenix.engine import DeployResult, Event
from phoenix.errors import (
    AuthError,
    DeployFailed,
    ExitCode,
    InputError,
    Interrupted,
    LeaseLost,
    LockHeld,
    PhoenixError,
    RestoreFailed,
    SpecError,
    TemplateError,
)
from phoenix.lease import DeployLock
from phoenix.providers.memory import open_memory_provider

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "memory-hello" / "phoenix.yaml"
COMMANDS = (
    "validate", "render", "plan", "deploy", "status", "rollback", "history", "destroy",
    "unlock", "schema", "repave", "watch",
)

SECRET = "pl4nted-s3cret-do-not-print"

SPEC = """\
app: demo
provider:
  name: memory
  options:
    state_file: {state}
    boot_seconds: 0
{faults}regions: [region-a, region-b]
image:
  name: golden
flavor: m1.small
count: 3
template: templates/app.yaml.j2
vars:
  greeting: {greeting}
  port: 8080
  token:
    file: secrets/token.txt
    secret: true
health:
  http:
    path: /healthz
    port: 8080
  interval: 0.1s
  timeout: 0.05s
  healthy_threshold: 1
  deadline: {health_deadline}
rollout:
  strategy: blue-green
  drain_timeout: 0.1s
load_balancer:
  pool: demo-pool
  member_port: 8080
"""

TEMPLATE = """\
#cloud-config
# {{ app }} {{ release }} node {{ index }} in {{ region }}
write_files:
  - path: /etc/demo/config.json
    content: |
      {"greeting": {{ vars.greeting | tojson }}, "port": {{ vars.port }}, "index": {{ index }}}
  - path: /etc/demo/token
    permissions: "0600"
    content: {{ vars.token | tojson }}
"""


@dataclass
class Project:
    """A spec, its template and its secret in a temporary directory."""

    root: Path
    spec: Path
    template: Path
    state: Path

    def write_spec(
        self,
        *,
        greeting: str = "hello",
        faults: str = "",
        health_deadline: str = "5s",
    ) -> None:
        self.spec.write_text(
            SPEC.format(
                state=self.state,
                greeting=greeting,
                faults=faults,
                health_deadline=health_deadline,
            ),
            encoding="utf-8",
        )


@pytest.fixture
def project(tmp_path: Path) -> Project:
    (tmp_path / "templates").mkdir()
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "token.txt").write_text(SECRET + "\n", encoding="utf-8")
    made = Project(
        root=tmp_path,
        spec=tmp_path / "phoenix.yaml",
        template=tmp_path / "templates" / "app.yaml.j2",
        state=tmp_path / "cloud.json",
    )
    made.write_spec()
    made.template.write_text(TEMPLATE, encoding="utf-8")
    return made


def run(*args: str | Path, input: str | None = None) -> Result:
    return CliRunner().invoke(phoenix_cli.app, [str(a) for a in args], input=input)


def run_json(*args: str | Path) -> tuple[Result, dict[str, Any]]:
    result = run("--output", "json", *args)
    return result, json.loads(result.stdout)


def assert_no_secret(result: Result) -> None:
    assert SECRET not in result.stdout
    assert SECRET not in result.stderr


# --- commands, happy paths --------------------------------------------------------------


def test_validate_renders_everything_and_touches_no_cloud(project: Project) -> None:
    result = run("validate", project.spec)

    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "ok: demo, 3 node(s), regions region-a, region-b"
    assert not project.state.exists()


def test_render_masks_secrets_unless_asked(project: Project) -> None:
    masked = run("render", project.spec, "--index", "2", "--region", "region-b")
    shown = run("render", project.spec, "--show-secrets")

    assert masked.exit_code == 0, masked.stderr
    assert masked.stdout.startswith("#cloud-config\n# demo RELEASE node 2 in region-b\n")
    assert 'content: "***"' in masked.stdout
    assert_no_secret(masked)
    assert shown.exit_code == 0
    assert SECRET in shown.stdout
    assert not project.state.exists()


def test_render_refuses_an_index_or_region_outside_the_spec(project: Project) -> None:
    index = run("render", project.spec, "--index", "3")
    region = run("render", project.spec, "--region", "region-z")

    assert index.exit_code == ExitCode.BAD_INPUT
    assert "error: --index 3: the spec has count 3, so indexes are 0..2" in index.stderr
    assert region.exit_code == ExitCode.BAD_INPUT
    assert "--region region-z: not one of the spec's regions" in region.stderr


def test_plan_shows_the_new_release_and_first_steps(project: Project) -> None:
    result = run("plan", project.spec)

    assert result.exit_code == 0, result.stderr
    assert re.search(r"release\s+r1-\w+ \(new: deploy builds it\)", result.stdout)
    assert "serving   nothing" in result.stdout
    assert "create demo-r1-" in result.stdout


def test_deploy_then_status_history_and_plan(project: Project) -> None:
    deployed = run("deploy", project.spec)

    assert deployed.exit_code == 0, deployed.stderr
    assert re.search(r"demo: deploy succeeded in region-a \(d-\w+\)", deployed.stdout)
    release = re.search(r"release\s+(r1-\w+)", deployed.stdout)
    assert release is not None
    assert f"nodes     3: demo-{release[1]}-0" in deployed.stdout
    assert re.search(r"steps\s+\d+ in \d+\.\ds", deployed.stdout)

    status = run("status", project.spec)
    assert status.exit_code == 0, status.stderr
    assert f"region-a (primary): {release[1]} serves, 3 server(s)" in status.stdout
    assert status.stdout.count("SERVING") == 3
    assert status.stdout.count("HEALTHY") == 3
    assert "region-b: nothing serves" in status.stdout
    assert "lock: free" in status.stdout
    assert "problems: none" in status.stdout

    history = run("history", project.spec)
    assert history.exit_code == 0
    assert history.stdout.splitlines()[0].split()[:3] == ["STARTED", "(UTC)", "ACTION"]
    assert re.search(rf"deploy\s+{release[1]}\s+region-a\s+succeeded", history.stdout)

    plan = run("plan", project.spec)
    assert plan.exit_code == 0
    assert f"{release[1]} (already built)" in plan.stdout


def test_status_without_health_checks(project: Project) -> None:
    assert run("deploy", project.spec).exit_code == 0

    result = run("status", project.spec, "--no-health")

    assert result.exit_code == 0
    assert "HEALTHY" not in result.stdout
    assert result.stdout.count("SERVING") == 3


def test_history_of_a_new_app_is_empty(project: Project) -> None:
    result = run("history", project.spec)

    assert result.exit_code == 0
    assert result.stdout.strip() == "no deploys of demo recorded yet"


def test_rollback_restores_the_previous_release(project: Project) -> None:
    first = run_json("deploy", project.spec)[1]["release"]
    project.write_spec(greeting="hello again")
    second = run_json("deploy", project.spec)[1]
    assert second["release"] != first and second["previous_release"] == first

    result, data = run_json("rollback", project.spec, "--yes")

    assert result.exit_code == 0, result.stderr
    assert data["action"] == "rollback"
    assert data["release"] == first
    assert data["outcome"] == "succeeded"
    status = run_json("status", project.spec)[1]
    assert status["regions"][0]["serving_release"] == first


def test_rollback_to_a_named_release(project: Project) -> None:
    first = run_json("deploy", project.spec)[1]["release"]
    project.write_spec(greeting="v2")
    run_json("deploy", project.spec)
    project.write_spec(greeting="v3")
    run_json("deploy", project.spec)

    result, data = run_json("rollback", project.spec, "--to", first, "--yes")

    assert result.exit_code == 0, result.stderr
    assert data["release"] == first


def test_destroy_removes_every_server(project: Project) -> None:
    assert run("deploy", project.spec).exit_code == 0

    result = run("destroy", project.spec, "--yes")

    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(
        "destroyed demo: 3 server(s) deleted, 3 pool member(s) removed"
    )
    status = run_json("status", project.spec)[1]
    assert [r["nodes"] for r in status["regions"]] == [[], []]
    assert len(run_json("history", project.spec)[1]["records"]) == 1
    again = run("destroy", project.spec, "--yes", "--purge-records")
    assert again.stdout.startswith("destroyed demo: 0 server(s) deleted")
    assert run_json("history", project.spec)[1]["records"] == []
    # Purged, but for the lease's newest generation: generation numbers never go back.
    store = open_memory_provider({"state_file": str(project.state)}, ["region-a"],
                                 clock=SystemClock()).store
    [kept] = store.list("apps/demo/")
    newest = DeployLock(store, "demo", "check").newest()[0]
    assert kept == f"apps/demo/lease/{newest:012d}" and newest >= 3


def test_schema_prints_the_spec_json_schema() -> None:
    result = run("schema")

    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert "properties" in schema
    assert {"app", "regions", "template", "health"} <= set(schema["properties"])


def test_schema_describes_each_providers_options() -> None:
    """Editors and reviewers see what ``provider.options`` takes, per provider."""
    schema = json.loads(run("schema").stdout)
    defs = schema["$defs"]
    members = {ref["$ref"].rsplit("/", 1)[1]
               for ref in schema["properties"]["provider"]["oneOf"]}

    assert members == {"MemoryProvider", "LocalProvider", "OpenStackProvider",
                       "LibcloudProvider"}
    options = {name: defs[defs[name]["properties"]["options"]["$ref"].rsplit("/", 1)[1]]
               for name in members if "$ref" in defs[name]["properties"]["options"]}
    assert {"lb_port", "max_nodes", "state_dir", "balancer", "flavors"} == set(
        options["LocalProvider"]["properties"])
    assert options["LocalProvider"]["properties"]["lb_port"]["maximum"] == 65535
    assert options["LocalProvider"]["additionalProperties"] is False
    assert "api_timeout" in options["OpenStackProvider"]["properties"]
    assert {"credentials", "compute", "load_balancer", "storage"} <= set(
        options["LibcloudProvider"]["required"])
    assert "faults" in options["MemoryProvider"]["properties"]


def test_version() -> None:
    result = run("--version")

    assert result.exit_code == 0
    assert result.stdout.startswith("phoenix ")


# --- --output json ----------------------------------------------------------------------


@pytest.mark.parametrize("command", ["validate", "render", "plan", "deploy", "status", "history"])
def test_json_output_is_one_document_on_stdout(project: Project, command: str) -> None:
    result, data = run_json(command, project.spec)

    assert result.exit_code == 0, result.stderr
    assert data["exit_code"] == 0
    assert data["app"] == "demo"
    assert_no_secret(result)


def test_json_deploy_result_has_the_deploy_result_fields(project: Project) -> None:
    result, data = run_json("deploy", project.spec)

    assert set(DeployResult.__dataclass_fields__) <= set(data)
    assert data["outcome"] == "succeeded"
    assert len(data["nodes"]) == 3
    # Logs go to stderr only; stdout parsed as exactly one JSON document above.
    assert '"event"' in result.stderr


def test_global_options_are_accepted_after_the_command(project: Project) -> None:
    result = run("validate", project.spec, "--output", "json", "--log-level", "debug")

    assert result.exit_code == 0
    assert json.loads(result.stdout)["ok"] is True


def test_an_option_after_the_command_overrides_one_before(project: Project) -> None:
    result = run("--output", "json", "validate", project.spec, "--output", "text")

    assert result.stdout.startswith("ok: demo")


def test_json_error_document(project: Project) -> None:
    project.spec.write_text("app: demo\ncolour: red\n", encoding="utf-8")

    result, data = run_json("deploy", project.spec)

    assert result.exit_code == ExitCode.BAD_INPUT
    assert data["exit_code"] == 2
    assert data["error"]["type"] == "SpecError"
    assert data["error"]["exit_code"] == 2
    assert any("colour: unknown key" in p for p in data["error"]["problems"])
    assert result.stderr.startswith("error: ")


def test_an_unknown_log_level_is_a_usage_error(project: Project) -> None:
    result = run("--log-level", "loud", "validate", project.spec)

    assert result.exit_code == 2


# --- failures and exit codes ------------------------------------------------------------


def test_a_health_failing_deploy_rolls_back_and_exits_1(project: Project) -> None:
    project.write_spec(
        faults="    faults:\n      unhealthy_images: [img-golden]\n", health_deadline="0.3s"
    )

    result, data = run_json("deploy", project.spec)

    assert result.exit_code == ExitCode.DEPLOY_FAILED
    assert data["outcome"] == "rolled-back"
    assert data["exit_code"] == 1
    assert data["error"]["type"] == "DeployFailed"
    assert "health" in data["reason"]
    assert result.stderr.count("error: ") == 1
    assert "Traceback" not in result.stderr
    region = run_json("status", project.spec)[1]["regions"][0]
    assert region["serving_release"] is None
    assert {node["state"] for node in region["nodes"]} <= {"DELETING"}


def test_a_failed_deploy_prints_its_summary_in_text_mode(project: Project) -> None:
    project.write_spec(
        faults="    faults:\n      unhealthy_images: [img-golden]\n", health_deadline="0.3s"
    )

    result = run("deploy", project.spec)

    assert result.exit_code == 1
    assert "demo: deploy rolled-back in region-a" in result.stdout
    assert "reason    demo-r1-" in result.stdout
    assert re.search(r"^error: .*rolled back", result.stderr, re.MULTILINE)


def test_a_held_lock_exits_4(project: Project) -> None:
    provider = open_memory_provider(
        {"state_file": str(project.state)}, ["region-a", "region-b"], clock=SystemClock()
    )
    elsewhere = DeployLock(provider.store, "demo", "d-someone-else")
    elsewhere.host = "ci-runner-7"  # alive as far as anyone here can tell: not expired
    elsewhere.acquire(SystemClock())

    result = run("deploy", project.spec)

    assert result.exit_code == ExitCode.LOCKED
    assert "error: another deploy of 'demo' holds the lock" in result.stderr
    assert "lock: held by d-someone-else@" in run("status", project.spec).stdout

    refused = run("unlock", project.spec, "--yes")

    assert refused.exit_code == ExitCode.LOCKED, refused.stdout
    assert "looks alive" in refused.stderr and "--force" in refused.stderr

    unlocked = run("unlock", project.spec, "--yes", "--force")

    assert unlocked.exit_code == 0, unlocked.stderr
    assert unlocked.stdout.startswith("unlocked demo: broke the lock held by d-someone-else@")
    with pytest.raises(LeaseLost, match="phoenix unlock --force"):
        elsewhere.fence()  # the holder's next poll stops it
    assert run("deploy", project.spec).exit_code == 0
    assert run("unlock", project.spec, "--yes").stdout.strip() == (
        "demo was not locked; nothing to do"
    )


def test_an_unknown_region_is_refused_before_the_provider_opens(project: Project) -> None:
    result = run("deploy", project.spec, "--region", "region-z")

    assert result.exit_code == ExitCode.BAD_INPUT
    assert not project.state.exists()


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (SpecError(["phoenix.yaml:3: count: bad", "phoenix.yaml:9: flavor: bad"]), 2),
        (TemplateError("bad", template="t.j2", line=3), 2),
        (InputError("bad input"), 2),
        (AuthError("no credentials"), 2),
        (DeployFailed("failed; rolled back"), 1),
        (RestoreFailed("could not restore"), 3),
        (LockHeld("demo", "d-1@host:1", "soon"), 4),
        (Interrupted("interrupted; restored"), 130),
        (PhoenixError("something else"), 1),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_errors_map_to_exit_codes(
    project: Project, monkeypatch: pytest.MonkeyPatch, error: PhoenixError, code: int
) -> None:
    def fail(*_args: object, **_kwargs: object) -> DeployResult:
        raise error

    monkeypatch.setattr(api, "deploy", fail)

    result, data = run_json("deploy", project.spec)

    assert result.exit_code == code
    assert data["error"]["exit_code"] == code
    assert data["error"]["type"] == type(error).__name__
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr
    if isinstance(error, SpecError):
        assert result.stderr.splitlines() == [
            "error: phoenix.yaml:3: count: bad",
            "error: phoenix.yaml:9: flavor: bad",
        ]


@pytest.mark.parametrize("command", ["status", "deploy"])
def test_ctrl_c_outside_the_engine_exits_130(
    project: Project, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(api, command, interrupted)

    result = run(command, project.spec)

    assert result.exit_code == ExitCode.INTERRUPTED
    assert "error: interrupted" in result.stderr


def test_an_unexpected_exception_is_reported_masked(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError(f"boom near {SECRET}")

    monkeypatch.setattr(api, "status", crash)
    monkeypatch.setattr(api, "deploy", crash)

    status = run("status", project.spec)
    deploy = run("deploy", project.spec)

    assert status.exit_code == 1
    assert "error: unexpected RuntimeError: boom near ***" in status.stderr
    assert deploy.exit_code == ExitCode.NEEDS_PERSON
    assert "run `phoenix status`" in deploy.stderr
    assert_no_secret(status)
    assert_no_secret(deploy)


# --- confirmation of destructive commands -----------------------------------------------


@pytest.mark.parametrize("command", ["rollback", "destroy", "unlock"])
def test_destructive_commands_need_yes_without_a_tty(project: Project, command: str) -> None:
    result = run(command, project.spec)

    assert result.exit_code == ExitCode.BAD_INPUT
    assert "pass --yes" in result.stderr
    assert not project.state.exists()


@pytest.mark.parametrize("command", ["rollback", "destroy", "unlock"])
def test_destructive_commands_ask_on_a_tty(
    project: Project, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    monkeypatch.setattr(cli_terminal, "_stdin_is_tty", lambda: True)

    declined = run(command, project.spec, input="n\n")

    assert declined.exit_code == 1
    assert "aborted; nothing was changed" in declined.stderr
    assert "demo" in declined.stderr  # the question names the app
    assert not project.state.exists()


def test_a_confirmed_destroy_runs(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run("deploy", project.spec).exit_code == 0
    monkeypatch.setattr(cli_terminal, "_stdin_is_tty", lambda: True)

    result = run("destroy", project.spec, input="y\n")

    assert result.exit_code == 0, result.stderr
    assert "Destroy demo in region-a, region-b" in result.stderr  # asked on stderr
    # (CliRunner echoes the typed answer onto stdout; a terminal echoes it itself.)
    assert "destroyed demo: 3 server(s) deleted" in result.stdout


# --- bad specs and templates: exit 2, file and line, nothing touched --------------------


@dataclass(frozen=True)
class Bad:
    """One broken input: how to break the spec and/or template, and what the error says."""

    name: str
    spec: Callable[[str], str] = lambda text: text
    template: Callable[[str], str] = lambda text: text
    file: str = "phoenix.yaml"
    # A text on the reported line (its first occurrence in ``file``). None for whole-output
    # checks (size, header, YAML of the rendered text), which have no template line.
    line: str | None = None
    says: str = ""  # a fragment of the message
    anywhere_line: bool = False  # a line is given, but where YAML's parser puts it


def _sub(old: str, new: str) -> Callable[[str], str]:
    def change(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, 1)

    return change


def _options(provider: str, options: str) -> Callable[[str], str]:
    """The spec with another provider and these (indented) options."""

    def change(text: str) -> str:
        head, rest = text.split("  options:\n", 1)
        return (
            head.replace("name: memory", f"name: {provider}")
            + f"  options:\n    {options}\n"
            + rest[rest.index("regions:"):]
        )

    return change


def _local(option: str) -> Callable[[str], str]:
    """The spec on the local provider (its state where the memory cloud's was)."""

    def change(text: str) -> str:
        text = text.replace("name: memory", "name: local").replace("state_file:", "state_dir:")
        return text.replace("boot_seconds: 0", option)

    return change


def _const(value: str) -> Callable[[str], str]:
    return lambda _text: value


BAD_INPUTS = [
    Bad("unknown-key", _sub("flavor:", "colour: red\nflavor:"), line="colour", says="unknown key"),
    Bad("misspelt-nested-key", _sub("  interval:", "  intervall:"), line="intervall",
        says="did you mean 'interval'"),
    Bad("bad-duration", _sub("deadline: 5s", "deadline: soon"), line="deadline: soon",
        says="expected a duration"),
    Bad("bad-duration-unit", _sub("timeout: 0.05s", "timeout: 5 parsecs"), line="timeout:",
        says="expected a duration"),
    Bad("missing-required-field", _sub("flavor: m1.small\n", ""), line="app: demo",
        says="flavor: required field missing"),
    Bad("count-not-a-number", _sub("count: 3", "count: three"), line="count:",
        says="count"),
    Bad("count-zero", _sub("count: 3", "count: 0"), line="count:", says="greater than"),
    Bad("bad-app-name", _sub("app: demo", "app: Demo_App"), line="app:", says="lowercase"),
    Bad("duplicate-key", _sub("count: 3\n", "count: 3\nflavor: m1.large\n"),
        line="flavor: m1.large", says="duplicate key"),
    Bad("yaml-syntax-error", _sub("regions: [region-a, region-b]", "regions: [region-a, x: ["),
        says="YAML syntax error", anywhere_line=True),
    Bad("empty-file", _const(""), line="", says="the file is empty"),
    Bad("top-level-list", _const("- app: demo\n"), line="", says="expected a mapping"),
    Bad("missing-template", _sub("templates/app.yaml.j2", "templates/nope.j2"),
        line="template:", says="no such file"),
    Bad("no-regions", _sub("regions: [region-a, region-b]", "regions: []"), line="regions:",
        says="regions"),
    Bad("duplicate-region", _sub("[region-a, region-b]", "[region-a, region-a]"),
        line="regions:", says="listed twice"),
    Bad("image-id-and-name", _sub("  name: golden\n", "  name: golden\n  id: img-golden\n"),
        line="image:", says="exactly one of id, name, properties or path"),
    Bad("port-out-of-range", _sub("    port: 8080", "    port: 70000"), line="    port: 70000",
        says="less than or equal to 65535"),
    Bad("timeout-above-interval", _sub("timeout: 0.05s", "timeout: 2s"), line="health:",
        says="timeout must not exceed interval"),
    Bad("unset-env-var", _sub("file: secrets/token.txt", "env: PHOENIX_TEST_SURELY_UNSET_42"),
        line="  token:", says="PHOENIX_TEST_SURELY_UNSET_42 is not set"),
    Bad("missing-var-file", _sub("secrets/token.txt", "secrets/missing.txt"), line="  token:",
        says="cannot read file"),
    Bad("two-var-sources", _sub("    secret: true", "    secret: true\n    value: inline"),
        line="  token:", says="exactly one of value, env or file"),
    Bad("unknown-strategy", _sub("strategy: blue-green", "strategy: yolo"), line="strategy:",
        says="strategy"),
    Bad("relative-health-path", _sub("path: /healthz", "path: healthz"), line="path: healthz",
        says="must start with /"),
    Bad("unknown-provider", _sub("name: memory", "name: aws"), line="name: aws",
        says="provider.name"),
    Bad("tab-indentation", _sub("  member_port: 8080", "\tmember_port: 8080"),
        says="YAML", anywhere_line=True),
    # --- templates
    Bad("template-syntax-error", template=_sub("write_files:", "{% if %}\nwrite_files:"),
        file="app.yaml.j2", line="{% if %}", says="syntax error"),
    Bad("template-unclosed-expression", template=_sub("# {{ app }}", "# {{ app "),
        file="app.yaml.j2", line="# {{ app", says="syntax error"),
    Bad("template-undefined-var", template=_sub("vars.port", "vars.prot"), file="app.yaml.j2",
        line="vars.prot", says="undefined variable 'vars.prot'"),
    Bad("template-bare-var-name", template=_sub("{{ vars.port }}", "{{ port }}"),
        file="app.yaml.j2", line='{"greeting"', says="read as vars.port"),
    Bad("template-invalid-yaml-output", template=_sub("write_files:", "key: [unclosed\nx:"),
        file="app.yaml.j2", says="not valid YAML at line 4 of the rendered output"),
    Bad("template-oversize-output",
        template=_sub("write_files:", "padding: {{ 'x' * 70000 }}\nwrite_files:"),
        file="app.yaml.j2", says="Nova accepts at most"),
    Bad("template-no-header", template=_sub("#cloud-config\n", ""), file="app.yaml.j2",
        says="put one of them on the template's very first line"),
    Bad("template-missing-include", template=_sub("write_files:",
                                                  "{% include 'nope.j2' %}\nwrite_files:"),
        file="app.yaml.j2", line="include", says="'nope.j2' not found"),
    Bad("template-sandbox", template=_sub("# {{ app }}", "# {{ app.__class__.__mro__ }}"),
        file="app.yaml.j2", line="__mro__"),
    Bad("template-division-by-zero", template=_sub("{{ index }}}", "{{ index // 0 }}}"),
        file="app.yaml.j2", line="// 0", says="ZeroDivisionError"),
    Bad("template-renders-a-list", template=_const("#cloud-config\n- a\n- b\n"),
        file="app.yaml.j2", says="not a mapping"),
    # --- hostile (issue 12): numbers, names, paths, sizes, encodings
    Bad("count-true", _sub("count: 3", "count: true"), line="count:", says="count"),
    Bad("count-float", _sub("count: 3", "count: 3.0"), line="count:", says="count"),
    Bad("count-huge", _sub("count: 3", "count: 1000000"), line="count:", says="count"),
    Bad("deadline-inf", _sub("deadline: 5s", "deadline: .inf"), line="deadline: .inf",
        says="deadline"),
    Bad("deadline-nan", _sub("deadline: 5s", "deadline: .nan"), line="deadline: .nan",
        says="deadline"),
    Bad("deadline-absurd", _sub("deadline: 5s", "deadline: 99999999999999999999d"),
        line="deadline: 9", says="deadline"),
    Bad("deadline-zero", _sub("deadline: 5s", "deadline: 0s"), line="deadline: 0s",
        says="deadline"),
    Bad("interval-inf", _sub("interval: 0.1s", "interval: .inf"), line="interval:",
        says="interval"),
    Bad("interval-zero", _sub("interval: 0.1s", "interval: 0s"), line="interval:",
        says="interval"),
    Bad("rollout-deadline-inf", _sub("  drain_timeout: 0.1s", "  drain_timeout: 0.1s\n"
                                     "  deadline: .inf"), line="deadline: .inf",
        says="deadline"),
    Bad("negative-drain", _sub("drain_timeout: 0.1s", "drain_timeout: -5s"),
        line="drain_timeout:", says="drain_timeout"),
    Bad("canary-above-count", _sub("strategy: blue-green",
                                   "strategy: canary\n  canary: {size: 9}"),
        line="canary:", says="canary"),
    Bad("region-shell", _sub("[region-a, region-b]", """[region-a, 'r1"; touch X; echo "']"""),
        line="regions:", says="regions"),
    Bad("region-newline", _sub("[region-a, region-b]", '[region-a, "r\\nstats socket x"]'),
        line="regions:", says="regions"),
    Bad("pool-absolute-path", _sub("pool: demo-pool", "pool: /etc"), line="pool: /etc",
        says="pool"),
    Bad("pool-dotdot", _sub("pool: demo-pool", "pool: ../../x"), line="pool:", says="pool"),
    Bad("app-dotdot", _sub("app: demo", "app: ../demo"), line="app:", says="app"),
    Bad("var-file-absolute", _sub("file: secrets/token.txt", "file: /etc/hostname"),
        line="  token:", says="token"),
    Bad("var-file-dotdot", _sub("file: secrets/token.txt", "file: ../../../etc/hostname"),
        line="  token:", says="token"),
    Bad("var-file-dev-zero", _sub("file: secrets/token.txt", "file: /dev/zero"),
        line="  token:", says="token"),
    Bad("var-file-directory", _sub("file: secrets/token.txt", "file: secrets"),
        line="  token:", says="token"),
    Bad("alias-bomb", _sub("vars:\n", "vars:\n" + "".join(
        f"  l{i}: &l{i} [" + ", ".join([f"*l{i - 1}" if i else "x"] * 9) + "]\n"
        for i in range(9))), says="alias", anywhere_line=True),
    Bad("deep-nesting", _sub("vars:\n", "vars:\n  deep: " + "[" * 5000 + "]" * 5000 + "\n"),
        says="nest", anywhere_line=True),
    Bad("spec-not-utf8", lambda text: text.replace("greeting: hello", "greeting: h\udcffllo"),
        says="UTF-8"),
    Bad("template-include-absolute", template=_sub("write_files:",
                                                   "{% include '/etc/hostname' %}\nwrite_files:"),
        file="app.yaml.j2", line="include"),
    Bad("template-include-dotdot", template=_sub(
        "write_files:", "{% if false %}{% include '../../x.j2' %}{% endif %}\nwrite_files:"),
        file="app.yaml.j2", line="include"),
    # --- provider options are typed per provider (issue 12 item 7)
    Bad("memory-option-typo", _sub("boot_seconds: 0", "boot_secnds: 0"), line="boot_secnds",
        says="did you mean 'boot_seconds'"),
    Bad("memory-option-wrong-type", _sub("boot_seconds: 0", "boot_seconds: fast"),
        line="boot_seconds: fast", says="provider.options.boot_seconds"),
    Bad("memory-seed-bool", _sub("boot_seconds: 0", "boot_seconds: 0\n    seed: true"),
        line="seed: true", says="provider.options.seed"),
    Bad("memory-fault-rate-above-1", _sub("boot_seconds: 0", "boot_seconds: 0\n    faults:\n"
                                          "      api_error_rate: 1.5"),
        line="api_error_rate", says="less than or equal to 1"),
    Bad("memory-quota-unknown-region", _sub("boot_seconds: 0", "boot_seconds: 0\n    quota:\n"
                                            "      r9: {instances: 1}"),
        line="r9:", says="not one of the spec's regions"),
    Bad("memory-cloud-name", _sub("name: memory", "name: memory\n  cloud: mycloud"),
        line="cloud: mycloud", says="unknown key"),
    Bad("local-with-memory-option", _local("boot_seconds: 0"), line="boot_seconds",
        says="provider.options.boot_seconds: unknown key"),
    Bad("local-port-as-text", _local("lb_port: '8080'"), line="lb_port",
        says="provider.options.lb_port"),
    Bad("local-unknown-balancer", _local("balancer: nginx"), line="balancer: nginx",
        says="provider.options.balancer"),
    Bad("local-max-nodes-huge", _local("max_nodes: 1000000"), line="max_nodes",
        says="provider.options.max_nodes"),
    Bad("local-no-flavors", _local("flavors: []"), line="flavors", says="provider.options.flavors"),
    Bad("openstack-unknown-option", _sub("name: memory", "name: openstack"),
        line="state_file", says="provider.options.state_file: unknown key"),
    Bad("openstack-container-slash", _options("openstack", "container: a/b"),
        line="container: a/b", says="provider.options.container"),
    Bad("openstack-timeout-inf", _options("openstack", "api_timeout: .inf"),
        line="api_timeout", says="provider.options.api_timeout"),
    Bad("libcloud-no-compute", _options("libcloud", "credentials: {key_env: K}"),
        line="options:", says="provider.options.compute: required field missing"),
    Bad("libcloud-secret-in-args", _options(
        "libcloud", "credentials: {key_env: K}\n    compute: {driver: ec2, args: {secret: x}}\n"
        "    load_balancer: {driver: elb}\n    storage: {driver: s3}"),
        line="compute:", says="credentials never go in the spec"),
    Bad("libcloud-inline-key", _options(
        "libcloud", "credentials: {key: AKID}\n    compute: {driver: ec2}\n"
        "    load_balancer: {driver: elb}\n    storage: {driver: s3}"),
        line="credentials:", says="secrets never go in the spec"),
    Bad("image-path-on-memory", _sub("  name: golden\n", "  path: templates\n"),
        line="path: templates", says="cannot import a directory"),
    Bad("template-absolute", _sub("templates/app.yaml.j2", "/etc/hostname"),
        line="template:", says="template: '/etc/hostname' is not a path relative to"),
    Bad("template-dotdot", _sub("templates/app.yaml.j2", "../../etc/hostname"),
        line="template:", says="leaves its folder"),
    # --- watch (issue 14)
    Bad("failover-without-dns", _sub("load_balancer:", "failover: {after: 30s}\nload_balancer:"),
        line="failover:", says="failover: moving the app between regions"),
    Bad("heal-parallel-zero", _sub("load_balancer:", "heal: {max_parallel: 0}\nload_balancer:"),
        line="heal:", says="heal.max_parallel"),
    Bad("max-node-age-tiny", _sub("load_balancer:", "max_node_age: 1s\nload_balancer:"),
        line="max_node_age", says="max_node_age"),
]


@pytest.mark.parametrize("bad", BAD_INPUTS, ids=lambda bad: bad.name)
def test_bad_input_exits_2_naming_file_and_line_before_any_provider_call(
    project: Project, bad: Bad
) -> None:
    spec_text = bad.spec(project.spec.read_text(encoding="utf-8"))
    template_text = bad.template(project.template.read_text(encoding="utf-8"))
    project.spec.write_bytes(spec_text.encode("utf-8", "surrogateescape"))
    project.template.write_text(template_text, encoding="utf-8")

    for command in ("validate", "plan", "deploy"):
        started = time.monotonic()
        result = run(command, project.spec)
        took = time.monotonic() - started

        assert result.exit_code == ExitCode.BAD_INPUT, (command, result.output)
        assert result.stderr.startswith("error: "), command
        assert "Traceback" not in result.stderr
        assert bad.says in result.stderr, (command, result.stderr)
        assert bad.file in result.stderr
        if bad.line is not None:
            text = spec_text if bad.file == "phoenix.yaml" else template_text
            lines = text.splitlines() or [""]
            number = next(n for n, line in enumerate(lines, 1) if bad.line in line)
            assert f"{bad.file}:{number}:" in result.stderr, (command, result.stderr)
        if bad.anywhere_line:
            assert re.search(rf"{re.escape(bad.file)}:\d+: ", result.stderr)
        assert not project.state.exists(), f"{command}: a provider was opened"
        assert result.stdout == ""
        assert took < 5, f"{command} took {took:.1f}s"


def test_there_are_at_least_60_bad_inputs() -> None:
    assert len(BAD_INPUTS) >= 60


# --- secrets ----------------------------------------------------------------------------


def test_a_secret_never_reaches_deploy_status_or_history_output(project: Project) -> None:
    for result in (
        run("deploy", project.spec),
        run("--output", "json", "deploy", project.spec),
        run("status", project.spec),
        run("--output", "json", "status", project.spec),
        run("history", project.spec),
        run("plan", project.spec),
        run("--log-level", "debug", "--log-format", "console", "deploy", project.spec),
    ):
        assert result.exit_code == 0, result.stderr
        assert_no_secret(result)


@pytest.mark.parametrize(
    "expression",
    [
        "{{ {}[vars.token] }}",  # jinja names the missing key: the secret itself
        "{% include vars.token %}",  # the missing template's name: the secret
        "{{ vars.greeting[vars.token] }}",
    ],
)
@pytest.mark.parametrize("output", ["text", "json"])
def test_a_template_error_that_would_echo_a_secret_is_masked(
    project: Project, expression: str, output: str
) -> None:
    project.template.write_text(f"#cloud-config\nfoo: {expression}\n", encoding="utf-8")

    deploy = run("--output", output, "deploy", project.spec)
    render = run("--output", output, "render", project.spec)
    validate = run("--output", output, "validate", project.spec)

    for result in (deploy, render, validate):
        assert result.exit_code == ExitCode.BAD_INPUT
        assert "app.yaml.j2:2:" in result.stderr
        assert "***" in result.stderr  # the library's message did carry the secret
        assert_no_secret(result)


def test_the_progress_view_masks_secrets_and_shows_each_step() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=False, width=200)
    view = cli_terminal._ProgressView(console, None, lambda text: text.replace(SECRET, "***"))

    view(Event("steps", "2 step(s)", ("create demo-r1-0", f"create with {SECRET}")))
    view(Event("waiting", "waiting for", ("demo-r1-0 to boot", "demo-r1-1 to boot")))
    view(Event("failed", "health check failed"))
    view(Event("rollback", "restoring nothing"))
    view(Event("converged", "r1 serves in region-a"))

    text = buffer.getvalue()
    assert "-> create demo-r1-0" in text
    assert "-> create with ***" in text
    assert "waiting for demo-r1-0 to boot (+1 more)" in text
    assert "failed health check failed" in text
    assert "rollback restoring nothing" in text
    assert "ok r1 serves in region-a" in text
    assert SECRET not in text


# --- the installed script, in real processes --------------------------------------------


def _script() -> Path:
    script = Path(sys.executable).parent / "phoenix"
    if not script.exists():
        pytest.skip(f"the phoenix console script is not installed next to {sys.executable}")
    return script


def _run_script(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_")}
    return subprocess.run(
        [str(_script()), *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_script_help_lists_every_command(tmp_path: Path) -> None:
    result = _run_script("--help", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    for command in COMMANDS:
        assert re.search(rf"\b{command}\b", result.stdout), command


def test_the_example_deploys_and_another_process_sees_it_serving(tmp_path: Path) -> None:
    deployed = _run_script("deploy", EXAMPLE, cwd=tmp_path)

    assert deployed.returncode == 0, deployed.stderr
    assert "hello: deploy succeeded in region-a" in deployed.stdout
    assert (tmp_path / ".phoenix" / "memory-cloud.json").exists()

    status = _run_script("--output", "json", "status", EXAMPLE, cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    region = json.loads(status.stdout)["regions"][0]
    serving = [n for n in region["nodes"] if n["member"] == "SERVING"]
    assert len(serving) == 3
    assert {n["release"] for n in serving} == {region["serving_release"]}
    assert "not-a-real-token-change-me" not in status.stdout + status.stderr

    text = _run_script("status", EXAMPLE, cwd=tmp_path)
    assert text.stdout.count("SERVING") == 3

    destroyed = _run_script("destroy", EXAMPLE, "--yes", cwd=tmp_path)
    assert destroyed.returncode == 0, destroyed.stderr
    assert "3 server(s) deleted" in destroyed.stdout


def test_commands_that_change_nothing_create_no_cloud_state(project: Project) -> None:
    """plan, validate and status on a cloud nobody deployed to leave no state file behind
    (issue 12: "plan, which changes nothing, creates .phoenix/memory-cloud.json")."""
    for command in ("validate", "plan", "status", "history"):
        result = run(command, project.spec)
        assert result.exit_code == 0, (command, result.output)
        assert not project.state.exists(), f"{command} created {project.state}"
    assert run("deploy", project.spec).exit_code == 0
    assert project.state.exists()
    again = run("--output", "json", "status", project.spec)
    assert again.exit_code == 0 and '"serving_release": "r1-' in again.output


def test_status_and_history_say_which_lease_generation_did_what(project: Project) -> None:
    """Servers and history records carry the lease generation of the actor that made
    them (issue 13): after two deploys, the second's nodes and record name a newer one."""
    assert run("deploy", project.spec).exit_code == 0
    project.write_spec(greeting="v2")
    assert run("deploy", project.spec).exit_code == 0

    history = run_json("history", project.spec)[1]["records"]
    status = run_json("status", project.spec)[1]
    nodes = [n for r in status["regions"] for n in r["nodes"]]

    first, second = (r["lease"] for r in history)
    assert isinstance(first, int) and second > first
    assert {n["lease"] for n in nodes if n["release"] == history[1]["release"]} == {second}
    assert {n["lease"] for n in nodes if n["release"] == history[0]["release"]} <= {first}
    assert "LEASE" in run("status", project.spec).stdout
    assert "LEASE" in run("history", project.spec).stdout


def test_watch_once_reports_each_app_and_heals(project: Project) -> None:
    assert run("deploy", project.spec).exit_code == 0
    healthy = run("watch", "--once", str(project.spec))
    assert healthy.exit_code == 0, healthy.stderr
    assert " demo region-a healthy: healthy" in healthy.stdout

    project.write_spec(faults="    faults: {unhealthy_nodes: [demo-RELEASE-0]}\n".replace(
        "RELEASE", run_json("status", project.spec)[1]["regions"][0]["serving_release"]))
    for _ in range(4):  # the health tracker needs its threshold of failed probes
        result = run("--output", "json", "watch", "--once", str(project.spec))
        assert result.exit_code == 0, result.stderr
        reports = [json.loads(line) for line in result.stdout.splitlines()]
        if reports[0]["action"]:
            break
    assert reports[0]["action"] == "heal" and reports[0]["outcome"] == "succeeded", reports


@pytest.mark.parametrize("interval", ["soon", "0s", "2d"])
def test_watch_refuses_a_bad_interval(project: Project, interval: str) -> None:
    result = run("watch", "--once", "--interval", interval, str(project.spec))
    assert result.exit_code == ExitCode.BAD_INPUT
    assert f"--interval {interval}" in result.stderr


def test_repave_replaces_every_node(project: Project) -> None:
    assert run("deploy", project.spec).exit_code == 0
    before = {n["name"] for r in run_json("status", project.spec)[1]["regions"] for n in r["nodes"]}

    result, data = run_json("repave", "--yes", project.spec)

    assert result.exit_code == 0, result.stderr
    assert data["action"] == "repave" and data["outcome"] == "succeeded"
    after = {n["name"] for r in run_json("status", project.spec)[1]["regions"] for n in r["nodes"]
             if n["member"] == "SERVING"}
    assert len(after) == 3 and after.isdisjoint(before)
