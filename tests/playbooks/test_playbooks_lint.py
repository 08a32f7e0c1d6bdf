"""Every playbook in playbooks/ passes ``ansible-playbook --syntax-check`` and
``ansible-lint`` under its strictest profile (production), offline: the playbooks use
ansible.builtin only, so nothing is fetched from Galaxy. A copy with a planted fault
shows that the lint run really reads the playbooks and can fail."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.playbooks.ansible_tools import PLAYBOOKS, run, tool


def test_there_are_playbooks() -> None:
    names = {playbook.name for playbook in PLAYBOOKS}
    assert {"bake-golden-image.yml", "bake-local-image.yml"} <= names


@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=lambda path: path.name)
def test_syntax_check(playbook: Path, tmp_path: Path) -> None:
    result = run(
        [tool("ansible-playbook"), "--syntax-check", "-i", "localhost,", str(playbook)],
        cwd=tmp_path, scratch=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"playbook: {playbook}" in result.stdout


def _lint(paths: list[Path], tmp_path: Path) -> tuple[int, str]:
    # --offline: no Galaxy downloads, no schema refresh and no version check (CI has no
    # internet beyond the package registries).
    result = run(
        [tool("ansible-lint"), "--offline", "--nocolor", "--profile", "production",
         "--format", "pep8", *map(str, paths)],
        cwd=tmp_path, scratch=tmp_path,
    )
    return result.returncode, result.stdout + result.stderr


def test_ansible_lint_production_profile(tmp_path: Path) -> None:
    returncode, output = _lint(PLAYBOOKS, tmp_path)
    assert returncode == 0, output
    assert f"{len(PLAYBOOKS)} files processed" in output, output
    assert "Profile 'production' was required, and it passed" in output, output


def test_ansible_lint_catches_a_planted_fault(tmp_path: Path) -> None:
    copy = tmp_path / "project" / "playbooks"
    copy.mkdir(parents=True)
    for playbook in PLAYBOOKS:
        shutil.copy(playbook, copy / playbook.name)
    local = copy / "bake-local-image.yml"
    text = local.read_text(encoding="utf-8")
    assert "      ansible.builtin.file:\n" in text
    # A short module name and a free-form command without changed_when.
    local.write_text(
        text.replace("      ansible.builtin.file:\n", "      file:\n", 1)
        + "\n    - name: Planted\n      ansible.builtin.command: phoenix --version\n",
        encoding="utf-8",
    )
    returncode, output = _lint(sorted(copy.glob("*.yml")), tmp_path)
    assert returncode != 0, output
    assert "fqcn[action-core]" in output, output
    assert "no-changed-when" in output, output
