"""Local images and nodes with real processes on 127.0.0.0/8: a node is built from an
immutable image, boots its user-data as cloud-init would, serves on its own loopback
address, reports faults, outlives its creator, and leaves nothing behind when deleted.

Only 127.x.y.z addresses and ephemeral ports are used. Every node process is killed in
teardown even when a test fails, and teardown fails if ``delete`` left one behind."""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from phoenix.errors import BadRequest, InputError, NotFound, UnknownResource
from phoenix.processes import process_alive, process_start_ticks
from phoenix.providers.local.agent import read_status, write_status
from phoenix.providers.local.images import (
    MANIFEST,
    LocalImage,
    get_image,
    import_image,
    list_images,
)
from phoenix.providers.local.nodes import LocalNodes, NodeRecord

pytestmark = pytest.mark.integration

NOW = datetime(2026, 1, 1, tzinfo=UTC)
PYTHON = sys.executable
SECRET = "hunter2-local-secret"
BOOT_TIMEOUT = 20.0  # seconds; a node boots in about a second on a quiet machine

SERVER = """\
import http.server, sys

address, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(path, "rb") as handle:
            body = handle.read()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

print(f"serving {path} on {address}:{port}", flush=True)
http.server.ThreadingHTTPServer((address, port), Handler).serve_forever()
"""


@dataclass
class Region:
    """A region directory, its nodes and a free loopback address + port for this test."""

    nodes: LocalNodes
    images_root: Path
    tmp: Path
    address: str
    port: int


def _free_address_and_port() -> tuple[str, int]:
    # A random 127.x.y.z keeps parallel test runs apart; port 0 picks a free port on it.
    for _ in range(50):
        x, y, z = random.randint(100, 254), random.randint(0, 255), random.randint(2, 254)
        address = f"127.{x}.{y}.{z}"
        with socket.socket() as probe:
            try:
                probe.bind((address, 0))
            except OSError:
                continue
            return address, probe.getsockname()[1]
    raise RuntimeError("no free loopback address")


def _processes_mentioning(tmp: Path) -> set[int]:
    """Live processes whose environment points into ``tmp`` (node agents and their children)."""
    needle = str(tmp).encode()
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or process_start_ticks(int(entry)) is None:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                variables = handle.read().split(b"\0")
        except OSError:
            continue
        if any(
            v.startswith((b"PHOENIX_NODE_DIR=", b"PHOENIX_NODE_ROOT=")) and needle in v
            for v in variables
        ):
            found.add(int(entry))
    return found


@pytest.fixture
def region(tmp_path: Path) -> Iterator[Region]:
    address, port = _free_address_and_port()
    nodes = LocalNodes(tmp_path / "region-a", command_timeout=30)
    try:
        yield Region(nodes, tmp_path / "images", tmp_path, address, port)
    finally:
        try:
            for record in nodes.list():
                nodes.delete(record.id)
        finally:
            leftovers = _processes_mentioning(tmp_path)
            for pid in leftovers:
                os.kill(pid, signal.SIGKILL)
        assert not leftovers, f"delete left node processes running: {leftovers}"


def _image_dir(tmp: Path, manifest: str, files: dict[str, str] | None = None) -> Path:
    source = tmp / f"image-src-{random.randrange(1 << 30)}"
    source.mkdir()
    (source / MANIFEST).write_text(manifest)
    for name, text in (files or {}).items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text(text)
    return source


def _web_image(region: Region, *, stop_timeout: float = 5) -> LocalImage:
    manifest = f"""\
command: [{PYTHON}, server.py, '${{PHOENIX_NODE_ADDRESS}}', '${{PORT}}', etc/app/greeting]
env: {{PORT: '{region.port}', PYTHONUNBUFFERED: '1'}}
stop_timeout: {stop_timeout}
"""
    source = _image_dir(region.tmp, manifest, {"server.py": SERVER})
    return import_image(region.images_root, source, name="web", now=NOW)


def _command_image(region: Region, command: str, *, stop_timeout: float = 5) -> LocalImage:
    manifest = f"command: [/bin/sh, -c, {json.dumps(command)}]\nstop_timeout: {stop_timeout}\n"
    return import_image(region.images_root, _image_dir(region.tmp, manifest), now=NOW)


