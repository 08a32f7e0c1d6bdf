"""``Dns`` over a libcloud DNS driver (global: zones belong to no region)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from phoenix import errors
from phoenix.model import DnsRecord
from phoenix.providers.libcloud.quirks import dns_quirks
from phoenix.providers.libcloud.translate import Part, translated

_ADDRESS_TYPES = ("A", "AAAA")


def _bare(domain: str) -> str:
    return domain.rstrip(".").lower()


def relative_name(name: str, zone: str) -> str:
    """``www`` for ``www``, ``www.example.org.`` or ``www.example.org`` in example.org."""
    bare_zone, bare = _bare(zone), _bare(name)
    if bare == bare_zone:
        return ""
    if bare.endswith("." + bare_zone):
        return bare[: -len(bare_zone) - 1]
    return bare


def _kind_and_values(values: Sequence[str], zone: str, name: str) -> tuple[str, list[str]]:
    try:
        addresses = [ipaddress.ip_address(v) for v in values]
    except ValueError as exc:
        raise errors.BadRequest(f"{name} in {zone}: record values must be IP addresses") from exc
    versions = {a.version for a in addresses}
    if len(versions) != 1:
        raise errors.BadRequest(f"{name} in {zone}: give IPv4 or IPv6 values, not a mix")
    return ("AAAA" if versions == {6} else "A"), sorted({str(a) for a in addresses})


class LibcloudDns(Part):
    service = "dns"

    def __init__(self, driver: Any) -> None:
        self._driver = driver

    def _region_of_call(self, args: tuple[Any, ...]) -> str | None:
        return None

    def _zone(self, zone: str) -> Any:
        for found in self._driver.list_zones():
            if _bare(str(found.domain)) == _bare(zone):
                return found
        raise errors.UnknownResource(f"DNS zone {zone!r} not found; create it or fix dns.zone")

    def _records(self, zone_obj: Any, name: str) -> list[Any]:
        wanted = relative_name(name, zone_obj.domain)
        return [
            r for r in self._driver.list_records(zone_obj)
            if str(r.type) in _ADDRESS_TYPES
            and relative_name(str(r.name or ""), zone_obj.domain) == wanted
        ]

    @staticmethod
    def _ttl(record: Any) -> int:
        return int(record.ttl or (record.extra or {}).get("ttl") or 0)

    @translated
    def get_record(self, zone: str, name: str) -> DnsRecord | None:
        zone_obj = self._zone(zone)
        records = self._records(zone_obj, name)
        if not records:
            return None
        values = tuple(sorted({str(ipaddress.ip_address(str(r.data).strip())) for r in records}))
        return DnsRecord(zone=zone, name=name, values=values, ttl=self._ttl(records[0]))

    @translated
    def set_record(self, zone: str, name: str, values: tuple[str, ...], ttl: int) -> None:
        kind, wanted = _kind_and_values(values, zone, name)
        zone_obj = self._zone(zone)
        existing = self._records(zone_obj, name)
        current = sorted({str(ipaddress.ip_address(str(r.data).strip()))
                          for r in existing if str(r.type) == kind})
        same_type_only = all(str(r.type) == kind for r in existing)
        if current == wanted and same_type_only and all(self._ttl(r) == ttl for r in existing):
            return
        dns_quirks(self._driver).replace(
            self._driver, zone_obj, relative_name(name, zone_obj.domain), kind, wanted, ttl,
            existing,
        )
