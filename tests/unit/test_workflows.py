"""The GitHub Action (``action.yml``) and every workflow pass actionlint, with shellcheck
on the shell in their ``run:`` steps; the action's own script does what its inputs say.

actionlint lints workflows, not an action's metadata file given alone: it checks
``action.yml`` when a workflow uses it (``uses: ./``) — its keys, each composite step,
the inputs the workflow gives and the outputs it reads. ``tests/workflows/`` holds such a
workflow; a structural check here adds what actionlint does not look at inside an action
(no ``${{ }}`` in its scripts; inputs reach them as environment variables).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ACTION = REPO / "action.yml"
WORKFLOWS = sorted([*(REPO / ".github" / "workflows").glob("*.y*ml"),
                    *(REPO / "tests" / "workflows").glob("*.y*ml")])
EXAMPLE = REPO / "examples" / "memory-hello"


def _tools_path() -> str:
    """PATH with this interpreter's scripts first: actionlint and shellcheck (both from
    the test extras) and the ``phoenix`` and ``python`` the action's script calls."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def _tool(name: str) -> str:
    found = shutil.which(name, path=_tools_path())
    assert found, f"{name} is not installed: pip install -e '.[test]'"
    return found


def _actionlint(*files: Path, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_tool("actionlint"), "-no-color", "-oneline", *map(str, files)],
        cwd=cwd, env={**os.environ, "PATH": _tools_path()},
        capture_output=True, text=True, timeout=120, check=False,
    )


