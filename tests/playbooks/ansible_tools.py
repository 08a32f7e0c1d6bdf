"""Running ansible-playbook and ansible-lint from the test extra, shut in a temporary
folder: their home, caches, temporary files and configuration live under it, so a run
writes nothing into $HOME or the repository and reads no ansible.cfg of the machine."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = sorted((REPO / "playbooks").glob("*.yml"))
BIN = Path(sys.executable).parent
"""This interpreter's scripts: ansible-playbook, ansible-lint and phoenix come from the
test extra installed beside it, whatever the PATH of the shell that started pytest."""


def tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN))
    assert found, f"{name} is not installed beside {sys.executable}: pip install -e '.[test]'"
    return found


def ansible_env(scratch: Path) -> dict[str, str]:
    """The environment for an ansible command whose writable state is under ``scratch``."""
    home = scratch / "home"
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    config = scratch / "ansible.cfg"
    config.write_text("[defaults]\n", encoding="utf-8")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ANSIBLE_", "XDG_")) and key not in ("HOME", "PWD")
    }
    env.update(
        HOME=str(home),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        ANSIBLE_CONFIG=str(config),
        ANSIBLE_HOME=str(home / ".ansible"),
        ANSIBLE_LOCAL_TEMP=str(home / "tmp"),
        ANSIBLE_REMOTE_TEMP=str(home / "tmp"),
        ANSIBLE_NOCOLOR="1",
        NO_COLOR="1",
        PATH=os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),
    )
    return env


def run(argv: list[str], *, cwd: Path, scratch: Path, timeout: float = 300
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, env=ansible_env(scratch), capture_output=True, text=True,
        timeout=timeout, check=False, stdin=subprocess.DEVNULL,
    )
