"""playbooks/bake-local-image.yml for real: ansible-playbook on ``connection: local`` bakes
the hello app into an image directory and imports it with ``phoenix image import``; a
spec naming that image deploys it on the local provider (real processes on 127.1.x.y
behind the built-in balancer) and it answers through the balancer. A rebake of the same
sources changes nothing; a changed app is a new image, which the next deploy rolls out.
``phoenix destroy`` then leaves no process behind."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.local_processes import (
    free_port,
    kill_everything_under,
    processes_mentioning,
    wait_for,
)
from tests.playbooks.ansible_tools import REPO, run, tool

EXAMPLE = REPO / "examples" / "hello"
PLAYBOOK = REPO / "playbooks" / "bake-local-image.yml"
LB_ADDRESS = "127.1.255.254"
IMAGE_NAME = "hello-golden"

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass
class Bakery:
    """A spec folder for the hello app whose image comes from the bake, not image.path."""

    root: Path
    app_src: Path
    scratch: Path
    lb_port: int

    @property
    def url(self) -> str:
        return f"http://{LB_ADDRESS}:{self.lb_port}/"

    def bake(self) -> subprocess.CompletedProcess[str]:
        # Relative paths on purpose: the playbook reads them from where it is run, as
        # phoenix reads the spec's relative state_dir.
        extra = {"app_src": "../app", "spec": "phoenix.yaml", "phoenix_cli": tool("phoenix")}
        return run(
            [tool("ansible-playbook"), str(PLAYBOOK), "-e", json.dumps(extra)],
            cwd=self.root, scratch=self.scratch,
        )

    def phoenix(self, *args: str) -> Any:
        result = subprocess.run(
            [tool("phoenix"), "--output", "json", *args, "phoenix.yaml"], cwd=self.root,
            capture_output=True, text=True, timeout=180, check=False,
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 0, result.stdout + result.stderr[-3000:]
        return json.loads(result.stdout)

    def images(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.phoenix("image", "list")["images"]
        return found

    def image_root(self, image_id: str) -> Path:
        return self.root / ".phoenix" / "local" / "images" / image_id / "root"

    def node_images(self) -> set[str]:
        nodes = self.root.glob(".phoenix/local/regions/*/apps/*/nodes/*/node.json")
        return {json.loads(node.read_text())["image_id"] for node in nodes}


@pytest.fixture
def bakery(tmp_path: Path) -> Iterator[Bakery]:
    root = tmp_path / "hello"
    root.mkdir()
    shutil.copy(EXAMPLE / "cloud-init.yaml.j2", root)
    app_src = tmp_path / "app"
    app_src.mkdir()
    shutil.copy(EXAMPLE / "image" / "server.py", app_src)
    port = free_port([LB_ADDRESS])
    spec = (EXAMPLE / "phoenix.yaml").read_text(encoding="utf-8")
    spec, named = re.subn(r"(?m)^  path: image .*$", f"  name: {IMAGE_NAME}", spec)
    assert named == 1, spec
    for old, new in [
        ("balancer: auto", "balancer: builtin"),
        ("lb_port: 8080", f"lb_port: {port}"),
        ("drain_timeout: 10s", "drain_timeout: 1s"),
    ]:
        assert old in spec, old
        spec = spec.replace(old, new)
    (root / "phoenix.yaml").write_text(spec, encoding="utf-8")
    try:
        yield Bakery(root, app_src, tmp_path / "ansible", port)
    finally:
        kill_everything_under(tmp_path)


def recap(output: str) -> dict[str, int]:
    found = re.search(r"localhost\s*:\s*(.*)", output.rsplit("PLAY RECAP", 1)[-1])
    assert found, output
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", found.group(1))}


def task_status(output: str, task: str) -> str:
    """What ansible printed for the task whose name starts with ``task`` (ok, changed...)."""
    found = re.search(rf"TASK \[{re.escape(task)}[^\n]*\n(\w+): \[localhost\]", output)
    assert found, output
    return found.group(1)


def answers(url: str, count: int) -> list[list[str]]:
    return [httpx.get(url, timeout=5).text.splitlines() for _ in range(count)]


def test_the_baked_image_deploys_and_a_rebake_rolls_out(bakery: Bakery) -> None:
    # Bake: the app goes into the image under opt/, with the service that runs it.
    first = bakery.bake()
    assert first.returncode == 0, first.stdout + first.stderr
    assert recap(first.stdout)["failed"] == 0
    assert task_status(first.stdout, "Import the image") == "changed"
    [image] = bakery.images()
    assert image["name"] == IMAGE_NAME
    root = bakery.image_root(image["id"])
    assert (root / "opt" / "hello" / "server.py").read_bytes() == (
        bakery.app_src / "server.py").read_bytes()
    assert "opt/hello/server.py" in (root / "phoenix-image.yaml").read_text()
    assert f"image {{name: {IMAGE_NAME}}} finds {image['id']}" in first.stdout

    # The same sources again: nothing changes, the same image.
    again = bakery.bake()
    assert again.returncode == 0, again.stdout + again.stderr
    assert recap(again.stdout)["changed"] == 0, again.stdout
    assert task_status(again.stdout, "Import the image") == "ok"
    assert [(found["id"], found["created_at"]) for found in bakery.images()] == [
        (image["id"], image["created_at"])]

    # The spec names the baked image; the deploy boots it and serves through the balancer.
    deployed = bakery.phoenix("deploy")
    assert deployed["outcome"] == "succeeded", deployed
    release = deployed["release"]
    assert bakery.node_images() == {image["id"]}
    for lines in answers(bakery.url, 6):
        assert lines[0].startswith(f"release {release} node hello-{release}-"), lines
        assert lines[1] == "Hello from Phoenix!"

    # A changed app is a new image of the same name; the next deploy rolls it out.
    server = bakery.app_src / "server.py"
    server.write_text(server.read_text() + "\n# v2: baked again\n")
    rebake = bakery.bake()
    assert rebake.returncode == 0, rebake.stdout + rebake.stderr
    assert task_status(rebake.stdout, "Install the app") == "changed"
    assert task_status(rebake.stdout, "Import the image") == "changed"
    new = [found for found in bakery.images() if found["id"] != image["id"]]
    assert [found["name"] for found in new] == [IMAGE_NAME], bakery.images()
    assert (bakery.image_root(new[0]["id"]) / "opt/hello/server.py").read_text().endswith(
        "# v2: baked again\n")
    redeployed = bakery.phoenix("deploy")
    assert redeployed["outcome"] == "succeeded", redeployed
    assert redeployed["release"] != release
    wait_for(lambda: bakery.node_images() == {new[0]["id"]}, 15, "the old nodes to go")
    for lines in answers(bakery.url, 6):
        assert lines[0].startswith(f"release {redeployed['release']} node "), lines

    # destroy stops every node, balancer and supervisor the deploys started.
    bakery.phoenix("destroy", "--yes")
    wait_for(lambda: not processes_mentioning(bakery.root), 15, "every process to exit")
    with pytest.raises(httpx.TransportError):
        httpx.get(bakery.url, timeout=2)