def _greeting_user_data(greeting: str = "hello from the node") -> str:
    return textwrap.dedent(
        f"""\
        #cloud-config
        write_files:
          - path: /etc/app/greeting
            content: {json.dumps(greeting)}
            owner: root:root
        """
    )


def _create(
    region: Region, image: LocalImage, user_data: str, *, name: str = "web-r1-0"
) -> NodeRecord:
    return region.nodes.create(
        name=name,
        address=region.address,
        image=image,
        user_data=user_data,
        metadata={"phoenix:app": "web"},
        now=NOW,
    )


def _wait_until_built(nodes: LocalNodes, name: str) -> NodeRecord:
    deadline = time.monotonic() + BOOT_TIMEOUT
    while time.monotonic() < deadline:
        [record] = [r for r in nodes.list() if r.name == name]
        if record.state != "BUILD":
            return record
        time.sleep(0.02)
    raise AssertionError(f"node {name} still BUILD after {BOOT_TIMEOUT} s")


def _wait_for_state(nodes: LocalNodes, name: str, state: str) -> NodeRecord:
    deadline = time.monotonic() + BOOT_TIMEOUT
    record = None
    while time.monotonic() < deadline:
        [record] = [r for r in nodes.list() if r.name == name]
        if record.state == state:
            return record
        time.sleep(0.02)
    raise AssertionError(f"node {name} never reached {state}: {record}")


def _node_dir(region: Region, name: str = "web-r1-0") -> Path:
    return region.nodes.region_dir / "nodes" / name


def _pids(region: Region, name: str = "web-r1-0") -> list[tuple[int, int]]:
    """(pid, start ticks) of the node's agent and service, to check they are gone later."""
    status = read_status(_node_dir(region, name))
    pids = [status["agent_pid"], status.get("service_pid")]
    return [(pid, ticks) for pid in pids if pid and (ticks := process_start_ticks(pid))]


# --- images ---------------------------------------------------------------------------------


def test_same_content_gives_the_same_image(tmp_path: Path) -> None:
    source = _image_dir(tmp_path, "command: [/bin/true]\n", {"app/main.sh": "echo hi\n"})
    first = import_image(tmp_path / "images", source, now=NOW)
    (source / "__pycache__").mkdir()
    (source / "__pycache__" / "x.pyc").write_bytes(b"junk")  # ignored, like .git
    (source / "app" / "stale.pyc").write_bytes(b"junk")
    again = import_image(tmp_path / "images", source, now=NOW + timedelta(hours=1))
    assert again == first  # same id, and the first created_at is kept
    assert first.id == "img-" + first.digest[:12]
    assert first.name == source.name
    assert list_images(tmp_path / "images") == [first]
    assert get_image(tmp_path / "images", first.id) == first


def test_a_changed_directory_is_a_new_image(tmp_path: Path) -> None:
    source = _image_dir(tmp_path, "command: [/bin/true]\n", {"app/main.sh": "echo hi\n"})
    first = import_image(tmp_path / "images", source, now=NOW)
    (source / "app" / "main.sh").write_text("echo bye\n")
    second = import_image(tmp_path / "images", source, name="v2", now=NOW + timedelta(1))
    (source / "app" / "main.sh").chmod(0o755)  # the executable bit is content too
    third = import_image(tmp_path / "images", source, now=NOW + timedelta(2))
    assert len({first.id, second.id, third.id}) == 3
    assert second.name == "v2"
    assert [i.id for i in list_images(tmp_path / "images")] == [first.id, second.id, third.id]
    assert (first.root / "app" / "main.sh").read_text() == "echo hi\n"  # old image unchanged


