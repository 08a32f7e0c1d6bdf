"""The CLI in a GitHub Actions step (``GITHUB_ACTIONS=true``): ``::error`` annotations at
the line of a bad spec or template, and a markdown job summary appended to the file
``GITHUB_STEP_SUMMARY`` names, with secrets masked; nothing of it off a runner.

The CLI runs as the runner runs it, with the runner's variables set (``GITHUB_ACTIONS``,
``GITHUB_STEP_SUMMARY``, ``GITHUB_WORKSPACE``), against the memory cloud.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from phoenix import api, github
from phoenix.blast import RegionAttempt
from phoenix.engine import DeployResult
from phoenix.errors import ExitCode, InputError, SpecError, TemplateError
from tests.unit.test_cli import SECRET, SPEC, Project, run
from tests.unit.test_cli import project as project  # the fixture

COUNT_LINE = SPEC.splitlines().index("count: 3") + 1


@pytest.fixture
def summary(project: Project, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The runner's variables, set as on a GitHub-hosted runner; the summary file."""
    path = project.root / "step-summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(path))
    monkeypatch.setenv("GITHUB_WORKSPACE", str(project.root))
    return path


def _bad_count(project: Project) -> None:
    text = project.spec.read_text(encoding="utf-8")
    project.spec.write_text(text.replace("count: 3", "count: lots"), encoding="utf-8")


def _annotations(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("::error")]


# --- annotations ------------------------------------------------------------------------


def test_a_bad_spec_is_annotated_on_its_line(project: Project, summary: Path) -> None:
    _bad_count(project)

    result = run("validate", project.spec)

    assert result.exit_code == ExitCode.BAD_INPUT
    [note] = _annotations(result.stdout)
    assert note.startswith(
        f"::error file=phoenix.yaml,line={COUNT_LINE},title=phoenix validate::count: ")
    assert "lots" in note
    # The person reading the log still gets the usual message on stderr.
    assert f"phoenix.yaml:{COUNT_LINE}: count:" in result.stderr


def test_every_problem_of_a_spec_gets_its_own_annotation(
    project: Project, summary: Path
) -> None:
    text = project.spec.read_text(encoding="utf-8")
    project.spec.write_text(
        text.replace("count: 3", "count: lots").replace("flavor: m1.small", "flavour: x"),
        encoding="utf-8")

    notes = _annotations(run("deploy", project.spec).stdout)

    lines = sorted(int(re.search(r",line=(\d+),", note)[1]) for note in notes)  # type: ignore[index]
    flavor_line = SPEC.splitlines().index("flavor: m1.small") + 1
    assert flavor_line in lines
    assert COUNT_LINE in lines
    assert all(note.startswith("::error file=phoenix.yaml,") for note in notes)


def test_a_template_error_is_annotated_on_the_template_line(
    project: Project, summary: Path
) -> None:
    project.template.write_text("#cloud-config\n# ok\nfoo: {{ app | nosuchfilter }}\n",
                                encoding="utf-8")

    result = run("validate", project.spec)

    assert result.exit_code == ExitCode.BAD_INPUT
    [note] = _annotations(result.stdout)
    # The path from the checkout's root, as the runner needs it to find the file.
    assert note.startswith(
        "::error file=templates/app.yaml.j2,line=3,title=phoenix validate::template syntax")


def test_with_json_output_the_annotations_go_to_stderr(project: Project, summary: Path) -> None:
    # The runner reads workflow commands on stderr too; stdout stays one JSON document.
    _bad_count(project)

    result = run("--output", "json", "validate", project.spec)

    assert json.loads(result.stdout)["exit_code"] == ExitCode.BAD_INPUT
    assert [n.split("::")[1] for n in _annotations(result.stderr)] == [
        f"error file=phoenix.yaml,line={COUNT_LINE},title=phoenix validate"]


def test_a_secret_in_an_error_is_masked_in_annotation_and_summary(
    project: Project, summary: Path
) -> None:
    # jinja names the missing key in its message: here the secret value itself.
    project.template.write_text("#cloud-config\nfoo: {{ {}[vars.token] }}\n", encoding="utf-8")

    result = run("validate", project.spec)

    assert result.exit_code == ExitCode.BAD_INPUT
    [note] = _annotations(result.stdout)
    assert "***" in note
    assert SECRET not in result.stdout + result.stderr
    assert "***" in summary.read_text(encoding="utf-8")
    assert SECRET not in summary.read_text(encoding="utf-8")


