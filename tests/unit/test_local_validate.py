"""On the local provider, cloud-init keys outside the supported subset are bad input:
refused by validation (exit 2) before anything is created."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from phoenix.cli import app

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hello"


def test_unsupported_cloud_config_key_exits_2_and_creates_nothing(tmp_path: Path) -> None:
    root = tmp_path / "hello"
    shutil.copytree(EXAMPLE, root)
    (root / "cloud-init.yaml.j2").write_text("#cloud-config\npackages: [nginx]\n")
    spec = root / "phoenix.yaml"
    state = tmp_path / "state"
    spec.write_text(spec.read_text().replace("state_dir: .phoenix/local", f"state_dir: {state}"))
    result = CliRunner().invoke(app, ["deploy", str(spec)])
    assert result.exit_code == 2
    assert "cloud-init.yaml.j2" in result.output and "'packages'" in result.output
    assert not state.exists()
