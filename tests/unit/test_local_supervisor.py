"""The supervisor's decisions with a fake balancer and a fake clock: restart at once on a
death, back off on failed or short-lived restarts, honour a hold (an outage), exit when
the balancer was stopped on purpose. The real processes are in
tests/integration/test_local_balancer_supervisor.py."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from phoenix import errors
from phoenix.providers.local import supervisor
from phoenix.providers.local.balancer import BalancerConfig
from phoenix.providers.local.supervisor import BACKOFF_MAX, STABLE_SECONDS, Supervisor, backoff


@pytest.mark.parametrize(
    ("failures", "seconds"),
    [(0, 0.0), (1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (7, 30.0), (50, BACKOFF_MAX)],
)
def test_backoff_doubles_up_to_its_cap(failures: int, seconds: float) -> None:
    assert backoff(failures) == seconds


@dataclass
class FakeBalancer:
    """``pid`` is None while dead; ``ensure_process`` fails while ``broken``."""

    config: BalancerConfig
    current: int | None = 100
    broken: bool = False
    attempts: list[float] = field(default_factory=list)
    clock: FakeClock | None = None

    def pid(self) -> int | None:
        return self.current

    def ensure_process(self) -> bool:
        assert self.clock is not None
        self.attempts.append(self.clock.now)
        if self.broken:
            raise errors.InputError("cannot listen: address in use")
        if self.current is not None:
            return False
        self.current = 200 + len(self.attempts)
        return True


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def make(tmp_path: Path, *, hold: bool = False) -> tuple[Supervisor, FakeBalancer, FakeClock]:
    clock = FakeClock()
    balancer = FakeBalancer(BalancerConfig(tmp_path, "127.0.0.1", 8080), clock=clock)
    hold_file = tmp_path / "outage.json" if hold else None
    watcher = Supervisor(balancer, hold_file=hold_file, clock=clock,  # type: ignore[arg-type]
                         sleep=clock.sleep)
    return watcher, balancer, clock


def run_for(watcher: Supervisor, clock: FakeClock, seconds: float) -> None:
    end = clock.now + seconds
    while clock.now < end:
        watcher.step()
        clock.sleep(supervisor.POLL_SECONDS)


def test_a_death_is_restarted_at_once(tmp_path: Path) -> None:
    watcher, balancer, clock = make(tmp_path)
    run_for(watcher, clock, 1.0)
    assert balancer.attempts == []  # alive: nothing to do
    balancer.current = None
    watcher.step()
    assert balancer.attempts == [clock.now] and balancer.current is not None
    assert watcher.restarts == 1


def test_failed_restarts_back_off(tmp_path: Path) -> None:
    watcher, balancer, clock = make(tmp_path)
    balancer.current, balancer.broken = None, True
    start = clock.now
    run_for(watcher, clock, 20.0)
    offsets = [round(t - start, 1) for t in balancer.attempts]
    assert offsets == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5]  # not one attempt per poll
    balancer.broken = False
    run_for(watcher, clock, 20.0)
    assert balancer.current is not None and watcher.failures == 6
    run_for(watcher, clock, STABLE_SECONDS + 1)  # it held: the count is forgotten
    assert watcher.failures == 0


def test_a_crash_loop_backs_off_and_a_stable_restart_resets_it(tmp_path: Path) -> None:
    watcher, balancer, clock = make(tmp_path)
    for _ in range(4):  # dies every second after each restart
        balancer.current = None
        run_for(watcher, clock, 0.1)
        while balancer.current is None:
            run_for(watcher, clock, 0.1)
        run_for(watcher, clock, 1.0)
    gaps = [round(b - a, 1) for a, b in itertools.pairwise(balancer.attempts)]
    assert gaps[1:] == sorted(gaps[1:]) and gaps[-1] > gaps[0]
    assert watcher.failures == 3
    run_for(watcher, clock, STABLE_SECONDS + 1)
    balancer.current = None
    before = len(balancer.attempts)
    watcher.step()
    assert len(balancer.attempts) == before + 1  # a death after a stable spell: at once


def test_a_hold_keeps_it_down_until_lifted(tmp_path: Path) -> None:
    watcher, balancer, clock = make(tmp_path, hold=True)
    (tmp_path / "outage.json").write_text(json.dumps({"since": "now", "reason": "drill"}))
    balancer.current = None
    run_for(watcher, clock, 5.0)
    assert balancer.attempts == []
    reason = watcher.hold_reason()
    assert reason is not None and "drill" in reason
    (tmp_path / "outage.json").unlink()
    watcher.step()
    assert len(balancer.attempts) == 1 and balancer.current is not None


def test_it_exits_when_stopped_on_purpose_or_its_pool_is_gone(tmp_path: Path) -> None:
    watcher, _, _ = make(tmp_path)
    assert watcher.exit_reason() is None
    (tmp_path / supervisor.STOPPED_FILE).write_text("")
    assert watcher.run() == 0
    assert supervisor.stopped_on_purpose(tmp_path)
    supervisor.clear_stopped(tmp_path)
    assert watcher.exit_reason() is None
    gone, _, _ = make(tmp_path / "missing")
    assert "is gone" in (gone.exit_reason() or "")


def test_each_restart_rereads_the_saved_config(tmp_path: Path) -> None:
    clock = FakeClock()
    first = FakeBalancer(BalancerConfig(tmp_path, "127.0.0.1", 8080), current=None, clock=clock)
    second = FakeBalancer(BalancerConfig(tmp_path, "127.0.0.1", 9090), current=None, clock=clock)
    loads: list[FakeBalancer] = []

    def reload() -> FakeBalancer:
        if not loads:
            loads.append(first)
            raise errors.InputError("config.json: cannot read the balancer config")
        loads.append(second)
        return second

    watcher = Supervisor(first, reload=reload, clock=clock,  # type: ignore[arg-type]
                         sleep=clock.sleep)
    watcher.step()  # the unreadable config counts as a failed restart: back off
    assert watcher.failures == 1 and first.attempts == [] and second.attempts == []
    run_for(watcher, clock, 1.0)
    assert second.attempts and second.current is not None
    assert watcher.balancer is second  # type: ignore[comparison-overlap]
