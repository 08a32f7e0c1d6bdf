"""`phoenix watch` (issue 14) on the memory cloud with the fake clock: sick and vanished
nodes are replaced, never below ``count`` serving; a fleet sicker than
``heal.max_unhealthy`` opens the circuit and nothing churns; ``max_node_age`` repaves
the oldest node, one at a time; a deploy holding the lease makes watch wait."""

from __future__ import annotations

from typing import Any

import pytest

import phoenix
from phoenix.lease import DeployLock
from phoenix.spec import Spec
from phoenix.watch import AppReport, Watcher

from .conftest import POOL, REGION, SimulatedCrash, World, make_world

ROLLING = "  max_surge: 1\n  max_unavailable: 0"
INTERVAL = 5.0


def spec_of(world: World, extra: str = "", **overrides: Any) -> Spec:
    text = world.spec(extra_rollout=ROLLING, **overrides)
    if not extra:
        return text
    path = world.tmp / "phoenix.yaml"
    path.write_text(path.read_text() + extra)
    from phoenix.spec_loader import load_spec

    return load_spec(path)


def rounds(world: World, watcher: Watcher, n: int) -> list[AppReport]:
    seen: list[AppReport] = []
    for _ in range(n):
        seen += watcher.round()
        world.clock.advance(INTERVAL)
    return seen


def test_a_sick_node_is_replaced_and_the_pool_is_whole_again(world: World) -> None:
    spec = spec_of(world)
    phoenix.deploy(spec, provider=world.provider(), clock=world.clock)
    sick = sorted(world.serving())[1]
    world.cloud.faults.unhealthy_nodes = {sick}
    world.watch.reset()

    with Watcher([spec], clock=world.clock, providers={"web": world.provider()}) as watcher:
        seen = rounds(world, watcher, 6)

    acted = [r for r in seen if r.state == "acting"]
    assert [(r.action, r.outcome) for r in acted] == [("heal", "succeeded")], seen
    assert sick in acted[0].detail
    serving = world.serving()
    assert sick not in serving and len(serving) == 3
    assert {m.name for m in world.cloud.members(REGION, POOL)} == set(serving)
    assert world.watch.min_serving is not None and world.watch.min_serving >= 2
    assert seen[-1].state == "healthy"
    history = phoenix.history(spec, provider=world.provider(), clock=world.clock)
    assert [r.action for r in history] == ["deploy", "heal"]


def test_a_vanished_server_is_rebuilt(world: World) -> None:
    spec = spec_of(world)
    phoenix.deploy(spec, provider=world.provider(), clock=world.clock)
    gone = next(s for s in world.live_servers() if s.index == 2)
    world.cloud.provider().compute.delete_node(REGION, gone.id)  # behind Phoenix's back
    world.settle()

    with Watcher([spec], clock=world.clock, providers={"web": world.provider()}) as watcher:
        seen = rounds(world, watcher, 3)

    assert any(r.action == "heal" and r.outcome == "succeeded" for r in seen), seen
    assert len(world.serving()) == 3
    assert sorted(s.index for s in world.live_servers()) == [0, 1, 2]


def test_a_fleet_sicker_than_max_unhealthy_opens_the_circuit_and_nothing_churns(
    world: World,
) -> None:
    spec = spec_of(world)
    phoenix.deploy(spec, provider=world.provider(), clock=world.clock)
    world.cloud.faults.unhealthy_nodes = set(sorted(world.serving())[:2])  # 2 of 3 > 34%
    world.mutations = 0

    with Watcher([spec], clock=world.clock, providers={"web": world.provider()}) as watcher:
        seen = rounds(world, watcher, 6)

    assert world.mutations == 0
    assert seen[-1].state == "circuit-open"
    assert "circuit open" in seen[-1].detail
    assert not any(r.state == "acting" for r in seen)


def test_max_parallel_bounds_replacements_under_way(world: World) -> None:
    spec = spec_of(world, count=4, extra="heal: {max_parallel: 1, max_unhealthy: 50%}\n")
    phoenix.deploy(spec, provider=world.provider(), clock=world.clock)
    world.cloud.faults.unhealthy_nodes = set(sorted(world.serving())[:2])
    world.watch.reset()

    with Watcher([spec], clock=world.clock, providers={"web": world.provider()}) as watcher:
        seen = rounds(world, watcher, 8)

    assert any(r.action == "heal" for r in seen), seen
    assert len(world.serving()) == 4
    assert not world.cloud.faults.unhealthy_nodes & set(world.serving())
    assert world.watch.max_nodes <= 5  # one replacement at a time