def _action() -> dict[str, Any]:
    data = yaml.safe_load(ACTION.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


# --- actionlint -------------------------------------------------------------------------


def test_the_workflows_and_the_action_pass_actionlint() -> None:
    # actionlint says nothing of a `uses: ./` whose action.yml is missing.
    assert ACTION.is_file()
    assert [path.name for path in WORKFLOWS if path.parent.name == "workflows"]
    assert any("uses: ./\n" in path.read_text(encoding="utf-8") for path in WORKFLOWS)

    done = _actionlint(*WORKFLOWS)

    assert done.returncode == 0, done.stdout + done.stderr


def _repo_with(tmp_path: Path, action: str, workflow: str) -> Path:
    (tmp_path / ".git").mkdir()  # actionlint finds the project (and ./) by it
    (tmp_path / "action.yml").write_text(action, encoding="utf-8")
    folder = tmp_path / ".github" / "workflows"
    folder.mkdir(parents=True)
    (folder / "use.yml").write_text(workflow, encoding="utf-8")
    return folder / "use.yml"


def test_actionlint_checks_the_action_a_workflow_uses(tmp_path: Path) -> None:
    # Proof that the lint above reads action.yml: a broken copy of it fails.
    broken = ACTION.read_text(encoding="utf-8").replace("      shell: bash\n", "", 1)
    workflow = (REPO / "tests" / "workflows" / "uses-the-action.yml").read_text(
        encoding="utf-8")

    done = _actionlint(_repo_with(tmp_path, broken, workflow), cwd=tmp_path)

    assert done.returncode == 1
    assert 'requires "shell" key since it has "run" key' in done.stdout


def test_actionlint_catches_an_unknown_input_and_script_injection(tmp_path: Path) -> None:
    workflow = """\
on: pull_request
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - uses: ./
        with: {command: deploy, no-such-input: x}
      - run: echo "${{ github.event.pull_request.title }}" $UNQUOTED
"""
    done = _actionlint(_repo_with(tmp_path, ACTION.read_text(encoding="utf-8"), workflow),
                       cwd=tmp_path)

    assert done.returncode == 1
    assert 'input "no-such-input" is not defined' in done.stdout
    assert "potentially untrusted" in done.stdout
    assert "SC2086" in done.stdout  # shellcheck ran on the script


# --- the action's metadata --------------------------------------------------------------


def test_the_action_is_composite_with_its_inputs_and_outputs() -> None:
    action = _action()

    assert action["runs"]["using"] == "composite"
    assert set(action["inputs"]) == {"command", "spec", "environment", "region", "to",
                                     "python-version", "extra-args"}
    # The environment reaches validate and the command alike (as PHOENIX_ENV).
    for step in action["runs"]["steps"][2:]:
        assert step["env"]["PHOENIX_ENV"] == "${{ inputs.environment }}", step["name"]
    assert all(spec.get("description") for spec in action["inputs"].values())
    assert action["inputs"]["command"]["default"] == "deploy"
    for name, output in action["outputs"].items():
        assert output["value"] == f"${{{{ steps.run.outputs.{name} }}}}"
    assert {"release", "outcome"} <= set(action["outputs"])


def test_the_action_installs_phoenix_from_its_own_path() -> None:
    steps = _action()["runs"]["steps"]

    assert steps[0]["uses"].startswith("actions/setup-python@")
    assert steps[0]["with"]["python-version"] == "${{ inputs.python-version }}"
    assert '"$GITHUB_ACTION_PATH"' in steps[1]["run"]
    assert steps[2]["run"] == 'phoenix validate "$SPEC"'
    assert steps[-1]["id"] == "run"


def test_inputs_reach_the_scripts_only_as_environment_variables() -> None:
    for step in _action()["runs"]["steps"]:
        if "run" not in step:
            continue
        assert step["shell"] == "bash"
        assert "${{" not in step["run"], step.get("name")
        for value in step.get("env", {}).values():
            assert value.startswith("${{ inputs.") and value.endswith(" }}")


def test_the_action_scripts_pass_shellcheck(tmp_path: Path) -> None:
    for number, step in enumerate(_action()["runs"]["steps"]):
        if "run" not in step:
            continue
        script = tmp_path / f"step-{number}.sh"
        script.write_text("#!/usr/bin/env bash\n" + step["run"], encoding="utf-8")
        done = subprocess.run([_tool("shellcheck"), "--severity=style", str(script)],
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, f"{step.get('name')}:\n{done.stdout}"


# --- the action's script, run as the runner runs it -------------------------------------


def _run_step(
    tmp_path: Path, command: str, *, spec: str = "memory-hello/phoenix.yaml",
    to: str = "", extra: str = "",
) -> tuple[int, dict[str, str], str]:
    """Run the action's last step as the runner does (``bash -e -o pipefail``), with
    the Phoenix of this checkout on PATH instead of the install step: its exit code,
    its outputs and the job summary."""
    if not (tmp_path / "memory-hello").exists():
        shutil.copytree(EXAMPLE, tmp_path / "memory-hello")
    (tmp_path / "runner").mkdir(exist_ok=True)
    step = _action()["runs"]["steps"][-1]
    outputs, summary = tmp_path / "runner" / "output", tmp_path / "runner" / "summary.md"
    outputs.write_text("", encoding="utf-8")
    env = {
        **os.environ, "PATH": _tools_path(), "GITHUB_ACTIONS": "true",
        "GITHUB_OUTPUT": str(outputs), "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_WORKSPACE": str(tmp_path), "RUNNER_TEMP": str(tmp_path / "runner"),
        "COMMAND": command, "SPEC": spec, "REGION": "", "TO": to, "EXTRA_ARGS": extra,
    }
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    pairs = [line.split("=", 1) for line in outputs.read_text(encoding="utf-8").splitlines()]
    text = summary.read_text(encoding="utf-8") if summary.exists() else ""
    return done.returncode, dict(pairs), text


def test_the_action_deploys_and_sets_its_outputs(tmp_path: Path) -> None:
    code, outputs, summary = _run_step(tmp_path, "deploy", extra="--log-level warning")

    assert code == 0
    assert outputs["outcome"] == "succeeded"
    assert outputs["release"].startswith("r1-")
    assert outputs["exit-code"] == "0"
    assert Path(outputs["result-file"]).is_file()
    assert f"| Release | `{outputs['release']}` |" in summary


@pytest.mark.parametrize(("command", "outcome", "summarized"),
                         [("validate", "valid", False), ("plan", "changes", True)])
def test_the_action_validates_or_plans(
    tmp_path: Path, command: str, outcome: str, summarized: bool
) -> None:
    code, outputs, summary = _run_step(tmp_path, command)

    assert code == 0
    assert outputs["outcome"] == outcome
    # plan: the release the spec means; validate names none
    assert re.fullmatch("" if command == "validate" else r"r1-\w+", outputs["release"])
    # validate: the step before this one has summarized it already
    assert summary.startswith(f"### phoenix {command}: ") is summarized


def test_the_action_reports_a_failing_command(tmp_path: Path) -> None:
    code, outputs, summary = _run_step(tmp_path, "rollback")  # nothing to roll back to

    assert code != 0
    assert outputs["exit-code"] == str(code)
    assert outputs["outcome"] == "failed"
    assert outputs["release"] == ""
    assert summary.startswith("### phoenix rollback: failed\n")


@pytest.mark.parametrize("command", ["failover", "destroy"])  # failover: no `to` given
def test_the_action_refuses_a_command_it_cannot_run(tmp_path: Path, command: str) -> None:
    code, outputs, _ = _run_step(tmp_path, command)

    assert code == 2
    assert outputs == {}
