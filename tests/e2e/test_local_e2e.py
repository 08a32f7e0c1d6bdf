"""The local provider end to end: real node processes on 127.x addresses behind a real
load balancer, a deploy and a forced rollback under load with zero failed requests, and
`kill -9` of `phoenix deploy` at several points followed by a converging rerun."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

import phoenix
from phoenix.errors import DeployFailed
from phoenix.providers.local import supervisor

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hello"
BALANCERS = ["builtin"]
if shutil.which("haproxy"):
    BALANCERS.append("haproxy")


def free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class App:
    root: Path
    balancer: str
    lb_port: int

    @property
    def spec_path(self) -> Path:
        return self.root / "phoenix.yaml"

    def spec(self) -> phoenix.Spec:
        return phoenix.load_spec(self.spec_path)

    def set(self, old: str, new: str) -> None:
        text = self.spec_path.read_text()
        assert old in text
        self.spec_path.write_text(text.replace(old, new))

    def change_image(self, marker: str) -> None:
        server = self.root / "image" / "server.py"
        server.write_text(server.read_text() + f"\n# {marker}\n")

    @property
    def url(self) -> str:
        return f"http://127.1.255.254:{self.lb_port}/"

    def state(self) -> Path:
        return self.root / ".phoenix" / "local"

    def agent_pids(self) -> set[int]:
        pids = set()
        for status in self.state().glob("regions/*/apps/*/nodes/*/status.json"):
            data = json.loads(status.read_text())
            for key in ("agent_pid", "service_pid"):
                if data.get(key):
                    pids.add(int(data[key]))
        return pids

    def phoenix(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "phoenix", *args], cwd=self.root, capture_output=True,
            text=True, timeout=180, check=False,
        )


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent to reap it does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def copy_example(tmp_path: Path, balancer: str, *, append: str = "",
                 drain_timeout: str = "10s") -> tuple[Path, int]:
    """examples/hello in ``tmp_path`` with its own balancer kind and a free LB port."""
    root = tmp_path / "hello"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".phoenix", "__pycache__"))
    port = free_port("127.1.255.254")
    text = (root / "phoenix.yaml").read_text()
    text = text.replace("balancer: auto", f"balancer: {balancer}")
    text = text.replace("lb_port: 8080", f"lb_port: {port}")
    text = text.replace("drain_timeout: 10s", f"drain_timeout: {drain_timeout}")
    (root / "phoenix.yaml").write_text(text + append)
    return root, port


@contextlib.contextmanager
def example_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                balancer: str = "builtin") -> Iterator[App]:
    """examples/hello in ``tmp_path`` (the cwd meanwhile); destroyed afterwards, and any
    node agent left is killed."""
    root, port = copy_example(tmp_path, balancer)
    monkeypatch.chdir(root)
    the_app = App(root, balancer, port)
    try:
        yield the_app
    finally:
        try:
            phoenix.destroy(the_app.spec(), purge_records=True, timeout=30)
        finally:
            for pid in the_app.agent_pids():
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)


@pytest.fixture(params=BALANCERS)
def app(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
        ) -> Iterator[App]:
    with example_app(tmp_path, monkeypatch, request.param) as the_app:
        yield the_app


@dataclass
class Load:
    """A bounded async load generator: workers send GETs until told to stop."""

    url: str
    ok: int = 0
    failed: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    releases: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    async def _worker(self, client: httpx.AsyncClient, budget: int) -> None:
        for _ in range(budget):
            if self.stop.is_set():
                return
            start = time.perf_counter()
            try:
                response = await client.get(self.url)
                if response.status_code == 200 and response.text.startswith("release "):
                    self.ok += 1
                    self.releases.append(response.text.split()[1])
                else:
                    self.failed.append(f"{response.status_code} {response.text[:60]!r}")
            except httpx.HTTPError as exc:
                self.failed.append(f"{type(exc).__name__}: {exc}")
            self.latencies.append(time.perf_counter() - start)

    def run(self, *, workers: int = 8, budget: int = 4000) -> None:
        async def main() -> None:
            limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
            async with httpx.AsyncClient(timeout=10, limits=limits) as client:
                await asyncio.gather(*(self._worker(client, budget) for _ in range(workers)))

        asyncio.run(main())

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000


def under_load(app: App, action: object, minimum: int = 5000) -> tuple[Load, object]:
    """Run ``action`` while the load runs; keep the load going until ``minimum`` requests."""
    load = Load(app.url)
    outcome: dict[str, object] = {}
    thread = threading.Thread(target=load.run, kwargs={"workers": 8, "budget": 100_000})
    thread.start()
    try:
        try:
            outcome["result"] = action()  # type: ignore[operator]
        except Exception as exc:  # handed back to the test
            outcome["result"] = exc
        deadline = time.monotonic() + 120
        while load.ok + len(load.failed) < minimum and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        load.stop.set()
        thread.join(timeout=60)
    return load, outcome["result"]


def steady_latency(app: App) -> Load:
    load = Load(app.url)
    load.run(workers=8, budget=250)
    return load


def test_deploy_then_redeploy_under_load_drops_nothing(app: App) -> None:
    first = phoenix.deploy(app.spec())
    assert first.outcome == "succeeded"
    assert first.endpoint == app.url.rstrip("/")
    answers = {httpx.get(app.url).text.split("\n")[0] for _ in range(12)}
    expected = f"release {first.release} node hello-{first.release}-"
    assert all(a.startswith(expected) for a in answers)
    assert len(answers) == 3  # round robin over three nodes
    old_pids = app.agent_pids()
    steady = steady_latency(app)
    assert not steady.failed

    app.change_image("release two")
    load, second = under_load(app, lambda: phoenix.deploy(app.spec()))
    assert isinstance(second, phoenix.DeployResult), second
    assert second.release != first.release
    assert load.ok >= 5000, load.ok
    assert load.failed == [], load.failed[:5]
    assert set(load.releases) <= {first.release, second.release}
    after = {httpx.get(app.url).text.split()[1] for _ in range(12)}
    assert after == {second.release}
    assert not any(alive(pid) for pid in old_pids)
    print(
        f"\n[{app.balancer}] steady p50={steady.percentile(0.5):.1f}ms"
        f" p99={steady.percentile(0.99):.1f}ms; during deploy p50={load.percentile(0.5):.1f}ms"
        f" p99={load.percentile(0.99):.1f}ms over {load.ok} requests, 0 failed"
    )


def test_forced_rollback_under_load_drops_nothing(app: App) -> None:
    first = phoenix.deploy(app.spec())
    app.set("healthy: true", "healthy: false")
    load, outcome = under_load(app, lambda: phoenix.deploy(app.spec()))
    assert isinstance(outcome, DeployFailed), outcome
    assert load.ok >= 5000
    assert load.failed == [], load.failed[:5]
    assert set(load.releases) == {first.release}
    report = phoenix.status(app.spec())
    assert report.regions[0].serving_release == first.release
    assert {n.release for n in report.regions[0].nodes} == {first.release}
    print(
        f"\n[{app.balancer}] rollback: p50={load.percentile(0.5):.1f}ms"
        f" p99={load.percentile(0.99):.1f}ms over {load.ok} requests, 0 failed"
    )


def test_kill_9_of_deploy_then_rerun_converges(app: App) -> None:
    assert app.phoenix("deploy", "phoenix.yaml").returncode == 0
    seen: set[int] = set()
    for attempt, delay in enumerate((0.3, 1.0, 2.0, 3.0)):
        seen |= app.agent_pids()
        app.change_image(f"kill {attempt}")
        proc = subprocess.Popen(
            [sys.executable, "-m", "phoenix", "deploy", "phoenix.yaml"], cwd=app.root,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline:  # note the half-built nodes' processes too
            seen |= app.agent_pids()
            time.sleep(0.05)
        proc.kill()  # SIGKILL: no cleanup of any kind
        proc.wait()
        seen |= app.agent_pids()
        rerun = app.phoenix("--output", "json", "deploy", "phoenix.yaml")
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        release = json.loads(rerun.stdout)["release"]
        report = phoenix.status(app.spec())
        region = report.regions[0]
        assert region.serving_release == release
        assert {n.release for n in region.nodes} == {release}, f"orphans after kill {attempt}"
        assert all(n.member == "SERVING" for n in region.nodes)
        assert region.stray_members == ()
        assert len(region.nodes) == 3
        # No orphaned server: three node directories, and every process ever started for
        # an abandoned release is gone.
        nodes_dir = app.state() / "regions" / "local-a" / "apps" / "hello" / "nodes"
        node_dirs = [p for p in nodes_dir.iterdir() if not p.name.startswith(".")]
        assert len(node_dirs) == 3
        current = app.agent_pids()
        assert not [pid for pid in seen - current if alive(pid)], f"orphans after kill {attempt}"


def test_a_node_that_dies_after_going_live_shows_in_status(app: App) -> None:
    result = phoenix.deploy(app.spec())
    victim = app.state() / "regions" / "local-a" / "apps" / "hello" / "nodes" / (
        f"hello-{result.release}-1"
    )
    status = json.loads((victim / "status.json").read_text())
    os.kill(int(status["service_pid"]), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        report = phoenix.status(app.spec())
        row = {n.name: n for n in report.regions[0].nodes}[victim.name]
        if row.state == "ERROR":
            break
        time.sleep(0.2)
    assert row.state == "ERROR" and row.fault
    assert any(victim.name in problem for problem in report.problems)
    # No request fails: the balancer's own check takes the dead node out.
    load = Load(app.url)
    load.run(workers=4, budget=100)
    assert load.failed == []


def test_status_of_an_unused_region_starts_nothing(app: App) -> None:
    phoenix.deploy(app.spec())
    report = phoenix.status(app.spec())
    assert report.regions[1].serving_release is None
    assert not (app.state() / "regions" / "local-b" / "pools").exists()


def test_destroy_leaves_no_process(app: App) -> None:
    phoenix.deploy(app.spec())
    pids = app.agent_pids()
    assert pids
    result = app.phoenix("destroy", "--yes", "phoenix.yaml")
    assert result.returncode == 0, result.stderr
    assert not any(alive(pid) for pid in pids)
    for pidfile in app.state().glob("regions/*/pools/*/*.pid"):
        assert not alive(int(pidfile.read_text().strip() or 0)), pidfile


def test_a_dead_balancer_is_reported_by_status_and_brought_back_by_a_rerun(app: App) -> None:
    """The balancer and its supervisor are both killed: `status` reports it and starts
    nothing (it never repairs); the unchanged deploy, an actor, brings it back."""
    first = phoenix.deploy(app.spec())
    pool_dir = app.state() / "regions" / "local-a" / "pools" / "hello"
    (watcher,) = supervisor.supervisor_pids(pool_dir)
    balancer = balancer_pid(pool_dir)
    assert balancer is not None
    for pid in (watcher, balancer):  # the supervisor first, or it restarts the balancer
        os.kill(pid, signal.SIGKILL)
        wait_dead(pid)

    report = phoenix.status(app.spec())

    assert any("is not running" in p for p in report.problems), report.problems
    time.sleep(1.0)
    assert balancer_pid(pool_dir) is None  # status started nothing
    with pytest.raises(httpx.ConnectError):
        httpx.get(app.url, timeout=2)

    again = phoenix.deploy(app.spec())

    assert again.outcome == "unchanged" and again.release == first.release
    load = Load(app.url)
    load.run(workers=4, budget=50)
    assert load.failed == [] and load.ok == 200
    assert phoenix.status(app.spec()).problems == ()


def balancer_pid(pool_dir: Path) -> int | None:
    """The pool's live balancer (HAProxy's or the built-in proxy's pid file)."""
    for name in ("haproxy.pid", "proxy.pid"):
        path = pool_dir / name
        if path.exists() and (text := path.read_text().strip()).isdigit() and alive(int(text)):
            return int(text)
    return None


