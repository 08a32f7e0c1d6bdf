"""The hook runner (``phoenix.hooks``) against real processes and a real loopback HTTP
server: the facts as env vars and stdin JSON, the spec's folder, the caller's
environment, a timeout killing the whole process group, bounded and masked output, a
URL hook's POST; and ``HookPoints`` doing nothing at all when the spec has no hooks."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from phoenix import processes
from phoenix.hook_points import HookPoints
from phoenix.hooks import OUTPUT_LIMIT, HookFacts, run_hook
from phoenix.spec import Spec
from phoenix.spec_hooks import HookSpec

NODE = HookFacts(app="web", region="r1", release="r2-b", previous_release="r1-a",
                 moment="pre_terminate", action="deploy", deploy_id="d-1",
                 node_name="web-r1-a-0", node_address="127.1.0.9", node_release="r1-a")
RUN = HookFacts(app="web", region="r1", release="r2-b", previous_release=None,
                moment="post_deploy", action="deploy", deploy_id="d-1")


def shell(command: str, facts: HookFacts, cwd: Path, **kwargs: Any) -> Any:
    return run_hook(HookSpec(run=command, **kwargs), facts, cwd=cwd)


def test_a_node_hook_gets_the_facts_as_env_vars_and_json_on_stdin(tmp_path: Path) -> None:
    result = shell("env | grep ^PHOENIX_ | sort > env.txt; cat > stdin.json; pwd > cwd",
                   NODE, tmp_path)
    assert result.ok, result
    env = dict(line.split("=", 1) for line in (tmp_path / "env.txt").read_text().splitlines())
    assert env == {
        "PHOENIX_APP": "web", "PHOENIX_REGION": "r1", "PHOENIX_RELEASE": "r2-b",
        "PHOENIX_PREVIOUS_RELEASE": "r1-a", "PHOENIX_HOOK_MOMENT": "pre_terminate",
        "PHOENIX_ACTION": "deploy", "PHOENIX_DEPLOY_ID": "d-1",
        "PHOENIX_NODE_NAME": "web-r1-a-0", "PHOENIX_NODE_ADDRESS": "127.1.0.9",
        "PHOENIX_NODE_RELEASE": "r1-a",
    }
    facts = json.loads((tmp_path / "stdin.json").read_text())
    assert facts == {"app": "web", "region": "r1", "release": "r2-b",
                     "previous_release": "r1-a", "moment": "pre_terminate",
                     "action": "deploy", "deploy_id": "d-1",
                     "node": {"name": "web-r1-a-0", "address": "127.1.0.9",
                              "release": "r1-a"}}
    assert Path((tmp_path / "cwd").read_text().strip()) == tmp_path.resolve()


def test_a_release_hook_inherits_the_callers_environment_but_no_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEPLOY_TOKEN", "from-the-ci-runner")
    monkeypatch.setenv("PHOENIX_NODE_NAME", "a-stale-node")
    result = shell('echo "$DEPLOY_TOKEN|${PHOENIX_NODE_NAME-unset}|$PHOENIX_PREVIOUS_RELEASE|"'
                   "; cat", RUN, tmp_path)
    assert result.ok
    first, payload = result.output.splitlines()
    assert first == "from-the-ci-runner|unset||"  # no previous release: an empty string
    assert json.loads(payload)["node"] is None


def test_a_failure_says_its_exit_code_and_last_line(tmp_path: Path) -> None:
    result = shell("echo starting; echo 'disk full' >&2; exit 7", NODE, tmp_path)
    assert not result.ok
    assert result.detail == "exit 7: disk full"
    assert result.output == "starting\ndisk full\n"
    ok = shell("echo backed up 3 files", NODE, tmp_path)
    assert ok.ok and ok.detail == "backed up 3 files"


def test_a_timeout_kills_the_hooks_whole_process_group(tmp_path: Path) -> None:
    started = time.monotonic()
    result = shell("sleep 60 & echo $! > child; sleep 60", NODE, tmp_path, timeout=0.5)
    assert time.monotonic() - started < 10
    assert not result.ok
    assert result.detail.startswith("timed out after 0.5s")
    child = int((tmp_path / "child").read_text())
    deadline = time.monotonic() + 5
    while processes.pid_alive(child) and time.monotonic() < deadline:
        threading.Event().wait(0.05)
    assert not processes.pid_alive(child), "the hook's background child outlived its timeout"


def test_output_is_bounded_and_secrets_are_masked(tmp_path: Path) -> None:
    result = run_hook(
        HookSpec(run="head -c 300000 /dev/zero | tr '\\0' x; echo; echo token=s3cr3t-value"),
        NODE, cwd=tmp_path, secrets=["s3cr3t-value"])
    assert result.ok
    assert len(result.output) <= OUTPUT_LIMIT + 10
    assert result.output.endswith("token=***\n")
    assert "s3cr3t-value" not in result.output + result.detail
    assert result.detail == "token=***"


class _Receiver(BaseHTTPRequestHandler):
    """Answers POSTs with the status in the path (/200, /500, /slow)."""

    received: list[tuple[str, dict[str, str], bytes]] = []
    answer_slow = threading.Event()  # /slow answers when this is set (at teardown)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.path, dict(self.headers), body))
        if self.path == "/slow":
            type(self).answer_slow.wait(60)
        status = 500 if self.path == "/500" else 200
        data = b"recorded\n" if status == 200 else b"oops: database down\n"
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    _Receiver.received = []
    _Receiver.answer_slow = threading.Event()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        _Receiver.answer_slow.set()
        server.shutdown()
        server.server_close()


def test_a_url_hook_posts_the_facts_as_json(receiver: str, tmp_path: Path) -> None:
    result = run_hook(HookSpec(url=f"{receiver}/200"), NODE, cwd=tmp_path)
    assert result.ok and result.detail == "HTTP 200"
    path, headers, body = _Receiver.received[0]
    assert path == "/200"
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Phoenix-Moment"] == "pre_terminate"
    assert json.loads(body)["node"]["name"] == "web-r1-a-0"


def test_a_url_hook_fails_on_an_error_status_a_refusal_and_a_timeout(
    receiver: str, tmp_path: Path
) -> None:
    failed = run_hook(HookSpec(url=f"{receiver}/500"), RUN, cwd=tmp_path)
    assert not failed.ok and failed.detail == "HTTP 500: oops: database down"
    started = time.monotonic()
    slow = run_hook(HookSpec(url=f"{receiver}/slow", timeout=0.3), RUN, cwd=tmp_path)
    assert not slow.ok and slow.detail == "timed out after 0.3s"
    # It gave up on its own: the server would have answered only after 60 s. (Loose:
    # a loaded machine may take a while to run the 0.3 s timeout.)
    assert time.monotonic() - started < 30
    refused = run_hook(HookSpec(url="http://127.0.0.1:9/", timeout=2), RUN, cwd=tmp_path)
    assert not refused.ok and refused.detail.startswith("POST failed:")


class _NoStore:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"store.{name} called by a spec without hooks")


def test_without_hooks_the_points_touch_nothing(tmp_path: Path) -> None:
    spec = Spec.model_validate({
        "app": "web", "regions": ["r1"], "image": {"name": "i"}, "flavor": "f", "count": 1,
        "template": "t", "health": {"http": {"port": 80}},
        "load_balancer": {"pool": "p", "member_port": 80}})
    points = HookPoints(spec, _NoStore(), region="r1", deploy_id="d-1")  # type: ignore[arg-type]
    points.begin("deploy", "r2", ("r1", 3), None)
    points.before([])
    points.finish()
    assert points.runs == []
