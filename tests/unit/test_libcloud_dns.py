"""The libcloud DNS adapter without a cloud: which values make an A, AAAA or CNAME record,
what is refused before any call, and what a switch of record type sends (a generic driver:
delete then create; Route53: one change batch, the old type deleted first)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

import pytest

from phoenix import errors
from phoenix.model import DnsRecord
from phoenix.providers.libcloud.dns import LibcloudDns, _kind_and_values
from phoenix.providers.libcloud.quirks import Route53DnsQuirks

ZONE = "example.org."
ELB = "web-123.us-east-1.elb.amazonaws.com"


@dataclass
class FakeRecord:
    name: str
    type: str
    data: str
    ttl: int
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class FakeZone:
    domain: str = ZONE
    id: str = "Z1"


class FakeDriver:
    """A generic libcloud DNS driver (not Route53): one record per value."""

    def __init__(self) -> None:
        self.zone = FakeZone()
        self.records: list[FakeRecord] = []
        self.calls: list[tuple[str, str, str]] = []

    def list_zones(self) -> list[FakeZone]:
        return [self.zone]

    def list_records(self, zone: FakeZone) -> list[FakeRecord]:
        return list(self.records)

    def create_record(self, name: str, zone: FakeZone, type: str, data: str,
                      extra: dict[str, Any]) -> FakeRecord:
        record = FakeRecord(name, type, data, int(extra["ttl"]))
        self.records.append(record)
        self.calls.append(("create", type, data))
        return record

    def delete_record(self, record: FakeRecord) -> bool:
        self.records.remove(record)
        self.calls.append(("delete", record.type, record.data))
        return True


@pytest.mark.parametrize(
    ("values", "kind", "written"),
    [
        (("192.0.2.2", "192.0.2.1"), "A", ["192.0.2.1", "192.0.2.2"]),
        (("2001:DB8::1",), "AAAA", ["2001:db8::1"]),
        ((ELB,), "CNAME", [ELB]),
        (("Web-123.US-East-1.elb.amazonaws.com.",), "CNAME", [ELB]),
        ((ELB, ELB + "."), "CNAME", [ELB]),  # one name, written twice
    ],
)
def test_values_make_one_record_type(values: tuple[str, ...], kind: str,
                                     written: list[str]) -> None:
    assert _kind_and_values(values, ZONE, "web") == (kind, written)


@pytest.mark.parametrize(
    ("values", "why"),
    [
        ((), "no record values"),
        (("192.0.2.1", "2001:db8::1"), "not a mix"),
        ((ELB, "192.0.2.1"), "not a mix"),
        ((ELB, "web-456.us-west-2.elb.amazonaws.com"), "one host name, got 2"),
        (("bad name.example",), "neither an IP address nor a valid host name"),
        (("10.0.0",), "neither an IP address nor a valid host name"),
        (("-web.example",), "neither an IP address nor a valid host name"),
    ],
)
def test_values_refused_before_any_call_name_the_record(values: tuple[str, ...],
                                                        why: str) -> None:
    driver = FakeDriver()
    with pytest.raises(errors.BadRequest, match=why) as refused:
        LibcloudDns(driver).set_record(ZONE, "web", values, 60)
    assert f"web in {ZONE}" in str(refused.value)
    assert driver.calls == []


def test_a_cname_at_the_zone_apex_is_refused() -> None:
    with pytest.raises(errors.BadRequest, match="zone's own name cannot be a CNAME"):
        LibcloudDns(FakeDriver()).set_record(ZONE, ZONE, (ELB,), 60)


def test_the_adapter_says_it_takes_host_names() -> None:
    # RegionMover asks for this before pointing DNS at an ELB known by name.
    assert getattr(LibcloudDns(FakeDriver()), "accepts_hostnames", False) is True


def test_cname_set_get_and_switches_on_a_generic_driver() -> None:
    driver = FakeDriver()
    dns = LibcloudDns(driver)
    dns.set_record(ZONE, "web", ("192.0.2.1",), 60)
    driver.calls.clear()

    dns.set_record(ZONE, "web", (ELB,), 1)  # A -> CNAME: the A goes, the CNAME comes
    assert driver.calls == [("delete", "A", "192.0.2.1"), ("create", "CNAME", ELB + ".")]
    assert dns.get_record(ZONE, "web") == DnsRecord(ZONE, "web", (ELB,), 1)

    driver.calls.clear()
    dns.set_record(ZONE, "web", (ELB.upper() + ".",), 1)  # the same CNAME: no call
    assert driver.calls == []

    dns.set_record(ZONE, "web.example.org", ("2001:db8::5",), 1)  # CNAME -> AAAA
    assert driver.calls == [("delete", "CNAME", ELB + "."), ("create", "AAAA", "2001:db8::5")]
    assert dns.get_record(ZONE, "web") == DnsRecord(ZONE, "web", ("2001:db8::5",), 1)


def test_a_name_holding_a_cname_and_an_address_never_reads_as_either() -> None:
    """Route53 forbids it; elsewhere it is a half-done switch, which the next set repairs."""
    driver = FakeDriver()
    driver.records = [FakeRecord("web", "CNAME", ELB.upper() + ".", 1),
                      FakeRecord("web", "A", "192.0.2.1", 1)]
    dns = LibcloudDns(driver)
    record = dns.get_record(ZONE, "web")
    assert record is not None and record.values == ("192.0.2.1", ELB)
    dns.set_record(ZONE, "web", (ELB,), 1)
    assert [(r.type, r.data) for r in driver.records] == [("CNAME", ELB + ".")]


class FakeConnection:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def set_context(self, context: dict[str, str]) -> None:
        pass

    def request(self, path: str, *, method: str, data: bytes) -> None:
        self.bodies.append(data)


def _changes(body: bytes) -> list[tuple[str, str, str, list[str]]]:
    root = ET.fromstring(body)
    ns = {"r": root.tag.split("}")[0][1:]}
    return [
        (
            change.findtext("r:Action", namespaces=ns) or "",
            change.findtext("r:ResourceRecordSet/r:Type", namespaces=ns) or "",
            change.findtext("r:ResourceRecordSet/r:TTL", namespaces=ns) or "",
            [v.text or "" for v in change.iterfind(
                "r:ResourceRecordSet/r:ResourceRecords/r:ResourceRecord/r:Value", ns)],
        )
        for change in root.iterfind("r:ChangeBatch/r:Changes/r:Change", ns)
    ]


def test_route53_switch_is_one_batch_deleting_the_old_type_first() -> None:
    driver = type("Route53ish", (), {})()
    driver.connection = FakeConnection()
    existing = [FakeRecord("web", "A", "192.0.2.1", 60), FakeRecord("web", "A", "192.0.2.2", 60)]
    Route53DnsQuirks().replace(driver, FakeZone(), "web", "CNAME", [ELB + "."], 1, existing)
    (body,) = driver.connection.bodies
    assert _changes(body) == [
        ("DELETE", "A", "60", ["192.0.2.1", "192.0.2.2"]),  # exactly as stored
        ("UPSERT", "CNAME", "1", [ELB + "."]),
    ]