def test_an_image_is_a_read_only_copy(tmp_path: Path) -> None:
    source = _image_dir(tmp_path, "command: [/bin/true]\n", {"bin/run": "#!/bin/sh\n"})
    (source / "bin" / "run").chmod(0o755)
    image = import_image(tmp_path / "images", source, now=NOW)
    assert image.root != source and image.root.is_relative_to(tmp_path / "images")
    assert stat.S_IMODE((image.root / "bin" / "run").stat().st_mode) == 0o555
    assert stat.S_IMODE((image.root / MANIFEST).stat().st_mode) == 0o444
    assert stat.S_IMODE((image.root / "bin").stat().st_mode) == 0o555
    assert stat.S_IMODE(image.root.stat().st_mode) == 0o555
    (source / "bin" / "run").write_text("changed")
    assert (image.root / "bin" / "run").read_text() == "#!/bin/sh\n"


def test_concurrent_imports_of_the_same_content_agree(tmp_path: Path) -> None:
    source = _image_dir(tmp_path, "command: [/bin/true]\n", {f"f{i}": str(i) for i in range(50)})
    results: list[LocalImage] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(import_image(tmp_path / "images", source, now=NOW))
        )
        for _ in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 6 and len(set(results)) == 1
    assert [p.name for p in (tmp_path / "images").iterdir()] == [results[0].id]  # no temp dirs


def test_a_missing_manifest_names_the_file(tmp_path: Path) -> None:
    source = tmp_path / "no-manifest"
    source.mkdir()
    with pytest.raises(InputError) as caught:
        import_image(tmp_path / "images", source, now=NOW)
    assert str(source / MANIFEST) in str(caught.value)
    assert "command:" in str(caught.value)  # says what to write
    assert not (tmp_path / "images").exists()


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        ("env: {A: b}\n", "field 'command' is required"),
        ("command: python3 server.py\n", "field 'command' must be a list"),
        ("command: []\n", "field 'command' must be a non-empty list"),
        ("command: [x]\nstop_timeout: -1\n", "field 'stop_timeout'"),
        ("command: [x]\nenv: [A]\n", "field 'env' must be a mapping"),
        ("command: [x]\nenv: {PHOENIX_NODE_NAME: a}\n", "field 'env.PHOENIX_NODE_NAME'"),
        ("command: ['${NOPE}']\n", "field 'command[0]' uses ${NOPE}"),
        ("command: [x]\nrestart: always\n", "unknown field(s) restart"),
        ("- just a list\n", "must be a mapping"),
    ],
)
def test_an_invalid_manifest_names_file_and_field(
    tmp_path: Path, manifest: str, expected: str
) -> None:
    source = _image_dir(tmp_path, manifest)
    with pytest.raises(InputError) as caught:
        import_image(tmp_path / "images", source, now=NOW)
    assert str(source / MANIFEST) in str(caught.value)
    assert expected in str(caught.value)


def test_an_unknown_image_id_is_an_unknown_resource(tmp_path: Path) -> None:
    for image_id in ("img-000000000000", "../etc", "img-"):
        with pytest.raises(UnknownResource):
            get_image(tmp_path / "images", image_id)
    assert list_images(tmp_path / "images") == []


# --- nodes ----------------------------------------------------------------------------------


