"""The built-in balancer as real processes on loopback: a proxy process per pool and small
HTTP servers as members. Membership changes under load must not fail a single request."""

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
from typing import Any

import httpx
import pytest

from phoenix import errors
from phoenix.model import MemberAction, MemberChange, MemberState
from phoenix.providers.local.balancer import BalancerConfig
from phoenix.providers.local.proxy import BuiltinBalancer

pytestmark = pytest.mark.integration

LB_HOST = "127.0.0.1"

BACKEND = r'''
import json, os, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

NAME, HOST, SICK = sys.argv[1], sys.argv[2], sys.argv[3]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body):
        self.send_response(status)
        self.send_header("X-Backend", NAME)
        if status not in (204, 304):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and status not in (204, 304):
            self.wfile.write(body)

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path == "/healthz":
            return self.reply(503 if os.path.exists(SICK) else 200, b"ok")
        if url.path == "/slow":
            time.sleep(float(parse_qs(url.query).get("s", ["1"])[0]))
        if url.path == "/headers":
            seen = {k.lower(): v for k, v in self.headers.items()}
            return self.reply(200, json.dumps(seen).encode())
        if url.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(5):
                part = f"{NAME}-{i};".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.flush()
                time.sleep(0.05)
            self.wfile.write(b"0\r\n\r\n")
            return
        if url.path == "/until-close":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"x" * 100_000)
            self.close_connection = True
            return
        if url.path == "/empty":
            return self.reply(204, b"")
        if url.path == "/not-modified":
            return self.reply(304, b"")
        self.reply(200, NAME.encode())

    do_HEAD = do_GET

    def do_POST(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.reply(200, NAME.encode() + b":" + body)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512


server = Server((HOST, 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
'''


def free_port(host: str = LB_HOST) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[-1].split()[0] == "Z")


def wait_for(condition: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.02)


@dataclass
class Backend:
    name: str
    address: str
    port: int
    process: subprocess.Popen[str]
    sick_file: Path

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)

    def set_sick(self, sick: bool) -> None:
        if sick:
            self.sick_file.touch()
        else:
            self.sick_file.unlink(missing_ok=True)