def wait_dead(pid: int) -> None:
    deadline = time.monotonic() + 5
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid)


def test_detached_processes_do_not_inherit_the_deployers_secrets(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Credentials in the deployer's environment never reach a process that outlives it
    (balancer, supervisor, HAProxy, node agents and services): /proc/<pid>/environ is
    readable by every process of the same user, node services included."""
    secrets = {"OS_PASSWORD": "os-password-4f1c", "AWS_SECRET_ACCESS_KEY": "aws-secret-9d2e",
               "PHOENIX_TEST_TOKEN": "phoenix-token-77ab"}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    phoenix.deploy(app.spec())

    checked = 0
    for pid in processes_under(app.root):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue  # gone meanwhile
        checked += 1
        for name, value in secrets.items():
            assert name.encode() not in environ and value.encode() not in environ, (
                f"pid {pid} ({Path(f'/proc/{pid}/cmdline').read_bytes()[:120]!r}) has {name}")
    assert checked >= 3 + 3 + 2  # agents, services, the balancer and its supervisor


def processes_under(root: Path) -> set[int]:
    """Live processes whose command line, working directory or environment is under root."""
    needle = str(root).encode()
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            text = Path(f"/proc/{entry}/cmdline").read_bytes()
            text += Path(f"/proc/{entry}/environ").read_bytes()
            text += os.readlink(f"/proc/{entry}/cwd").encode()
        except OSError:
            continue
        if needle in text and alive(int(entry)):
            found.add(int(entry))
    return found