def test_a_crash_is_annotated_and_summarized_masked(
    project: Project, summary: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError(f"boom near {SECRET}")

    monkeypatch.setattr(api, "deploy", crash)

    result = run("deploy", project.spec)

    assert result.exit_code == ExitCode.NEEDS_PERSON
    [note] = _annotations(result.stdout)
    assert note.startswith("::error title=phoenix deploy::unexpected RuntimeError: boom near ***")
    text = summary.read_text(encoding="utf-8")
    assert "| Exit code | 3 |" in text
    assert "boom near ***" in text
    assert SECRET not in result.stdout + result.stderr + text


def test_a_failed_deploy_is_annotated_without_a_place(project: Project, summary: Path) -> None:
    project.write_spec(
        faults="    faults:\n      unhealthy_images: [img-golden]\n", health_deadline="0.3s")

    result = run("deploy", project.spec)

    assert result.exit_code == ExitCode.DEPLOY_FAILED
    [note] = _annotations(result.stdout)
    assert note.startswith("::error title=phoenix deploy::")
    assert "rolled back" in note


# --- the job summary --------------------------------------------------------------------


def test_validate_adds_what_the_spec_describes(project: Project, summary: Path) -> None:
    result = run("validate", project.spec)

    assert result.exit_code == 0
    assert _annotations(result.stdout) == []
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("### phoenix validate: valid\n")
    assert "| App | `demo` |" in text
    assert "| Nodes | 3 |" in text
    assert "| Regions | `region-a`, `region-b` |" in text
    assert "| Secret vars | `token` |" in text
    assert SECRET not in text


def test_plan_then_deploy_add_their_results(project: Project, summary: Path) -> None:
    assert run("plan", project.spec).exit_code == 0
    result = run("--output", "json", "deploy", project.spec)

    assert result.exit_code == 0
    deployed = json.loads(result.stdout)
    text = summary.read_text(encoding="utf-8")
    plan, deploy = text.split("### phoenix deploy: ")
    assert plan.startswith("### phoenix plan: changes\n")
    assert f"| Release | `{deployed['release']}` (new) |" in plan
    assert "`create demo-" in plan
    assert deploy.startswith("succeeded\n")
    assert f"| Release | `{deployed['release']}` |" in deploy
    assert "| Outcome | `succeeded` |" in deploy
    assert "| Regions tried | `region-a` |" in deploy
    nodes = ", ".join(f"`{node}`" for node in deployed["nodes"])
    assert f"| Nodes | 3: {nodes} |" in deploy
    assert re.search(r"^\| Duration \| \d+\.\ds \|$", deploy, re.MULTILINE)
    assert SECRET not in text
    assert "http" not in text.replace("`http://", "")  # the endpoint is code, not a link


def test_a_bad_spec_adds_its_problems(project: Project, summary: Path) -> None:
    _bad_count(project)

    run("deploy", project.spec)

    text = summary.read_text(encoding="utf-8")
    assert text.startswith("### phoenix deploy: failed\n")
    assert "| Exit code | 2 |" in text
    assert "**Errors**" in text
    assert f"phoenix.yaml:{COUNT_LINE}: count: " in text


def test_a_rolled_back_deploy_adds_its_outcome_and_error(
    project: Project, summary: Path
) -> None:
    project.write_spec(
        faults="    faults:\n      unhealthy_images: [img-golden]\n", health_deadline="0.3s")

    run("deploy", project.spec)

    text = summary.read_text(encoding="utf-8")
    assert text.startswith("### phoenix deploy: rolled-back\n")
    assert "| Outcome | `rolled-back` |" in text
    assert "| Reason | `" in text
    assert re.search(r"```text\n.*rolled back", text)


def test_a_summary_that_cannot_be_written_is_a_warning(
    project: Project, summary: Path
) -> None:
    summary.mkdir()

    result = run("validate", project.spec)

    assert result.exit_code == 0
    assert "warning: the job summary was not written" in result.stderr


def test_commands_that_are_not_summarized_add_nothing(project: Project, summary: Path) -> None:
    assert run("render", project.spec).exit_code == 0
    assert run("status", project.spec).exit_code == 0
    assert not summary.exists()


# --- off a runner -----------------------------------------------------------------------


@pytest.mark.parametrize("actions", [None, "false"])
def test_off_a_runner_nothing_extra_is_printed_or_written(
    project: Project, monkeypatch: pytest.MonkeyPatch, actions: str | None
) -> None:
    path = project.root / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(path))
    if actions is not None:
        monkeypatch.setenv("GITHUB_ACTIONS", actions)
    before = run("validate", project.spec)
    _bad_count(project)

    after = run("validate", project.spec)

    assert before.exit_code == 0
    assert after.exit_code == ExitCode.BAD_INPUT
    assert "::" not in before.stdout + before.stderr + after.stdout + after.stderr
    assert after.stdout == ""
    assert not path.exists()


