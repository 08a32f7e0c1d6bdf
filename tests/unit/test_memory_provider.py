"""What only the memory cloud has: fault injection, quota, call counting, a state file."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from phoenix import errors
from phoenix.clock import FakeClock
from phoenix.model import (
    TAG_APP,
    TAG_INDEX,
    TAG_RELEASE,
    Flavor,
    Health,
    Image,
    MemberAction,
    MemberChange,
    MemberState,
    Node,
    NodeRequest,
    NodeState,
    Quota,
)
from phoenix.providers.base import ImageQuery, Provider
from phoenix.providers.memory import (
    DEFAULT_STATE_FILE,
    Faults,
    Latency,
    MemoryCloud,
    open_memory_provider,
)

REGION = "region-a"


def request(
    index: int = 0, *, app: str = "web", image: str = "img-1", flavor: str = "small"
) -> NodeRequest:
    return NodeRequest(
        name=f"{app}-r1-{index}",
        image_id=image,
        flavor=flavor,
        network=None,
        user_data=f"#cloud-config\nindex: {index}\n",
        metadata={TAG_APP: app, TAG_RELEASE: "r1", TAG_INDEX: str(index)},
    )


def make_cloud(
    faults: Faults | None = None,
    *,
    clock: FakeClock | None = None,
    seed: int = 0,
    state_file: Path | None = None,
    boot_seconds: float = 1.0,
) -> MemoryCloud:
    cloud = MemoryCloud(
        ("region-a", "region-b"),
        clock=clock or FakeClock(),
        boot_seconds=boot_seconds,
        faults=faults,
        seed=seed,
        state_file=state_file,
    )
    cloud.add_image(Image(id="img-1", name="golden"))
    cloud.add_image(Image(id="img-bad", name="broken"))
    cloud.add_flavor(Flavor(id="flv-small", name="small", vcpus=2, ram_mb=2048))
    return cloud


def advance(cloud: MemoryCloud, seconds: float) -> None:
    clock = cloud.clock
    assert isinstance(clock, FakeClock)
    clock.advance(seconds)


def only(nodes: list[Node]) -> Node:
    assert len(nodes) == 1, nodes
    return nodes[0]


# --- lifecycle ---------------------------------------------------------------------------------


def test_boot_takes_boot_seconds_by_the_clock() -> None:
    cloud = make_cloud(boot_seconds=5.0)
    node = cloud.provider().compute.create_node(REGION, request())
    assert node.state is NodeState.BUILD
    assert node.created_at == cloud.clock.now()
    advance(cloud, 4.9)
    assert only(cloud.servers(REGION)).state is NodeState.BUILD
    advance(cloud, 0.1)
    assert only(cloud.servers(REGION)).state is NodeState.ACTIVE


def test_zero_boot_seconds_is_active_at_once() -> None:
    cloud = make_cloud(boot_seconds=0.0)
    assert cloud.provider().compute.create_node(REGION, request()).state is NodeState.ACTIVE


def test_default_clock_is_a_fake_clock_shared_via_attribute() -> None:
    cloud = MemoryCloud()
    assert isinstance(cloud.clock, FakeClock)


def test_deleted_server_is_deleting_then_disappears() -> None:
    cloud = make_cloud()
    compute = cloud.provider().compute
    node = compute.create_node(REGION, request())
    compute.delete_node(REGION, node.id)
    assert only(cloud.servers(REGION)).state is NodeState.DELETING
    advance(cloud, cloud.delete_seconds)
    assert cloud.servers(REGION) == []


def test_server_deleted_while_building_goes_when_deletion_is_due() -> None:
    cloud = make_cloud(boot_seconds=1.0)
    cloud.delete_seconds = 3.0
    compute = cloud.provider().compute
    node = compute.create_node(REGION, request())
    advance(cloud, 0.5)
    compute.delete_node(REGION, node.id)
    advance(cloud, 1.0)  # boot would be due now; the server stays DELETING
    assert only(cloud.servers(REGION)).state is NodeState.DELETING
    advance(cloud, 2.0)
    assert cloud.servers(REGION) == []


def test_addresses_are_unique_loopback_per_region() -> None:
    cloud = make_cloud()
    compute = cloud.provider().compute
    a = [compute.create_node("region-a", request(i)).address for i in range(300)]
    b = compute.create_node("region-b", request(0)).address
    assert len(set(a)) == 300
    assert all(addr is not None and re.fullmatch(r"127\.1\.\d+\.\d+", addr) for addr in a)
    assert b is not None and b.startswith("127.2.")


def test_untagged_servers_are_listed_by_inspection_only() -> None:
    cloud = make_cloud()
    compute = cloud.provider().compute
    stray = NodeRequest("handmade", "img-1", "small", None, "", metadata={})
    node = compute.create_node(REGION, stray)
    assert (node.app, node.release, node.index, node.attempt) == ("", "", 0, 0)
    assert compute.list_nodes(REGION, "web") == []
    assert [n.name for n in cloud.servers(REGION)] == ["handmade"]


def test_user_data_is_kept_for_inspection() -> None:
    cloud = make_cloud()
    node = cloud.provider().compute.create_node(REGION, request(4))
    assert cloud.user_data(REGION, node.id) == "#cloud-config\nindex: 4\n"


def test_unknown_region_is_unknown_resource() -> None:
    cloud = make_cloud()
    with pytest.raises(errors.UnknownResource, match="region-z"):
        cloud.provider().compute.list_nodes("region-z", "web")


def test_image_only_in_some_regions() -> None:
    cloud = make_cloud()
    cloud.add_image(Image(id="img-b", name="b-only"), regions=["region-b"])
    compute = cloud.provider().compute
    assert compute.find_images("region-a", ImageQuery(id="img-b")) == []
    assert [i.id for i in compute.find_images("region-b", ImageQuery(name="b-only"))] == ["img-b"]
    with pytest.raises(errors.UnknownResource, match="img-b"):
        compute.create_node("region-a", request(image="img-b"))


def test_concurrent_creates_of_one_name_make_one_server() -> None:
    cloud = make_cloud()
    compute = cloud.provider().compute
    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = set(pool.map(lambda _: compute.create_node(REGION, request()).id, range(32)))
    assert len(ids) == 1
    assert len(cloud.servers(REGION)) == 1


def test_set_metadata_on_missing_server_is_not_found() -> None:
    cloud = make_cloud()
    with pytest.raises(errors.NotFound):
        cloud.provider().compute.set_metadata(REGION, "srv-nope", {"a": "b"})


def test_members_have_zero_connections_and_pools_are_per_region() -> None:
    cloud = make_cloud()
    lb = cloud.provider().load_balancer
    lb.add_member("region-a", "web", "web-r1-0", "127.1.0.1", 80)
    lb.drain_member("region-a", "web", "web-r1-0")
    (member,) = cloud.members("region-a", "web")
    assert member.state is MemberState.DRAINING
    assert member.active_connections == 0
    assert cloud.members("region-b", "web") == []


# --- health ------------------------------------------------------------------------------------


def test_health_follows_server_state() -> None:
    cloud = make_cloud(Faults(boot_fail_names={"web-r1-1"}))
    provider = cloud.provider()
    assert provider.health_source is not None
    health = provider.health_source
    ok = provider.compute.create_node(REGION, request(0))
    bad = provider.compute.create_node(REGION, request(1))
    assert health.node_health(REGION, ok).status is Health.UNKNOWN
    advance(cloud, 1)
    assert health.node_health(REGION, ok).status is Health.HEALTHY
    assert health.node_health(REGION, bad).status is Health.UNHEALTHY
    provider.compute.delete_node(REGION, ok.id)
    advance(cloud, 1)
    assert health.node_health(REGION, ok).status is Health.UNHEALTHY


# --- faults ------------------------------------------------------------------------------------


def test_api_error_fails_before_acting_and_carries_retry_after() -> None:
    cloud = make_cloud(Faults(api_error_rate=1.0, retry_after=7.5))
    with pytest.raises(errors.Transient) as caught:
        cloud.provider().compute.create_node(REGION, request())
    assert caught.value.retry_after == 7.5
    assert caught.value.region == REGION
    assert cloud.servers(REGION) == []
    assert cloud.calls["compute.create_node"] == 1


def test_api_errors_hit_every_part() -> None:
    cloud = make_cloud(Faults(api_error_rate=1.0))
    provider = cloud.provider()
    assert provider.dns is not None
    with pytest.raises(errors.Transient):
        provider.store.put("k", b"v")
    with pytest.raises(errors.Transient):
        provider.load_balancer.list_members(REGION, "web")
    with pytest.raises(errors.Transient):
        provider.dns.get_record("z.", "n.z.")
    cloud.faults.api_error_rate = 0.0
    assert provider.store.get("k") is None


def test_lost_response_makes_the_change_then_fails() -> None:
    cloud = make_cloud(Faults(lost_response_rate=1.0, retry_after=1.0))
    compute = cloud.provider().compute
    with pytest.raises(errors.Transient, match="lost") as caught:
        compute.create_node(REGION, request())
    assert caught.value.retry_after == 1.0
    assert len(cloud.servers(REGION)) == 1
    cloud.faults.lost_response_rate = 0.0
    retried = compute.create_node(REGION, request())
    assert [s.id for s in cloud.servers(REGION)] == [retried.id]


def test_retrying_create_through_lost_responses_yields_one_server() -> None:
    cloud = make_cloud(Faults(lost_response_rate=0.5), seed=3)
    compute = cloud.provider().compute
    failures = 0
    for _ in range(50):
        try:
            node = compute.create_node(REGION, request())
            break
        except errors.Transient:
            failures += 1
    else:
        pytest.fail("never succeeded")
    assert only(cloud.servers(REGION)).id == node.id
    assert cloud.calls["compute.create_node"] == failures + 1


def test_lost_response_does_not_touch_reads() -> None:
    cloud = make_cloud(Faults(lost_response_rate=1.0))
    provider = cloud.provider()
    assert provider.compute.list_nodes(REGION, "web") == []
    assert provider.store.get("k") is None
    with pytest.raises(errors.Transient):
        provider.store.create_exclusive("lock", b"me")
    assert provider.store.get("lock") == b"me"


def test_faults_are_reproducible_with_a_seed() -> None:
    def outcomes(seed: int) -> list[bool]:
        cloud = make_cloud(Faults(api_error_rate=0.5), seed=seed)
        store = cloud.provider().store
        result = []
        for i in range(40):
            try:
                store.put(f"k{i}", b"")
                result.append(True)
            except errors.Transient:
                result.append(False)
        return result

    assert outcomes(1) == outcomes(1)
    assert outcomes(1) != outcomes(2)
    assert 5 < outcomes(1).count(False) < 35


def test_boot_fail_images() -> None:
    cloud = make_cloud(Faults(boot_fail_images={"img-bad"}))
    compute = cloud.provider().compute
    good = compute.create_node(REGION, request(0))
    bad = compute.create_node(REGION, request(1, image="img-bad"))
    advance(cloud, 1)
    states = {n.id: n for n in cloud.servers(REGION)}
    assert states[good.id].state is NodeState.ACTIVE
    assert states[good.id].fault is None
    assert states[bad.id].state is NodeState.ERROR
    assert states[bad.id].fault == "boot failed"


def test_boot_fail_names() -> None:
    cloud = make_cloud(Faults(boot_fail_names={"web-r1-1"}))
    compute = cloud.provider().compute
    compute.create_node(REGION, request(0))
    compute.create_node(REGION, request(1))
    advance(cloud, 1)
    states = {n.name: n.state for n in compute.list_nodes(REGION, "web")}
    assert states == {"web-r1-0": NodeState.ACTIVE, "web-r1-1": NodeState.ERROR}


def test_boot_fail_rate() -> None:
    cloud = make_cloud(Faults(boot_fail_rate=1.0))
    node = cloud.provider().compute.create_node(REGION, request())
    assert node.state is NodeState.BUILD
    advance(cloud, 1)
    assert only(cloud.servers(REGION)).state is NodeState.ERROR
    cloud.faults.boot_fail_rate = 0.0
    cloud.provider().compute.create_node(REGION, request(1))
    advance(cloud, 1)
    assert sorted(n.state.value for n in cloud.servers(REGION)) == ["ACTIVE", "ERROR"]


def test_a_settled_server_keeps_its_state_when_faults_change() -> None:
    cloud = make_cloud()
    cloud.provider().compute.create_node(REGION, request())
    advance(cloud, 1)
    assert only(cloud.servers(REGION)).state is NodeState.ACTIVE
    cloud.faults.boot_fail_names.add("web-r1-0")
    assert only(cloud.servers(REGION)).state is NodeState.ACTIVE


def test_slow_boot_adds_to_boot_time() -> None:
    cloud = make_cloud(Faults(slow_boot_seconds=10.0), boot_seconds=1.0)
    cloud.provider().compute.create_node(REGION, request())
    advance(cloud, 10.5)
    assert only(cloud.servers(REGION)).state is NodeState.BUILD
    advance(cloud, 0.5)
    assert only(cloud.servers(REGION)).state is NodeState.ACTIVE


def test_unhealthy_images_never_pass_health() -> None:
    cloud = make_cloud(Faults(unhealthy_images={"img-bad"}))
    provider = cloud.provider()
    assert provider.health_source is not None
    node = provider.compute.create_node(REGION, request(image="img-bad"))
    advance(cloud, 100)
    assert only(cloud.servers(REGION)).state is NodeState.ACTIVE
    health = provider.health_source.node_health(REGION, node)
    assert health.status is Health.UNHEALTHY
    assert health.detail == "HTTP 503 (simulated)"


def test_unhealthy_nodes_flap() -> None:
    cloud = make_cloud()
    provider = cloud.provider()
    assert provider.health_source is not None
    node = provider.compute.create_node(REGION, request())
    advance(cloud, 1)
    check = provider.health_source.node_health
    assert check(REGION, node).status is Health.HEALTHY
    cloud.faults.unhealthy_nodes.add(node.name)
    assert check(REGION, node).status is Health.UNHEALTHY
    cloud.faults.unhealthy_nodes.discard(node.name)
    assert check(REGION, node).status is Health.HEALTHY


def test_down_region_fails_every_regional_call() -> None:
    cloud = make_cloud(Faults(down_regions={"region-a"}))
    provider = cloud.provider()
    health = provider.health_source
    assert health is not None
    node = provider.compute.create_node("region-b", request())
    calls: list[Any] = [
        lambda: provider.compute.list_nodes("region-a", "web"),
        lambda: provider.compute.create_node("region-a", request()),
        lambda: provider.compute.delete_node("region-a", "srv-1"),
        lambda: provider.compute.quota("region-a"),
        lambda: provider.compute.find_images("region-a", ImageQuery(id="img-1")),
        lambda: provider.compute.get_flavor("region-a", "small"),
        lambda: provider.load_balancer.add_member("region-a", "web", "n", "127.0.0.1", 80),
        lambda: provider.load_balancer.list_members("region-a", "web"),
        lambda: health.node_health("region-a", node),
    ]
    for call in calls:
        with pytest.raises(errors.RegionUnavailable) as caught:
            call()
        assert caught.value.region == "region-a"
    assert cloud.servers("region-a") == []
    assert len(provider.compute.list_nodes("region-b", "web")) == 1
    cloud.faults.down_regions.clear()
    assert provider.compute.list_nodes("region-a", "web") == []


# --- quota -------------------------------------------------------------------------------------


def test_quota_is_unlimited_by_default() -> None:
    cloud = make_cloud()
    assert cloud.provider().compute.quota(REGION) == Quota(None, None, None)


def test_quota_headroom_counts_existing_servers() -> None:
    cloud = make_cloud()
    cloud.set_quota(REGION, instances=5, vcpus=8, ram_mb=10_000)
    compute = cloud.provider().compute
    compute.create_node(REGION, request(0))
    compute.create_node(REGION, request(1))
    assert compute.quota(REGION) == Quota(instances=3, vcpus=4, ram_mb=10_000 - 4096)
    assert compute.quota("region-b") == Quota(None, None, None)


def test_quota_exceeded_names_the_numbers() -> None:
    cloud = make_cloud()
    cloud.set_quota(REGION, instances=10, vcpus=5)
    compute = cloud.provider().compute
    compute.create_node(REGION, request(0))
    compute.create_node(REGION, request(1))
    with pytest.raises(errors.QuotaExceeded) as caught:
        compute.create_node(REGION, request(2))
    message = str(caught.value)
    assert "region-a" in message
    assert "vcpus: 4 in use + 2 requested > limit 5" in message
    assert "instances" not in message
    assert caught.value.region == REGION
    assert len(cloud.servers(REGION)) == 2


def test_quota_frees_up_once_deleted_servers_are_gone() -> None:
    cloud = make_cloud()
    cloud.set_quota(REGION, instances=1)
    compute = cloud.provider().compute
    node = compute.create_node(REGION, request(0))
    compute.delete_node(REGION, node.id)
    with pytest.raises(errors.QuotaExceeded, match="instances: 1 in use"):
        compute.create_node(REGION, request(1))
    advance(cloud, cloud.delete_seconds)
    compute.create_node(REGION, request(1))


def test_idempotent_create_does_not_hit_quota() -> None:
    cloud = make_cloud()
    cloud.set_quota(REGION, instances=1)
    compute = cloud.provider().compute
    first = compute.create_node(REGION, request(0))
    assert compute.create_node(REGION, request(0)).id == first.id


# --- calls counter -----------------------------------------------------------------------------


def test_calls_count_every_protocol_call_including_failures() -> None:
    cloud = make_cloud()
    provider = cloud.provider()
    assert provider.dns is not None and provider.health_source is not None
    node = provider.compute.create_node(REGION, request())
    provider.compute.create_node(REGION, request())
    provider.compute.list_nodes(REGION, "web")
    with pytest.raises(errors.UnknownResource):
        provider.compute.get_flavor(REGION, "nope")
    provider.load_balancer.add_member(REGION, "web", "n", "127.0.0.1", 80)
    provider.store.put("k", b"v")
    provider.dns.set_record("z.", "a.z.", ("192.0.2.1",), 60)
    provider.health_source.node_health(REGION, node)
    cloud.faults.api_error_rate = 1.0
    with pytest.raises(errors.Transient):
        provider.store.get("k")
    # inspection is free
    cloud.servers(REGION)
    cloud.members(REGION, "web")
    assert dict(cloud.calls) == {
        "compute.create_node": 2,
        "compute.list_nodes": 1,
        "compute.get_flavor": 1,
        "lb.add_member": 1,
        "store.put": 1,
        "store.get": 1,
        "dns.set_record": 1,
        "health.node_health": 1,
    }
    assert cloud.total_calls() == 9


# --- state file --------------------------------------------------------------------------------


def test_state_file_shares_the_cloud_between_instances(tmp_path: Path) -> None:
    state = tmp_path / "cloud" / "state.json"
    clock = FakeClock()
    first = make_cloud(clock=clock, state_file=state, boot_seconds=30)
    node = first.provider().compute.create_node(REGION, request())
    first.provider().load_balancer.add_member(REGION, "web", node.name, node.address or "", 80)
    first.provider().store.put("releases/r1", b"\x00\x01")
    first.provider().dns.set_record("z.", "a.z.", ("192.0.2.1",), 60)  # type: ignore[union-attr]
    assert json.loads(state.read_text())["version"] == 1

    second = MemoryCloud(("region-a", "region-b"), clock=clock, state_file=state)
    (seen,) = second.provider().compute.list_nodes(REGION, "web")
    assert seen.id == node.id
    assert seen.state is NodeState.BUILD
    clock.advance(30)
    assert only(second.servers(REGION)).state is NodeState.ACTIVE
    assert [m.name for m in second.members(REGION, "web")] == [node.name]
    assert second.provider().store.get("releases/r1") == b"\x00\x01"
    assert second.provider().dns.get_record("z.", "a.z.") is not None  # type: ignore[union-attr]

    # ...and changes flow back: the first instance re-reads the file (closing is harmless).
    first.provider().close()
    other = second.provider().compute.create_node("region-b", request(1))
    assert [n.id for n in first.servers("region-b")] == [other.id]
    assert other.id != node.id
    assert other.address is not None and other.address.startswith("127.2.")


def test_state_file_carries_pending_deletes(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    clock = FakeClock()
    first = make_cloud(clock=clock, state_file=state, boot_seconds=0)
    node = first.provider().compute.create_node(REGION, request())
    first.provider().compute.delete_node(REGION, node.id)
    second = MemoryCloud(clock=clock, state_file=state)
    assert only(second.servers(REGION)).state is NodeState.DELETING
    clock.advance(second.delete_seconds)
    assert second.servers(REGION) == []
    assert first.servers(REGION) == []


def test_state_file_keeps_region_numbers_stable(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    first = make_cloud(state_file=state)
    a = first.provider().compute.create_node("region-a", request())
    second = MemoryCloud(("region-b", "region-a"), state_file=state)
    b = second.provider().compute.create_node("region-a", request(1))
    assert a.address is not None and b.address is not None
    assert a.address.startswith("127.1.") and b.address.startswith("127.1.")
    assert a.address != b.address


def test_corrupt_state_file_is_input_error(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text("{not json")
    with pytest.raises(errors.InputError, match="delete it"):
        MemoryCloud(state_file=state)


# --- open_memory_provider ----------------------------------------------------------------------


def test_open_with_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    clock = FakeClock()
    provider = open_memory_provider({}, ["r1", "r2"], clock=clock)
    assert isinstance(provider, Provider)
    assert provider.name == "memory"
    images = provider.compute.find_images("r1", ImageQuery(name="golden"))
    assert [i.id for i in images] == ["img-golden"]
    assert provider.compute.get_flavor("r2", "m1.small").name == "m1.small"
    node = provider.compute.create_node(
        "r1", NodeRequest("app-r1-0", "img-golden", "m1.small", None, "", {TAG_APP: "app"})
    )
    assert (tmp_path / DEFAULT_STATE_FILE).is_file()

    again = open_memory_provider({}, ["r1", "r2"], clock=clock)
    clock.advance(1.0)
    assert [(n.id, n.state) for n in again.compute.list_nodes("r1", "app")] == [
        (node.id, NodeState.ACTIVE)
    ]


def test_open_with_options(tmp_path: Path) -> None:
    options = {
        "state_file": str(tmp_path / "c.json"),
        "boot_seconds": 3,
        "seed": 9,
        "images": [
            {"name": "base", "properties": {"role": "web", "version": 2}},
            {"id": "img-x", "name": "x", "created_at": "2026-02-01T00:00:00"},
        ],
        "flavors": [{"name": "big", "vcpus": 4, "ram_mb": 8192}],
        "quota": {"r1": {"instances": 2}},
        "faults": {"boot_fail_names": ["app-r1-0"], "retry_after": 2, "api_error_rate": 0},
    }
    clock = FakeClock()
    provider = open_memory_provider(options, ["r1"], clock=clock)
    compute = provider.compute
    (base,) = compute.find_images("r1", ImageQuery(properties={"version": "2"}))
    assert base.id == "img-base"
    (x,) = compute.find_images("r1", ImageQuery(id="img-x"))
    assert x.created_at is not None and x.created_at.tzinfo is not None
    assert compute.find_images("r1", ImageQuery(name="golden")) == []
    assert compute.get_flavor("r1", "flv-big").vcpus == 4
    with pytest.raises(errors.UnknownResource):
        compute.get_flavor("r1", "m1.small")
    assert compute.quota("r1") == Quota(instances=2, vcpus=None, ram_mb=None)
    compute.create_node("r1", NodeRequest("app-r1-0", "img-x", "big", None, "", {TAG_APP: "app"}))
    clock.advance(2.9)
    assert compute.list_nodes("r1", "app")[0].state is NodeState.BUILD
    clock.advance(0.1)
    assert compute.list_nodes("r1", "app")[0].state is NodeState.ERROR
    assert (tmp_path / "c.json").is_file()


def test_open_without_state_file_keeps_the_cloud_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    provider = open_memory_provider({"state_file": None}, ["r1"], clock=FakeClock())
    provider.store.put("k", b"v")
    assert not (tmp_path / DEFAULT_STATE_FILE).exists()


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"boot_secs": 1}, "provider.options.boot_secs"),
        ({"boot_seconds": "fast"}, "provider.options.boot_seconds"),
        ({"boot_seconds": -1}, "provider.options.boot_seconds"),
        ({"seed": 1.5}, "provider.options.seed"),
        ({"state_file": 3}, "provider.options.state_file"),
        ({"images": {"name": "x"}}, "provider.options.images"),
        ({"images": [{"id": "img-1"}]}, "provider.options.images[0].name"),
        ({"images": [{"name": "a", "colour": "red"}]}, "provider.options.images[0].colour"),
        ({"images": [{"name": "a", "created_at": "yesterday"}]}, "images[0].created_at"),
        ({"flavors": [{"name": "f", "vcpus": "two"}]}, "provider.options.flavors[0].vcpus"),
        ({"quota": {"r9": {"instances": 1}}}, "provider.options.quota.r9"),
        ({"quota": {"r1": {"cores": 1}}}, "provider.options.quota.r1.cores"),
        ({"faults": {"api_eror_rate": 0.1}}, "provider.options.faults.api_eror_rate"),
        ({"faults": {"api_error_rate": 1.5}}, "provider.options.faults.api_error_rate"),
        ({"faults": {"down_regions": "r1"}}, "provider.options.faults.down_regions"),
        ({"faults": {"down_regions": ["r7"]}}, "provider.options.faults.down_regions"),
    ],
)
def test_open_with_a_bad_option_names_it(
    options: dict[str, Any], named: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(errors.InputError) as caught:
        open_memory_provider(options, ["r1"], clock=FakeClock())
    assert named in str(caught.value)
    assert caught.value.exit_code == 2


# --- the latency model (issue 15: honest benchmarks) -------------------------------------


def test_the_balancer_is_pending_update_after_a_member_write() -> None:
    """Octavia-like: a member write makes the balancer PENDING_UPDATE for a while;
    writes meanwhile get a 409 (Transient), reads do not; a batch is one cycle."""
    clock = FakeClock()
    cloud = MemoryCloud([REGION], clock=clock, latency=Latency(lb_update_seconds=2.0))
    lb = cloud.provider().load_balancer
    lb.change_members(REGION, "p", [MemberChange(MemberAction.ADD, f"web-{i}", "127.0.0.9", 80)
                                    for i in range(5)])
    with pytest.raises(errors.Transient, match="PENDING_UPDATE"):
        lb.drain_member(REGION, "p", "web-0")
    assert len(lb.list_members(REGION, "p")) == 5  # reads are fine meanwhile
    clock.advance(2.0)
    lb.drain_member(REGION, "p", "web-0")
    assert {m.name: m.state for m in lb.list_members(REGION, "p")}["web-0"] is MemberState.DRAINING


def test_a_service_beyond_its_rate_gets_429_with_retry_after() -> None:
    clock = FakeClock()
    cloud = MemoryCloud([REGION], clock=clock, latency=Latency(requests_per_second=4))
    compute, store = cloud.provider().compute, cloud.provider().store
    for _ in range(4):
        compute.list_nodes(REGION, "web")
    with pytest.raises(errors.Transient, match="429") as limited:
        compute.list_nodes(REGION, "web")
    assert limited.value.retry_after == pytest.approx(0.25)
    store.get("k")  # another service has its own budget
    clock.advance(0.25)
    compute.list_nodes(REGION, "web")


def test_boot_times_spread_over_the_jitter_the_same_way_every_run() -> None:
    def boots(seed: int) -> list[float]:
        clock = FakeClock()
        cloud = make_cloud(clock=clock, seed=seed, boot_seconds=20.0)
        cloud.latency = Latency(boot_jitter_seconds=10.0)
        made = [cloud.provider().compute.create_node(REGION, request(i)) for i in range(40)]
        times = []
        for _ in range(400):  # 0.1 s steps up to 40 s
            clock.advance(0.1)
            for node in cloud.provider().compute.list_nodes(REGION, "web"):
                if node.state is NodeState.ACTIVE and node.name not in dict(times):
                    times.append((node.name, (clock.now() - node.created_at).total_seconds()))
        assert len(times) == len(made)
        return [t for _, t in sorted(times)]

    first = boots(seed=1)
    assert first == boots(seed=1)
    assert first != boots(seed=2)
    assert min(first) >= 20.0 and max(first) <= 30.1
    assert max(first) - min(first) > 5  # spread, not one boot time