def test_max_node_age_repaves_the_oldest_node_one_at_a_time(world: World) -> None:
    spec = spec_of(world, extra="max_node_age: 1h\n")
    phoenix.deploy(spec, provider=world.provider(), clock=world.clock)
    first = {s.name: s.created_at for s in world.live_servers()}
    world.clock.advance(3600 + 60)
    world.watch.reset()

    with Watcher([spec], clock=world.clock, providers={"web": world.provider()}) as watcher:
        seen = rounds(world, watcher, 5)

    repaved = [r for r in seen if r.action == "repave-age"]
    assert len(repaved) == 3, seen
    assert set(first).isdisjoint(world.serving())  # every old node replaced
    assert world.watch.min_serving is not None and world.watch.min_serving >= 3
    assert world.watch.max_nodes <= 4
    # Oldest first: the order nodes were repaved follows their creation.
    order = sorted(first, key=lambda name: (first[name], name))
    assert [r.detail.rsplit(": ", 1)[1] for r in repaved] == order


def test_watch_waits_while_a_deploy_holds_the_lease(world: World) -> None:
    spec = spec_of(world)
    phoenix.deploy(spec, provider=world.provider(), clock=world.clock)
    world.cloud.faults.unhealthy_nodes = {sorted(world.serving())[0]}
    deploying = DeployLock(world.cloud.provider().store, "web", "d-ci-deploy")
    deploying.host = "ci-runner"
    deploying.acquire(world.clock)
    world.mutations = 0

    with Watcher([spec], clock=world.clock, providers={"web": world.provider()}) as watcher:
        for _ in range(4):
            seen = watcher.round()
            deploying.heartbeat(world.clock.now())
            world.clock.advance(INTERVAL)
        assert seen[-1].state == "waiting" and "d-ci-deploy" in seen[-1].detail
        assert world.mutations == 0  # no fight
        deploying.release(world.clock.now())
        after = rounds(world, watcher, 3)

    assert any(r.action == "heal" and r.outcome == "succeeded" for r in after), after


