"""``Dns`` over a libcloud DNS driver (global: zones belong to no region).

A record Phoenix manages points the app's name at the serving region's load balancer:
A/AAAA records when the balancer has IP addresses, a CNAME when it is known by name only
(AWS's classic ELB: its addresses change, its DNS name does not). A name holds either kind,
never both: a CNAME cannot coexist with other records of its name, so a switch between
the kinds replaces the old records (in one atomic change where the driver can, see
``quirks.DnsQuirks``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Any

from phoenix import errors
from phoenix.model import DnsRecord
from phoenix.providers.libcloud.quirks import dns_quirks
from phoenix.providers.libcloud.translate import Part, translated

_ADDRESS_TYPES = ("A", "AAAA")
_CNAME = "CNAME"
# The record types of a name Phoenix points somewhere: all of them are replaced on a switch.
_MANAGED_TYPES = (*_ADDRESS_TYPES, _CNAME)
# One DNS label (RFC 1035/1123; "_" too, which real load balancer names do not use but
# service names may).
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


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


def _hostname(value: str) -> str | None:
    """``value`` as a comparable host name (lowercase, no trailing dot), or None when it
    is not one. A last label of digits only is refused, so a mistyped IP address
    (``10.0.0``) is an error rather than a CNAME to a name that cannot exist."""
    bare = _bare(value.strip())
    labels = bare.split(".")
    if not bare or len(bare) > 253 or not all(_LABEL.match(label) for label in labels):
        return None
    if labels[-1].isdigit():
        return None
    return bare


def _is_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value.strip())
    except ValueError:
        return False
    return True


def _kind_and_values(values: Sequence[str], zone: str, name: str) -> tuple[str, list[str]]:
    """The record type and the values to write: IP addresses of one family (A or AAAA),
    or exactly one host name (CNAME: DNS allows one target per name, and Route53 refuses
    more). Anything else is refused before any call, naming the record."""
    where = f"{name} in {zone}"
    if not values:
        raise errors.BadRequest(f"{where}: no record values given")
    if all(_is_address(v) for v in values):
        addresses = [ipaddress.ip_address(v.strip()) for v in values]
        versions = {a.version for a in addresses}
        if len(versions) != 1:
            raise errors.BadRequest(f"{where}: give IPv4 or IPv6 values, not a mix")
        return ("AAAA" if versions == {6} else "A"), sorted({str(a) for a in addresses})
    if any(_is_address(v) for v in values):
        raise errors.BadRequest(
            f"{where}: give IP addresses (A/AAAA) or one host name (CNAME), not a mix"
        )
    names = {_hostname(v) for v in values}
    if None in names:
        bad = next(v for v in values if _hostname(v) is None)
        raise errors.BadRequest(
            f"{where}: {bad!r} is neither an IP address nor a valid host name"
        )
    if len(names) != 1:
        raise errors.BadRequest(
            f"{where}: a CNAME points at one host name, got {len(names)}"
            f" ({', '.join(sorted(n for n in names if n))})"
        )
    if relative_name(name, zone) == "":
        raise errors.BadRequest(
            f"{where}: the zone's own name cannot be a CNAME (it holds the zone's SOA and NS"
            " records); use a record name inside the zone"
        )
    return _CNAME, [n for n in names if n]


def _value_of(record: Any) -> str:
    """A record's value in the form ``set_record`` is given it: an IP address in its
    canonical text, a CNAME's target lowercase without the trailing dot."""
    data = str(record.data).strip()
    if str(record.type) == _CNAME:
        return _bare(data)
    return str(ipaddress.ip_address(data))


def _written(kind: str, value: str) -> str:
    """What goes on the wire: a CNAME target fully qualified (the trailing dot), so that
    no DNS service reads it as relative to the zone; addresses as they are."""
    return f"{value}." if kind == _CNAME else value


class LibcloudDns(Part):
    service = "dns"
    # RegionMover may point the record at a load balancer known only by its DNS name
    # (a CNAME); without this it refuses such a spec before building anything.
    accepts_hostnames = True

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
            if str(r.type) in _MANAGED_TYPES
            and relative_name(str(r.name or ""), zone_obj.domain) == wanted
        ]

    @staticmethod
    def _ttl(record: Any) -> int:
        return int(record.ttl or (record.extra or {}).get("ttl") or 0)

    @translated
    def get_record(self, zone: str, name: str) -> DnsRecord | None:
        """The name's A/AAAA addresses or its CNAME target. A name that holds both (which
        Route53 forbids, but other services or a half-done generic switch may show) gives
        every value, so it never compares equal to what Phoenix sets and is repaired."""
        zone_obj = self._zone(zone)
        records = self._records(zone_obj, name)
        if not records:
            return None
        values = tuple(sorted({_value_of(r) for r in records}))
        return DnsRecord(zone=zone, name=name, values=values, ttl=self._ttl(records[0]))

    @translated
    def set_record(self, zone: str, name: str, values: tuple[str, ...], ttl: int) -> None:
        """Point the name at ``values`` (addresses or one host name); nothing changes when
        it already points there with that TTL and holds no record of another type."""
        kind, wanted = _kind_and_values(values, zone, name)
        zone_obj = self._zone(zone)
        existing = self._records(zone_obj, name)
        current = sorted({_value_of(r) for r in existing if str(r.type) == kind})
        same_type_only = all(str(r.type) == kind for r in existing)
        if current == wanted and same_type_only and all(self._ttl(r) == ttl for r in existing):
            return
        dns_quirks(self._driver).replace(
            self._driver, zone_obj, relative_name(name, zone_obj.domain), kind,
            [_written(kind, v) for v in wanted], ttl, existing,
        )
