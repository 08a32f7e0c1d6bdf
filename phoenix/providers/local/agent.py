"""A local node's init: apply its user-data as cloud-init would, then run the image's service.

``python -m phoenix.providers.local.agent NODE_DIR`` is started (detached) by
``LocalNodes.create`` and plays the part of a server's boot: cloud-init applies the
user-data, then the service baked into the golden image starts. It lives as long as the
node, so a node is "up" exactly while this process and its service are.

Order follows cloud-init's stages: ``bootcmd`` (init stage), ``write_files`` (init stage),
``write_files`` with ``defer: true`` (final stage), then ``runcmd`` or the ``#!`` script
(final stage, ``scripts_user``). A failing command stops the boot with state ERROR and a
fault naming it; on a real server the same failure would only show up as a failed health
check minutes later. The service is not restarted when it exits: Phoenix replaces broken
nodes instead of repairing them.

All output (commands, service, the agent's own lines) goes to ``NODE_DIR/console.log``,
like a VM's console. The agent logs what it runs by position (``runcmd[1]``), never the
command text: rendered user-data holds secrets.

The node directory is also the interface with ``nodes.py`` (another process, maybe on a
later ``phoenix status``): ``node.json`` and ``user-data`` in, ``status.json`` out, written
atomically under ``NODE_DIR/.lock``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import IO, Any

from phoenix.errors import PhoenixError
from phoenix.files import locked
from phoenix.processes import process_start_ticks
from phoenix.providers.local.cloudinit import UserData, WriteFile, command_argv, parse_user_data
from phoenix.providers.local.images import ImageManifest, read_manifest, write_json_atomic

NODE_FILE = "node.json"
USER_DATA_FILE = "user-data"
STATUS_FILE = "status.json"
CONSOLE_LOG = "console.log"
LOCK_FILE = ".lock"
ROOT_DIR = "root"

BUILD = "BUILD"
ACTIVE = "ACTIVE"
ERROR = "ERROR"
DELETING = "DELETING"

DEFAULT_COMMAND_TIMEOUT = 300.0
SERVICE_SETTLE_SECONDS = 0.2  # alive this long after start = ACTIVE
NODE_DIR_VARIABLE = "PHOENIX_NODE_DIR"  # set in the agent's environment, to find it again
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_POLL_SECONDS = 0.05
_FAULT_MAX_CHARS = 300


# --- the node directory protocol (shared with nodes.py) ------------------------------------


def node_lock(node_dir: Path) -> contextlib.AbstractContextManager[None]:
    """Hold the node's lock for a read-modify-write of its files; ``FileNotFoundError``
    when the node directory is gone (deleted meanwhile)."""
    return locked(node_dir / LOCK_FILE)


def read_status(node_dir: Path) -> dict[str, Any]:
    """The node's ``status.json`` (empty when missing or unreadable)."""
    try:
        status = json.loads((node_dir / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return status if isinstance(status, dict) else {}


def write_status(node_dir: Path, status: Mapping[str, Any]) -> None:
    """Replace ``status.json`` atomically, stamping ``updated_at``. Hold ``node_lock``."""
    stamped = {**status, "updated_at": datetime.now(UTC).isoformat()}
    write_json_atomic(node_dir / STATUS_FILE, stamped)


# --- the agent ----------------------------------------------------------------------------


class _Fault(Exception):
    """The boot failed; the message becomes the node's fault."""


class _Stopped(Exception):
    """SIGTERM/SIGINT arrived; the current child has been stopped."""


class Agent:
    """Boots one node and supervises its service; ``run`` returns the exit code."""

    def __init__(self, node_dir: Path) -> None:
        self.node_dir = node_dir
        self.root = node_dir / ROOT_DIR
        self.stop_timeout = 5.0
        self._stop_signal: int | None = None

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self._set_state(BUILD)
        self._say(f"booting node in {self.node_dir}")
        try:
            node = json.loads((self.node_dir / NODE_FILE).read_text(encoding="utf-8"))
            user_data = parse_user_data(
                (self.node_dir / USER_DATA_FILE).read_text(encoding="utf-8")
            )
            manifest = read_manifest(Path(node["image_root"]))
            self.stop_timeout = manifest.stop_timeout
            env = node_environment(node, self.root)
            timeout = float(node.get("command_timeout", DEFAULT_COMMAND_TIMEOUT))
            self._boot(user_data, env, timeout)
            return self._serve(manifest, env)
        except _Fault as fault:
            return self._fail(str(fault))
        except _Stopped:
            return self._stopped()
        except PhoenixError as exc:
            return self._fail(str(exc))
        except Exception as exc:  # the agent must leave a fault behind, whatever happened
            traceback.print_exc()
            return self._fail(f"node agent failed: {type(exc).__name__}: {exc}")

    # --- boot -------------------------------------------------------------------------

    def _boot(self, user_data: UserData, env: dict[str, str], timeout: float) -> None:
        for note in user_data.notes:
            self._say(f"note: {note}")
        if user_data.kind == "script":
            assert user_data.script is not None
            script = self.node_dir / "scripts" / "user-data"
            script.parent.mkdir(mode=0o700, exist_ok=True)
            script.write_text(user_data.script, encoding="utf-8")
            script.chmod(0o700)
            self._run("script", [str(script)], env, timeout)
            return
        boot_env = {**env, "INSTANCE_ID": env["PHOENIX_NODE_ID"]}  # as cloud-init's bootcmd
        for index, command in enumerate(user_data.bootcmd):
            self._run(f"bootcmd[{index}]", command_argv(command), boot_env, timeout)
        for deferred in (False, True):
            for index, item in enumerate(user_data.write_files):
                if item.defer == deferred:
                    self._write_file(f"write_files[{index}]", item)
        for index, command in enumerate(user_data.runcmd):
            self._run(f"runcmd[{index}]", command_argv(command), env, timeout)

    def _write_file(self, label: str, item: WriteFile) -> None:
        target = resolve_in_root(self.root, item.path)
        if target is None:
            raise _Fault(f"{label}: {item.path} leads outside the node's root (a symlink)")
        target.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if item.append else os.O_TRUNC)
        try:
            fd = os.open(target, flags, item.mode)
            with os.fdopen(fd, "wb") as handle:
                handle.write(item.content)
            os.chmod(target, item.mode)
        except OSError as exc:
            raise _Fault(f"{label}: cannot write {item.path}: {exc.strerror}") from exc
        self._say(f"{label}: wrote {item.path} ({len(item.content)} bytes, {item.permissions})")

    def _run(self, label: str, argv: list[str], env: dict[str, str], timeout: float) -> None:
        self._say(f"{label}: started")
        try:
            process = subprocess.Popen(
                argv,
                cwd=self.root,
                env=env,
                stdin=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                close_fds=True,
            )
        except OSError as exc:
            raise _Fault(f"{label} could not start {argv[0]!r}: {exc.strerror}") from exc
        assert process.stderr is not None
        tail = _StderrTail(process.stderr)
        returncode = self._wait(process, time.monotonic() + timeout)
        tail.join()
        if returncode is None:
            self._terminate(process)
            raise _Fault(f"{label} timed out after {timeout:g} s")
        if returncode != 0:
            detail = f": {tail.last_line}" if tail.last_line else ""
            raise _Fault(f"{label} {_describe_exit(returncode)}{detail}")
        self._say(f"{label}: exited 0")

    # --- service ----------------------------------------------------------------------

    def _serve(self, manifest: ImageManifest, env: dict[str, str]) -> int:
        service_env = manifest.service_env(env)
        argv = manifest.service_argv(service_env)
        self._say("service: starting")
        try:
            service = subprocess.Popen(
                argv, cwd=self.root, env=service_env, stdin=subprocess.DEVNULL, close_fds=True
            )
        except OSError as exc:
            raise _Fault(f"service could not start {argv[0]!r}: {exc.strerror}") from exc
        self._set_state(BUILD, service_pid=service.pid)
        returncode = self._wait(service, time.monotonic() + SERVICE_SETTLE_SECONDS)
        if returncode is None:
            self._set_state(ACTIVE, service_pid=service.pid)
            self._say(f"service: running (pid {service.pid}); node ACTIVE")
            returncode = self._wait(service, None)
        assert returncode is not None
        return self._fail(f"service {_describe_exit(returncode, with_code=True)}")

    # --- waiting and stopping ---------------------------------------------------------

    def _wait(self, process: subprocess.Popen[bytes], deadline: float | None) -> int | None:
        """The exit code, or None at ``deadline``; raises ``_Stopped`` on SIGTERM/SIGINT."""
        while True:
            if self._stop_signal is not None:
                self._terminate(process)
                raise _Stopped
            try:
                return process.wait(timeout=_POLL_SECONDS)
            except subprocess.TimeoutExpired:
                if deadline is not None and time.monotonic() >= deadline:
                    return None

    def _terminate(self, process: subprocess.Popen[bytes]) -> None:
        """SIGTERM, ``stop_timeout`` to exit, then SIGKILL."""
        if process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            self._say(f"pid {process.pid} ignored SIGTERM for {self.stop_timeout:g} s: SIGKILL")
            process.kill()
            process.wait()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._stop_signal = signum

    def _stopped(self) -> int:
        name = signal.Signals(self._stop_signal or signal.SIGTERM).name
        self._say(f"stopped by {name}")
        self._set_state(ERROR, fault=f"node stopped: its agent received {name}")
        return 0

    def _fail(self, fault: str) -> int:
        fault = fault if len(fault) <= _FAULT_MAX_CHARS else fault[: _FAULT_MAX_CHARS - 3] + "..."
        self._say(f"node ERROR: {fault}")
        self._set_state(ERROR, fault=fault)
        return 1

    # --- output -----------------------------------------------------------------------

    def _set_state(self, state: str, **changes: Any) -> None:
        try:
            with node_lock(self.node_dir):
                status = read_status(self.node_dir)
                if status.get("state") != DELETING:  # a delete in progress wins
                    status["state"] = state
                    status["fault"] = changes.pop("fault", None) if state == ERROR else None
                status.update(changes)
                status["agent_pid"] = os.getpid()
                status["agent_start"] = process_start_ticks(os.getpid())
                status.setdefault("service_pid", None)
                write_status(self.node_dir, status)
        except FileNotFoundError:
            pass  # the node directory is being removed: nobody will read the status

    def _say(self, message: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        _write_all(1, f"[{stamp}] phoenix-agent: {message}\n".encode())


class _StderrTail:
    """Copies a command's stderr to the console and keeps its last non-empty line."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.last_line = ""
        self._stream = stream
        self._thread = threading.Thread(target=self._copy, daemon=True)
        self._thread.start()

    def join(self) -> None:
        # A command may leave a background child holding the pipe open: do not wait on it.
        self._thread.join(timeout=0.5)

    def _copy(self) -> None:
        pending = b""
        fd = self._stream.fileno()
        for chunk in iter(lambda: os.read(fd, 65536), b""):
            _write_all(2, chunk)
            pending = (pending + chunk)[-4096:]
            lines = [line for line in pending.splitlines() if line.strip()]
            if lines:
                self.last_line = lines[-1].decode("utf-8", "replace").strip()
        self._stream.close()


def node_environment(node: Mapping[str, Any], root: Path) -> dict[str, str]:
    """The environment of a node's commands and service: a clean one, like a fresh server's,
    never the deploying user's (which may hold cloud credentials)."""
    return {
        "PATH": os.environ.get("PATH") or DEFAULT_PATH,
        "HOME": str(root),
        "LANG": "C.UTF-8",
        "PHOENIX_NODE_ADDRESS": str(node["address"]),
        "PHOENIX_NODE_NAME": str(node["name"]),
        "PHOENIX_NODE_ID": str(node["id"]),
        "PHOENIX_NODE_ROOT": str(root),
        "PHOENIX_REGION": str(node.get("region", "")),
    }


def resolve_in_root(root: Path, path: str) -> Path | None:
    """Where an absolute node path (``/etc/app/config``) lives on disk under ``root``, or
    None if a symlink on the way leads outside ``root`` (as a symlink in the image could)."""
    target = root / path.lstrip("/")
    real_root = root.resolve()
    # Resolve the deepest entry that exists (following symlinks, as cloud-init would): the
    # directories created below it are new, so they cannot be symlinks.
    probe = target
    while not probe.exists() and not probe.is_symlink() and probe != root:
        probe = probe.parent
    resolved = probe.resolve()
    if resolved != real_root and real_root not in resolved.parents:
        return None
    return resolved / target.relative_to(probe)


def _describe_exit(returncode: int, *, with_code: bool = False) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with code {returncode}" if with_code else f"exited {returncode}"


def _write_all(fd: int, data: bytes) -> None:
    with contextlib.suppress(OSError):
        while data:
            data = data[os.write(fd, data) :]


def _redirect_output(console: Path) -> None:
    """Point stdout/stderr at the console log (whoever started us), stdin at /dev/null."""
    fd = os.open(console, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m phoenix.providers.local.agent NODE_DIR``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not Path(args[0], NODE_FILE).is_file():
        print(
            f"usage: python -m {__spec__.name if __spec__ else 'agent'} NODE_DIR"
            f" (a directory holding {NODE_FILE})",
            file=sys.stderr,
        )
        return 2
    node_dir = Path(args[0]).resolve()
    _redirect_output(node_dir / CONSOLE_LOG)
    return Agent(node_dir).run()


if __name__ == "__main__":
    sys.exit(main())
