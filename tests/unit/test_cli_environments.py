"""``--env``: one example spec, staging and prod deployed side by side from the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from phoenix.cli import app as phoenix_cli

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "memory-hello"


def run(*args: str | Path) -> Any:
    return CliRunner().invoke(phoenix_cli, [str(a) for a in args])


def status_of(spec: Path, env: str) -> dict[str, Any]:
    result = run("--output", "json", "status", "--env", env, spec)
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


@pytest.fixture
def spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(EXAMPLE, tmp_path / "example")
    monkeypatch.chdir(tmp_path)  # the memory cloud's state file is relative to here
    monkeypatch.delenv("PHOENIX_ENV", raising=False)
    return tmp_path / "example" / "phoenix.yaml"


def test_staging_and_prod_of_the_example_deploy_different_counts_and_vars(spec: Path) -> None:
    assert run("deploy", "--env", "staging", spec).exit_code == 0
    assert run("--env", "prod", "deploy", spec).exit_code == 0  # the global form

    staging, prod = status_of(spec, "staging"), status_of(spec, "prod")
    assert (staging["app"], prod["app"]) == ("hello-staging", "hello-prod")
    serving = {name: [n for n in data["regions"][0]["nodes"] if n["member"] == "SERVING"]
               for name, data in (("staging", staging), ("prod", prod))}
    assert (len(serving["staging"]), len(serving["prod"])) == (1, 3)
    assert all(n["name"].startswith("hello-staging-") for n in serving["staging"])

    staging_data = run("render", "--env", "staging", spec)
    prod_data = run("render", "--env", "prod", spec)
    assert "hello from staging" in staging_data.stdout
    assert "hello from phoenix" in prod_data.stdout
    assert "hello from staging" not in prod_data.stdout

    # Destroying staging leaves prod serving: each environment is its own instance.
    assert run("destroy", "--env", "staging", "--yes", spec).exit_code == 0
    assert status_of(spec, "staging")["regions"][0]["nodes"] == []
    assert len(status_of(spec, "prod")["regions"][0]["nodes"]) == 3


def test_an_unknown_env_names_the_defined_ones_and_changes_nothing(spec: Path) -> None:
    result = run("deploy", "--env", "qa", spec)
    assert result.exit_code == 2
    assert "no such environment (defined: prod, staging)" in result.output
    assert not (spec.parent.parent / ".phoenix").exists()


def test_validate_checks_every_environment(spec: Path) -> None:
    ok = run("validate", spec)
    assert ok.exit_code == 0, ok.output
    assert "environments prod, staging ok" in ok.stdout
    broken = spec.with_name("phoenix.staging.yaml")
    broken.write_text("vars:\n  port: 8080\ncount: 0\n")
    bad = run("validate", spec)
    assert bad.exit_code == 2
    assert f"{broken}:3: count:" in bad.output
    assert run("validate", "--env", "prod", spec).exit_code == 0  # prod alone is fine
