"""``Dns`` over Designate: A/AAAA record sets in a zone that exists beforehand."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from phoenix import errors
from phoenix.model import DnsRecord
from phoenix.providers.openstack.cloud import Adapter, translated
from phoenix.providers.openstack.readers import attr, canonical_ip, find
from phoenix.providers.openstack.translate import SDK_ERRORS, translate

R = TypeVar("R")


def _fqdn(name: str, zone: str) -> str:
    zone_fqdn = zone if zone.endswith(".") else zone + "."
    if name.endswith("."):
        return name
    bare = zone_fqdn.rstrip(".")
    if name == bare or name.endswith("." + bare):
        return name + "."
    return f"{name}.{zone_fqdn}"


def _record_type(values: Sequence[str], zone: str, name: str) -> str:
    try:
        versions = {ipaddress.ip_address(v).version for v in values}
    except ValueError as exc:
        raise errors.BadRequest(f"{name} in {zone}: record values must be IP addresses") from exc
    if len(versions) > 1:
        raise errors.BadRequest(f"{name} in {zone}: mix of IPv4 and IPv6 values")
    return "AAAA" if versions == {6} else "A"


class OpenStackDns(Adapter):
    """``Dns`` over Designate. Zones are global: the first reachable region answers."""

    def _region_of_call(self, args: tuple[Any, ...]) -> str | None:
        return self._cloud.dns_region or self._cloud.regions[0]

    def _each_region(self) -> Iterator[str]:
        if self._cloud.dns_region:
            yield self._cloud.dns_region
        else:
            yield from self._cloud.regions

    def _in_some_region(self, call: Callable[[Any, str], R]) -> R:
        """Run against the first region whose Designate answers (failover needs DNS
        exactly when the primary region is down)."""
        failure: errors.PhoenixError | None = None
        for region in self._each_region():
            try:
                return call(self._cloud.conn(region).dns, region)
            except SDK_ERRORS as exc:
                error = translate(exc, region=region, cloud=self._cloud.cloud_name)
                if not isinstance(error, errors.RegionUnavailable):
                    raise error from exc
                failure = error
            except errors.RegionUnavailable as exc:
                failure = exc
        assert failure is not None
        raise failure

    @staticmethod
    def _zone(dns: Any, zone: str, region: str) -> Any:
        zone_fqdn = zone if zone.endswith(".") else zone + "."
        found = find(dns.find_zone, zone_fqdn)
        if found is None:
            raise errors.UnknownResource(
                f"DNS zone {zone_fqdn!r} not found (Designate, {region}); create it or fix"
                " dns.zone"
            )
        return found

    @staticmethod
    def _recordsets(dns: Any, zone_obj: Any, fqdn: str) -> list[Any]:
        return [
            rs
            for rs in dns.recordsets(zone_obj, name=fqdn)
            if str(attr(rs, "type", "")).upper() in ("A", "AAAA")
        ]

    @translated
    def get_record(self, zone: str, name: str) -> DnsRecord | None:
        def call(dns: Any, region: str) -> DnsRecord | None:
            zone_obj = self._zone(dns, zone, region)
            found = self._recordsets(dns, zone_obj, _fqdn(name, zone))
            if not found:
                return None
            rs = found[0]
            ttl = attr(rs, "ttl") or attr(zone_obj, "ttl", 0)
            values = tuple(sorted(str(v) for v in attr(rs, "records", [])))
            return DnsRecord(zone=zone, name=name, values=values, ttl=int(ttl))

        return self._in_some_region(call)

    @translated
    def set_record(self, zone: str, name: str, values: tuple[str, ...], ttl: int) -> None:
        kind = _record_type(values, zone, name)
        fqdn = _fqdn(name, zone)
        # Designate stores addresses canonically: compare (and send) them that way, or an
        # IPv6 value written as "2001:DB8::1" would be rewritten on every call.
        wanted = sorted({canonical_ip(v) for v in values})

        def call(dns: Any, region: str) -> None:
            zone_obj = self._zone(dns, zone, region)
            existing = self._recordsets(dns, zone_obj, fqdn)

            def type_of(rs: Any) -> str:
                return str(attr(rs, "type", "")).upper()

            same = [rs for rs in existing if type_of(rs) == kind]
            if same:
                rs = same[0]
                current = sorted(canonical_ip(str(v)) for v in attr(rs, "records", []))
                if current != wanted or attr(rs, "ttl") != ttl:
                    dns.update_recordset(rs, records=wanted, ttl=ttl)
            else:
                dns.create_recordset(zone_obj, name=fqdn, type=kind, records=wanted, ttl=ttl)
            # A <-> AAAA switch: the old type goes only once the new one is in place, so
            # the name never resolves to nothing (nor stays so when the create fails).
            for other in existing:
                if type_of(other) != kind:
                    dns.delete_recordset(other, zone_obj, ignore_missing=True)

        self._in_some_region(call)