def _samples(watcher: Watcher, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    found = {}
    for metric in watcher.metrics.registry.collect():
        for sample in metric.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_metrics_count_heals_nodes_and_the_circuit(world: World) -> None:
    spec = spec_of(world)
    first = phoenix.deploy(spec, provider=world.provider(), clock=world.clock)
    world.cloud.faults.unhealthy_nodes = {sorted(world.serving())[0]}

    with Watcher([spec], clock=world.clock, providers={"web": world.provider()}) as watcher:
        rounds(world, watcher, 4)
        heals = _samples(watcher, "phoenix_heals_total")
        nodes = _samples(watcher, "phoenix_nodes")
        actions = _samples(watcher, "phoenix_deploys_total")
        world.cloud.faults.unhealthy_nodes = set(world.serving())  # everything sick
        rounds(world, watcher, 4)
        circuit = _samples(watcher, "phoenix_circuit_open")
        text = watcher.metrics.text().decode()

    assert heals == {(("app", "web"), ("reason", "heal"), ("region", REGION)): 1.0}
    assert actions[(("action", "heal"), ("app", "web"), ("outcome", "succeeded"))] == 1.0
    healthy = (("app", "web"), ("health", "HEALTHY"), ("region", REGION),
               ("release", first.release))
    assert nodes[healthy] == 3.0
    assert circuit == {(("app", "web"),): 1.0}
    assert 'phoenix_node_age_seconds{app="web"' in text
    assert "phoenix_step_duration_seconds_count" in text
    assert 'phoenix_lease_held{app="web"} 0.0' in text
    assert 'phoenix_desired_nodes{app="web",region="region-a"} 3.0' in text
    # The golden image (img-1) was made 2026-02-01; the fake clock is in March.
    ages = _samples(watcher, "phoenix_image_age_seconds")
    assert list(ages.values()) and all(age > 20 * 86400 for age in ages.values())


def test_healthz_says_stuck_when_no_round_finished_for_three_intervals(world: World) -> None:
    spec = spec_of(world)
    phoenix.deploy(spec, provider=world.provider(), clock=world.clock)
    with Watcher([spec], clock=world.clock, providers={"web": world.provider()}) as watcher:
        assert watcher.alive(INTERVAL)  # the first round is under way
        watcher.round()
        world.clock.advance(2 * INTERVAL)
        assert watcher.alive(INTERVAL)
        world.clock.advance(2 * INTERVAL)
        assert not watcher.alive(INTERVAL)


FAILOVER = ("dns: {zone: example.com., record: web, ttl: 5}\n"
            "failover: {after: 30s, auto_failback: true, failback_after: 60s}")


def dns_region(world: World) -> str:
    record = world.cloud.provider().dns.get_record("example.com.", "web")  # type: ignore[union-attr]
    assert record is not None
    url = {r: world.cloud.provider().load_balancer.url(r, POOL) for r in (REGION, "region-b")}
    [region] = [r for r, address in url.items() if any(v in address for v in record.values)]
    return region


@pytest.mark.parametrize("fault", ["down_regions", "unhealthy_regions"])
def test_watch_fails_over_when_the_region_cannot_serve_and_back_when_it_recovers(
    world: World, fault: str
) -> None:
    """A power cut (the region's API is gone) or a broken network (every node fails its
    check): after failover.after, watch moves the app; once the primary is back for
    failback_after, it moves it back. Both health-gated, both in the history."""
    spec = world.spec(extra_rollout=FAILOVER)
    first = phoenix.deploy(spec, provider=world.provider(), clock=world.clock)
    assert dns_region(world) == REGION

    with Watcher([spec], clock=world.clock, providers={"web": world.provider()}) as watcher:
        setattr(world.cloud.faults, fault, {REGION})
        seen = rounds(world, watcher, 4)  # 20 s: not yet
        assert [r.state for r in seen] == ["region-down"] * 4, seen
        assert dns_region(world) == REGION
        moved = rounds(world, watcher, 4)
        [failover] = [r for r in moved if r.action == "failover"]
        assert failover.outcome == "succeeded" and failover.region == "region-b"
        assert dns_region(world) == "region-b"
        assert set(world.serving_in("region-b").values()) == {first.release}

        setattr(world.cloud.faults, fault, set())  # power (or the network) is back
        back = rounds(world, watcher, 20)

    [failback] = [r for r in back if r.action == "failback"]
    assert failback.outcome == "succeeded" and failback.region == REGION
    assert dns_region(world) == REGION
    history = {r.action: r for r in phoenix.history(spec, provider=world.provider(),
                                                     clock=world.clock)}
    assert "failover" in history and "failback" in history
    # Recorded as watch's, with why it moved: not as if a person had run `failover`.
    for action in ("failover", "failback"):
        assert history[action].deploy_id == watcher.deploy_id, history[action]
    assert (history["failover"].reason or "").startswith(
        f"watch: {REGION} could not serve for"), history["failover"]
    assert "failover.auto_failback" in (history["failback"].reason or "")


def test_without_failover_a_down_region_is_only_reported(world: World) -> None:
    spec = world.spec(extra_rollout="dns: {zone: example.com., record: web, ttl: 5}")
    phoenix.deploy(spec, provider=world.provider(), clock=world.clock)
    world.cloud.faults.down_regions = {REGION}
    with Watcher([spec], clock=world.clock, providers={"web": world.provider()}) as watcher:
        seen = rounds(world, watcher, 12)
    assert {r.state for r in seen} == {"failed"}
    assert dns_region(world) == REGION


def test_an_image_older_than_max_age_is_reported_not_baked(world: World) -> None:
    spec = spec_of(world)
    phoenix.deploy(spec, provider=world.provider(), clock=world.clock)  # image: 28 days old
    path = world.tmp / "phoenix.yaml"
    path.write_text(path.read_text().replace("image: {name: golden}",
                                             "image: {name: golden, max_age: 20d}"))
    from phoenix.spec_loader import load_spec

    spec = load_spec(path)  # a deploy would now refuse to build from it; watch reports
    world.mutations = 0

    with Watcher([spec], clock=world.clock, providers={"web": world.provider()}) as watcher:
        [report] = watcher.round()
        text = watcher.metrics.text().decode()

    assert report.state == "healthy"
    assert "over image.max_age: bake a fresh golden image" in report.detail
    assert world.mutations == 0
    assert 'phoenix_image_max_age_seconds{app="web"} 1.728e+06' in text


def test_a_second_watchers_stale_verdict_does_not_act_or_record(world: World) -> None:
    """Watcher B judged "sick" while A was healing; A finished and let go of the lease
    before B took it. Under the lease B judges again: nothing to do, nothing recorded
    (found by the two-watcher test on the local provider)."""
    from phoenix.engine import Engine

    spec = spec_of(world)
    phoenix.deploy(spec, provider=world.provider(), clock=world.clock)
    world.cloud.faults.unhealthy_nodes = {sorted(world.serving())[1]}
    with Watcher([spec], clock=world.clock, providers={"web": world.provider()}) as a:
        late = Engine(spec, world.provider(), clock=world.clock, region=REGION,
                      deploy_id="watch-b")
        stale = late.verdict(probes=spec.health.unhealthy_threshold)
        assert stale.sick
        assert any(r.action == "heal" for r in rounds(world, a, 6))
    world.mutations = 0

    result = late.heal(stale)

    assert result.outcome == "unchanged" and result.steps == 0
    assert world.mutations == 0
    history = phoenix.history(spec, provider=world.provider(), clock=world.clock)
    assert [r.action for r in history] == ["deploy", "heal"]


def test_api_requests_count_every_call_watch_makes_by_service(world: World) -> None:
    """``phoenix_api_requests_total{provider,service}``: what the reconciler costs the
    control plane, equal to the calls the memory cloud itself counted."""
    spec = spec_of(world)
    phoenix.deploy(spec, provider=world.provider(), clock=world.clock)
    world.cloud.faults.unhealthy_nodes = {sorted(world.serving())[0]}
    cloud_before = dict(world.cloud.calls)

    with Watcher([spec], clock=world.clock, providers={"web": world.provider()}) as watcher:
        counted_before = _samples(watcher, "phoenix_api_requests_total")
        seen = rounds(world, watcher, 4)
        counted = _samples(watcher, "phoenix_api_requests_total")

    assert any(r.action == "heal" for r in seen), seen  # it made changes, not only reads

    def by_cloud(prefix: str, but: tuple[str, ...] = ()) -> int:
        return sum(n - cloud_before.get(name, 0) for name, n in world.cloud.calls.items()
                   if name.startswith(prefix) and name not in but)

    def by_watch(service: str) -> float:
        key = (("provider", "memory"), ("service", service))
        return counted.get(key, 0.0) - counted_before.get(key, 0.0)

    assert by_watch("compute") == by_cloud("compute.", but=("compute.find_images",)) > 0
    assert by_watch("load_balancer") == by_cloud("lb.") > 0
    assert by_watch("store") > 0


def _heal(world: World) -> tuple[Spec, str, str]:
    """Deploy three nodes and make one sick; (spec, serving release, the sick node)."""
    spec = spec_of(world)
    first = phoenix.deploy(spec, provider=world.provider(), clock=world.clock)
    sick = sorted(world.serving())[1]
    world.cloud.faults.unhealthy_nodes = {sick}
    world.watch.reset()
    world.mutations = 0
    return spec, first.release, sick


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_watch_killed_at_any_step_of_a_heal_converges_once_restarted(
    tmp_path_factory: pytest.TempPathFactory, when: str
) -> None:
    """Issue 14: kill -9 of watch at every mutation of a heal (before or after it); a
    restarted watch finishes: the sick node gone, the pool whole with the same release,
    no orphan server, and never fewer than the healthy two serving meanwhile."""
    probe = make_world(tmp_path_factory.mktemp("probe"))
    spec, _, _ = _heal(probe)
    with Watcher([spec], clock=probe.clock, providers={"web": probe.provider()}) as watcher:
        rounds(probe, watcher, 8)
    total = probe.mutations
    assert total >= 5, probe.trace
    for k in range(1, total + 1):
        world = make_world(tmp_path_factory.mktemp(f"kill{k}"))
        spec, release, sick = _heal(world)
        setattr(world, f"crash_{when}", k)
        with (Watcher([spec], clock=world.clock, providers={"web": world.provider()}) as dying,
              pytest.raises(SimulatedCrash)):
            rounds(world, dying, 8)
        world.crash_before = world.crash_after = None
        with Watcher([spec], clock=world.clock, providers={"web": world.provider()}) as again:
            rounds(world, again, 8)

        where = f"killed {when} mutation {k} of {total}"
        serving = world.serving()
        assert sick not in serving and len(serving) == 3, where
        assert set(serving.values()) == {release}, where
        assert {s.name for s in world.live_servers()} == set(serving), where  # no orphan
        assert world.watch.min_serving is not None and world.watch.min_serving >= 2, where
