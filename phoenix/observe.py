"""Observe: one region's state, read from the cloud, for the planner.

The servers (found by the app's tag), when each started serving and draining (the pool
ledger), the load balancer's members, and each server's health as the tracker judges it
over successive looks. Read-only and retried; nothing here decides or changes anything.
"""

from __future__ import annotations

from phoenix.executor import LB
from phoenix.health import HealthTracker, build_tracker
from phoenix.ledger import Ledger
from phoenix.planner import Observed
from phoenix.providers.base import Clock, Provider
from phoenix.retrying import RetryingCaller
from phoenix.spec import HealthSpec


class Observer:
    """Looks at one region of one app, again and again (health needs several looks)."""

    def __init__(self, provider: Provider, *, app: str, region: str, pool: str,
                 health: HealthSpec, clock: Clock, reads: RetryingCaller,
                 ledger: Ledger) -> None:
        self.provider = provider
        self.app = app
        self.region = region
        self.pool = pool
        self.reads = reads
        self.ledger = ledger
        self.tracker: HealthTracker = build_tracker(
            health, clock=clock, health_source=provider.health_source, region=region)
        self._tracked: set[str] = set()

    def observe(self) -> Observed:
        """Read the region's nodes, pool members and health (read-only calls, retried)."""
        compute, lb = self.provider.compute, self.provider.load_balancer
        nodes = self.reads.call(lambda: compute.list_nodes(self.region, self.app))
        # When each node started serving, and draining.
        nodes = list(self.ledger.merged(nodes, self.ledger.read()))
        members = self.reads.call(lambda: lb.list_members(self.region, self.pool), LB)
        names = {n.name for n in nodes}
        # Counters of nodes that are gone would only grow (and a name reused by a new
        # boot must start from scratch).
        self.tracker.forget(self._tracked - names)
        self._tracked = names
        health = self.tracker.check_sync(nodes)
        return Observed(self.region, tuple(nodes), tuple(members), health)
