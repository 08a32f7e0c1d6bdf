"""Quota preflight: a deploy that cannot fit fails before it creates anything.

A blue-green deploy needs room for a whole new fleet beside the old one; finding out at
the seventh server that the project allows six leaves a half-built release to roll
back. So the engine asks the region's quota once, before its first create, for the
nodes of the release still to be built.
"""

from __future__ import annotations

from phoenix.errors import QuotaExceeded
from phoenix.model import NodeState, Quota, ResourceNeeds
from phoenix.planner import Observed
from phoenix.release import Release


def new_node_needs(count: int, release: Release, observed: Observed) -> ResourceNeeds | None:
    """What the release's nodes still to be built need (None: nothing to build)."""
    existing = {
        n.name for n in observed.nodes
        if n.release == release.id and n.state is not NodeState.ERROR
    }
    new = max(0, count - len(existing))
    if new == 0:
        return None
    flavor = release.flavor
    return ResourceNeeds(
        instances=new,
        vcpus=new * (flavor.vcpus if flavor else 0),
        ram_mb=new * (flavor.ram_mb if flavor else 0),
    )


def check_quota(needs: ResourceNeeds, quota: Quota, release: Release, region: str) -> None:
    """Raise ``QuotaExceeded`` naming every resource ``quota`` cannot fit."""
    short = []
    for what, need, left in (
        ("instances", needs.instances, quota.instances),
        ("vcpus", needs.vcpus, quota.vcpus),
        ("ram_mb", needs.ram_mb, quota.ram_mb),
    ):
        if left is not None and need > left:
            short.append(f"{what}: needs {need}, {left} left")
    if short:
        raise QuotaExceeded(
            f"quota in {region} cannot fit {needs.instances} new node(s) of flavor"
            f" {release.record.flavor}: " + "; ".join(short)
            + " — raise the quota, lower count, or use a smaller flavor",
            region=region,
        )
