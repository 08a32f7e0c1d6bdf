"""``phoenix.Phoenix``: one session per app owns the provider, clock and retry policy that
every action of a run shares; the module functions are one-call wrappers around it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

import phoenix
from phoenix.errors import Transient
from phoenix.providers.base import Provider
from phoenix.retrying import RetryPolicy
from phoenix.spec import Spec
from phoenix.watch import Watcher

from .conftest import World, make_world


@pytest.fixture
def world(tmp_path: Any) -> World:
    return make_world(tmp_path)


@dataclasses.dataclass
class Opened:
    """Counts the providers opened for a spec and the closes they got."""

    world: World
    opened: int = 0
    closed: int = 0

    def open(self, spec: Spec, *, clock: Any) -> Provider:
        self.opened += 1
        provider = self.world.provider()
        counter = self

        class Counted(Provider):
            def close(self) -> None:
                counter.closed += 1

        return Counted(**{f.name: getattr(provider, f.name)
                          for f in dataclasses.fields(Provider)})


@pytest.fixture
def opened(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[Opened]:
    counts = Opened(world)
    monkeypatch.setattr("phoenix.session.open_provider", counts.open)
    yield counts


def test_one_session_opens_its_provider_once_for_every_action(
    world: World, opened: Opened
) -> None:
    spec = world.spec()
    with phoenix.Phoenix(spec, clock=world.clock) as session:
        assert session.plan().steps  # a first deploy has steps to take
        first = session.deploy()
        assert first.outcome == "succeeded"
        assert session.deploy().outcome == "unchanged"  # an unchanged rerun changes nothing
        assert [r.release for r in session.history()] == [first.release, first.release]
        report = session.status()
        assert report.regions[0].serving_release == first.release
        assert opened.opened == 1
        assert opened.closed == 0
    assert opened.closed == 1


def test_a_provider_the_caller_passed_stays_open(world: World, opened: Opened) -> None:
    mine = opened.open(world.spec(), clock=world.clock)
    with phoenix.Phoenix(world.spec(), provider=mine, clock=world.clock) as session:
        session.deploy()
    phoenix.status(world.spec(), provider=mine, clock=world.clock)
    assert (opened.opened, opened.closed) == (1, 0)


def test_each_module_function_closes_the_provider_it_opened(
    world: World, opened: Opened
) -> None:
    spec = world.spec()
    phoenix.deploy(spec, clock=world.clock)
    phoenix.plan(spec, clock=world.clock)
    phoenix.history(spec, clock=world.clock)
    assert opened.opened == 3
    assert opened.closed == 3


def test_a_bad_region_is_refused_before_the_provider_is_opened(
    world: World, opened: Opened
) -> None:
    with phoenix.Phoenix(world.spec(), clock=world.clock) as session, \
            pytest.raises(phoenix.InputError, match="--region nowhere"):
        session.deploy(region="nowhere")
    assert opened.opened == 0


class _FlakyStore:
    """A store whose reads always fail as a transient error, counting them."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.gets = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def get(self, key: str) -> bytes | None:
        self.gets += 1
        raise Transient("store unavailable")

    def list(self, prefix: str) -> list[str]:
        self.gets += 1
        raise Transient("store unavailable")


@pytest.mark.parametrize("attempts", [1, 3])
def test_the_session_retry_policy_governs_its_calls(world: World, attempts: int) -> None:
    plain = world.provider()
    flaky = _FlakyStore(plain.store)
    provider = dataclasses.replace(plain, store=flaky)  # type: ignore[arg-type]
    policy = RetryPolicy(attempts=attempts, initial=0.01, maximum=0.01, jitter=0)
    with phoenix.Phoenix(world.spec(), provider=provider, clock=world.clock,
                         retry=policy) as session:
        with pytest.raises(Transient):
            session.history()
        assert flaky.gets == attempts
        # ... and the engines and region movers it makes retry alike.
        assert session.engine().retry is policy
        assert session.mover().retry is policy


def test_watch_keeps_one_session_per_app_across_rounds(world: World, opened: Opened) -> None:
    spec = world.spec()
    phoenix.deploy(spec, provider=world.provider(), clock=world.clock)
    with Watcher([spec], clock=world.clock) as watcher:
        for _ in range(3):
            world.clock.advance(5)
            (report,) = watcher.round()
            assert report.state == "healthy", report
        assert opened.opened == 1
    assert opened.closed == 1
