"""The provider contract: every rule of ``phoenix.providers.base``, for every provider."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from phoenix import errors
from phoenix.model import (
    TAG_APP,
    TAG_RELEASE,
    DnsRecord,
    Health,
    MemberAction,
    MemberChange,
    MemberState,
    NodeState,
    Quota,
)
from phoenix.providers.base import (
    Compute,
    Dns,
    HealthSource,
    ImageQuery,
    LoadBalancer,
    MemberBatcher,
    Provider,
    Store,
)
from tests.contract.conftest import ContractEnv

MISSING_ID = "00000000-0000-4000-8000-000000000000"


def _only(env: ContractEnv, app: str | None = None) -> list[str]:
    return sorted(n.name for n in env.provider.compute.list_nodes(env.region, app or env.app))


# --- shape ---------------------------------------------------------------------------------


def test_parts_satisfy_the_protocols(contract_env: ContractEnv) -> None:
    provider = contract_env.provider
    assert isinstance(provider, Provider)
    assert isinstance(provider.compute, Compute)
    assert isinstance(provider.load_balancer, LoadBalancer)
    assert isinstance(provider.store, Store)
    if provider.dns is not None:
        assert isinstance(provider.dns, Dns)
    if provider.health_source is not None:
        assert isinstance(provider.health_source, HealthSource)
    provider.close()  # closing is always allowed


# --- compute: servers ------------------------------------------------------------------------


def test_create_starts_building_then_becomes_active(contract_env: ContractEnv) -> None:
    env = contract_env
    node = env.provider.compute.create_node(env.region, env.node_request(0))
    assert node.state in (NodeState.BUILD, NodeState.ACTIVE)
    assert node.id
    assert node.region == env.region
    env.settle()
    (listed,) = env.provider.compute.list_nodes(env.region, env.app)
    assert listed.id == node.id
    assert listed.state is NodeState.ACTIVE
    assert listed.address


def test_tags_round_trip_into_node_fields(contract_env: ContractEnv) -> None:
    env = contract_env
    request = env.node_request(3, release="r7", attempt=2, extra={"team": "payments"})
    node = env.provider.compute.create_node(env.region, request)
    env.settle()
    for seen in (node, env.provider.compute.list_nodes(env.region, env.app)[0]):
        assert seen.name == request.name
        assert seen.app == env.app
        assert seen.release == "r7"
        assert seen.index == 3
        assert seen.attempt == 2
        assert seen.spec_digest == "sd-contract"
        assert seen.metadata["team"] == "payments"
        assert seen.created_at.tzinfo is not None


def test_list_nodes_returns_only_this_apps_nodes(contract_env: ContractEnv) -> None:
    env = contract_env
    compute = env.provider.compute
    compute.create_node(env.region, env.node_request(0))
    compute.create_node(env.region, env.node_request(1))
    compute.create_node(env.region, env.node_request(0, app=env.other_app))
    assert _only(env) == [f"{env.app}-r1-0", f"{env.app}-r1-1"]
    assert _only(env, env.other_app) == [f"{env.other_app}-r1-0"]
    assert all(n.app == env.app for n in compute.list_nodes(env.region, env.app))


def test_list_nodes_includes_building_nodes(contract_env: ContractEnv) -> None:
    env = contract_env
    node = env.provider.compute.create_node(env.region, env.node_request(0))
    assert [n.id for n in env.provider.compute.list_nodes(env.region, env.app)] == [node.id]


def test_create_is_idempotent_by_name(contract_env: ContractEnv) -> None:
    env = contract_env
    compute = env.provider.compute
    first = compute.create_node(env.region, env.node_request(0))
    again = compute.create_node(env.region, env.node_request(0))
    env.settle()
    after_settle = compute.create_node(env.region, env.node_request(0))
    assert again.id == first.id
    assert after_settle.id == first.id
    assert len(compute.list_nodes(env.region, env.app)) == 1


def test_same_name_of_another_app_is_a_different_server(contract_env: ContractEnv) -> None:
    env = contract_env
    compute = env.provider.compute
    name = f"{env.app}-shared-name"
    mine = compute.create_node(env.region, env.node_request(0, name=name))
    theirs = compute.create_node(env.region, env.node_request(0, name=name, app=env.other_app))
    assert mine.id != theirs.id
    assert [n.id for n in compute.list_nodes(env.region, env.app)] == [mine.id]
    assert [n.id for n in compute.list_nodes(env.region, env.other_app)] == [theirs.id]


def test_concurrent_creates_from_worker_threads(contract_env: ContractEnv) -> None:
    env = contract_env
    compute = env.provider.compute
    with ThreadPoolExecutor(max_workers=4) as pool:
        nodes = list(
            pool.map(lambda i: compute.create_node(env.region, env.node_request(i)), range(6))
        )
    assert len({n.id for n in nodes}) == 6
    assert len({n.name for n in nodes}) == 6
    env.settle()
    listed = compute.list_nodes(env.region, env.app)
    assert sorted(n.index for n in listed) == list(range(6))
    assert len({n.address for n in listed}) == 6


def test_delete_missing_node_succeeds(contract_env: ContractEnv) -> None:
    env = contract_env
    env.provider.compute.delete_node(env.region, MISSING_ID)


def test_delete_then_gone_after_settle(contract_env: ContractEnv) -> None:
    env = contract_env
    compute = env.provider.compute
    keep = compute.create_node(env.region, env.node_request(0))
    doomed = compute.create_node(env.region, env.node_request(1))
    env.settle()
    compute.delete_node(env.region, doomed.id)
    compute.delete_node(env.region, doomed.id)  # a second delete is harmless
    for node in compute.list_nodes(env.region, env.app):
        if node.id == doomed.id:
            assert node.state is NodeState.DELETING
    env.settle()
    assert [n.id for n in compute.list_nodes(env.region, env.app)] == [keep.id]
    compute.delete_node(env.region, doomed.id)  # and so is deleting a gone one


def test_delete_a_building_node(contract_env: ContractEnv) -> None:
    env = contract_env
    compute = env.provider.compute
    node = compute.create_node(env.region, env.node_request(0))
    compute.delete_node(env.region, node.id)
    env.settle()
    assert compute.list_nodes(env.region, env.app) == []


def test_create_after_delete_of_same_name_makes_a_new_server(contract_env: ContractEnv) -> None:
    env = contract_env
    compute = env.provider.compute
    old = compute.create_node(env.region, env.node_request(0))
    env.settle()
    compute.delete_node(env.region, old.id)
    env.settle()
    new = compute.create_node(env.region, env.node_request(0, attempt=1))
    assert new.id != old.id
    assert new.attempt == 1


def test_set_metadata_merges(contract_env: ContractEnv) -> None:
    env = contract_env
    compute = env.provider.compute
    node = compute.create_node(env.region, env.node_request(0, extra={"a": "1", "b": "2"}))
    # Phoenix stamps only serving (ACTIVE) servers; Nova refuses (409) while building.
    env.settle()
    compute.set_metadata(env.region, node.id, {"b": "20", "phoenix:serving-since": "t0"})
    (seen,) = compute.list_nodes(env.region, env.app)
    assert seen.metadata["a"] == "1"
    assert seen.metadata["b"] == "20"
    assert seen.metadata["phoenix:serving-since"] == "t0"
    assert seen.metadata[TAG_APP] == env.app
    assert seen.metadata[TAG_RELEASE] == "r1"
    assert seen.app == env.app


def test_node_metadata_is_a_snapshot(contract_env: ContractEnv) -> None:
    env = contract_env
    node = env.provider.compute.create_node(env.region, env.node_request(0))
    env.settle()  # real clouds refuse metadata updates while building
    env.provider.compute.set_metadata(env.region, node.id, {"later": "yes"})
    assert "later" not in node.metadata


def test_create_with_unknown_image_or_flavor_is_unknown_resource(
    contract_env: ContractEnv,
) -> None:
    env = contract_env
    compute = env.provider.compute
    with pytest.raises(errors.UnknownResource):
        compute.create_node(env.region, env.node_request(0, image_id=MISSING_ID))
    with pytest.raises(errors.UnknownResource):
        compute.create_node(env.region, env.node_request(1, flavor="no-such-flavor"))
    assert compute.list_nodes(env.region, env.app) == []


# --- compute: images, flavors, quota ---------------------------------------------------------


def test_find_images_by_id(contract_env: ContractEnv) -> None:
    env = contract_env
    found = env.provider.compute.find_images(env.region, ImageQuery(id=env.image_id))
    assert [i.id for i in found] == [env.image_id]
    assert found[0].name == env.image_name


def test_find_images_by_name(contract_env: ContractEnv) -> None:
    env = contract_env
    found = env.provider.compute.find_images(env.region, ImageQuery(name=env.image_name))
    assert env.image_id in [i.id for i in found]
    assert all(i.name == env.image_name for i in found)


def test_find_images_by_properties(contract_env: ContractEnv) -> None:
    env = contract_env
    query = ImageQuery(properties=env.image_properties)
    found = env.provider.compute.find_images(env.region, query)
    assert env.image_id in [i.id for i in found]
    for image in found:
        for key, value in env.image_properties.items():
            assert image.properties[key] == value


def test_find_images_without_match_is_empty(contract_env: ContractEnv) -> None:
    env = contract_env
    compute = env.provider.compute
    assert compute.find_images(env.region, ImageQuery(name="no-such-image-xyz")) == []
    assert compute.find_images(env.region, ImageQuery(properties={"nope": "x"})) == []


def test_get_flavor_by_name_and_id(contract_env: ContractEnv) -> None:
    env = contract_env
    by_name = env.provider.compute.get_flavor(env.region, env.flavor)
    by_id = env.provider.compute.get_flavor(env.region, env.flavor_id)
    assert by_name == by_id
    assert by_name.name == env.flavor
    assert by_name.id == env.flavor_id
    assert by_name.vcpus >= 1
    assert by_name.ram_mb > 0


def test_get_flavor_unknown_is_unknown_resource(contract_env: ContractEnv) -> None:
    env = contract_env
    with pytest.raises(errors.UnknownResource):
        env.provider.compute.get_flavor(env.region, "no-such-flavor")


def test_quota_reports_headroom(contract_env: ContractEnv) -> None:
    env = contract_env
    quota = env.provider.compute.quota(env.region)
    assert isinstance(quota, Quota)
    for value in (quota.instances, quota.vcpus, quota.ram_mb):
        assert value is None or value >= 0


# --- load balancer ----------------------------------------------------------------------------


def test_add_member_serves_and_is_idempotent(contract_env: ContractEnv) -> None:
    env = contract_env
    lb = env.provider.load_balancer
    name = f"{env.app}-r1-0"
    address = env.member_target(name, "127.0.0.10")
    lb.add_member(env.region, env.pool, name, address, 8080)
    lb.add_member(env.region, env.pool, name, address, 8080)
    mine = [m for m in lb.list_members(env.region, env.pool) if m.name == name]
    assert len(mine) == 1
    assert mine[0].state is MemberState.SERVING
    assert mine[0].address == address
    if not env.members_are_servers:  # instance members take the balancer's port
        assert mine[0].port == 8080


def test_drain_then_add_makes_member_serving_again(contract_env: ContractEnv) -> None:
    env = contract_env
    lb = env.provider.load_balancer
    name = f"{env.app}-r1-0"
    address = env.member_target(name, "127.0.0.11")
    lb.add_member(env.region, env.pool, name, address, 8080)
    lb.drain_member(env.region, env.pool, name)
    lb.drain_member(env.region, env.pool, name)  # draining twice is harmless
    (drained,) = [m for m in lb.list_members(env.region, env.pool) if m.name == name]
    assert drained.state is MemberState.DRAINING
    lb.add_member(env.region, env.pool, name, address, 8080)
    (back,) = [m for m in lb.list_members(env.region, env.pool) if m.name == name]
    assert back.state is MemberState.SERVING


def test_drained_member_is_removed(contract_env: ContractEnv) -> None:
    env = contract_env
    lb = env.provider.load_balancer
    name = f"{env.app}-r1-0"
    lb.add_member(env.region, env.pool, name, env.member_target(name, "127.0.0.14"), 8080)
    lb.drain_member(env.region, env.pool, name)
    lb.remove_member(env.region, env.pool, name)
    # Removal may finish asynchronously (Octavia lists a member PENDING_DELETE until its
    # worker is done): it must be gone within a short while, for good.
    deadline = time.monotonic() + 30
    while name in [m.name for m in lb.list_members(env.region, env.pool)]:
        assert time.monotonic() < deadline, f"{name} is still a member 30 s after removal"
        time.sleep(0.2)


def _batcher(env: ContractEnv) -> MemberBatcher:
    lb = env.provider.load_balancer
    if not isinstance(lb, MemberBatcher):
        pytest.skip(f"{env.provider.name}'s balancer changes members one at a time")
    return lb


def _states(env: ContractEnv) -> dict[str, MemberState]:
    members = env.provider.load_balancer.list_members(env.region, env.pool)
    return {m.name: m.state for m in members if m.name.startswith(f"{env.app}-")}


def test_a_batch_of_member_changes_is_applied_and_is_idempotent(
    contract_env: ContractEnv,
) -> None:
    """``MemberBatcher``: what a poll hands over at once (adds, drains, removals) ends as
    the single-member calls would leave it, and the same batch again changes nothing."""
    env = contract_env
    lb = _batcher(env)
    old = [f"{env.app}-r1-{i}" for i in range(3)]
    new = [f"{env.app}-r2-{i}" for i in range(3)]
    target = {n: env.member_target(n, f"127.0.0.{20 + i}") for i, n in enumerate(old + new)}
    lb.change_members(env.region, env.pool, [
        MemberChange(MemberAction.ADD, n, target[n], 8080) for n in old])
    assert _states(env) == dict.fromkeys(old, MemberState.SERVING)

    switch = ([MemberChange(MemberAction.ADD, n, target[n], 8080) for n in new]
              + [MemberChange(MemberAction.DRAIN, n) for n in old[:2]]
              + [MemberChange(MemberAction.REMOVE, old[2])]
              + [MemberChange(MemberAction.DRAIN, f"{env.app}-missing"),
                 MemberChange(MemberAction.REMOVE, f"{env.app}-never-existed")])
    want = {**dict.fromkeys(old[:2], MemberState.DRAINING),
            **dict.fromkeys(new, MemberState.SERVING)}
    for _ in range(2):
        lb.change_members(env.region, env.pool, switch)
        deadline = time.monotonic() + 30  # a removal may finish asynchronously (Octavia)
        while _states(env) != want:
            assert time.monotonic() < deadline, _states(env)
            time.sleep(0.2)

    lb.change_members(env.region, env.pool, [MemberChange(MemberAction.REMOVE, n)
                                             for n in old[:2] + new])
    deadline = time.monotonic() + 30
    while _states(env):
        assert time.monotonic() < deadline, _states(env)
        time.sleep(0.2)


def test_a_batch_re_enables_a_draining_member(contract_env: ContractEnv) -> None:
    env = contract_env
    lb = _batcher(env)
    name = f"{env.app}-r1-0"
    address = env.member_target(name, "127.0.0.30")
    lb.change_members(env.region, env.pool, [MemberChange(MemberAction.ADD, name, address, 8080)])
    lb.change_members(env.region, env.pool, [MemberChange(MemberAction.DRAIN, name)])
    assert _states(env) == {name: MemberState.DRAINING}
    lb.change_members(env.region, env.pool, [MemberChange(MemberAction.ADD, name, address, 8080)])
    assert _states(env) == {name: MemberState.SERVING}


def test_drain_missing_member_is_not_found(contract_env: ContractEnv) -> None:
    env = contract_env
    with pytest.raises(errors.NotFound):
        env.provider.load_balancer.drain_member(env.region, env.pool, f"{env.app}-missing")


def test_remove_member_and_remove_missing(contract_env: ContractEnv) -> None:
    env = contract_env
    lb = env.provider.load_balancer
    keep, gone = f"{env.app}-r1-0", f"{env.app}-r1-1"
    lb.add_member(env.region, env.pool, keep, env.member_target(keep, "127.0.0.12"), 8080)
    lb.add_member(env.region, env.pool, gone, env.member_target(gone, "127.0.0.13"), 8080)
    lb.remove_member(env.region, env.pool, gone)
    lb.remove_member(env.region, env.pool, gone)
    lb.remove_member(env.region, env.pool, f"{env.app}-never-existed")
    names = [m.name for m in lb.list_members(env.region, env.pool)]
    assert keep in names
    assert gone not in names


# --- store ------------------------------------------------------------------------------------


def test_store_put_get_overwrite_delete(contract_env: ContractEnv) -> None:
    env = contract_env
    store = env.provider.store
    key = env.key_prefix + "releases/r1.json"
    assert store.get(key) is None
    store.put(key, b'{"outcome": "ok"}')
    assert store.get(key) == b'{"outcome": "ok"}'
    store.put(key, b"\x00binary\xff")
    assert store.get(key) == b"\x00binary\xff"
    store.delete(key)
    assert store.get(key) is None
    store.delete(key)  # deleting a missing object succeeds


def test_store_list_by_prefix_sorted(contract_env: ContractEnv) -> None:
    env = contract_env
    store = env.provider.store
    for name in ("releases/r2", "releases/r10", "releases/r1", "lock"):
        store.put(env.key_prefix + name, b"x")
    assert store.list(env.key_prefix + "releases/") == [
        env.key_prefix + "releases/r1",
        env.key_prefix + "releases/r10",
        env.key_prefix + "releases/r2",
    ]
    assert store.list(env.key_prefix + "nothing/") == []


def test_store_create_exclusive_only_once(contract_env: ContractEnv) -> None:
    env = contract_env
    store = env.provider.store
    key = env.key_prefix + "lock"
    assert store.create_exclusive(key, b"owner-1") is True
    assert store.create_exclusive(key, b"owner-2") is False
    assert store.get(key) == b"owner-1"
    store.delete(key)
    assert store.create_exclusive(key, b"owner-3") is True


def test_store_create_exclusive_has_one_winner_among_threads(contract_env: ContractEnv) -> None:
    env = contract_env
    store = env.provider.store
    key = env.key_prefix + "race"
    start = threading.Barrier(8)

    def contend(i: int) -> bool:
        start.wait()
        return store.create_exclusive(key, f"owner-{i}".encode())

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(contend, range(8)))
    assert results.count(True) == 1
    assert store.get(key) == f"owner-{results.index(True)}".encode()


# --- dns --------------------------------------------------------------------------------------


def test_dns_set_and_get(contract_env: ContractEnv) -> None:
    env = contract_env
    dns = env.provider.dns
    if dns is None:
        pytest.skip(f"{env.provider.name} has no DNS")
    name = f"{env.app}.{env.zone}"
    assert dns.get_record(env.zone, name) is None
    dns.set_record(env.zone, name, ("192.0.2.1",), 60)
    assert dns.get_record(env.zone, name) == DnsRecord(env.zone, name, ("192.0.2.1",), 60)
    dns.set_record(env.zone, name, ("192.0.2.2", "192.0.2.3"), 30)
    record = dns.get_record(env.zone, name)
    assert record is not None
    assert record.values == ("192.0.2.2", "192.0.2.3")
    assert record.ttl == 30


# --- health source ----------------------------------------------------------------------------


def test_health_source_unknown_while_building_then_healthy(contract_env: ContractEnv) -> None:
    env = contract_env
    health = env.provider.health_source
    if health is None:
        pytest.skip(f"{env.provider.name} has no health source")
    node = env.provider.compute.create_node(env.region, env.node_request(0))
    if node.state is NodeState.BUILD:
        assert health.node_health(env.region, node).status is Health.UNKNOWN
    env.settle()
    (active,) = env.provider.compute.list_nodes(env.region, env.app)
    assert health.node_health(env.region, active).status is Health.HEALTHY
