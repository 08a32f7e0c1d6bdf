"""``MemoryCloud``: the in-memory cloud's setup and inspection helpers (not counted, no
faults), and its parts assembled as a ``Provider``."""

from __future__ import annotations

from collections.abc import Sequence

from phoenix import errors
from phoenix.model import DnsRecord, Flavor, Image, Member, Node
from phoenix.providers.base import Provider
from phoenix.providers.memory.balancer import MemoryLoadBalancer
from phoenix.providers.memory.compute import MemoryCompute
from phoenix.providers.memory.core import CloudCore
from phoenix.providers.memory.dns import MemoryDns
from phoenix.providers.memory.health import MemoryHealth
from phoenix.providers.memory.state import Limits
from phoenix.providers.memory.store import MemoryStore


class MemoryCloud(CloudCore):
    """An OpenStack-ish cloud in memory: servers, images, flavors, quota, LB, DNS, store.

    ``clock`` defaults to a fresh ``FakeClock`` (exposed as ``self.clock``): give the
    engine under test the same clock so its waits advance the cloud's boot times.
    """

    # --- setup and inspection (not counted, no faults) --------------------------------

    def add_image(self, image: Image, regions: Sequence[str] | None = None) -> None:
        """Make an image visible in ``regions`` (default: all); replaces one with its id."""
        with self.lock, self._persisted(writes=False):
            targets = list(self._state.region_numbers) if regions is None else list(regions)
            for region in targets:
                self._known_region(region)
            self._state.images[image.id] = image
            self._state.image_regions.setdefault(image.id, set()).update(targets)
            self.dirty = True

    def add_flavor(self, flavor: Flavor) -> None:
        """Make a flavor available in every region; replaces one with the same id."""
        with self.lock, self._persisted(writes=False):
            self._state.flavors[flavor.id] = flavor
            self.dirty = True

    def set_quota(
        self,
        region: str,
        *,
        instances: int | None = None,
        vcpus: int | None = None,
        ram_mb: int | None = None,
    ) -> None:
        """Set the region's total limits (not headroom); each call sets all three,
        ``None`` meaning unlimited."""
        with self.lock, self._persisted(writes=False):
            self._known_region(region)
            self._state.limits[region] = Limits(instances, vcpus, ram_mb)
            self.dirty = True

    def provider(self) -> Provider:
        """This cloud assembled as a ``Provider`` named ``memory``."""
        return Provider(
            name="memory",
            compute=MemoryCompute(self),
            load_balancer=MemoryLoadBalancer(self),
            store=MemoryStore(self),
            dns=MemoryDns(self),
            health_source=MemoryHealth(self),
            requests=self.requests,
        )

    def servers(self, region: str) -> list[Node]:
        """Every server in the region regardless of tags (inspection; not counted)."""
        with self.lock, self._persisted(writes=False):
            self._known_region(region)
            self.advance(region)
            return [s.to_node() for s in self._state.servers[region].values()]

    def members(self, region: str, pool: str) -> list[Member]:
        """The pool's members (inspection; not counted)."""
        with self.lock, self._persisted(writes=False):
            self._known_region(region)
            return list(self._state.pools[region].get(pool, {}).values())

    def user_data(self, region: str, node_id: str) -> str:
        """The user data a server was created with (inspection; not counted)."""
        with self.lock, self._persisted(writes=False):
            self._known_region(region)
            server = self._state.servers[region].get(node_id)
            if server is None:
                raise errors.NotFound(f"no server {node_id!r} in {region}", region=region)
            return server.user_data

    def dns_record(self, zone: str, name: str) -> DnsRecord | None:
        """A DNS record as it is (inspection; not counted, no faults)."""
        with self.lock, self._persisted(writes=False):
            return self._state.dns.get((zone, name))

    def objects(self) -> dict[str, bytes]:
        """Everything in the object store (inspection; not counted, no faults)."""
        with self.lock, self._persisted(writes=False):
            return dict(self._state.objects)

    def put_object(self, key: str, data: bytes) -> None:
        """Write an object into the store directly (setup; not counted, no faults): e.g.
        what a deploy killed with -9 would have left there."""
        with self.lock, self._persisted():
            self._state.objects[key] = bytes(data)
            self.dirty = True
