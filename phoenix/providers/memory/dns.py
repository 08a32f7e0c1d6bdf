"""``Dns`` over the memory cloud."""

from __future__ import annotations

from phoenix.model import DnsRecord
from phoenix.providers.memory.core import CloudCore


class MemoryDns:
    """``Dns`` over the memory cloud (global, like a DNS service)."""

    def __init__(self, cloud: CloudCore) -> None:
        self._cloud = cloud

    def get_record(self, zone: str, name: str) -> DnsRecord | None:
        with self._cloud.call("dns.get_record", None) as state:
            return state.dns.get((zone, name))

    def set_record(self, zone: str, name: str, values: tuple[str, ...], ttl: int) -> None:
        with self._cloud.call("dns.set_record", None, mutating=True) as state:
            state.dns[(zone, name)] = DnsRecord(zone=zone, name=name, values=tuple(values), ttl=ttl)
            self._cloud.dirty = True
