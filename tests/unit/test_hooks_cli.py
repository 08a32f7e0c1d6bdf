"""The hooks a run ran, in ``phoenix deploy``'s text and ``--output json``, with the
spec's secrets masked in what a hook printed."""

from __future__ import annotations

import json

import phoenix
from tests.unit.test_cli import SECRET, Project, project, run, run_json

__all__ = ["project"]  # the fixture, shared with the CLI's own tests

HOOKS = """\
hooks:
  pre_terminate:
    - run: 'echo "saved with token $(cat secrets/token.txt)"'
  post_deploy:
    - {run: 'exit 3', on_failure: continue}
"""


def test_deploy_lists_its_hooks_in_text_and_json(project: Project) -> None:
    project.spec.write_text(project.spec.read_text() + HOOKS)
    assert run("deploy", project.spec).exit_code == 0
    text = project.spec.read_text().replace("greeting: hello", "greeting: again")
    project.spec.write_text(text)
    result, data = run_json("deploy", project.spec)
    assert result.exit_code == 0, result.output
    hooks = data["hooks"]
    assert [h["moment"] for h in hooks] == ["pre_terminate"] * 3 + ["post_deploy"]
    assert {h["outcome"] for h in hooks[:3]} == {"ok"}
    assert hooks[0]["detail"] == "saved with token ***"
    assert hooks[3]["outcome"] == "warned" and hooks[3]["detail"] == "exit 3"
    assert SECRET not in result.stdout + result.stderr
    # Nor in the history record kept in the cloud's store (read as the library reads it,
    # not through the CLI, which masks whatever it prints).
    record = phoenix.history(phoenix.load_spec(project.spec))[-1]
    assert record.hooks[0]["detail"] == "saved with token ***"
    assert SECRET not in json.dumps(record.hooks)

    project.spec.write_text(text.replace("greeting: again", "greeting: third"))
    shown = run("--output", "text", "deploy", project.spec)
    assert shown.exit_code == 0, shown.output
    assert "  hooks     pre_terminate 3 ok; post_deploy 1 warned" in shown.stdout
    assert "    ! post_deploy [run: exit 3] warned in " in shown.stdout
