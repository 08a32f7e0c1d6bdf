"""HaproxyBalancer against a real HAProxy and real HTTP backends on 127.0.0.0/8.

Every backend is a small HTTP server process started by the test on its own loopback
address (answering its name on ``/`` and 200/503 on ``/healthz``); every HAProxy and
backend is stopped in fixture teardown, failures included.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from phoenix import errors
from phoenix.model import MemberAction, MemberChange, MemberState
from phoenix.providers.local import haproxy
from phoenix.providers.local.balancer import BalancerConfig
from phoenix.providers.local.haproxy import (
    HaproxyBalancer,
    haproxy_available,
    member_name,
    server_name,
)
from phoenix.providers.local.supervisor import supervisor_pids

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not haproxy_available(),
        reason="needs HAProxy >= 2.5 on PATH (apt-get install -y haproxy)",
    ),
]

BACKEND_SCRIPT = r"""
import json, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

name, host, health = sys.argv[1], sys.argv[2], int(sys.argv[3])
events = []  # (monotonic time, path, status): CLOCK_MONOTONIC is system-wide on Linux
lock = threading.Lock()

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/__events":
            with lock:
                body = json.dumps(events).encode()
            return self.reply(200, body)
        status = health if url.path == "/healthz" else 200
        if url.path == "/slow":
            time.sleep(float(parse_qs(url.query).get("s", ["1"])[0]))
        with lock:
            events.append((time.monotonic(), url.path, status))
        self.reply(status, name.encode())

    def reply(self, status, body):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):  # checks close with a reset
            super().handle_error(request, client_address)

