"""``LoadBalancer``, ``MemberBatcher`` and ``PoolEndpoint`` over Octavia.

Octavia answers 409 while a load balancer is PENDING_*. Every member write first waits
(bounded, with the injected clock) for ``provisioning_status == ACTIVE``, and writes to
one load balancer from this process are serialised so they do not collide. A poll's
member changes go in one batch member update (``PUT .../members`` with the whole desired
list): one PENDING_UPDATE cycle instead of one per member.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import openstack.exceptions as os_exc

from phoenix import errors
from phoenix.model import Member, MemberAction, MemberChange, MemberState
from phoenix.providers.openstack.cloud import Adapter, translated
from phoenix.providers.openstack.readers import attr, canonical_ip, find
from phoenix.providers.openstack.translate import describe


@dataclass(frozen=True)
class _PoolRef:
    pool_id: str
    lb_id: str
    listener_ids: tuple[str, ...]


class OpenStackLoadBalancer(Adapter):
    """``LoadBalancer``, ``MemberBatcher`` and ``PoolEndpoint`` over Octavia; the pool
    exists beforehand."""

    def _pool(self, region: str, pool: str) -> _PoolRef:
        key = ("pool", region, pool)
        cached = self._cloud.cache.get(key)
        if isinstance(cached, _PoolRef):
            return cached
        raw = find(self._cloud.conn(region).load_balancer.find_pool, pool)
        if raw is None:
            raise errors.UnknownResource(
                f"load balancer pool {pool!r} not found in {region}; create it (`openstack"
                " loadbalancer pool create ...`) or fix load_balancer.pool"
            )
        lbs = [str(lb["id"]) for lb in attr(raw, "loadbalancers", []) if "id" in lb]
        if not lbs and attr(raw, "loadbalancer_id"):
            lbs = [str(raw.loadbalancer_id)]
        if not lbs:
            raise errors.UnknownResource(
                f"load balancer pool {pool!r} in {region} belongs to no load balancer"
            )
        listeners = tuple(
            str(item["id"]) for item in attr(raw, "listeners", []) if "id" in item
        )
        ref = _PoolRef(pool_id=str(raw.id), lb_id=lbs[0], listener_ids=listeners)
        self._cloud.cache[key] = ref
        return ref

    def _members(self, region: str, ref: _PoolRef) -> list[Any]:
        return list(self._cloud.conn(region).load_balancer.members(ref.pool_id))

    def _wait_active(self, region: str, ref: _PoolRef) -> bool:
        """Octavia refuses writes (409) while the load balancer is PENDING_*: wait it out.
        True when it had to wait (what was read before may have changed since)."""
        clock = self._cloud.clock
        octavia = self._cloud.conn(region).load_balancer
        deadline = clock.now() + timedelta(seconds=self._cloud.lb_wait_seconds)
        delay = 0.25
        waited = False
        while True:
            status = str(attr(octavia.get_load_balancer(ref.lb_id), "provisioning_status", ""))
            if status == "ACTIVE":
                return waited
            if not status.startswith("PENDING"):
                raise errors.Permanent(
                    f"load balancer {ref.lb_id} in {region} is {status or 'in no state'};"
                    " it needs an operator (`openstack loadbalancer failover` or recreate it)",
                    region=region,
                )
            if clock.now() >= deadline:
                raise errors.Transient(
                    f"load balancer {ref.lb_id} in {region} still {status} after"
                    f" {self._cloud.lb_wait_seconds:g}s; retry",
                    region=region,
                )
            clock.sleep(delay)
            waited = True
            delay = min(delay * 2, 2.0)

    @translated
    def list_members(self, region: str, pool: str) -> list[Member]:
        return [_member(raw) for raw in self._members(region, self._pool(region, pool))]

    @translated
    def add_member(self, region: str, pool: str, name: str, address: str, port: int) -> None:
        ref = self._pool(region, pool)
        octavia = self._cloud.conn(region).load_balancer
        with self._cloud.named_lock("lb", region, ref.lb_id):
            mine = [m for m in self._members(region, ref) if attr(m, "name") == name]
            for stale in mine:
                # Octavia cannot change a member's address or port: replace it.
                if attr(stale, "address") != address or attr(stale, "protocol_port") != port:
                    self._wait_active(region, ref)
                    octavia.delete_member(stale.id, ref.pool_id, ignore_missing=True)
            mine = [
                m
                for m in mine
                if attr(m, "address") == address and attr(m, "protocol_port") == port
            ]
            if mine:
                self._serve(region, ref, mine[0])
                return
            self._wait_active(region, ref)
            try:
                octavia.create_member(
                    ref.pool_id,
                    name=name,
                    address=address,
                    protocol_port=port,
                    weight=1,
                    admin_state_up=True,
                )
            except os_exc.ConflictException as exc:
                # "Another member on this pool is already using ip ... on protocol_port ..."
                if "already" not in describe(exc).lower():
                    raise
                same = [
                    m
                    for m in self._members(region, ref)
                    if attr(m, "address") == address and attr(m, "protocol_port") == port
                ]
                if not same:
                    raise
                self._serve(region, ref, same[0])

    def _serve(self, region: str, ref: _PoolRef, member: Any) -> None:
        if attr(member, "weight", 1) != 0 and attr(member, "is_admin_state_up", True):
            return
        self._wait_active(region, ref)
        self._cloud.conn(region).load_balancer.update_member(
            member.id, ref.pool_id, weight=1, admin_state_up=True
        )

    @translated
    def drain_member(self, region: str, pool: str, name: str) -> None:
        ref = self._pool(region, pool)
        with self._cloud.named_lock("lb", region, ref.lb_id):
            mine = [m for m in self._members(region, ref) if attr(m, "name") == name]
            if not mine:
                raise errors.NotFound(
                    f"no member {name!r} in pool {pool!r} in {region}", region=region
                )
            for member in mine:
                if attr(member, "weight", 1) == 0:
                    continue
                self._wait_active(region, ref)
                self._cloud.conn(region).load_balancer.update_member(
                    member.id, ref.pool_id, weight=0
                )

    @translated
    def remove_member(self, region: str, pool: str, name: str) -> None:
        ref = self._pool(region, pool)
        with self._cloud.named_lock("lb", region, ref.lb_id):
            for member in [m for m in self._members(region, ref) if attr(m, "name") == name]:
                self._wait_active(region, ref)
                try:
                    self._cloud.conn(region).load_balancer.delete_member(
                        member.id, ref.pool_id, ignore_missing=True
                    )
                except os_exc.NotFoundException:
                    continue

    @translated
    def change_members(self, region: str, pool: str, changes: Sequence[MemberChange]) -> None:
        """``MemberBatcher`` through Octavia's batch member update: one ``PUT
        /lbaas/pools/{id}/members`` with the whole desired list (one PENDING_UPDATE cycle
        for any number of changes), none when the pool already looks as asked."""
        ref = self._pool(region, pool)
        with self._cloud.named_lock("lb", region, ref.lb_id):
            current = self._member_bodies(region, ref)
            desired = _desired_members(current, changes)
            if desired == current:
                return
            if self._wait_active(region, ref):
                # It was PENDING_*: the members read may have moved on since.
                current = self._member_bodies(region, ref)
                desired = _desired_members(current, changes)
                if desired == current:
                    return
            response = self._cloud.conn(region).load_balancer.put(
                f"/lbaas/pools/{quote(ref.pool_id, safe='')}/members",
                json={"members": list(desired.values())},
            )
            os_exc.raise_from_response(response)

    def _member_bodies(self, region: str, ref: _PoolRef) -> dict[_MemberKey, dict[str, Any]]:
        """The pool's members as batch-update entries, by (address, port): the key Octavia
        matches a batch by. Members on their way out (PENDING_DELETE) count as gone."""
        return {
            _member_key(body): body
            for body in (_member_body(raw) for raw in self._members(region, ref)
                         if attr(raw, "provisioning_status") != "PENDING_DELETE")
        }

    @translated
    def url(self, region: str, pool: str) -> str:
        ref = self._pool(region, pool)
        octavia = self._cloud.conn(region).load_balancer
        lb = octavia.get_load_balancer(ref.lb_id)
        vip = str(attr(lb, "vip_address", ""))
        listener_ids = ref.listener_ids or tuple(
            str(item["id"]) for item in attr(lb, "listeners", []) if "id" in item
        )
        if not vip or not listener_ids:
            raise errors.UnknownResource(
                f"pool {pool!r} in {region} has no listener or VIP to reach it by"
            )
        listener = octavia.get_listener(listener_ids[0])
        protocol = str(attr(listener, "protocol", "HTTP")).upper()
        scheme = "https" if protocol in ("HTTPS", "TERMINATED_HTTPS") else "http"
        host = f"[{vip}]" if ":" in vip else vip
        return f"{scheme}://{host}:{int(attr(listener, 'protocol_port', 80))}"


_MemberKey = tuple[str, int]
_BATCH_ORDER = {MemberAction.ADD: 0, MemberAction.DRAIN: 1, MemberAction.REMOVE: 2}


def _member_key(body: Mapping[str, Any]) -> _MemberKey:
    return canonical_ip(str(body["address"])), int(body["protocol_port"])


def _member_body(raw: Any) -> dict[str, Any]:
    """A member as a batch-update entry that leaves it exactly as it is: Octavia resets
    every field a batch entry leaves out to its create default (weight 1, admin up, no
    backup, no monitor address), so everything that is set is sent back."""
    body: dict[str, Any] = {
        "name": str(attr(raw, "name", "")),
        "address": str(attr(raw, "address", "")),
        "protocol_port": int(attr(raw, "protocol_port", 0)),
        "weight": int(attr(raw, "weight", 1)),
        "admin_state_up": bool(attr(raw, "is_admin_state_up", True)),
        "backup": bool(attr(raw, "backup", False)),
    }
    for field in ("subnet_id", "monitor_address", "monitor_port"):
        value = attr(raw, field)
        if value is not None:
            body[field] = value
    tags = attr(raw, "tags", [])
    if tags:
        body["tags"] = list(tags)
    return body


def _desired_members(
    current: Mapping[_MemberKey, dict[str, Any]], changes: Sequence[MemberChange]
) -> dict[_MemberKey, dict[str, Any]]:
    """The pool after ``changes``, as the single-member calls would leave it: adds, then
    drains, then removals. ADD replaces a same-named member at another address or port
    and serves a draining one (weight 1, admin up); DRAIN sets weight 0 (as
    ``drain_member``) and ignores a missing member; REMOVE leaves the member out."""
    desired = {key: dict(body) for key, body in current.items()}
    for change in sorted(changes, key=lambda c: _BATCH_ORDER[c.action]):
        named = [key for key, body in desired.items() if body["name"] == change.name]
        if change.action is MemberAction.ADD:
            key = (canonical_ip(change.address), change.port)
            for stale in named:
                if stale != key:  # Octavia cannot move a member: replace it
                    del desired[stale]
            body = desired.setdefault(key, {
                "name": change.name, "address": change.address,
                "protocol_port": change.port, "weight": 1, "admin_state_up": True,
            })
            body["name"] = change.name
            if body["weight"] == 0 or not body["admin_state_up"]:
                body.update(weight=1, admin_state_up=True)
        elif change.action is MemberAction.DRAIN:
            for key in named:
                desired[key]["weight"] = 0
        else:
            for key in named:
                del desired[key]
    return desired


def _member(raw: Any) -> Member:
    weight = attr(raw, "weight", 1)
    serving = weight != 0 and attr(raw, "is_admin_state_up", True)
    operating = str(attr(raw, "operating_status", "")).upper()
    online = None if operating in ("", "NO_MONITOR") else operating == "ONLINE"
    return Member(
        name=str(attr(raw, "name", "")),
        address=str(attr(raw, "address", "")),
        port=int(attr(raw, "protocol_port", 0)),
        state=MemberState.SERVING if serving else MemberState.DRAINING,
        active_connections=None,
        online=online,
    )