def test_a_node_boots_and_serves_what_its_user_data_wrote(region: Region) -> None:
    image = _web_image(region)
    user_data = textwrap.dedent(
        f"""\
        #cloud-config
        bootcmd:
          - mkdir -p var/run
        write_files:
          - path: /etc/app/greeting
            content: "hello from the node"
            owner: root:root
          - path: /etc/app/secret
            encoding: b64
            content: {base64.b64encode(SECRET.encode()).decode()}
            permissions: '0600'
          - path: /etc/app/later
            content: deferred
            defer: true
        runcmd:
          - echo "$PHOENIX_NODE_NAME $PHOENIX_NODE_ADDRESS $PHOENIX_REGION" > var/run/identity
          - [cp, /dev/null, var/run/ready]
          - test -f etc/app/later && test "$(cat etc/app/secret)" = {SECRET}
        """
    )
    started = time.monotonic()
    created = _create(region, image, user_data)
    create_seconds = time.monotonic() - started
    assert created.state == "BUILD" and created.fault is None
    assert create_seconds < 0.5, f"create took {create_seconds:.3f} s"
    assert created.id.startswith("node-") and created.image_id == image.id

    active = _wait_until_built(region.nodes, "web-r1-0")
    assert active.state == "ACTIVE", active.fault
    response = httpx.get(f"http://{region.address}:{region.port}/", timeout=5)
    assert response.status_code == 200
    assert response.text == "hello from the node"

    node_dir = _node_dir(region)
    root = node_dir / "root"
    assert (root / "var/run/identity").read_text() == f"web-r1-0 {region.address} region-a\n"
    assert (root / "var/run/ready").exists()
    assert stat.S_IMODE((root / "etc/app/secret").stat().st_mode) == 0o600
    assert stat.S_IMODE((root / "etc/app/greeting").stat().st_mode) == 0o644
    assert stat.S_IMODE((node_dir / "user-data").stat().st_mode) == 0o600
    assert stat.S_IMODE(node_dir.stat().st_mode) == 0o700
    assert (root / "server.py").stat().st_mode & stat.S_IWUSR  # the node's copy is writable
    console = (node_dir / "console.log").read_text()
    assert "cannot chown" in console  # the owner note
    assert f"serving etc/app/greeting on {region.address}:{region.port}" in console
    assert SECRET not in console  # neither the file content nor the runcmd text is logged
    assert {p.name for p in image.root.parent.iterdir()} == {"root", "image.json"}


def test_create_is_idempotent_by_name(region: Region) -> None:
    image = _command_image(region, "exec sleep 300")
    first = _create(region, image, "")
    agent = read_status(_node_dir(region))["agent_pid"]
    again = _create(region, image, "#cloud-config\nruncmd: [[echo, ignored]]\n")
    assert again.id == first.id
    assert read_status(_node_dir(region))["agent_pid"] == agent
    assert [r.id for r in region.nodes.list()] == [first.id]


def test_a_failing_runcmd_is_a_fault(region: Region) -> None:
    image = _command_image(region, "exec sleep 300")
    user_data = (
        "#cloud-config\nruncmd:\n  - ['true']\n"
        "  - echo first >&2; echo 'config check failed' >&2; exit 2\n  - touch never\n"
    )
    _create(region, image, user_data)
    record = _wait_until_built(region.nodes, "web-r1-0")
    assert record.state == "ERROR"
    assert record.fault == "runcmd[1] exited 2: config check failed"
    assert not (_node_dir(region) / "root" / "never").exists()
    assert "config check failed" in (_node_dir(region) / "console.log").read_text()


def test_a_script_user_data_runs(region: Region) -> None:
    image = _command_image(region, "exec sleep 300")
    _create(region, image, '#!/bin/sh\necho "$PHOENIX_NODE_ID" > booted\n')
    record = _wait_until_built(region.nodes, "web-r1-0")
    assert record.state == "ACTIVE", record.fault
    assert (_node_dir(region) / "root" / "booted").read_text() == f"{record.id}\n"


@pytest.mark.parametrize(
    ("command", "passes_active"),
    [("exit 3", False), ("sleep 0.8; exit 3", True)],
    ids=["at-start", "after-active"],
)
def test_a_crashing_service_is_a_fault(region: Region, command: str, passes_active: bool) -> None:
    image = _command_image(region, command)
    _create(region, image, "")
    if passes_active:
        _wait_for_state(region.nodes, "web-r1-0", "ACTIVE")
    record = _wait_for_state(region.nodes, "web-r1-0", "ERROR")
    assert record.fault == "service exited with code 3"


def test_a_write_through_a_symlink_out_of_the_node_is_refused(region: Region) -> None:
    outside = region.tmp / "outside"
    outside.mkdir()
    source = _image_dir(region.tmp, "command: [/bin/sleep, '300']\n")
    (source / "etc").symlink_to(outside)
    image = import_image(region.images_root, source, now=NOW)
    _create(region, image, "#cloud-config\nwrite_files: [{path: /etc/passwd, content: x}]\n")
    record = _wait_until_built(region.nodes, "web-r1-0")
    assert record.state == "ERROR"
    assert record.fault is not None and "leads outside the node's root" in record.fault
    assert list(outside.iterdir()) == []