@dataclass
class Backends:
    """HTTP servers on their own 127.0.0.x address each; all killed at teardown."""

    root: Path
    started: list[Backend] = field(default_factory=list)

    def start(self, name: str, *, sick: bool = False) -> Backend:
        address = f"127.0.0.{10 + len(self.started)}"
        sick_file = self.root / f"{name}.sick"
        if sick:
            sick_file.touch()
        process = subprocess.Popen(
            [sys.executable, "-c", BACKEND, name, address, str(sick_file)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
        )
        assert process.stdout is not None
        backend = Backend(name, address, 0, process, sick_file)
        self.started.append(backend)
        line = process.stdout.readline()
        assert line.strip().isdigit(), f"backend {name} did not start"
        backend.port = int(line)
        return backend

    def stop_all(self) -> None:
        for backend in self.started:
            backend.kill()
            if backend.process.stdout is not None:
                backend.process.stdout.close()


@pytest.fixture
def backends(tmp_path: Path) -> Iterator[Backends]:
    started = Backends(tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


@dataclass
class Pools:
    """Balancers under tmp_path; every process is stopped at teardown, even on failure."""

    root: Path
    made: list[BuiltinBalancer] = field(default_factory=list)

    def new(self, name: str = "pool", **options: object) -> BuiltinBalancer:
        options.setdefault("check_interval", 0.1)
        config = BalancerConfig(
            pool_dir=self.root / name, listen_host=LB_HOST, listen_port=free_port(),
            **options,  # type: ignore[arg-type]
        )
        balancer = BuiltinBalancer(config)
        self.made.append(balancer)
        return balancer

    def again(self, balancer: BuiltinBalancer) -> BuiltinBalancer:
        """A second client for the same pool, as another `phoenix` process would have."""
        other = BuiltinBalancer(balancer.config)
        self.made.append(other)
        return other

    def stop_all(self) -> None:
        for balancer in self.made:
            pid_file = balancer.config.pool_dir / "proxy.pid"
            pid = int(pid_file.read_text()) if pid_file.exists() else None
            try:
                balancer.stop()
            finally:
                if pid is not None and alive(pid):
                    os.kill(pid, signal.SIGKILL)


@pytest.fixture
def pools(tmp_path: Path) -> Iterator[Pools]:
    made = Pools(tmp_path)
    try:
        yield made
    finally:
        made.stop_all()


def add(balancer: BuiltinBalancer, *members: Backend) -> None:
    for backend in members:
        balancer.add_member(backend.name, backend.address, backend.port)


def hits(url: str, count: int, path: str = "/") -> list[str]:
    with httpx.Client(base_url=url, timeout=10) as client:
        responses = [client.get(path) for _ in range(count)]
    assert [r.status_code for r in responses] == [200] * count
    return [r.text for r in responses]


def adding(*members: Backend) -> list[MemberChange]:
    return [MemberChange(MemberAction.ADD, b.name, b.address, b.port) for b in members]


def draining(*members: Backend) -> list[MemberChange]:
    return [MemberChange(MemberAction.DRAIN, b.name) for b in members]


def removing(*members: Backend) -> list[MemberChange]:
    return [MemberChange(MemberAction.REMOVE, b.name) for b in members]


@pytest.fixture
def control_ops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ops of every control request any BuiltinBalancer sends, pings left out."""
    ops: list[str] = []
    request = BuiltinBalancer._request

    def recording(self: BuiltinBalancer, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        if body.get("op") != "ping":
            ops.append(str(body.get("op")))
        return request(self, body, timeout)

    monkeypatch.setattr(BuiltinBalancer, "_request", recording)
    return ops


def member_writes(balancer: BuiltinBalancer) -> int:
    """members.json writes of the running process so far (its own counter)."""
    return int(balancer._request({"op": "ping"}, 5.0)["saves"])


def members(balancer: BuiltinBalancer) -> dict[str, tuple[MemberState, int | None]]:
    return {m.name: (m.state, m.active_connections) for m in balancer.list_members()}


def online(balancer: BuiltinBalancer) -> dict[str, bool | None]:
    return {m.name: m.online for m in balancer.list_members()}


def in_background(fn: Callable[[], httpx.Response]) -> tuple[threading.Thread, list[object]]:
    result: list[object] = []

    def run() -> None:
        try:
            result.append(fn())
        except Exception as exc:  # reported by the assertion on ``result``
            result.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


# --- membership and balancing --------------------------------------------------------


def test_round_robin_across_three_members(pools: Pools, backends: Backends) -> None:
    balancer = pools.new()
    a, b, c = (backends.start(n) for n in "abc")
    add(balancer, a, b, c)
    assert balancer.running()
    names = hits(balancer.url(), 30)
    assert {n: names.count(n) for n in "abc"} == {"a": 10, "b": 10, "c": 10}
    for i in range(0, 30, 3):
        assert sorted(names[i:i + 3]) == ["a", "b", "c"]
    listed = balancer.list_members()
    assert [(m.name, m.address, m.port, m.state, m.active_connections, m.online)
            for m in listed] == [
        (x.name, x.address, x.port, MemberState.SERVING, 0, True) for x in (a, b, c)
    ]


def test_no_member_up_answers_503(pools: Pools, backends: Backends) -> None:
    balancer = pools.new()
    balancer.ensure_running()  # a read (list_members) would not start it
    assert balancer.list_members() == []
    response = httpx.get(balancer.url(), timeout=5)
    assert response.status_code == 503
    assert b"no healthy member" in response.content


def test_added_member_takes_traffic_only_after_its_check_passes(
    pools: Pools, backends: Backends
) -> None:
    balancer = pools.new()
    a = backends.start("a")
    late = backends.start("late", sick=True)
    add(balancer, a, late)
    assert members(balancer)["late"] == (MemberState.SERVING, 0)
    assert online(balancer) == {"a": True, "late": False}
    assert set(hits(balancer.url(), 10)) == {"a"}
    late.set_sick(False)
    wait_for(lambda: online(balancer)["late"] is True, what="late to come online")
    assert sorted(hits(balancer.url(), 4)) == ["a", "a", "late", "late"]
    late.set_sick(True)  # check_fall=2 failures at 0.1 s take it out again
    time.sleep(0.5)
    assert set(hits(balancer.url(), 10)) == {"a"}


def test_a_healthy_member_is_up_when_add_returns(pools: Pools, backends: Backends) -> None:
    balancer = pools.new(check_interval=5.0)  # no second check during this test
    a = backends.start("a")
    add(balancer, a)
    assert hits(balancer.url(), 3) == ["a"] * 3


def test_drain_stops_new_requests_but_in_flight_one_completes(
    pools: Pools, backends: Backends
) -> None:
    balancer = pools.new()
    a, b = backends.start("a"), backends.start("b")
    add(balancer, a, b)
    thread, result = in_background(lambda: httpx.get(balancer.url() + "/slow?s=1", timeout=10))
    wait_for(lambda: any(n == 1 for _, n in members(balancer).values()), what="in flight")
    busy = next(name for name, (_, n) in members(balancer).items() if n == 1)
    balancer.drain_member(busy)
    assert members(balancer)[busy] == (MemberState.DRAINING, 1)
    other = ({"a", "b"} - {busy}).pop()
    assert set(hits(balancer.url(), 10)) == {other}
    thread.join(10)
    response = result[0]
    assert isinstance(response, httpx.Response)
    assert (response.status_code, response.text) == (200, busy)
    assert members(balancer)[busy] == (MemberState.DRAINING, 0)
    add(balancer, a if busy == "a" else b)  # serving again
    assert sorted(hits(balancer.url(), 2)) == ["a", "b"]


def test_drain_of_a_missing_member_is_not_found(pools: Pools) -> None:
    balancer = pools.new()
    with pytest.raises(errors.NotFound, match="nope"):
        balancer.drain_member("nope")


def test_remove_takes_member_out_at_once_and_in_flight_completes(
    pools: Pools, backends: Backends
) -> None:
    balancer = pools.new()
    a, b = backends.start("a"), backends.start("b")
    add(balancer, a, b)
    thread, result = in_background(lambda: httpx.get(balancer.url() + "/slow?s=1", timeout=10))
    wait_for(lambda: any(n == 1 for _, n in members(balancer).values()), what="in flight")
    busy = next(name for name, (_, n) in members(balancer).items() if n == 1)
    balancer.remove_member(busy)
    assert busy not in members(balancer)
    assert busy not in hits(balancer.url(), 10)
    thread.join(10)
    response = result[0]
    assert isinstance(response, httpx.Response)
    assert (response.status_code, response.text) == (200, busy)
    balancer.remove_member(busy)  # removing a missing member is not an error
    balancer.remove_member("never-existed")


def test_killed_member_is_skipped_without_a_failed_request(
    pools: Pools, backends: Backends
) -> None:
    balancer = pools.new(check_interval=5.0)  # the connect failure, not a check, finds it
    a, b, c = (backends.start(n) for n in "abc")
    add(balancer, a, b, c)
    assert sorted(hits(balancer.url(), 3)) == ["a", "b", "c"]
    b.kill()
    names = hits(balancer.url(), 30)  # every one answers 200 (asserted in hits)
    assert set(names) == {"a", "c"}
    assert online(balancer) == {"a": True, "b": False, "c": True}  # still a member


class Closer:
    """A member that accepts a connection, reads the request and hangs up without a word."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.listener = socket.socket()
        self.listener.bind((address, 0))
        self.listener.listen(64)
        self.listener.settimeout(0.1)
        self.port: int = self.listener.getsockname()[1]
        self.requests = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(5)
                if connection.recv(65536):  # the TCP check sends nothing
                    self.requests += 1

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(5)
        self.listener.close()


def test_member_hanging_up_unanswered_replays_only_safe_requests(
    pools: Pools, backends: Backends
) -> None:
    balancer = pools.new(check_path=None, check_interval=5.0)
    closer = Closer("127.0.0.50")
    try:
        good = backends.start("good")
        balancer.add_member("closer", closer.address, closer.port)
        add(balancer, good)
        # A GET without a body is replayed on the next member; the closer is taken out.
        assert hits(balancer.url(), 4) == ["good"] * 4
        assert closer.requests == 1
        assert online(balancer) == {"closer": False, "good": True}
        # A POST reached the member and may have done something: it is not replayed.
        balancer.remove_member("closer")
        balancer.add_member("closer", closer.address, closer.port)
        assert online(balancer) == {"good": True, "closer": True}
        with httpx.Client(base_url=balancer.url(), timeout=10) as client:
            statuses = sorted(client.post("/", content=b"x").status_code for _ in range(2))
        assert statuses == [200, 502]
        assert closer.requests == 2
    finally:
        closer.stop()


def test_a_batch_is_one_control_message_and_one_members_write(
    pools: Pools, backends: Backends, control_ops: list[str]
) -> None:
    balancer = pools.new()
    old = [backends.start(f"old{i}") for i in range(3)]
    new = [backends.start(f"new{i}") for i in range(3)]
    balancer.change_members(adding(*old))
    control_ops.clear()
    writes = member_writes(balancer)
    switch = [*adding(*new), *draining(*old[:2]), *removing(old[2]),
              MemberChange(MemberAction.DRAIN, "missing"),
              MemberChange(MemberAction.REMOVE, "never-added")]
    balancer.change_members(switch)
    assert control_ops == ["batch"]
    assert member_writes(balancer) == writes + 1
    want = {"old0": (MemberState.DRAINING, 0), "old1": (MemberState.DRAINING, 0),
            **{b.name: (MemberState.SERVING, 0) for b in new}}
    assert members(balancer) == want
    assert all(online(balancer)[b.name] for b in new)  # checked before the batch answered
    assert set(hits(balancer.url(), 12)) == {b.name for b in new}
    saved = json.loads((balancer.config.pool_dir / "members.json").read_text())
    assert {name: entry["state"] for name, entry in saved.items()} == {
        name: state.value for name, (state, _) in want.items()}

    balancer.change_members(switch)  # again: nothing changes, nothing written
    assert members(balancer) == want
    assert member_writes(balancer) == writes + 1
    balancer.change_members(adding(old[0]))  # re-enables a draining member
    assert members(balancer)["old0"] == (MemberState.SERVING, 0)


def test_a_batch_to_a_process_without_batch_falls_back_to_single_calls(
    pools: Pools, backends: Backends, monkeypatch: pytest.MonkeyPatch
) -> None:
    balancer = pools.new()
    a, b = backends.start("a"), backends.start("b")
    add(balancer, a)
    request = BuiltinBalancer._request

    def older(self: BuiltinBalancer, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        if body.get("op") == "batch":  # what a process of an older Phoenix answers
            return {"ok": False, "error": "bad_request", "message": "unknown op 'batch'"}
        return request(self, body, timeout)

    monkeypatch.setattr(BuiltinBalancer, "_request", older)
    balancer.change_members([*draining(a), *adding(b), MemberChange(MemberAction.DRAIN, "gone")])
    assert members(balancer) == {"a": (MemberState.DRAINING, 0), "b": (MemberState.SERVING, 0)}

    monkeypatch.undo()  # the current process checks a whole batch before applying any of it
    with pytest.raises(errors.BadRequest, match="address"):
        balancer.change_members([*removing(a), MemberChange(MemberAction.ADD, "c", "", 0)])
    assert set(members(balancer)) == {"a", "b"}


def test_restart_restores_members_from_members_json(pools: Pools, backends: Backends) -> None:
    balancer = pools.new()
    a, b, c = (backends.start(n) for n in "abc")
    add(balancer, a, b, c)
    balancer.drain_member("c")
    before = balancer.list_members()
    saved = json.loads((balancer.config.pool_dir / "members.json").read_text())
    assert list(saved) == ["a", "b", "c"]  # the format HaproxyBalancer shares
    assert saved["c"]["state"] == "DRAINING"
    pid = int((balancer.config.pool_dir / "proxy.pid").read_text())
    balancer.stop()
    assert not alive(pid) and not balancer.running()

    again = pools.again(balancer)
    again.ensure_running()
    assert again.list_members() == before
    assert sorted(hits(again.url(), 4)) == ["a", "a", "b", "b"]  # serving at once


def test_members_saved_as_a_list_are_still_restored(pools: Pools, backends: Backends) -> None:
    balancer = pools.new()
    a = backends.start("a")
    add(balancer, a)
    balancer.stop()
    entry = {"name": "a", "address": a.address, "port": a.port, "state": "SERVING"}
    (balancer.config.pool_dir / "members.json").write_text(json.dumps([entry]))
    again = pools.again(balancer)
    again.ensure_running()
    assert [m.name for m in again.list_members()] == ["a"]


def test_keep_alive_client_is_rebalanced_after_a_drain(pools: Pools, backends: Backends) -> None:
    balancer = pools.new()
    a, b, c = (backends.start(n) for n in "abc")
    add(balancer, a, b, c)
    with httpx.Client(base_url=balancer.url(), timeout=10) as client:

        def get() -> tuple[str, object]:
            response = client.get("/")
            assert response.status_code == 200
            stream = response.extensions["network_stream"]
            return response.text, stream.get_extra_info("client_addr")

        first = [get() for _ in range(6)]
        balancer.drain_member("a")
        after = [get() for _ in range(6)]
    connections = {addr for _, addr in first + after}
    assert len(connections) == 1, "the client reused one connection throughout"
    assert {name for name, _ in first} == {"a", "b", "c"}
    assert {name for name, _ in after} == {"b", "c"}


# --- HTTP ----------------------------------------------------------------------------


def test_post_bodies_round_trip(pools: Pools, backends: Backends) -> None:
    balancer = pools.new()
    add(balancer, backends.start("a"))
    body = os.urandom(300_000).hex().encode()

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 70_000):
            yield body[i:i + 70_000]

    with httpx.Client(base_url=balancer.url(), timeout=10) as client:
        sized = client.post("/echo", content=body)
        chunked = client.post("/echo", content=chunks())
        empty = client.post("/echo", content=b"")
        expect = client.post("/echo", content=b"hi", headers={"Expect": "100-continue"})
    assert (sized.status_code, sized.content) == (200, b"a:" + body)
    assert (chunked.status_code, chunked.content) == (200, b"a:" + body)
    assert (empty.status_code, empty.content) == (200, b"a:")
    assert (expect.status_code, expect.content) == (200, b"a:hi")


def test_framing_head_and_bodiless_statuses(pools: Pools, backends: Backends) -> None:
    balancer = pools.new()
    add(balancer, backends.start("a"))
    with httpx.Client(base_url=balancer.url(), timeout=10) as client:
        with client.stream("GET", "/chunked") as streamed:
            parts = list(streamed.iter_bytes())
        assert b"".join(parts) == b"a-0;a-1;a-2;a-3;a-4;"
        until_close = client.get("/until-close")
        assert (until_close.status_code, len(until_close.content)) == (200, 100_000)
        head = client.head("/")
        assert (head.status_code, head.headers["content-length"], head.content) == (200, "1", b"")
        assert client.get("/empty").status_code == 204
        assert client.get("/not-modified").status_code == 304
        assert client.get("/").text == "a"  # the same connection still works


def test_forwarded_for_added_and_hop_by_hop_headers_stripped(
    pools: Pools, backends: Backends
) -> None:
    balancer = pools.new()
    add(balancer, backends.start("a"))
    response = httpx.get(
        balancer.url() + "/headers", timeout=10,
        headers={"Connection": "keep-alive, x-private", "X-Private": "1", "Keep-Alive": "5",
                 "X-Forwarded-For": "10.1.1.1", "X-Kept": "yes"},
    )
    seen = response.json()
    assert seen["x-forwarded-for"] == "10.1.1.1, 127.0.0.1"
    assert seen["x-kept"] == "yes"
    assert "x-private" not in seen and "keep-alive" not in seen
    assert seen["host"] == f"{LB_HOST}:{balancer.config.listen_port}"


def test_tcp_check_when_check_path_is_none(pools: Pools, backends: Backends) -> None:
    balancer = pools.new(check_path=None)
    sick = backends.start("a", sick=True)  # /healthz fails, but the port accepts
    add(balancer, sick)
    assert hits(balancer.url(), 2) == ["a", "a"]


# --- the process -----------------------------------------------------------------------


def test_stop_leaves_no_process_and_sigterm_lets_in_flight_finish(
    pools: Pools, backends: Backends
) -> None:
    balancer = pools.new()
    add(balancer, backends.start("a"))
    pool_dir = balancer.config.pool_dir
    pid = int((pool_dir / "proxy.pid").read_text())
    assert alive(pid)
    assert (pool_dir.stat().st_mode & 0o777) == 0o700
    assert ((pool_dir / "control.sock").stat().st_mode & 0o777) == 0o600
    thread, result = in_background(lambda: httpx.get(balancer.url() + "/slow?s=1", timeout=10))
    wait_for(lambda: members(balancer)["a"][1] == 1, what="in flight")
    balancer.stop()
    thread.join(10)
    response = result[0]
    assert isinstance(response, httpx.Response) and response.status_code == 200
    assert not alive(pid)
    assert not (pool_dir / "proxy.pid").exists()
    assert not (pool_dir / "control.sock").exists()
    assert (pool_dir / "members.json").exists()
    assert not balancer.running()
    balancer.stop()  # idempotent


def test_listen_port_taken_is_a_clear_input_error(pools: Pools) -> None:
    with socket.socket() as squatter:
        squatter.bind((LB_HOST, 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        balancer = pools.new()
        taken = BuiltinBalancer(BalancerConfig(
            pool_dir=balancer.config.pool_dir, listen_host=LB_HOST, listen_port=port))
        pools.made.append(taken)
        with pytest.raises(errors.InputError, match=f"{LB_HOST}:{port}.*already in use"):
            taken.ensure_running()
    assert not (balancer.config.pool_dir / "proxy.pid").exists()
    assert not taken.running()


def test_stale_pid_and_socket_are_cleaned_up(pools: Pools, backends: Backends) -> None:
    balancer = pools.new()
    pool_dir = balancer.config.pool_dir
    pool_dir.mkdir(mode=0o700)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (pool_dir / "proxy.pid").write_text(f"{dead.pid}\n")
    (pool_dir / "control.sock").write_text("")
    assert not balancer.running()
    add(balancer, backends.start("a"))  # starts the process first
    assert balancer.running()
    assert int((pool_dir / "proxy.pid").read_text()) != dead.pid
    assert hits(balancer.url(), 1) == ["a"]


def test_a_deep_pool_dir_still_works(pools: Pools, backends: Backends) -> None:
    balancer = pools.new("d" * 60 + "/" + "e" * 60)  # the socket path exceeds sun_path
    add(balancer, backends.start("a"))
    assert [m.name for m in balancer.list_members()] == ["a"]
    assert hits(balancer.url(), 1) == ["a"]


def test_two_clients_share_one_process(pools: Pools, backends: Backends) -> None:
    balancer = pools.new()
    other = pools.again(balancer)
    threads = [threading.Thread(target=b.ensure_running) for b in (balancer, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    add(other, backends.start("a"))
    assert [m.name for m in balancer.list_members()] == ["a"]


# --- under load --------------------------------------------------------------------------


@dataclass
class Outcome:
    started: float
    seconds: float
    backend: str | None
    error: str | None



def assert_switched_cleanly(balancer: BuiltinBalancer, outcomes: list[Outcome], total: int,
                            switched_at: float, killed_at: float) -> None:
    """Every request answered; after the switch only new0..2 answered; the load ran on
    past the old members' kill; the pool is the new members."""
    assert len(outcomes) == total
    assert [o for o in outcomes if o.error is not None] == []
    after_switch = [o.backend for o in outcomes if o.started > switched_at]
    assert after_switch and set(after_switch) <= {"new0", "new1", "new2"}
    assert sum(o.started > killed_at for o in outcomes) >= 100, "load ran past the kill"
    assert {m.name for m in balancer.list_members()} == {"new0", "new1", "new2"}

def start_load(url: str, total: int, workers: int) -> tuple[list[Outcome], list[threading.Thread]]:
    """``total`` GETs of ``url`` from ``workers`` threads, one outcome each; returns once
    300 are in (the load is running), with the threads to join."""
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    issued = 0

    def worker() -> None:
        nonlocal issued
        with httpx.Client(base_url=url, timeout=10) as client:
            while True:
                with lock:
                    if issued >= total:
                        return
                    issued += 1
                started = time.monotonic()
                backend = error = None
                try:
                    response = client.get("/")
                    backend = response.text
                    if response.status_code != 200:
                        error = f"HTTP {response.status_code}: {response.text.strip()}"
                except httpx.HTTPError as exc:
                    error = repr(exc)
                with lock:
                    outcomes.append(Outcome(started, time.monotonic() - started, backend, error))

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(outcomes) >= 300, what="load to start")
    return outcomes, threads


def test_membership_changes_under_load_fail_no_request(
    pools: Pools, backends: Backends
) -> None:
    balancer = pools.new()
    old = [backends.start(f"old{i}") for i in range(3)]
    add(balancer, *old)
    total, workers = 3000, 8
    outcomes, threads = start_load(balancer.url(), total, workers)

    new = [backends.start(f"new{i}") for i in range(3)]
    add(balancer, *new)
    for backend in old:  # at once: add returned after each new member's first check
        balancer.drain_member(backend.name)
    drained_at = time.monotonic()
    wait_for(
        lambda: all(m.active_connections == 0 for m in balancer.list_members()
                    if m.name.startswith("old")),
        what="old members to finish their requests",
    )
    for backend in old:
        balancer.remove_member(backend.name)
        backend.kill()
    killed_at = time.monotonic()
    for thread in threads:
        thread.join(60)

    assert_switched_cleanly(balancer, outcomes, total, drained_at, killed_at)
    latencies = sorted(o.seconds * 1000 for o in outcomes)
    print(
        f"\nbuiltin balancer, {total} requests, {workers} workers:"
        f" p50={latencies[len(latencies) // 2]:.1f}ms"
        f" p99={latencies[int(len(latencies) * 0.99)]:.1f}ms"
        f" max={latencies[-1]:.1f}ms;"
        f" {sum(o.started > killed_at for o in outcomes)} after the old members were killed"
    )


def test_a_batch_switch_under_load_fails_no_request(
    pools: Pools, backends: Backends, control_ops: list[str]
) -> None:
    """One batch adds the new members and drains the old ones; a second removes them."""
    balancer = pools.new()
    old = [backends.start(f"old{i}") for i in range(3)]
    balancer.change_members(adding(*old))
    total, workers = 3000, 8
    outcomes, threads = start_load(balancer.url(), total, workers)

    new = [backends.start(f"new{i}") for i in range(3)]
    control_ops.clear()
    balancer.change_members([*adding(*new), *draining(*old)])
    switched_at = time.monotonic()
    assert control_ops == ["batch"]
    wait_for(
        lambda: all(m.active_connections == 0 for m in balancer.list_members()
                    if m.name.startswith("old")),
        what="old members to finish their requests",
    )
    balancer.change_members(removing(*old))
    for backend in old:
        backend.kill()
    killed_at = time.monotonic()
    for thread in threads:
        thread.join(60)

    assert_switched_cleanly(balancer, outcomes, total, switched_at, killed_at)
