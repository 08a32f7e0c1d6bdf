"""Region failover on the in-memory cloud: failures classified by blast radius, the
deploy landing in the next region with its history, DNS switched only to a healthy
region, failover/failback, and nothing half-created when every region fails."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import phoenix
from phoenix import api
from phoenix.blast import BlastRadius, radius_of
from phoenix.clock import FakeClock
from phoenix.engine import DeployResult
from phoenix.errors import (
    AuthError,
    CapacityError,
    DeployFailed,
    InputError,
    LeaseLost,
    ProviderError,
    QuotaExceeded,
    RegionUnavailable,
    RestoreFailed,
    Transient,
    UnknownResource,
)
from phoenix.lease import DeployLock
from phoenix.model import Flavor, Image, MemberState, NodeState, Quota
from phoenix.providers.memory import MemoryCloud
from phoenix.spec import Spec
from tests.e2e.conftest import POOL, SimulatedCrash, World, make_world

A, B = "region-a", "region-b"
DNS = "dns: {zone: example.com., record: web, ttl: 5}"


def spec_with_dns(world: World, **overrides: object) -> Spec:
    return world.spec(extra_rollout=DNS, **overrides)


def deploy(world: World, spec: Spec) -> DeployResult:
    return api.deploy(spec, provider=world.provider(), clock=world.clock)


def live(world: World, region: str) -> list[str]:
    world.settle()
    return sorted(s.name for s in world.cloud.servers(region) if s.state is not NodeState.DELETING)


def serving(world: World, region: str) -> set[str]:
    return {m.name for m in world.cloud.members(region, POOL) if m.state is MemberState.SERVING}


def dns_values(world: World) -> tuple[str, ...] | None:
    record = world.cloud.provider().dns.get_record("example.com.", "web")  # type: ignore[union-attr]
    return record.values if record else None


def address_of(world: World, region: str) -> str:
    url = world.cloud.provider().load_balancer.url(region, POOL)  # type: ignore[attr-defined]
    return str(url).split("//")[1].split("/")[0]


def test_blast_radius_of_each_error_type() -> None:
    assert radius_of(QuotaExceeded("q")) is BlastRadius.REGION
    assert radius_of(CapacityError("no valid host")) is BlastRadius.REGION
    assert radius_of(RegionUnavailable("down")) is BlastRadius.REGION
    assert radius_of(Transient("503 after every retry")) is BlastRadius.REGION
    assert radius_of(AuthError("bad token")) is BlastRadius.PROVIDER
    assert radius_of(UnknownResource("no image")) is BlastRadius.PROVIDER
    assert radius_of(InputError("bad spec")) is BlastRadius.PROVIDER


def test_first_deploy_points_dns_at_the_primary(world: World) -> None:
    result = deploy(world, spec_with_dns(world))
    assert result.region == A and result.outcome == "succeeded"
    assert dns_values(world) == (address_of(world, A),)
    assert [a.region for a in result.attempts] == [A]
    assert result.dns == address_of(world, A)
    again = deploy(world, spec_with_dns(world))
    assert again.outcome == "unchanged" and again.region == A


def test_quota_exhausted_in_a_lands_in_b_with_the_history(world: World) -> None:
    world.cloud.set_quota(A, instances=1)
    result = deploy(world, spec_with_dns(world))
    assert result.region == B and result.outcome == "succeeded"
    first, second = result.attempts
    assert (first.region, first.outcome, first.radius) == (A, "failed", "region")
    assert "quota" in (first.reason or "")
    assert (second.region, second.outcome) == (B, "succeeded")
    assert live(world, A) == []  # the quota preflight refused before building anything
    assert len(live(world, B)) == 3 and len(serving(world, B)) == 3
    assert dns_values(world) == (address_of(world, B),)
    records = phoenix.history(spec_with_dns(world), provider=world.cloud.provider(),
                              clock=world.clock)
    tried = [(r.region, r.outcome) for r in records if r.deploy_id == result.deploy_id]
    assert tried == [(A, "failed"), (B, "succeeded")]


def test_every_region_failing_exits_non_zero_with_the_full_history(world: World) -> None:
    world.cloud.set_quota(A, instances=1)
    world.cloud.faults.no_host_regions.add(B)
    with pytest.raises(DeployFailed) as failed:
        deploy(world, spec_with_dns(world))
    assert failed.value.exit_code == 1
    message = str(failed.value)
    assert "every region failed" in message and A in message and B in message
    result = failed.value.result
    assert isinstance(result, DeployResult)
    assert [(a.region, a.radius) for a in result.attempts] == [(A, "region"), (B, "region")]
    assert "quota" in (result.attempts[0].reason or "")
    assert "No valid host" in (result.attempts[1].reason or "")
    assert live(world, A) == [] and live(world, B) == []  # nothing half-created
    assert world.cloud.members(A, POOL) == [] and world.cloud.members(B, POOL) == []
    assert dns_values(world) is None


def test_no_valid_host_fails_over_at_once_and_tears_down_the_half_built_region(
    world: World,
) -> None:
    world.cloud.faults.no_host_regions.add(A)
    result = deploy(world, spec_with_dns(world))
    assert result.region == B
    assert result.attempts[0].radius == "region"
    assert "no capacity" in (result.attempts[0].reason or "")
    assert live(world, A) == []  # the faulted servers were deleted, no retry attempts
    assert not any("-b1" in n for n in live(world, B))


def test_every_new_node_failing_its_gate_in_a_is_a_region_failure(world: World) -> None:
    world.cloud.faults.unhealthy_regions.add(A)
    result = deploy(world, spec_with_dns(world))
    assert result.region == B
    assert result.attempts[0].radius == "region"
    assert "failed its health check" in (result.attempts[0].reason or "")
    assert live(world, A) == []


def test_one_bad_node_is_a_node_failure_and_does_not_fail_over(world: World) -> None:
    spec = spec_with_dns(world)
    first = deploy(world, spec)
    bad = spec_with_dns(world, image="golden-v2")
    release = api.plan(bad, provider=world.provider(), clock=world.clock).release
    world.cloud.faults.unhealthy_nodes.add(f"web-{release}-1")
    with pytest.raises(DeployFailed) as failed:
        deploy(world, bad)
    result = failed.value.result
    assert isinstance(result, DeployResult)
    assert [(a.region, a.radius) for a in result.attempts] == [(A, "node")]
    assert live(world, B) == []
    assert {world.cloud.servers(A)[0].release} == {first.release}
    assert len(serving(world, A)) == 3
    assert dns_values(world) == (address_of(world, A),)


def test_outage_of_the_serving_region_is_noticed_by_deploy(world: World) -> None:
    spec = spec_with_dns(world)
    first = deploy(world, spec)
    world.cloud.faults.down_regions.add(A)
    result = deploy(world, spec)
    assert result.region == B and result.release == first.release
    assert result.attempts[0].region == A and "unavailable" in (result.attempts[0].reason or "")
    assert dns_values(world) == (address_of(world, B),)
    assert any(f"left {A} as it is" in line for line in result.history)
    status = api.status(spec, provider=world.cloud.provider(), clock=world.clock)
    assert status.serving_region == B
    by_region = {r.region: r for r in status.regions}
    assert by_region[B].dns_points_here and not by_region[A].dns_points_here
    assert by_region[A].error is not None

    # The region comes back: failback restores A (health-gated) and retires B.
    world.cloud.faults.down_regions.clear()
    back = api.failback(spec, provider=world.provider(), clock=world.clock)
    assert back.region == A and back.action == "failback" and back.outcome == "succeeded"
    assert dns_values(world) == (address_of(world, A),)
    assert len(serving(world, A)) == 3 and live(world, B) == []
    assert all(n.state is NodeState.ACTIVE for n in world.cloud.servers(A))


def test_planned_failover_moves_the_serving_release_and_retires_the_old_region(
    world: World,
) -> None:
    spec = spec_with_dns(world)
    first = deploy(world, spec)
    # A newer spec must not ride along: failover moves what serves, not what is written.
    newer = spec_with_dns(world, image="golden-v2")
    moved = api.failover(newer, to=B, provider=world.provider(), clock=world.clock)
    assert moved.region == B and moved.release == first.release and moved.action == "failover"
    assert dns_values(world) == (address_of(world, B),)
    assert live(world, A) == [] and len(serving(world, B)) == 3
    assert world.watch.min_serving is not None
    again = api.failover(newer, to=B, provider=world.provider(), clock=world.clock)
    assert again.outcome == "unchanged"
    # the next deploy goes where the app serves now
    upgraded = deploy(world, newer)
    assert upgraded.region == B and upgraded.release != first.release
    assert live(world, A) == []


def test_failover_to_a_region_that_cannot_be_healthy_leaves_dns_alone(world: World) -> None:
    spec = spec_with_dns(world)
    deploy(world, spec)
    world.cloud.faults.unhealthy_regions.add(B)
    with pytest.raises(DeployFailed) as failed:
        api.failover(spec, to=B, provider=world.provider(), clock=world.clock)
    assert failed.value.exit_code == 1
    assert dns_values(world) == (address_of(world, A),)
    assert live(world, B) == [] and len(serving(world, A)) == 3


def test_failover_needs_a_dns_record_and_a_known_region(world: World) -> None:
    plain = world.spec()
    with pytest.raises(InputError, match="dns"):
        api.failover(plain, to=B, provider=world.provider(), clock=world.clock)
    with pytest.raises(InputError, match="region-c"):
        api.failover(spec_with_dns(world), to="region-c", provider=world.provider(),
                     clock=world.clock)
    with pytest.raises(InputError, match="no successful deploy"):
        api.failover(spec_with_dns(world), to=B, provider=world.provider(), clock=world.clock)
    assert live(world, A) == [] and live(world, B) == []


def test_deploy_without_dns_stays_in_its_region(world: World) -> None:
    world.cloud.set_quota(A, instances=1)
    with pytest.raises(QuotaExceeded):
        api.deploy(world.spec(), provider=world.provider(), clock=world.clock)
    assert live(world, B) == []


def test_pinned_region_deploy_does_not_fail_over(world: World) -> None:
    world.cloud.set_quota(A, instances=1)
    with pytest.raises(QuotaExceeded):
        api.deploy(spec_with_dns(world), region=A, provider=world.provider(),
                   clock=world.clock)
    assert live(world, B) == [] and dns_values(world) is None


class _FailingCreates:
    """The compute API of one region refuses every create with ``error``, and (like a
    cloud whose quota API says nothing) reports unlimited quota, so the engine only
    learns of the problem once it builds."""

    def __init__(self, inner: object, region: str, error: type[ProviderError]) -> None:
        self._inner = inner
        self._region = region
        self._error = error
        self.refused = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def quota(self, region: str) -> Quota:
        return Quota(None, None, None)

    def create_node(self, region: str, request: object) -> object:
        if region == self._region:
            self.refused += 1
            raise self._error(f"HTTP 503 or 403 from compute in {region} (injected)",
                              region=region)
        return self._inner.create_node(region, request)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("error", "calls"), [(Transient, 6), (QuotaExceeded, 1), (CapacityError, 1)]
)
def test_a_create_refused_in_a_is_a_region_failure(
    world: World, error: type[ProviderError], calls: int
) -> None:
    """5xx beyond the executor's retries, or quota/capacity found only at create time."""
    spec = spec_with_dns(world)
    deploy(world, spec)  # r1 serves in A
    provider = world.provider()
    failing = _FailingCreates(provider.compute, A, error)
    provider.compute = failing  # type: ignore[assignment]
    result = api.deploy(spec_with_dns(world, image="golden-v2"), provider=provider,
                        clock=world.clock)
    assert result.region == B
    attempt = result.attempts[0]
    assert (attempt.region, attempt.radius, attempt.cleaned_up) == (A, "region", True)
    assert error.__name__ in (attempt.reason or "")
    assert failing.refused >= calls  # transient errors were retried before giving up
    assert live(world, A) == []  # A's old release was retired after DNS moved to B
    assert len(serving(world, B)) == 3
    assert dns_values(world) == (address_of(world, B),)