def test_a_killed_agent_is_reported_and_delete_still_cleans_up(region: Region) -> None:
    image = _web_image(region)
    _create(region, image, _greeting_user_data())
    assert _wait_until_built(region.nodes, "web-r1-0").state == "ACTIVE"
    pids = _pids(region)
    agent, _ = pids[0]
    os.kill(agent, signal.SIGKILL)
    record = _wait_for_state(region.nodes, "web-r1-0", "ERROR")
    assert record.fault == "node process died"
    assert read_status(_node_dir(region))["state"] == "ERROR"  # persisted for other readers
    region.nodes.delete("web-r1-0")
    assert not any(process_alive(pid, ticks) for pid, ticks in pids)  # the orphaned service too
    assert not _node_dir(region).exists()


def test_a_deletion_interrupted_by_kill_9_is_reported_and_finished_later(
    region: Region,
) -> None:
    """A deploy killed mid-delete must not leave a server stuck in DELETING forever."""
    image = _web_image(region)
    _create(region, image, _greeting_user_data())
    assert _wait_until_built(region.nodes, "web-r1-0").state == "ACTIVE"
    pids = _pids(region)
    deleter = subprocess.Popen([sys.executable, "-c", "pass"])
    deleter.wait()  # a process that is gone, as a killed `phoenix deploy` would be
    status = read_status(_node_dir(region))
    write_status(_node_dir(region), {**status, "state": "DELETING",
                                     "deleter_pid": deleter.pid, "deleter_start": None})
    record = next(r for r in region.nodes.list() if r.name == "web-r1-0")
    assert (record.state, record.fault) == ("ERROR", "its deletion was interrupted")
    region.nodes.delete("web-r1-0")  # what the next run does with an ERROR node
    assert not any(process_alive(pid, ticks) for pid, ticks in pids)
    assert not _node_dir(region).exists()


def test_delete_leaves_no_process_and_no_directory(region: Region) -> None:
    image = _command_image(region, "exec sleep 300")
    user_data = "#cloud-config\nruncmd:\n  - sleep 300 & echo $! > bg.pid\n"
    created = _create(region, image, user_data)
    assert _wait_until_built(region.nodes, "web-r1-0").state == "ACTIVE"
    background = int((_node_dir(region) / "root" / "bg.pid").read_text())
    pids = [*_pids(region), (background, process_start_ticks(background))]
    assert all(process_alive(pid, ticks) for pid, ticks in pids)
    region.nodes.delete(created.id)  # by id
    assert not any(process_alive(pid, ticks) for pid, ticks in pids)
    assert not _node_dir(region).exists()
    assert region.nodes.list() == []
    region.nodes.delete(created.id)  # a missing node is not an error
    region.nodes.delete("never-existed")


def test_delete_kills_a_service_that_ignores_sigterm(region: Region) -> None:
    image = _command_image(region, "trap '' TERM; while :; do sleep 0.1; done", stop_timeout=0.5)
    _create(region, image, "")
    assert _wait_until_built(region.nodes, "web-r1-0").state == "ACTIVE"
    pids = _pids(region)
    started = time.monotonic()
    region.nodes.delete("web-r1-0")
    assert time.monotonic() - started < 0.5 + 1.0 + 3.0  # stop_timeout + grace + SIGKILL
    assert not any(process_alive(pid, ticks) for pid, ticks in pids)


