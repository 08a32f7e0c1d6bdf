"""The memory cloud's faults for campaigns: windows of fake time, lost answers to reads,
and draws that do not depend on the order of calls (the fault campaign's determinism)."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest

from phoenix import errors
from phoenix.clock import FakeClock
from phoenix.model import Health, NodeState
from phoenix.providers.memory import Faults, FaultWindow, open_memory_provider

from .test_memory_provider import REGION, advance, make_cloud, request


def test_a_region_is_down_only_inside_its_window() -> None:
    clock = FakeClock()
    start = clock.now() + timedelta(seconds=10)
    cloud = make_cloud(Faults(windows=[FaultWindow(start, start + timedelta(seconds=5),
                                                   down_regions=frozenset({REGION}))]),
                       clock=clock)
    compute = cloud.provider().compute
    assert compute.list_nodes(REGION, "web") == []
    advance(cloud, 10)
    with pytest.raises(errors.RegionUnavailable):
        compute.list_nodes(REGION, "web")
    assert compute.list_nodes("region-b", "web") == []  # only that region
    advance(cloud, 5)
    assert compute.list_nodes(REGION, "web") == []  # the end is not included


def test_a_node_flaps_for_its_window_then_passes_again() -> None:
    clock = FakeClock()
    cloud = make_cloud(clock=clock, boot_seconds=0)
    provider = cloud.provider()
    node = provider.compute.create_node(REGION, request())
    now = clock.now()
    cloud.faults.windows.append(FaultWindow(now + timedelta(seconds=1),
                                            now + timedelta(seconds=3),
                                            unhealthy_nodes=frozenset({node.name})))
    health = provider.health_source
    assert health is not None
    seen = []
    for _ in range(4):
        seen.append(health.node_health(REGION, node).status)
        advance(cloud, 1)
    assert seen == [Health.HEALTHY, Health.UNHEALTHY, Health.UNHEALTHY, Health.HEALTHY]


def test_a_boot_failure_window_judges_a_server_by_when_its_boot_ended() -> None:
    clock = FakeClock()
    cloud = make_cloud(clock=clock, boot_seconds=5)
    now = clock.now()
    cloud.faults.windows.append(FaultWindow(now + timedelta(seconds=4),
                                            now + timedelta(seconds=6),
                                            boot_fail_names=frozenset({"web-r1-0"})))
    cloud.provider().compute.create_node(REGION, request(0))
    advance(cloud, 60)  # looked at long after the window closed
    assert cloud.servers(REGION)[0].state is NodeState.ERROR


def test_a_lost_answer_to_a_read_is_transient_and_changes_nothing() -> None:
    cloud = make_cloud(Faults(lost_read_rate=1.0, retry_after=3.0))
    store = cloud.provider().store
    store.put("k", b"v")  # writes are not affected
    with pytest.raises(errors.Transient) as lost:
        store.get("k")
    assert lost.value.retry_after == 3.0 and "answered" in str(lost.value)
    cloud.faults.lost_read_rate = 0.0
    assert store.get("k") == b"v"


def test_draws_depend_on_what_a_call_acts_on_not_on_other_calls() -> None:
    def outcomes(interleave: bool) -> list[bool]:
        cloud = make_cloud(Faults(api_error_rate=0.5), seed=11)
        store = cloud.provider().store
        result = []
        for i in range(30):
            if interleave:  # another thread's calls in between
                for _ in range(i % 3):
                    with contextlib.suppress(errors.Transient):
                        store.put("other", b"")
            try:
                store.put("mine", b"")
                result.append(True)
            except errors.Transient:
                result.append(False)
        return result

    assert outcomes(False) == outcomes(True)
    assert 3 < outcomes(False).count(False) < 27


def test_inspection_helpers_are_not_counted_and_see_through_faults() -> None:
    cloud = make_cloud(Faults(api_error_rate=1.0, down_regions={REGION}))
    cloud.put_object("apps/web/lock", b"{}")
    assert cloud.objects() == {"apps/web/lock": b"{}"}
    assert cloud.dns_record("example.com.", "web") is None
    assert cloud.total_calls() == 0


def test_lost_read_rate_is_a_provider_option() -> None:
    provider = open_memory_provider({"state_file": None, "faults": {"lost_read_rate": 1.0}},
                                    [REGION], clock=FakeClock())
    with pytest.raises(errors.Transient):
        provider.store.get("k")
