"""Issue 13 on moto's S3 (through libcloud): the lease keeps one actor per app between
real `phoenix deploy` processes, and a deploy stopped past its TTL is fenced.

The lease's S3 object is created with a single conditional PUT (``If-None-Match: *``);
two processes started together must get one winner, and a deploy frozen (SIGSTOP) while
another takes over must, once resumed, stop without touching anything: the newer
release keeps serving.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from typing import Any

from tests.libcloud.test_libcloud_deploy import Deployer, _tags
from tests.libcloud.test_libcloud_deploy import deployer as deployer  # the fixture

TTL = "5s"


def _start(deployer: Deployer) -> subprocess.Popen[str]:
    return subprocess.Popen(deployer.command("deploy"), cwd=deployer.tmp, env=deployer.environ,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _releases(deployer: Deployer) -> dict[str, str]:
    return {i["InstanceId"]: _tags(i)["phoenix:release"] for i in deployer.instances()}


def _world(deployer: Deployer) -> tuple[Any, ...]:
    """What a deploy can change: instances (with their release) and ELB registrations."""
    return (sorted(_releases(deployer).items()), sorted(deployer.registered()))


def test_two_deploys_started_together_have_one_winner(deployer: Deployer) -> None:
    deployer.image("golden")
    for round_number, greeting in enumerate(("one", "two", "three")):
        deployer.write(greeting=greeting, count=2, rollout={"lease_ttl": "2m"})
        first, second = _start(deployer), _start(deployer)
        outputs = [p.communicate(timeout=240) for p in (first, second)]
        codes = sorted(p.returncode for p in (first, second))

        assert codes == [0, 4], (round_number, outputs)
        loser_err = next(err for p, (_, err) in zip((first, second), outputs, strict=True)
                         if p.returncode == 4)
        assert "holds the lock" in loser_err
        winner_out = next(out for p, (out, _) in zip((first, second), outputs, strict=True)
                          if p.returncode == 0)
        release = json.loads(winner_out)["release"]
        assert set(_releases(deployer).values()) == {release}


def test_a_deploy_stopped_past_its_ttl_is_fenced_when_resumed(deployer: Deployer) -> None:
    deployer.image("golden")
    deployer.write(greeting="one", count=2, rollout={"lease_ttl": TTL})
    assert deployer.phoenix("deploy").returncode == 0
    r1 = set(_releases(deployer).values())

    # A: a canary that bakes for a long time (only reads while it bakes).
    deployer.write(greeting="two", count=2, strategy="canary",
                   rollout={"lease_ttl": TTL, "canary": {"size": 1, "bake": "10m"}})
    stalled = _start(deployer)
    try:
        deadline = time.monotonic() + 120
        while len(set(_releases(deployer).values()) - r1) == 0:
            assert stalled.poll() is None, stalled.communicate()
            assert time.monotonic() < deadline, "A never built its canary"
            time.sleep(0.2)
        canary = set(_releases(deployer).values()) - r1
        time.sleep(3)  # into its bake: registered, only polling now
        stalled.send_signal(signal.SIGSTOP)
        time.sleep(12)  # > 2 TTL: its lease expires, then proves dead

        # B: another release takes over and ships.
        deployer.write(greeting="three", count=2, rollout={"lease_ttl": TTL})
        took_over = deployer.phoenix("deploy")
        assert took_over.returncode == 0, took_over.stderr[-3000:]
        r3 = json.loads(took_over.stdout)["release"]
        assert set(_releases(deployer).values()) == {r3}
        before = _world(deployer)

        stalled.send_signal(signal.SIGCONT)
        out, err = stalled.communicate(timeout=60)

        assert stalled.returncode == 4, (out, err[-3000:])
        assert "lost the lock" in err
        assert _world(deployer) == before  # it touched nothing once resumed
        assert canary.isdisjoint(set(_releases(deployer).values()))
        history = json.loads(deployer.phoenix("history").stdout)["records"]
        leases = {r["release"]: r["lease"] for r in history}
        assert leases[r3] > max(v for k, v in leases.items() if k != r3)
    finally:
        if stalled.poll() is None:
            stalled.send_signal(signal.SIGCONT)
            stalled.kill()
            stalled.wait()
