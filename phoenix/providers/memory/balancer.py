"""``LoadBalancer`` over the memory cloud: one pool per name and region."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from phoenix import errors
from phoenix.model import Member, MemberAction, MemberChange, MemberState
from phoenix.providers.memory.core import CloudCore

_BATCH_ORDER = {MemberAction.ADD: 0, MemberAction.DRAIN: 1, MemberAction.REMOVE: 2}


class MemoryLoadBalancer:
    """``LoadBalancer`` over the memory cloud; pools appear on first use."""

    def __init__(self, cloud: CloudCore) -> None:
        self._cloud = cloud

    def list_members(self, region: str, pool: str) -> list[Member]:
        with self._cloud.call("lb.list_members", region) as state:
            return list(state.pools[region].get(pool, {}).values())

    def add_member(self, region: str, pool: str, name: str, address: str, port: int) -> None:
        with self._cloud.call("lb.add_member", region, mutating=True, key=name) as state:
            members = state.pools[region].setdefault(pool, {})
            members[name] = Member(
                name=name,
                address=address,
                port=port,
                state=MemberState.SERVING,
                active_connections=0,
            )
            self._cloud.dirty = True

    def drain_member(self, region: str, pool: str, name: str) -> None:
        with self._cloud.call("lb.drain_member", region, mutating=True, key=name) as state:
            members = state.pools[region].setdefault(pool, {})
            member = members.get(name)
            if member is None:
                raise errors.NotFound(
                    f"no member {name!r} in pool {pool!r} in {region}", region=region
                )
            members[name] = Member(
                name=member.name,
                address=member.address,
                port=member.port,
                state=MemberState.DRAINING,
                active_connections=0,
            )
            self._cloud.dirty = True

    def remove_member(self, region: str, pool: str, name: str) -> None:
        with self._cloud.call("lb.remove_member", region, mutating=True, key=name) as state:
            if state.pools[region].setdefault(pool, {}).pop(name, None) is not None:
                self._cloud.dirty = True

    def change_members(self, region: str, pool: str, changes: Sequence[MemberChange]) -> None:
        """One call for any number of changes (``MemberBatcher``), like Octavia's batch
        member update: adds first, then drains, then removals."""
        key = ",".join(sorted(f"{c.action}:{c.name}" for c in changes))
        with self._cloud.call("lb.change_members", region, mutating=True, key=key) as state:
            members = state.pools[region].setdefault(pool, {})
            for change in sorted(changes, key=lambda c: _BATCH_ORDER[c.action]):
                current = members.get(change.name)
                if change.action is MemberAction.ADD:
                    members[change.name] = Member(change.name, change.address, change.port,
                                                  MemberState.SERVING, active_connections=0)
                elif change.action is MemberAction.DRAIN and current is not None:
                    members[change.name] = dataclasses.replace(
                        current, state=MemberState.DRAINING, active_connections=0)
                elif change.action is MemberAction.REMOVE:
                    members.pop(change.name, None)
            self._cloud.dirty = True

    def url(self, region: str, pool: str) -> str:
        """A made-up VIP per region, so DNS failover has an address to point at."""
        return f"http://127.{self._cloud.region_number(region)}.255.254/"