# --- the module: escaping and markdown --------------------------------------------------


@pytest.mark.parametrize(
    ("text", "data", "prop"),
    [
        ("plain", "plain", "plain"),
        ("25%", "25%25", "25%25"),
        ("a\r\nb", "a%0D%0Ab", "a%0D%0Ab"),
        ("a:b,c", "a:b,c", "a%3Ab%2Cc"),
        ("%0A", "%250A", "%250A"),  # an escape in the text is not unescaped by the runner
    ],
)
def test_workflow_command_escaping(text: str, data: str, prop: str) -> None:
    assert github.escape_data(text) == data
    assert github.escape_property(text) == prop


def test_an_annotation_escapes_its_file_and_message() -> None:
    note = github.Annotation("line one\nline 2: 100%", file="dir,x/a:b.yaml", line=7)

    assert note.command() == (
        "::error file=dir%2Cx/a%3Ab.yaml,line=7,title=phoenix::line one%0Aline 2: 100%25")


def test_spec_problems_become_annotations_at_their_lines(tmp_path: Path) -> None:
    error = SpecError([
        f"{tmp_path}/deploy/phoenix.yaml:12: rollout.max_surge: expected a count, got 'x'",
        "phoenix.yaml:3: vars.a: says 'b:4: c'",
        "phoenix.yaml: expected a mapping of spec fields",
    ])

    notes = github.error_annotations(error, environ={"GITHUB_WORKSPACE": str(tmp_path)})

    assert notes == [
        github.Annotation("rollout.max_surge: expected a count, got 'x'",
                          "deploy/phoenix.yaml", 12),
        github.Annotation("vars.a: says 'b:4: c'", "phoenix.yaml", 3),
        github.Annotation("phoenix.yaml: expected a mapping of spec fields"),
    ]


def test_a_file_outside_the_workspace_keeps_its_path(tmp_path: Path) -> None:
    error = TemplateError("boom", template="/elsewhere/t.j2", line=4)

    [note] = github.error_annotations(error, environ={"GITHUB_WORKSPACE": str(tmp_path)})

    assert (note.file, note.line, note.message) == ("/elsewhere/t.j2", 4, "boom")


def test_other_errors_are_annotated_with_their_message() -> None:
    [note] = github.error_annotations(InputError("--region x: not one of the spec's"),
                                      title="phoenix plan", environ={})

    assert note.command() == "::error title=phoenix plan::--region x: not one of the spec's"


def _result(**changes: object) -> DeployResult:
    fields: dict[str, object] = {
        "app": "web", "action": "failover", "deploy_id": "d-1", "region": "east",
        "release": "r2-abc", "previous_release": "r1-def", "outcome": "succeeded",
        "steps": 7, "seconds": 75.25, "nodes": ("web-r2-abc-0",),
    }
    fields.update(changes)
    return DeployResult(**fields)  # type: ignore[arg-type]


def test_the_regions_tried_are_a_table() -> None:
    result = _result(attempts=(
        RegionAttempt("west", "failed", "r2-abc", "quota | exceeded", "region", False),
        RegionAttempt("east", "succeeded", "r2-abc"),
    ))

    text = github.result_summary("failover", result)

    assert "| Regions tried | `west`, `east` |" in text
    assert "| Duration | 1m15.2s |" in text
    assert ("| 1 | `west` | `failed` | `r2-abc` | `region-level failure: quota \\| exceeded"
            " (not cleaned up: unreachable)` |") in text
    assert "| 2 | `east` | `succeeded` | `r2-abc` | - |" in text


def test_a_multi_line_secret_is_masked_before_the_markdown_joins_its_lines() -> None:
    secret = "-----BEGIN KEY-----\nqwerty|uiop\n-----END KEY-----"
    result = _result(outcome="rolled-back", reason=f"bad: {secret}")

    text = github.result_summary("deploy", result, [f"failed: {secret}"],
                                 mask=lambda t: t.replace(secret, "***"))

    assert "| Reason | `bad: ***` |" in text
    assert "failed: ***" in text
    assert "qwerty" not in text


def test_values_cannot_break_out_of_their_code_span() -> None:
    text = github.result_summary("deploy", _result(reason="a `b` [c](http://x)\n# d"))

    assert "| Reason | ``a `b` [c](http://x) # d`` |" in text
