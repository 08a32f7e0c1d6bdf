"""``HealthSource`` over the memory cloud: what a probe of the simulated app would see."""

from __future__ import annotations

from phoenix.model import Health, Node, NodeHealth, NodeState
from phoenix.providers.memory.core import CloudCore


class MemoryHealth:
    """``HealthSource``: what an HTTP probe of the simulated app would conclude."""

    answers_inline = True  # no I/O: the health tracker asks inline, without threads

    def __init__(self, cloud: CloudCore) -> None:
        self._cloud = cloud

    def node_health(self, region: str, node: Node) -> NodeHealth:
        faults = self._cloud.faults
        with self._cloud.call("health.node_health", region, key=node.id) as state:
            server = state.servers[region].get(node.id)
            if server is None:
                return NodeHealth(Health.UNHEALTHY, "server not found (simulated)")
            if server.state is NodeState.BUILD:
                return NodeHealth(Health.UNKNOWN, "server is still building")
            if server.state is NodeState.DELETING:
                return NodeHealth(Health.UNHEALTHY, "server is being deleted")
            if server.state is NodeState.ERROR:
                return NodeHealth(Health.UNHEALTHY, f"server in ERROR: {server.fault}")
            now = self._cloud.clock.now()
            if (
                server.image_id in faults.unhealthy_images
                or faults.node_unhealthy(server.name, now)
                or faults.region_unhealthy(region, now)
            ):
                return NodeHealth(Health.UNHEALTHY, "HTTP 503 (simulated)")
            return NodeHealth(Health.HEALTHY, "HTTP 200 (simulated)")
