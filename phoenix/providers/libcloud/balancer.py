"""``LoadBalancer`` over a libcloud load-balancer driver; a pool is a balancer's name.

Members of libcloud balancers are compute nodes (instance ids), not names: the names
Phoenix uses are the nodes' ``Name`` tags, looked up through the compute adapter.
Classic ELB has no member weight, so a drain deregisters the instance (ELB's connection
draining lets in-flight requests finish) and tags it ``phoenix:drained-from=<pool>``:
the member is reported DRAINING until ``remove_member``, so the node is not deleted
before the drain timeout has passed. ``change_members`` registers a poll's new members
in one request and deregisters its drained and removed ones in another, where the
driver allows (ELB; see ``quirks.BalancerQuirks``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from phoenix import errors
from phoenix.model import Member, MemberAction, MemberChange, MemberState, Node, NodeState
from phoenix.providers.libcloud.compute import NAME_TAG, LibcloudCompute
from phoenix.providers.libcloud.quirks import balancer_quirks
from phoenix.providers.libcloud.translate import Part, translated

DRAINED_TAG = "phoenix:drained-from"


class LibcloudBalancer(Part):
    service = "load_balancer"

    def __init__(self, drivers: Callable[[str], Any], compute: LibcloudCompute) -> None:
        self._drivers = drivers
        self._compute = compute

    def _balancer(self, region: str, pool: str) -> tuple[Any, Any]:
        driver = self._drivers(region)
        try:
            return driver, driver.get_balancer(pool)
        except Exception as exc:
            from phoenix.providers.libcloud.translate import translate

            if not isinstance(translate(exc, region=region, service=self.service),
                              errors.NotFound | errors.Permanent):
                raise
        for balancer in driver.list_balancers():
            if pool in (str(balancer.id), str(balancer.name)):
                return driver, balancer
        raise errors.UnknownResource(
            f"load balancer {pool!r} not found in {region}; create it or fix"
            " load_balancer.pool"
        )

    def _node(self, region: str, name: str) -> Node | None:
        found = [n for n in self._compute.nodes_tagged(region, NAME_TAG, name)
                 if n.state is not NodeState.DELETING]
        return found[0] if found else None

    @translated
    def list_members(self, region: str, pool: str) -> list[Member]:
        driver, balancer = self._balancer(region, pool)
        registered = [str(m.id) for m in driver.balancer_list_members(balancer)]
        port = int(getattr(balancer, "port", 0) or 0)
        members: dict[str, Member] = {}
        for node in self._compute.nodes_by_ids(region, registered):
            members[node.name] = Member(node.name, node.address or node.id, port)
        for node in self._compute.nodes_tagged(region, DRAINED_TAG, pool):
            if node.name not in members:
                members[node.name] = Member(node.name, node.address or node.id, port,
                                            state=MemberState.DRAINING)
        return sorted(members.values(), key=lambda m: m.name)

    @translated
    def add_member(self, region: str, pool: str, name: str, address: str, port: int) -> None:
        node = self._node(region, name)
        if node is None:
            raise errors.NotFound(f"no server named {name} to add to {pool}", region=region)
        driver, balancer = self._balancer(region, pool)
        registered = {str(m.id) for m in driver.balancer_list_members(balancer)}
        if node.id not in registered:
            driver.balancer_attach_compute_node(balancer, self._compute.raw_node(region, node.id))
        if node.metadata.get(DRAINED_TAG):
            self._compute.set_metadata(region, node.id, {DRAINED_TAG: ""})

    @translated
    def drain_member(self, region: str, pool: str, name: str) -> None:
        node = self._node(region, name)
        driver, balancer = self._balancer(region, pool)
        members = {str(m.id): m for m in driver.balancer_list_members(balancer)}
        if node is None or (node.id not in members and node.metadata.get(DRAINED_TAG) != pool):
            raise errors.NotFound(f"{name} is not a member of {pool}", region=region)
        if node.metadata.get(DRAINED_TAG) != pool:
            # Tag first: a crash before the deregistration leaves a SERVING member that
            # the next run drains again; never an untagged, deregistered one.
            self._compute.set_metadata(region, node.id, {DRAINED_TAG: pool})
        if node.id in members:
            driver.balancer_detach_member(balancer, members[node.id])

    @translated
    def remove_member(self, region: str, pool: str, name: str) -> None:
        node = self._node(region, name)
        if node is None:
            return
        driver, balancer = self._balancer(region, pool)
        for member in driver.balancer_list_members(balancer):
            if str(member.id) == node.id:
                driver.balancer_detach_member(balancer, member)
        if node.metadata.get(DRAINED_TAG):
            self._compute.set_metadata(region, node.id, {DRAINED_TAG: ""})

    @translated
    def change_members(self, region: str, pool: str, changes: Sequence[MemberChange]) -> None:
        """A poll's member changes: one registration of every new member, then the
        drained ones tagged (before they leave, as in ``drain_member``), then one
        deregistration of the drained and removed ones, then their tags cleared."""
        driver, balancer = self._balancer(region, pool)
        quirks = balancer_quirks(driver)
        registered = {str(m.id): m for m in driver.balancer_list_members(balancer)}
        found = {c.name: self._node(region, c.name) for c in changes}
        adds = [n for c in changes if c.action is MemberAction.ADD
                if (n := found[c.name]) is not None]
        missing = [c.name for c in changes if c.action is MemberAction.ADD and not found[c.name]]
        quirks.register(driver, balancer, [self._compute.raw_node(region, n.id) for n in adds
                                           if n.id not in registered])
        drains = [n for c in changes if c.action is MemberAction.DRAIN
                  if (n := found[c.name]) is not None
                  and (n.id in registered or n.metadata.get(DRAINED_TAG) == pool)]
        for node in drains:
            if node.metadata.get(DRAINED_TAG) != pool:
                self._compute.set_metadata(region, node.id, {DRAINED_TAG: pool})
        removes = [n for c in changes if c.action is MemberAction.REMOVE
                   if (n := found[c.name]) is not None]
        quirks.deregister(driver, balancer, [registered[n.id] for n in drains + removes
                                             if n.id in registered])
        for node in adds + removes:
            if node.metadata.get(DRAINED_TAG):
                self._compute.set_metadata(region, node.id, {DRAINED_TAG: ""})
        if missing:
            raise errors.NotFound(f"no server named {', '.join(missing)} to add to {pool}",
                                  region=region)

    @translated
    def url(self, region: str, pool: str) -> str:
        _, balancer = self._balancer(region, pool)
        port = int(getattr(balancer, "port", 0) or 80)
        return f"http://{balancer.ip}:{port}/"