server = Server((host, 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


@dataclass
class Backend:
    name: str
    host: str
    port: int
    process: subprocess.Popen[str]

    def events(self) -> list[tuple[float, str, int]]:
        response = httpx.get(f"http://{self.host}:{self.port}/__events", timeout=5)
        return [(t, path, status) for t, path, status in response.json()]

    def hits(self) -> int:
        return sum(1 for _, path, _ in self.events() if path == "/")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)


@dataclass
class Backends:
    """Starts backend processes on 127.0.0.x; ``stop_all`` kills every one of them."""

    directory: Path
    started: list[Backend] = field(default_factory=list)

    def start(self, name: str, *, healthy: bool = True) -> Backend:
        host = f"127.0.0.{len(self.started) + 2}"
        script = self.directory / "backend.py"
        script.write_text(BACKEND_SCRIPT)
        process = subprocess.Popen(
            [sys.executable, str(script), name, host, "200" if healthy else "503"],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        backend = Backend(name, host, 0, process)
        self.started.append(backend)
        assert process.stdout is not None
        backend.port = int(process.stdout.readline())
        return backend

    def stop_all(self) -> None:
        for backend in self.started:
            backend.stop()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(condition: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z":
            return False
    return True


@pytest.fixture
def backends(tmp_path: Path) -> Iterator[Backends]:
    started = Backends(tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


@pytest.fixture
def make_balancer(tmp_path: Path) -> Iterator[Callable[..., HaproxyBalancer]]:
    made: list[HaproxyBalancer] = []

    def make(
        check_path: str | None = "/healthz", remove_wait: float = 5.0, supervise: bool = True
    ) -> HaproxyBalancer:
        config = BalancerConfig(
            pool_dir=tmp_path / f"pool{len(made)}",
            listen_host="127.0.0.1",
            listen_port=free_port(),
            check_path=check_path,
            supervise=supervise,
        )
        balancer = HaproxyBalancer(config, remove_wait=remove_wait)
        made.append(balancer)
        return balancer

    try:
        yield make
    finally:
        for balancer in made:
            pid_file = balancer.config.pool_dir / "haproxy.pid"
            pid = int(pid_file.read_text()) if pid_file.exists() else None
            with contextlib.suppress(Exception):
                balancer.stop()
            leftovers = supervisor_pids(balancer.config.pool_dir) if pid is None else (
                supervisor_pids(balancer.config.pool_dir) | {pid})
            for left in leftovers:  # stop() failed: never leak a process
                if pid_alive(left):
                    os.kill(left, signal.SIGKILL)


@pytest.fixture
def lb(make_balancer: Callable[..., HaproxyBalancer]) -> HaproxyBalancer:
    balancer = make_balancer()
    balancer.ensure_running()
    return balancer


def add(lb: HaproxyBalancer, backend: Backend) -> None:
    lb.add_member(backend.name, backend.host, backend.port)


def wait_serving(lb: HaproxyBalancer, client: httpx.Client, names: set[str]) -> None:
    """Until requests through the balancer reach every one of ``names``."""
    seen: set[str] = set()

    def all_seen() -> bool:
        seen.add(client.get(lb.url()).text)
        return names <= seen

    wait_for(all_seen, what=f"traffic to {sorted(names)}")


def names_of(lb: HaproxyBalancer, client: httpx.Client, count: int) -> list[str]:
    return [client.get(lb.url()).text for _ in range(count)]


def frontend_connections(lb: HaproxyBalancer) -> int:
    """Connections HAProxy's frontend accepted so far."""
    header, row = lb._command("show stat listener 1 -1").strip().splitlines()[:2]
    return int(dict(zip(header[2:].split(","), row.split(","), strict=False))["conn_tot"])


def adding(*members: Backend) -> list[MemberChange]:
    return [MemberChange(MemberAction.ADD, b.name, b.host, b.port) for b in members]


def draining(*members: Backend) -> list[MemberChange]:
    return [MemberChange(MemberAction.DRAIN, b.name) for b in members]


def removing(*members: Backend) -> list[MemberChange]:
    return [MemberChange(MemberAction.REMOVE, b.name) for b in members]


@dataclass
class Spy:
    """Counts runtime-API connections and members.json writes of every HaproxyBalancer."""

    connections: int = 0
    member_writes: int = 0


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    counts = Spy()
    connect, write = HaproxyBalancer._connect, haproxy.atomic_write

    def counting_connect(self: HaproxyBalancer, sock: socket.socket) -> None:
        counts.connections += 1
        connect(self, sock)

    def counting_write(path: Path, text: str) -> None:
        counts.member_writes += path.name == "members.json"
        write(path, text)

    monkeypatch.setattr(HaproxyBalancer, "_connect", counting_connect)
    monkeypatch.setattr(haproxy, "atomic_write", counting_write)
    return counts


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# --- pure -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["hello-r2-1a2b3c4d-0-b1", "a_b", "UPPER.dots", "sp ace/slash+é", "_5f"]
)
def test_server_names_are_safe_and_reversible(name: str) -> None:
    mapped = server_name(name)
    assert all(ch.isascii() and (ch.isalnum() or ch in "._-") for ch in mapped)
    assert member_name(mapped) == name
    if all(ch.islower() or ch.isdigit() or ch == "-" for ch in name):
        assert mapped == name  # Phoenix's own names are used as they are


# --- process lifecycle ----------------------------------------------------------------


def test_ensure_running_starts_once_and_stop_leaves_nothing(
    make_balancer: Callable[..., HaproxyBalancer],
) -> None:
    lb = make_balancer()
    started = time.monotonic()
    lb.ensure_running()
    elapsed = time.monotonic() - started
    print(f"\nhaproxy start (ensure_running until the socket answers): {elapsed * 1000:.0f} ms")
    pool_dir = lb.config.pool_dir
    assert lb.running()
    assert oct(pool_dir.stat().st_mode & 0o777) == "0o700"
    pid = int((pool_dir / "haproxy.pid").read_text())
    assert pid_alive(pid)
    cfg = (pool_dir / "haproxy.cfg").read_text()
    assert "option httpchk GET /healthz" in cfg and "balance roundrobin" in cfg

    lb.ensure_running()  # already running: nothing happens
    assert int((pool_dir / "haproxy.pid").read_text()) == pid

    lb.stop()
    assert not pid_alive(pid)
    assert not lb.running()
    assert not (pool_dir / "haproxy.pid").exists() and not (pool_dir / "admin.sock").exists()
    lb.stop()  # idempotent


def test_deep_pool_dir_beyond_the_unix_socket_path_limit(
    tmp_path: Path, backends: Backends
) -> None:
    pool_dir = tmp_path / ("d" * 100) / "regions" / "region-a" / "pools" / "hello-pool"
    assert len(str(pool_dir / "admin.sock")) > 108
    lb = HaproxyBalancer(BalancerConfig(pool_dir, "127.0.0.1", free_port()))
    try:
        lb.ensure_running()
        add(lb, backends.start("a"))
        with httpx.Client() as client:
            wait_serving(lb, client, {"a"})
    finally:
        lb.stop()
    assert not lb.running()


def test_taken_port_is_an_input_error_naming_it(
    make_balancer: Callable[..., HaproxyBalancer],
) -> None:
    lb = make_balancer()
    with socket.socket() as holder:
        holder.bind((lb.config.listen_host, lb.config.listen_port))
        holder.listen()
        with pytest.raises(errors.InputError) as caught:
            lb.ensure_running()
    assert f"127.0.0.1:{lb.config.listen_port}" in str(caught.value)
    assert not lb.running()


def test_taken_by_another_haproxy_is_an_input_error(
    make_balancer: Callable[..., HaproxyBalancer],
) -> None:
    first = make_balancer()
    first.ensure_running()
    second = make_balancer()
    second = HaproxyBalancer(
        BalancerConfig(
            pool_dir=second.config.pool_dir,
            listen_host=first.config.listen_host,
            listen_port=first.config.listen_port,
        )
    )
    with pytest.raises(errors.InputError, match=str(first.config.listen_port)):
        second.ensure_running()  # without noreuseport both would share the port


def test_stale_pid_and_socket_are_cleaned_up(
    make_balancer: Callable[..., HaproxyBalancer], backends: Backends
) -> None:
    lb = make_balancer()
    lb.config.pool_dir.mkdir(mode=0o700)
    dead = subprocess.Popen(["true"])
    dead.wait()
    (lb.config.pool_dir / "haproxy.pid").write_text(f"{dead.pid}\n")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(lb.config.pool_dir / "admin.sock"))  # a socket file nobody serves
    stale.close()
    assert not lb.running()
    lb.ensure_running()
    assert lb.running()


def test_restart_restores_members_from_members_json(
    make_balancer: Callable[..., HaproxyBalancer], backends: Backends
) -> None:
    # ensure_running's own restore, with no supervisor racing it to the restart (the
    # supervisor's is tested in test_local_balancer_supervisor.py).
    lb = make_balancer(supervise=False)
    lb.ensure_running()
    a, b, c = (backends.start(n) for n in ("a", "b", "c"))
    for backend in (a, b, c):
        add(lb, backend)
    lb.drain_member("c")
    with httpx.Client() as client:
        wait_serving(lb, client, {"a", "b"})
    saved = json.loads((lb.config.pool_dir / "members.json").read_text())
    assert saved == {
        "a": {"address": a.host, "port": a.port, "state": "SERVING"},
        "b": {"address": b.host, "port": b.port, "state": "SERVING"},
        "c": {"address": c.host, "port": c.port, "state": "DRAINING"},
    }

    pid = int((lb.config.pool_dir / "haproxy.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid), what="haproxy to die")
    assert not lb.running()
    started = time.monotonic()
    lb.ensure_running()
    elapsed = time.monotonic() - started
    print(f"\nhaproxy restart with 3 members restored: {elapsed * 1000:.0f} ms")

    members = {m.name: m for m in lb.list_members()}
    assert {n: m.state for n, m in members.items()} == {
        "a": MemberState.SERVING,
        "b": MemberState.SERVING,
        "c": MemberState.DRAINING,
    }
    with httpx.Client() as client:
        wait_serving(lb, client, {"a", "b"})
        assert set(names_of(lb, client, 20)) == {"a", "b"}


def test_members_json_of_the_builtin_balancer_is_restored(
    make_balancer: Callable[..., HaproxyBalancer], backends: Backends
) -> None:
    lb = make_balancer()
    a = backends.start("a")
    lb.config.pool_dir.mkdir(mode=0o700)
    listed = [{"name": "a", "address": a.host, "port": a.port, "state": "SERVING"}]
    (lb.config.pool_dir / "members.json").write_text(json.dumps(listed))
    lb.ensure_running()
    with httpx.Client() as client:
        wait_serving(lb, client, {"a"})


def test_concurrent_changes_from_many_instances_are_all_kept(
    lb: HaproxyBalancer, backends: Backends
) -> None:
    a = backends.start("a")
    names = [f"m-{i}" for i in range(10)]

    def add_one(name: str) -> None:
        HaproxyBalancer(lb.config).add_member(name, a.host, a.port)

    threads = [threading.Thread(target=add_one, args=(n,)) for n in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(m.name for m in lb.list_members()) == sorted(names)
    assert sorted(json.loads((lb.config.pool_dir / "members.json").read_text())) == sorted(names)


# --- members --------------------------------------------------------------------------


def test_round_robin_across_three_members(lb: HaproxyBalancer, backends: Backends) -> None:
    for name in ("a", "b", "c"):
        add(lb, backends.start(name))
    with httpx.Client() as client:
        wait_serving(lb, client, {"a", "b", "c"})
        answered = names_of(lb, client, 30)
    assert {n: answered.count(n) for n in "abc"} == {"a": 10, "b": 10, "c": 10}
    members = lb.list_members()
    assert [(m.name, m.state, m.active_connections) for m in members] == [
        ("a", MemberState.SERVING, 0),
        ("b", MemberState.SERVING, 0),
        ("c", MemberState.SERVING, 0),
    ]


def test_new_member_gets_traffic_only_after_its_check_passes(
    lb: HaproxyBalancer, backends: Backends
) -> None:
    old = backends.start("old")
    add(lb, old)
    with httpx.Client() as client:
        wait_serving(lb, client, {"old"})
        new = backends.start("new")
        sick = backends.start("sick", healthy=False)
        add(lb, new)
        add(lb, sick)
        right_after = names_of(lb, client, 10)  # before the first check (0.5 s)
        wait_serving(lb, client, {"old", "new"})
        later = names_of(lb, client, 60)
    assert right_after == ["old"] * 10
    assert "sick" not in later and sick.hits() == 0
    events = new.events()
    first_ok_check = min(t for t, path, status in events if path == "/healthz" and status == 200)
    first_request = min(t for t, path, _ in events if path == "/")
    assert first_ok_check < first_request
    assert any(path == "/healthz" and status == 503 for _, path, status in sick.events())
    assert {m.name: m.state for m in lb.list_members()}["sick"] is MemberState.SERVING


def test_tcp_checks_when_check_path_is_none(
    make_balancer: Callable[..., HaproxyBalancer], backends: Backends
) -> None:
    lb = make_balancer(check_path=None)
    lb.ensure_running()
    assert "httpchk" not in (lb.config.pool_dir / "haproxy.cfg").read_text().split("backend")[-1]
    add(lb, backends.start("sick-but-listening", healthy=False))
    with httpx.Client() as client:
        wait_serving(lb, client, {"sick-but-listening"})


def test_drain_stops_new_requests_while_in_flight_one_completes(
    lb: HaproxyBalancer, backends: Backends
) -> None:
    for name in ("a", "b"):
        add(lb, backends.start(name))
    with httpx.Client() as client:
        wait_serving(lb, client, {"a", "b"})
    result: list[httpx.Response] = []
    slow = threading.Thread(
        target=lambda: result.append(httpx.get(lb.url() + "/slow?s=2", timeout=10))
    )
    slow.start()
    try:

        def busy() -> str | None:
            return next((m.name for m in lb.list_members() if m.active_connections), None)

        wait_for(lambda: busy() is not None, what="the slow request in flight")
        target = busy()
        assert target is not None
        lb.drain_member(target)
        members = {m.name: m for m in lb.list_members()}
        assert members[target].state is MemberState.DRAINING
        assert members[target].active_connections == 1
        with httpx.Client() as client:
            during = names_of(lb, client, 20)
        assert target not in during
    finally:
        slow.join(timeout=10)
    assert result[0].status_code == 200 and result[0].text == target
    assert {m.name: m.active_connections for m in lb.list_members()}[target] == 0


def test_keep_alive_client_is_rebalanced_after_drain(
    lb: HaproxyBalancer, backends: Backends
) -> None:
    for name in ("a", "b"):
        add(lb, backends.start(name))
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    with httpx.Client(limits=limits) as client:
        wait_serving(lb, client, {"a", "b"})
        connections = frontend_connections(lb)
        before = names_of(lb, client, 10)
        lb.drain_member("b")
        after = names_of(lb, client, 10)
        assert frontend_connections(lb) == connections  # all 20 on one client connection
    assert sorted(before) == ["a"] * 5 + ["b"] * 5  # balanced per request
    assert after == ["a"] * 10


def test_remove_member(lb: HaproxyBalancer, backends: Backends) -> None:
    for name in ("a", "b"):
        add(lb, backends.start(name))
    with httpx.Client() as client:
        wait_serving(lb, client, {"a", "b"})
        lb.remove_member("b")
        assert names_of(lb, client, 10) == ["a"] * 10
    assert [m.name for m in lb.list_members()] == ["a"]
    assert "b" not in json.loads((lb.config.pool_dir / "members.json").read_text())
    assert " b " not in lb._command("show servers state pool")



def slow_request_in_flight(lb: HaproxyBalancer) -> tuple[list[httpx.Response], threading.Thread]:
    """A 2-second request through the balancer, in flight on its only member when this
    returns; its response lands in the list once the thread ends."""
    result: list[httpx.Response] = []
    slow = threading.Thread(
        target=lambda: result.append(httpx.get(lb.url() + "/slow?s=2", timeout=10))
    )
    slow.start()
    wait_for(lambda: lb.list_members()[0].active_connections == 1, what="in flight")
    return result, slow

def test_remove_waits_for_in_flight_then_reports_transient(
    make_balancer: Callable[..., HaproxyBalancer], backends: Backends
) -> None:
    lb = make_balancer(remove_wait=0.5)
    lb.ensure_running()
    add(lb, backends.start("a"))
    with httpx.Client() as client:
        wait_serving(lb, client, {"a"})
    result, slow = slow_request_in_flight(lb)
    try:
        with pytest.raises(errors.Transient, match="in flight"):
            lb.remove_member("a")
        member = lb.list_members()[0]
        assert member.state is MemberState.DRAINING and member.active_connections == 1
    finally:
        slow.join(timeout=10)
    assert result[0].status_code == 200  # maint did not cut the in-flight request
    lb.remove_member("a")  # the retry succeeds once it finished
    assert lb.list_members() == []


def test_idempotency(lb: HaproxyBalancer, backends: Backends) -> None:
    a, b = backends.start("a"), backends.start("b")
    add(lb, a)
    add(lb, a)  # twice: one server
    add(lb, b)
    assert [m.name for m in lb.list_members()] == ["a", "b"]
    assert lb._command("show servers state pool").count(f" {a.host} ") == 1
    lb.drain_member("b")
    lb.drain_member("b")
    add(lb, b)  # add of a present member makes it serve again
    with httpx.Client() as client:
        wait_serving(lb, client, {"a", "b"})
    lb.remove_member("b")
    lb.remove_member("b")  # missing: fine
    lb.remove_member("never-added")
    with pytest.raises(errors.NotFound):
        lb.drain_member("b")
    assert [(m.name, m.state) for m in lb.list_members()] == [("a", MemberState.SERVING)]


def test_a_batch_uses_one_runtime_api_connection(
    lb: HaproxyBalancer, backends: Backends, spy: Spy
) -> None:
    old = [backends.start(f"old-{i}") for i in range(3)]
    new = [backends.start(f"new-{i}") for i in range(3)]
    lb.change_members(adding(*old))
    with httpx.Client() as client:
        wait_serving(lb, client, {b.name for b in old})
    spy.connections = spy.member_writes = 0
    switch = [*adding(*new), *draining(*old[:2]), *removing(old[2]),
              MemberChange(MemberAction.DRAIN, "missing"),
              MemberChange(MemberAction.REMOVE, "never-added")]
    lb.change_members(switch)
    print(f"\nbatch of {len(switch)} changes: {spy.connections} runtime-API connection(s),"
          f" {spy.member_writes} members.json write(s)")
    assert spy.connections == 1
    assert spy.member_writes == 2  # ahead of HAProxy, and once the removed one is gone
    want = {"old-0": MemberState.DRAINING, "old-1": MemberState.DRAINING,
            **{b.name: MemberState.SERVING for b in new}}
    assert {m.name: m.state for m in lb.list_members()} == want
    with httpx.Client() as client:
        # Right away: the batch waited for the new members' first checks before draining.
        assert set(names_of(lb, client, 12)) == {b.name for b in new}

    spy.connections = spy.member_writes = 0
    lb.change_members(switch)  # again: nothing to do, still one connection, no write
    assert (spy.connections, spy.member_writes) == (1, 0)
    assert {m.name: m.state for m in lb.list_members()} == want
    lb.change_members(adding(old[0]))  # re-enables a draining member
    assert {m.name: m.state for m in lb.list_members()}["old-0"] is MemberState.SERVING


def test_a_batch_with_a_busy_removal_applies_the_rest_then_is_transient(
    make_balancer: Callable[..., HaproxyBalancer], backends: Backends
) -> None:
    lb = make_balancer(remove_wait=0.5)
    lb.ensure_running()
    a, b = backends.start("a"), backends.start("b")
    add(lb, a)
    with httpx.Client() as client:
        wait_serving(lb, client, {"a"})
    result, slow = slow_request_in_flight(lb)
    try:
        with pytest.raises(errors.Transient, match="in flight"):
            lb.change_members([*removing(a), *adding(b)])
        members = {m.name: m for m in lb.list_members()}
        assert members["a"].state is MemberState.DRAINING
        assert members["b"].state is MemberState.SERVING
    finally:
        slow.join(timeout=10)
    assert result[0].status_code == 200
    lb.change_members(removing(a))  # the retry succeeds once it finished
    assert [m.name for m in lb.list_members()] == ["b"]


def test_a_batch_while_haproxy_is_down_is_saved_and_transient(
    make_balancer: Callable[..., HaproxyBalancer], backends: Backends
) -> None:
    lb = make_balancer(supervise=False)
    a, b = backends.start("a"), backends.start("b")
    with pytest.raises(errors.Transient, match="not running"):
        lb.change_members([*adding(a, b), *draining(b)])
    lb.change_members(removing(a))  # a stopped balancer serves nobody: removing works
    saved = json.loads((lb.config.pool_dir / "members.json").read_text())
    assert {name: entry["state"] for name, entry in saved.items()} == {"b": "DRAINING"}
    lb.ensure_running()  # applies what was saved
    assert {m.name: m.state for m in lb.list_members()} == {"b": MemberState.DRAINING}


def test_socket_failures_are_transient(make_balancer: Callable[..., HaproxyBalancer]) -> None:
    lb = make_balancer()
    with pytest.raises(errors.Transient, match="show servers state"):
        lb.list_members()
    with pytest.raises(errors.Transient, match="not running"):
        lb.add_member("a", "127.0.0.2", 8080)
    lb.remove_member("a")  # a stopped balancer serves nobody: removing works
    assert not json.loads((lb.config.pool_dir / "members.json").read_text())


# --- under load -----------------------------------------------------------------------


def start_load(
    url: str, total: int, workers: int
) -> tuple[list[tuple[float, float, str, bool]], threading.Lock, list[threading.Thread]]:
    """``total`` GETs of ``url`` from ``workers`` threads, started: each result is
    (start, end, answer or error, ok), appended under the returned lock."""
    lock = threading.Lock()
    issued = 0
    results: list[tuple[float, float, str, bool]] = []

    def worker() -> None:
        nonlocal issued
        with httpx.Client(timeout=10) as client:
            while True:
                with lock:
                    if issued >= total:
                        return
                    issued += 1
                start = time.monotonic()
                try:
                    response = client.get(url)
                    answer, ok = response.text, response.status_code == 200
                except httpx.HTTPError as exc:
                    answer, ok = repr(exc), False
                with lock:
                    results.append((start, time.monotonic(), answer, ok))

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    return results, lock, threads


@pytest.mark.slow
def test_replace_all_members_under_load_without_a_failed_request(
    lb: HaproxyBalancer, backends: Backends
) -> None:
    total, workers = 3000, 8
    old = [backends.start(f"old-{i}") for i in range(3)]
    new = [backends.start(f"new-{i}") for i in range(3)]
    for backend in old:
        add(lb, backend)
    with httpx.Client() as client:
        wait_serving(lb, client, {b.name for b in old})

    results, lock, threads = start_load(lb.url(), total, workers)
    try:
        wait_for(lambda: len(results) >= 300, what="load to start")
        for backend in new:
            add(lb, backend)

        def new_take_traffic() -> bool:
            with lock:
                recent = {answer for _, _, answer, _ in results[-200:]}
            return {b.name for b in new} <= recent

        wait_for(new_take_traffic, what="new members to take traffic")
        for backend in old:
            lb.drain_member(backend.name)
        wait_for(
            lambda: all(
                m.active_connections == 0 for m in lb.list_members() if m.name.startswith("old")
            ),
            what="old members to drain",
        )
        for backend in old:
            lb.remove_member(backend.name)
        removed_at = time.monotonic()
        for backend in old:
            backend.stop()
        done_when_removed = len(results)
    finally:
        for thread in threads:
            thread.join(timeout=60)

    failures = [r for r in results if not r[3]]
    latencies = [end - start for start, end, _, _ in results]
    after = [r[2] for r in results if r[0] > removed_at]
    print(
        f"\nload: {len(results)} requests, {workers} keep-alive workers,"
        f" {total - done_when_removed} after the old members were removed;"
        f" p50 {percentile(latencies, 0.5) * 1000:.2f} ms,"
        f" p99 {percentile(latencies, 0.99) * 1000:.2f} ms,"
        f" max {max(latencies) * 1000:.2f} ms; failures {len(failures)}"
    )
    assert len(results) == total
    assert failures == []
    assert len(after) >= 100, "the load ended before the old members were gone"
    assert set(after) <= {b.name for b in new}
    assert [m.name for m in lb.list_members()] == [b.name for b in new]


@pytest.mark.slow
def test_batch_switch_under_load_without_a_failed_request(
    lb: HaproxyBalancer, backends: Backends, spy: Spy
) -> None:
    """One batch adds the new members and drains the old ones; a second removes them."""
    total, workers = 3000, 8
    old = [backends.start(f"old-{i}") for i in range(3)]
    new = [backends.start(f"new-{i}") for i in range(3)]
    lb.change_members(adding(*old))
    with httpx.Client() as client:
        wait_serving(lb, client, {b.name for b in old})

    results, _, threads = start_load(lb.url(), total, workers)
    try:
        wait_for(lambda: len(results) >= 300, what="load to start")
        spy.connections = 0
        lb.change_members([*adding(*new), *draining(*old)])
        switched_at = time.monotonic()
        switch_connections = spy.connections
        wait_for(
            lambda: all(
                m.active_connections == 0 for m in lb.list_members() if m.name.startswith("old")
            ),
            what="old members to drain",
        )
        lb.change_members(removing(*old))
        removed_at = time.monotonic()
        for backend in old:
            backend.stop()
    finally:
        for thread in threads:
            thread.join(timeout=60)

    failures = [r for r in results if not r[3]]
    print(f"\nbatch switch under load: {len(results)} requests, failures {len(failures)},"
          f" {sum(r[0] > removed_at for r in results)} after the removal")
    assert switch_connections == 1
    assert len(results) == total
    assert failures == []
    assert {r[2] for r in results if r[0] > switched_at} <= {b.name for b in new}
    assert sum(r[0] > removed_at for r in results) >= 100, "the load ended too soon"
    assert [m.name for m in lb.list_members()] == [b.name for b in new]
