"""Issue 13 on the OpenStack harness (the lease in Swift, through the harness's object
store): two `phoenix deploy` processes started together have one winner, and a deploy
frozen (SIGSTOP) past its lease TTL while another ships is fenced once resumed: it
exits 4 and touches nothing (Nova's servers and Octavia's members stay as the newer
deploy left them)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from typing import Any

import pytest

from tests.openstack.test_openstack_deploy import Cloud
from tests.openstack.test_openstack_deploy import cloud as cloud  # the fixture

pytestmark = pytest.mark.openstack

TTL = "lease_ttl: 5s"


def _start(cloud: Cloud) -> subprocess.Popen[str]:
    return subprocess.Popen(cloud.command("deploy"), cwd=cloud.tmp, env={**os.environ},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _releases(cloud: Cloud) -> dict[str, str]:
    return {s.name: s.metadata["phoenix:release"] for s in cloud.servers()  # type: ignore[attr-defined]
            if s.status != "DELETED"}  # type: ignore[attr-defined]


def _world(cloud: Cloud) -> tuple[Any, ...]:
    return (sorted(_releases(cloud).items()), sorted(cloud.members().items()))


def test_two_deploys_started_together_have_one_winner(cloud: Cloud) -> None:
    cloud.write(greeting="one", count=2)
    first, second = _start(cloud), _start(cloud)
    outputs = [p.communicate(timeout=600) for p in (first, second)]

    assert sorted(p.returncode for p in (first, second)) == [0, 4], outputs
    loser = next(err for p, (_, err) in zip((first, second), outputs, strict=True)
                 if p.returncode == 4)
    assert "holds the lock" in loser
    winner = next(out for p, (out, _) in zip((first, second), outputs, strict=True)
                  if p.returncode == 0)
    assert set(_releases(cloud).values()) == {json.loads(winner)["release"]}


def test_a_deploy_stopped_past_its_ttl_is_fenced_when_resumed(cloud: Cloud) -> None:
    cloud.write(greeting="one", count=2, rollout=TTL)
    assert cloud.phoenix("deploy").returncode == 0
    r1 = set(_releases(cloud).values())

    cloud.write(greeting="two", count=2, strategy="canary",
                rollout=f"{TTL}, canary: {{size: 1, bake: 10m}}")
    stalled = _start(cloud)
    try:
        deadline = time.monotonic() + 300
        while not (set(_releases(cloud).values()) - r1) or len(cloud.members()) < 3:
            assert stalled.poll() is None, stalled.communicate()
            assert time.monotonic() < deadline, "A never put its canary in the pool"
            time.sleep(0.5)
        canary = set(_releases(cloud).values()) - r1
        time.sleep(3)  # baking: it only reads now
        stalled.send_signal(signal.SIGSTOP)
        time.sleep(12)  # > 2 TTL

        cloud.write(greeting="three", count=2, rollout=TTL)
        took_over = cloud.phoenix("deploy")
        assert took_over.returncode == 0, took_over.stderr[-3000:]
        r3 = json.loads(took_over.stdout)["release"]
        assert set(_releases(cloud).values()) == {r3}
        before = _world(cloud)

        stalled.send_signal(signal.SIGCONT)
        out, err = stalled.communicate(timeout=120)

        assert stalled.returncode == 4, (out, err[-3000:])
        assert "lost the lock" in err
        assert _world(cloud) == before
        assert canary.isdisjoint(_releases(cloud).values())
    finally:
        if stalled.poll() is None:
            stalled.send_signal(signal.SIGCONT)
            stalled.kill()
            stalled.wait()