def test_nodes_outlive_the_process_that_created_them(region: Region) -> None:
    image = _web_image(region)
    code = textwrap.dedent(
        f"""\
        import os
        from datetime import datetime
        from pathlib import Path
        from phoenix.providers.local.images import get_image
        from phoenix.providers.local.nodes import LocalNodes
        nodes = LocalNodes(Path({str(region.nodes.region_dir)!r}), command_timeout=30)
        image = get_image(Path({str(region.images_root)!r}), {image.id!r})
        record = nodes.create(name="web-r1-0", address={region.address!r}, image=image,
                              user_data={_greeting_user_data("from a dead parent")!r},
                              metadata={{}}, now=datetime.fromisoformat({NOW.isoformat()!r}))
        print(record.state, os.getpid())
        """
    )
    done = subprocess.run(
        [PYTHON, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    state, creator = done.stdout.split()
    assert state == "BUILD"
    record = _wait_until_built(region.nodes, "web-r1-0")
    assert record.state == "ACTIVE", record.fault
    agent = read_status(_node_dir(region))["agent_pid"]
    assert process_start_ticks(int(creator)) is None  # the creator is gone ...
    assert httpx.get(f"http://{region.address}:{region.port}/", timeout=5).text == (
        "from a dead parent"  # ... and the node serves
    )
    assert process_alive(agent, None)


def test_unsupported_user_data_is_refused_before_anything_is_written(region: Region) -> None:
    image = _command_image(region, "exec sleep 300")
    with pytest.raises(BadRequest) as caught:
        _create(region, image, "#cloud-config\npackages: [nginx]\nusers: [app]\n")
    assert "'packages'" in str(caught.value) and "'users'" in str(caught.value)
    nodes_dir = region.nodes.region_dir / "nodes"
    assert not nodes_dir.exists() or list(nodes_dir.iterdir()) in ([], [nodes_dir / ".lock"])
    assert region.nodes.list() == []


def test_bad_names_and_addresses_are_refused(region: Region) -> None:
    image = _command_image(region, "exec sleep 300")
    for name, address in [("../evil", region.address), ("web", "10.0.0.1"), ("web", "::1")]:
        with pytest.raises(BadRequest):
            region.nodes.create(
                name=name, address=address, image=image, user_data="", metadata={}, now=NOW
            )
    _create(region, image, "", name="a")
    with pytest.raises(BadRequest, match="already used by node a"):
        _create(region, image, "", name="b")


def test_metadata_addresses_and_lookups(region: Region) -> None:
    image = _command_image(region, "exec sleep 300")
    created = _create(region, image, "")
    region.nodes.set_metadata(created.id, {"phoenix:serving-since": "t1"})
    region.nodes.set_metadata("web-r1-0", {"phoenix:serving-since": "t2", "x": "y"})
    [record] = region.nodes.list()
    assert record.metadata == {"phoenix:app": "web", "phoenix:serving-since": "t2", "x": "y"}
    assert region.nodes.used_addresses() == {region.address}
    assert region.nodes.console_log(created.id) == _node_dir(region) / "console.log"
    with pytest.raises(NotFound):
        region.nodes.set_metadata("node-missing", {"a": "b"})


def test_a_stopped_agent_stops_its_service_and_reports_why(region: Region) -> None:
    image = _command_image(region, "exec sleep 300")
    _create(region, image, "")
    assert _wait_until_built(region.nodes, "web-r1-0").state == "ACTIVE"
    pids = _pids(region)
    os.kill(pids[0][0], signal.SIGTERM)  # someone stops the node outside Phoenix
    record = _wait_for_state(region.nodes, "web-r1-0", "ERROR")
    assert record.fault == "node stopped: its agent received SIGTERM"
    deadline = time.monotonic() + 5
    while any(process_alive(pid, ticks) for pid, ticks in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(process_alive(pid, ticks) for pid, ticks in pids)


def test_concurrent_creates_of_one_name_make_one_node(region: Region) -> None:
    image = _command_image(region, "exec sleep 300")
    results: list[NodeRecord] = []
    threads = [
        threading.Thread(target=lambda: results.append(_create(region, image, "")))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4 and len({r.id for r in results}) == 1
    assert [r.name for r in region.nodes.list()] == ["web-r1-0"]
    assert _wait_until_built(region.nodes, "web-r1-0").state == "ACTIVE"


def test_relative_state_paths_work(
    region: Region, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the agent runs in the node's directory, not here
    source = _image_dir(tmp_path, "command: [/bin/sleep, '300']\n")
    image = import_image(Path("images"), Path(source.name), now=NOW)
    region.nodes = LocalNodes(Path("region-a"))
    _create(region, image, "#cloud-config\nwrite_files: [{path: /ok, content: x}]\n")
    assert _wait_until_built(region.nodes, "web-r1-0").state == "ACTIVE"
