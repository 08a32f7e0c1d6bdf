"""A region's local servers: one directory and one detached process tree per node.

This is the local provider's Nova. ``create`` builds a node the way a cloud builds a
server from a golden image (a fresh writable copy of the immutable image, the user-data,
a boot) and returns at once in BUILD, like the cloud API does; the agent process
(``agent.py``) then boots it to ACTIVE or ERROR. Every fact lives on disk under
``<region_dir>/nodes/<name>/``, so ``phoenix status`` or ``phoenix destroy`` run from
another process (or after the deploying process died) see and control the same nodes:

    node.json     id, name, address, region, image, metadata (set_metadata merges here)
    user-data     the rendered user-data, mode 0600 (it holds secrets)
    status.json   state, fault, agent/service pids (written by the agent)
    console.log   everything the node printed, like a VM's console log
    root/         the node's filesystem: a writable copy of the image

Writes are atomic (write then rename) and read-modify-writes hold an ``fcntl`` lock, so a
deploy and a status touching the same region at once never see half a file. Nodes are
built in a hidden staging directory and renamed into place, so a node directory is either
complete or absent. A node whose agent died is reported ERROR ("node process died"), as
a cloud reports a crashed hypervisor's servers. ``delete`` never leaves a process behind:
it stops the agent's process group and anything that still carries the node's marker
variables in its environment.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import secrets
import shutil
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from phoenix import processes
from phoenix.errors import BadRequest, NotFound, Transient
from phoenix.files import locked
from phoenix.processes import process_alive, process_start_ticks, python_child_env
from phoenix.providers.local.agent import (
    ACTIVE,
    BUILD,
    CONSOLE_LOG,
    DEFAULT_COMMAND_TIMEOUT,
    DELETING,
    ERROR,
    NODE_DIR_VARIABLE,
    NODE_FILE,
    ROOT_DIR,
    USER_DATA_FILE,
    node_lock,
    read_status,
    write_status,
)
from phoenix.providers.local.cloudinit import parse_user_data
from phoenix.providers.local.images import LocalImage, remove_tree, write_json_atomic

AGENT_MODULE = "phoenix.providers.local.agent"
AGENT_START_GRACE = 10.0  # seconds a BUILD node may go without an agent pid
KILL_GRACE = 1.0  # seconds past the image's stop_timeout before SIGKILL
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_STAGING_PREFIX = ".new-"
_TRASH_PREFIX = ".deleted-"


@dataclass(frozen=True)
class NodeRecord:
    """One local server as ``LocalNodes`` reports it (``state``: BUILD/ACTIVE/ERROR/DELETING)."""

    id: str
    name: str
    address: str
    image_id: str
    state: str
    fault: str | None
    created_at: datetime
    metadata: dict[str, str]


class LocalNodes:
    """The servers of one region, kept under ``region_dir/nodes``.

    ``region`` defaults to the directory's name; ``command_timeout`` bounds each
    bootcmd/runcmd command and the ``#!`` script; ``python`` runs the node agents.
    """

    def __init__(
        self,
        region_dir: Path,
        *,
        region: str | None = None,
        command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
        python: str | None = None,
    ) -> None:
        # Resolved: the node dirs double as markers in the node processes' environments.
        self.region_dir = Path(os.path.realpath(region_dir))
        self.region = region or self.region_dir.name
        self.command_timeout = command_timeout
        self.python = python or sys.executable
        self._nodes_dir = self.region_dir / "nodes"

    # --- the API --------------------------------------------------------------------------

    def create(
        self,
        *,
        name: str,
        address: str,
        image: LocalImage,
        user_data: str,
        metadata: Mapping[str, str],
        now: datetime,
    ) -> NodeRecord:
        """Start building a node and return it in BUILD; its agent boots it in the background.

        Idempotent by ``name``: an existing node of that name is returned unchanged.
        Everything is validated before anything is written: ``BadRequest`` for user-data
        outside the supported cloud-init subset, a bad name, address or metadata, or an
        address another node holds; ``InputError`` for an image with a broken manifest.
        """
        _check_name(name)
        _check_address(address)
        _check_metadata(metadata)
        parse_user_data(user_data)
        manifest = image.manifest()
        self._nodes_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._region_lock():
            existing = self._read(self._nodes_dir / name)
            if existing is not None:
                return existing
            holder = self._address_holder(address)
            if holder is not None:
                raise BadRequest(
                    f"address {address} is already used by node {holder} in region"
                    f" {self.region}; pick a free one (see used_addresses())"
                )
            self._remove_leftovers()
            node_dir = self._nodes_dir / name
            staging = self._nodes_dir / f"{_STAGING_PREFIX}{name}-{secrets.token_hex(4)}"
            record = {
                "id": "node-" + secrets.token_hex(5),
                "name": name,
                "address": address,
                "region": self.region,
                "image_id": image.id,
                "image_root": os.path.realpath(image.root),  # the agent runs elsewhere
                "metadata": dict(metadata),
                "created_at": now.isoformat(),
                "command_timeout": self.command_timeout,
                "stop_timeout": manifest.stop_timeout,
            }
            try:
                staging.mkdir(mode=0o700)
                shutil.copytree(
                    image.root, staging / ROOT_DIR, symlinks=True, copy_function=shutil.copy
                )
                _make_writable(staging / ROOT_DIR)
                write_json_atomic(staging / NODE_FILE, record, mode=0o600)
                _write_private(staging / USER_DATA_FILE, user_data)
                write_status(staging, {"state": BUILD, "fault": None, "agent_pid": None})
                os.rename(staging, node_dir)
            finally:
                if staging.exists():
                    remove_tree(staging)
            self._spawn_agent(node_dir)
        created = self._read(node_dir)
        assert created is not None  # under our name, just renamed into place
        return created

    def list(self) -> list[NodeRecord]:
        """Every node of the region, oldest first; dead agents are reported (and saved) as
        ERROR "node process died"."""
        if not self._nodes_dir.is_dir():
            return []
        records = [
            record
            for entry in self._nodes_dir.iterdir()
            if not entry.name.startswith(".") and (record := self._read(entry)) is not None
        ]
        return sorted(records, key=lambda record: (record.created_at, record.name))

    def delete(self, node_id_or_name: str) -> None:
        """Stop the node's processes (SIGTERM, the image's stop_timeout, SIGKILL) and remove
        its directory. A missing node is not an error. Raises ``Transient`` if a process
        survives SIGKILL (the node is kept so that a retry can finish the job)."""
        node_dir = self._locate(node_id_or_name)
        if node_dir is None:
            return
        try:
            node = _read_json(node_dir / NODE_FILE)
            with node_lock(node_dir):
                status = read_status(node_dir)
                # Who is deleting: if this process dies mid-way (kill -9 of a deploy),
                # list() reports the node as ERROR so that the next run deletes it again.
                me = os.getpid()
                write_status(
                    node_dir,
                    {**status, "state": DELETING, "deleter_pid": me,
                     "deleter_start": process_start_ticks(me)},
                )
        except FileNotFoundError:
            return  # deleted concurrently
        stop_timeout = float(node.get("stop_timeout", 5.0))
        _stop_processes(node_dir, status, stop_timeout + KILL_GRACE)
        trash = self._nodes_dir / f"{_TRASH_PREFIX}{node_dir.name}-{secrets.token_hex(4)}"
        with self._region_lock():
            try:
                os.rename(node_dir, trash)
            except FileNotFoundError:
                return
        remove_tree(trash)

    def set_metadata(self, node_id_or_name: str, metadata: Mapping[str, str]) -> None:
        """Merge ``metadata`` into the node's metadata; ``NotFound`` if there is no such node."""
        _check_metadata(metadata)
        node_dir = self._locate(node_id_or_name)
        if node_dir is None:
            raise self._not_found(node_id_or_name)
        try:
            with node_lock(node_dir):
                node = _read_json(node_dir / NODE_FILE)
                node["metadata"] = {**node.get("metadata", {}), **metadata}
                write_json_atomic(node_dir / NODE_FILE, node, mode=0o600)
        except FileNotFoundError:
            raise self._not_found(node_id_or_name) from None

    def used_addresses(self) -> set[str]:
        """Addresses held by the region's nodes (in any state, until deleted)."""
        return {record.address for record in self.list()}

    def console_log(self, node_id_or_name: str) -> Path:
        """Where the node's console output is (for a fault's details); ``NotFound`` if none."""
        node_dir = self._locate(node_id_or_name)
        if node_dir is None:
            raise self._not_found(node_id_or_name)
        return node_dir / CONSOLE_LOG

    # --- helpers ----------------------------------------------------------------------

    def _read(self, node_dir: Path) -> NodeRecord | None:
        try:
            node = _read_json(node_dir / NODE_FILE)
        except (OSError, ValueError):
            return None
        status = read_status(node_dir)
        if _agent_died(node_dir, status):
            status = self._mark_died(node_dir)
        if status.get("state") == DELETING and not process_alive(
            status.get("deleter_pid"), status.get("deleter_start")
        ):
            status = {**status, "state": ERROR, "fault": "its deletion was interrupted"}
        return NodeRecord(
            id=str(node["id"]),
            name=str(node["name"]),
            address=str(node["address"]),
            image_id=str(node["image_id"]),
            state=str(status.get("state") or BUILD),
            fault=status.get("fault"),
            created_at=datetime.fromisoformat(node["created_at"]),
            metadata={str(k): str(v) for k, v in node.get("metadata", {}).items()},
        )

    def _mark_died(self, node_dir: Path) -> dict[str, Any]:
        try:
            with node_lock(node_dir):
                status = read_status(node_dir)  # again: the agent may have written since
                if _agent_died(node_dir, status):
                    fault = (
                        "node process died"
                        if status.get("agent_pid")
                        else "node process died (its agent never started; see console.log)"
                    )
                    status = {**status, "state": ERROR, "fault": fault}
                    write_status(node_dir, status)
                return status
        except FileNotFoundError:
            return read_status(node_dir)

    def _spawn_agent(self, node_dir: Path) -> None:
        console = os.open(node_dir / CONSOLE_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            process = subprocess.Popen(
                [self.python, "-m", AGENT_MODULE, str(node_dir)],
                cwd=node_dir,
                env=_agent_environment(node_dir),
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=console,
                close_fds=True,
                start_new_session=True,  # its own process group: delete stops it as a whole
            )
        except OSError as exc:
            with node_lock(node_dir):
                status = read_status(node_dir)
                fault = f"could not start the node agent ({self.python}): {exc.strerror}"
                write_status(node_dir, {**status, "state": ERROR, "fault": fault})
            return
        finally:
            os.close(console)
        # Reap it when it exits, so a long-running deploy collects no zombies; once this
        # process exits the agent is adopted by init and keeps running.
        threading.Thread(target=process.wait, name=f"reap-{node_dir.name}", daemon=True).start()
        with node_lock(node_dir):
            status = read_status(node_dir)
            if not status.get("agent_pid"):
                status["agent_pid"] = process.pid
                status["agent_start"] = process_start_ticks(process.pid)
                write_status(node_dir, status)

    def _locate(self, node_id_or_name: str) -> Path | None:
        if (
            _NAME.fullmatch(node_id_or_name)
            and (self._nodes_dir / node_id_or_name / NODE_FILE).is_file()
        ):
            return self._nodes_dir / node_id_or_name
        if not self._nodes_dir.is_dir():
            return None
        for entry in self._nodes_dir.iterdir():
            if entry.name.startswith("."):
                continue
            try:
                if _read_json(entry / NODE_FILE).get("id") == node_id_or_name:
                    return entry
            except (OSError, ValueError):
                continue
        return None

    def _address_holder(self, address: str) -> str | None:
        for entry in self._nodes_dir.iterdir():
            if entry.name.startswith("."):
                continue
            try:
                if _read_json(entry / NODE_FILE).get("address") == address:
                    return entry.name
            except (OSError, ValueError):
                continue
        return None

    def _remove_leftovers(self) -> None:
        """Staging directories of creates that crashed (we hold the region lock, so no
        create is running) and trash that a crashed delete left behind."""
        for entry in self._nodes_dir.iterdir():
            stale_trash = entry.name.startswith(_TRASH_PREFIX) and (
                time.time() - entry.stat().st_mtime > 60
            )
            if entry.name.startswith(_STAGING_PREFIX) or stale_trash:
                with contextlib.suppress(OSError):
                    remove_tree(entry)

    def _region_lock(self) -> contextlib.AbstractContextManager[None]:
        return locked(self._nodes_dir / ".lock", parents=True)

    def _not_found(self, node_id_or_name: str) -> NotFound:
        return NotFound(
            f"no local node {node_id_or_name!r} in region {self.region} ({self._nodes_dir})",
            region=self.region,
        )


# --- processes ------------------------------------------------------------------------------


def _agent_died(node_dir: Path, status: Mapping[str, Any]) -> bool:
    if status.get("state") not in (BUILD, ACTIVE):
        return False
    pid = status.get("agent_pid")
    if not pid:
        try:
            age = time.time() - (node_dir / "status.json").stat().st_mtime
        except OSError:
            return False
        return age > AGENT_START_GRACE
    return not process_alive(pid, status.get("agent_start"))


def kill_node_processes(node_dir: Path, *, timeout: float = 5.0) -> list[int]:
    """SIGKILL every process of one node at once and wait until they are gone: a power cut.

    Unlike ``delete`` there is no SIGTERM and the directory stays, so the node reads as
    ERROR "node process died" afterwards, as a cloud reports a crashed host's servers
    (used by ``outage.start_outage``). Returns the pids killed (none when nothing ran);
    raises ``Transient`` if one is still alive after ``timeout`` seconds.
    """
    node_dir = Path(os.path.realpath(node_dir))  # the form the markers were set in
    group, markers = _group_and_markers(node_dir, read_status(node_dir))
    found = {process.pid for process in _node_processes(markers, group)}
    left = processes.kill(lambda: _node_processes(markers, group), timeout=timeout, group=group)
    if left:
        raise Transient(
            f"processes of node {node_dir.name} survived SIGKILL for {timeout:g}s (pids"
            f" {', '.join(map(str, sorted(left)))}); retry"
        )
    return sorted(found)


def _group_and_markers(
    node_dir: Path, status: Mapping[str, Any]
) -> tuple[int | None, dict[str, str]]:
    """The node's process group (only while its agent lives: a dead agent's pid may be
    reused) and the environment entries every process of the node inherits."""
    pid = status.get("agent_pid")
    group = pid if pid and process_alive(pid, status.get("agent_start")) else None
    markers = {NODE_DIR_VARIABLE: str(node_dir), "PHOENIX_NODE_ROOT": str(node_dir / ROOT_DIR)}
    return group, markers


def _stop_processes(node_dir: Path, status: Mapping[str, Any], grace: float) -> None:
    """SIGTERM the node's processes, SIGKILL what is left after ``grace`` seconds.

    Every process found once is followed until it is gone (``processes.stop`` does): a
    process that is exiting has no readable environment any more while it still runs,
    so a fresh scan by marker alone would miss it.
    """
    group, markers = _group_and_markers(node_dir, status)
    left = processes.stop(lambda: _node_processes(markers, group), grace=grace,
                          kill_grace=3.0, group=group)
    if left:
        raise Transient(
            f"processes of node {node_dir.name} survived SIGKILL (pids"
            f" {', '.join(map(str, sorted(left)))}); retry the delete"
        )


def _node_processes(markers: Mapping[str, str], group: int | None) -> list[processes.Process]:
    """Live (non-zombie) processes in ``group`` or carrying one of the node's markers."""
    return processes.find(environ=markers, group=group)


def _agent_environment(node_dir: Path) -> dict[str, str]:
    """The agent gets what it needs to run Phoenix's code, not the deployer's environment
    (which may hold cloud credentials); the node's commands get a cleaner one still."""
    return {**python_child_env(), NODE_DIR_VARIABLE: str(node_dir)}


# --- files and validation ---------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JSON object")
    return data


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def _make_writable(root: Path) -> None:
    """The image copy is read-only like the image; a node's own filesystem is not."""
    for directory, _dirs, files in os.walk(root):
        os.chmod(directory, os.stat(directory).st_mode | stat.S_IWUSR)
        for name in files:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode | stat.S_IWUSR)


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise BadRequest(
            f"node name {name!r} is not usable locally: use letters, digits, '.', '_' and '-'"
            " (starting with a letter or digit, at most 128 characters)"
        )


def _check_address(address: str) -> None:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        ip = None
    loopback = ipaddress.ip_network("127.0.0.0/8")
    if (
        not isinstance(ip, ipaddress.IPv4Address)
        or ip not in loopback
        or ip in (loopback.network_address, loopback.broadcast_address)
    ):
        raise BadRequest(
            f"node address {address!r} is not a loopback address: local nodes listen on"
            " 127.x.y.z (all of 127.0.0.0/8 reaches this machine), e.g. 127.1.0.10"
        )


def _check_metadata(metadata: Mapping[str, str]) -> None:
    bad = [
        repr(key)
        for key, value in metadata.items()
        if not isinstance(key, str) or not isinstance(value, str)
    ]
    if bad:
        raise BadRequest(f"metadata keys and values must be strings: {', '.join(bad)}")