def test_a_load_balancer_reached_by_name_is_refused_before_building(world: World) -> None:
    provider = world.provider()

    class NamedLb:
        def __init__(self, inner: object) -> None:
            self._inner = inner

        def __getattr__(self, name: str) -> object:
            return getattr(self._inner, name)

        def url(self, region: str, pool: str) -> str:
            return f"http://{pool}.{region}.elb.example.com/"

    provider.load_balancer = NamedLb(provider.load_balancer)  # type: ignore[assignment]
    with pytest.raises(InputError, match="not at an IP address"):
        api.deploy(spec_with_dns(world), provider=provider, clock=world.clock)
    assert live(world, A) == [] and live(world, B) == []


def test_a_region_failing_the_dns_gate_is_emptied_and_the_next_one_serves(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gate runs after the engine converged (e.g. the region's own load balancer does
    not answer): the region is treated as failed, emptied, and DNS never points at it."""
    from phoenix import regions

    real_gate = regions.RegionMover._gate
    gated: list[str] = []

    def gate(self: regions.RegionMover, region: str, engine: object) -> None:
        gated.append(region)
        if region == A:
            raise regions._NotReady(f"{A}'s load balancer does not pass the health check")
        real_gate(self, region, engine)  # type: ignore[arg-type]

    monkeypatch.setattr(regions.RegionMover, "_gate", gate)
    result = deploy(world, spec_with_dns(world))
    assert gated == [A, B]
    assert result.region == B
    assert result.attempts[0].radius == "region" and result.attempts[0].cleaned_up
    assert "does not pass" in (result.attempts[0].reason or "")
    assert live(world, A) == [] and dns_values(world) == (address_of(world, B),)

    monkeypatch.setattr(regions.RegionMover, "_gate", lambda *a: (_ for _ in ()).throw(
        regions._NotReady("no region passes")))
    with pytest.raises(DeployFailed, match="no region passes; DNS was not switched"):
        api.failover(spec_with_dns(world), to=A, provider=world.provider(), clock=world.clock)
    assert live(world, A) == []  # built for the failover, then emptied: DNS never moved
    assert dns_values(world) == (address_of(world, B),) and len(serving(world, B)) == 3


def _serving_active(world: World, region: str) -> int:
    servers = {s.name: s for s in world.cloud.servers(region)}
    return sum(
        1 for m in world.cloud.members(region, POOL)
        if m.state is MemberState.SERVING and m.name in servers
        and servers[m.name].state is NodeState.ACTIVE
    )


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_crash_at_every_step_of_a_failover_converges_on_rerun(
    tmp_path_factory: pytest.TempPathFactory, when: str
) -> None:
    """kill -9 of `phoenix failover` before or after any change to the cloud: the region
    DNS points at always has its 3 members serving, and a rerun converges (app in B, DNS
    at B, A empty, no stray member)."""
    probe = make_world(tmp_path_factory.mktemp("probe"))
    deploy(probe, spec_with_dns(probe))
    probe.mutations = 0
    api.failover(spec_with_dns(probe), to=B, provider=probe.provider(), clock=probe.clock)
    total = probe.mutations
    assert total >= 10
    for k in range(1, total + 1):
        w = make_world(tmp_path_factory.mktemp(f"crash{k}"))
        first = deploy(w, spec_with_dns(w))
        floor: list[int] = []

        def watch(world: World = w, floor: list[int] = floor) -> None:
            region = A if dns_values(world) == (address_of(world, A),) else B
            floor.append(_serving_active(world, region))

        w.observe = watch  # type: ignore[method-assign]
        w.mutations = 0
        if when == "before":
            w.crash_before = k
        else:
            w.crash_after = k
        with pytest.raises(SimulatedCrash):
            api.failover(spec_with_dns(w), to=B, provider=w.provider(), clock=w.clock)
        w.crash_before = w.crash_after = None
        w.clock.advance(1)
        result = api.failover(spec_with_dns(w), to=B, provider=w.provider(), clock=w.clock)
        where = f"crash {when} mutation {k}"
        assert (result.region, result.release) == (B, first.release), where
        assert dns_values(w) == (address_of(w, B),), where
        assert live(w, A) == [] and w.cloud.members(A, POOL) == [], where
        assert len(serving(w, B)) == 3, where
        assert {m.name for m in w.cloud.members(B, POOL)} == serving(w, B), where
        assert min(floor) >= 3, where


def test_rollback_follows_dns_and_survives_an_unreachable_dns(world: World) -> None:
    spec = spec_with_dns(world)
    first = deploy(world, spec)
    api.failover(spec, to=B, provider=world.provider(), clock=world.clock)
    second = deploy(world, spec_with_dns(world, image="golden-v2"))
    assert second.region == B
    back = api.rollback(spec, provider=world.provider(), clock=world.clock)
    assert (back.region, back.release) == (B, first.release)  # where the app serves

    class DeadDns:
        def get_record(self, zone: str, name: str) -> None:
            raise RegionUnavailable("the DNS API is unreachable (injected)")

        def set_record(self, *args: object) -> None:
            raise RegionUnavailable("the DNS API is unreachable (injected)")

    provider = world.provider()
    provider.dns = DeadDns()  # type: ignore[assignment]
    # Not knowing where DNS points, it acts in the primary (with a warning) rather than
    # refusing; --region would choose.
    blind = api.rollback(spec, provider=provider, clock=world.clock)
    assert blind.region == A


def test_failover_builds_from_the_golden_image_as_the_other_region_names_it(
    world: World,
) -> None:
    """AMI and Glance ids are per region: a release moved to B is built from B's copy of
    its golden image (same name), and back in A from A's."""
    world.cloud.add_image(Image("img-gold-a", "gold", datetime(2026, 2, 3, tzinfo=UTC)), [A])
    world.cloud.add_image(Image("img-gold-b", "gold", datetime(2026, 2, 4, tzinfo=UTC)), [B])
    spec = spec_with_dns(world, image="gold")
    first = deploy(world, spec)
    moved = api.failover(spec, to=B, provider=world.provider(), clock=world.clock)
    assert moved.release == first.release
    assert {s.metadata["phoenix:release"] for s in world.cloud.servers(B)} == {first.release}
    built_from = {s.image_id for s in world.cloud._state.servers[B].values()}
    assert built_from == {"img-gold-b"}
    back = api.failback(spec, provider=world.provider(), clock=world.clock)
    assert back.region == A and len(serving(world, A)) == 3

    world.cloud.add_image(Image("img-only-a", "lonely", datetime(2026, 2, 5, tzinfo=UTC)), [A])
    lonely = spec_with_dns(world, image="lonely")
    deploy(world, lonely)
    with pytest.raises(UnknownResource, match="copy the golden image to region-b"):
        api.failover(lonely, to=B, provider=world.provider(), clock=world.clock)
    assert live(world, B) == []


def test_a_dns_service_failing_the_switch_leaves_the_record_and_a_rerun_finishes(
    world: World,
) -> None:
    spec = spec_with_dns(world)
    deploy(world, spec)
    plain = world.provider()
    real_dns = plain.dns
    assert real_dns is not None

    class RefusingDns:
        def get_record(self, zone: str, name: str) -> object:
            return real_dns.get_record(zone, name)

        def set_record(self, *args: object) -> None:
            raise Transient("HTTP 503 from the DNS API (injected)")

    plain.dns = RefusingDns()  # type: ignore[assignment]
    with pytest.raises(DeployFailed, match="could not be pointed at it") as failed:
        api.failover(spec, to=B, provider=plain, clock=world.clock)
    assert failed.value.exit_code == 1
    assert dns_values(world) == (address_of(world, A),)
    assert len(serving(world, A)) == 3  # the old region still serves, untouched
    moved = api.failover(spec, to=B, provider=world.provider(), clock=world.clock)
    assert moved.region == B and dns_values(world) == (address_of(world, B),)
    assert live(world, A) == []


REGION_FAULTS = ("none", "down", "quota", "no-host", "unhealthy")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(faults=st.tuples(*(st.sampled_from(REGION_FAULTS) for _ in range(3))),
       serving_first=st.booleans())
def test_any_mix_of_region_faults_lands_in_the_first_healthy_region_or_nowhere(
    tmp_path_factory: pytest.TempPathFactory, faults: tuple[str, ...], serving_first: bool
) -> None:
    """Three regions, each healthy or failing one way: a deploy ends in the first
    healthy region after the serving one (in the spec's order), DNS points there and no
    other reachable region keeps a server; or, with none healthy, it fails listing every
    region, DNS unchanged and nothing half-created."""
    regions = ("region-a", "region-b", "region-c")
    clock = FakeClock(datetime(2026, 3, 1, tzinfo=UTC))
    cloud = MemoryCloud(regions, clock=clock, boot_seconds=3.0)
    cloud.add_flavor(Flavor("m1.small", "m1.small", vcpus=1, ram_mb=512))
    cloud.add_image(Image("img-1", "golden", datetime(2026, 2, 1, tzinfo=UTC)))
    w = World(tmp_path_factory.mktemp("mix"), clock, cloud)
    spec = w.spec(extra_rollout=DNS)
    spec = spec.model_copy(update={"regions": list(regions)})
    spec.attach(w.tmp / "phoenix.yaml", spec.resolved_vars, spec.secret_names)
    if serving_first:
        api.deploy(spec, provider=w.provider(), clock=clock)  # serves from region-a
    before = dns_values(w)
    for region, fault in zip(regions, faults, strict=True):
        if fault == "down":
            cloud.faults.down_regions.add(region)
        elif fault == "quota":
            cloud.set_quota(region, instances=len(cloud.servers(region)) + 1)
        elif fault == "no-host":
            cloud.faults.no_host_regions.add(region)
        elif fault == "unhealthy":
            cloud.faults.unhealthy_regions.add(region)
    healthy = [r for r, f in zip(regions, faults, strict=True) if f == "none"]
    changed = spec_with_dns(w, image="golden", greeting="v2").model_copy(
        update={"regions": list(regions)})
    changed.attach(w.tmp / "phoenix.yaml", changed.resolved_vars, changed.secret_names)
    if healthy:
        result = api.deploy(changed, provider=w.provider(), clock=clock)
        assert result.region == healthy[0]
        assert [a.region for a in result.attempts] == list(regions[: regions.index(
            healthy[0]) + 1])
        assert dns_values(w) == (address_of(w, healthy[0]),)
        assert len(serving(w, healthy[0])) == 3
        for other in regions:
            if other != healthy[0] and other not in cloud.faults.down_regions:
                assert live(w, other) == [], other
    else:
        with pytest.raises((DeployFailed, RestoreFailed)) as failed:
            api.deploy(changed, provider=w.provider(), clock=clock)
        result = failed.value.result
        assert isinstance(result, DeployResult)
        assert [a.region for a in result.attempts] == list(regions)
        assert dns_values(w) == before
        cloud.faults.down_regions.clear()
        fresh = [n for r in regions for n in live(w, r) if "-r2-" in n or "-b1" in n]
        assert fresh == []  # nothing of the new release anywhere


def test_a_failover_stalled_before_its_dns_switch_is_fenced_and_leaves_dns_alone(
    world: World,
) -> None:
    """Issue 13's fence at the DNS switch: the failover stalls (SIGSTOP, say) between its
    heartbeat and the switch while another actor takes the lease; once it resumes it
    must not point DNS anywhere."""
    spec = world.spec(extra_rollout="  lease_ttl: 5s\n" + DNS)
    deploy(world, spec)
    plain = world.provider()
    contender = DeployLock(plain.store, "web", "d-contender", ttl=5.0)

    class StallsOnceBConverged:
        def __init__(self, inner: object) -> None:
            self.inner = inner
            self.stalled = False

        def __getattr__(self, name: str) -> object:
            return getattr(self.inner, name)

        def get_record(self, zone: str, name: str) -> object:
            if not self.stalled and len(serving(world, B)) == 3:
                self.stalled = True
                world.clock.advance(10)  # frozen: the lease expires
                contender.acquire(world.clock)  # proves it dead, takes it
            return self.inner.get_record(zone, name)  # type: ignore[attr-defined]

    dns = StallsOnceBConverged(plain.dns)
    provider = dataclasses.replace(plain, dns=dns)
    with pytest.raises(LeaseLost, match="d-contender"):
        api.failover(spec, to=B, provider=provider, clock=world.clock)
    assert dns.stalled
    assert dns_values(world) == (address_of(world, A),)
