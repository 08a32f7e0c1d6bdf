"""``health.mode: provider``: trust the cloud's own view of a server.

For servers Phoenix cannot reach over the network itself (addresses not routable from
where it runs, or a test cloud whose servers are fakes), the compute API's state is the
health signal, and the load balancer's own monitor speaks through ``Member.online``.
"""

from __future__ import annotations

from phoenix.model import Health, Node, NodeHealth, NodeState


class TrustedStateHealth:
    """Healthy when the compute API says the server runs; unhealthy when it failed."""

    # Judged from the listing the engine just read: no I/O, so the tracker asks inline
    # (no thread or event loop per probe).
    answers_inline = True

    def __init__(self, cloud: str) -> None:
        self._cloud = cloud

    def node_health(self, region: str, node: Node) -> NodeHealth:
        if node.state is NodeState.ACTIVE:
            return NodeHealth(
                Health.HEALTHY, f"{self._cloud} reports it running (health.mode provider)"
            )
        if node.state is NodeState.ERROR:
            return NodeHealth(Health.UNHEALTHY, node.fault or f"{self._cloud} reports an error")
        return NodeHealth(Health.UNKNOWN, f"server {node.state.value}")
