"""What particular libcloud drivers do differently from libcloud's generic API.

Everything driver-specific lives here, so the adapters (compute, balancer, dns, store)
speak only libcloud's generic API plus these few hooks:

* ``ComputeQuirks``: how tags and user data are given at creation, how a listing by tag is
  asked for and paged, how tags are read back and changed.
* ``DnsQuirks``: how a record with several values is written in one atomic change, and
  how a switch of record type (A/AAAA <-> CNAME) replaces the old type.
* ``StorageQuirks``: how a small object is written in one request with its headers.
* ``BalancerQuirks``: how many instances are registered or deregistered at once.

The EC2 and Route53 hooks use libcloud internals (the driver's signed ``connection``, its
XML parsers) where the generic API falls short: EC2's ``list_nodes`` neither pages nor
hides terminated instances, and Route53's generic update deletes then creates.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from phoenix import errors

TERMINATED_STATES = ("terminated",)


class ComputeQuirks:
    """Generic libcloud: tags as ``ex_metadata``, listing everything and filtering here."""

    def create_kwargs(
        self, driver: Any, *, user_data: str, tags: Mapping[str, str]
    ) -> dict[str, Any]:
        accepted = inspect.signature(driver.create_node).parameters
        kwargs: dict[str, Any] = {}
        for name, value in (("ex_userdata", user_data), ("ex_metadata", dict(tags))):
            if name not in accepted:
                raise errors.InputError(
                    f"provider.options.compute.driver: {type(driver).__name__} takes no"
                    f" {name} at creation; Phoenix needs user data and tags on a new server"
                )
            kwargs[name] = value
        return kwargs

    def tags_of(self, node: Any) -> dict[str, str]:
        extra = getattr(node, "extra", None) or {}
        raw = extra.get("tags") or extra.get("metadata") or {}
        return {str(k): str(v) for k, v in dict(raw).items()}

    def list_tagged(self, driver: Any, key: str, value: str) -> list[Any]:
        return [n for n in driver.list_nodes() if self.tags_of(n).get(key) == value]

    def list_by_ids(self, driver: Any, ids: Sequence[str]) -> list[Any]:
        wanted = set(ids)
        return [n for n in driver.list_nodes() if str(n.id) in wanted]

    def list_images(
        self, driver: Any, *, image_id: str | None, name: str | None,
        properties: Mapping[str, str],
    ) -> list[Any]:
        """Candidates (the caller filters exactly); generic drivers list everything."""
        return list(driver.list_images())

    def set_tags(self, driver: Any, node: Any, tags: Mapping[str, str]) -> None:
        setter = getattr(driver, "ex_set_metadata", None) or getattr(
            driver, "ex_create_tags", None
        )
        if setter is None:
            raise errors.InputError(
                f"provider.options.compute.driver: {type(driver).__name__} cannot change a"
                " server's tags or metadata, which Phoenix records its progress in"
            )
        setter(node, dict(tags))

    def delete_tags(self, driver: Any, node: Any, keys: Sequence[str]) -> None:
        deleter = getattr(driver, "ex_delete_tags", None)
        if deleter is not None:
            deleter(node, {k: "" for k in keys})
        else:
            self.set_tags(driver, node, {k: "" for k in keys})


class Ec2ComputeQuirks(ComputeQuirks):
    """EC2 (and EC2-compatible clouds): server-side tag filters and NextToken paging."""

    page_size = 500  # DescribeInstances allows 5..1000 with filters

    def create_kwargs(
        self, driver: Any, *, user_data: str, tags: Mapping[str, str]
    ) -> dict[str, Any]:
        # Tags given at creation (TagSpecification via ex_metadata): no window in which a
        # new instance exists untagged, and so cannot be found by a listing by tag.
        return {"ex_userdata": user_data, "ex_metadata": dict(tags)}

    def tags_of(self, node: Any) -> dict[str, str]:
        return {str(k): str(v) for k, v in (node.extra.get("tags") or {}).items()}

    def _describe(self, driver: Any, params: dict[str, str]) -> list[Any]:
        from libcloud.compute.drivers.ec2 import NAMESPACE
        from libcloud.utils import xml

        findall: Any = xml.findall
        findtext: Any = xml.findtext

        nodes: list[Any] = []
        token: str | None = None
        while True:
            page = dict(params, Action="DescribeInstances")
            if token:
                page["NextToken"] = token
            body = driver.connection.request(driver.path, params=page).object
            for reservation in findall(element=body, xpath="reservationSet/item",
                                       namespace=NAMESPACE):
                nodes += driver._to_nodes(reservation, "instancesSet/item")
            token = findtext(element=body, xpath="nextToken", namespace=NAMESPACE)
            if not token:
                return [n for n in nodes if n.extra.get("status") not in TERMINATED_STATES]

    def list_tagged(self, driver: Any, key: str, value: str) -> list[Any]:
        params = {"MaxResults": str(self.page_size)}
        params.update(driver._build_filters({
            f"tag:{key}": value,
            "instance-state-name": ["pending", "running", "shutting-down", "stopping",
                                    "stopped"],
        }))
        return self._describe(driver, params)

    def list_by_ids(self, driver: Any, ids: Sequence[str]) -> list[Any]:
        if not ids:
            return []
        params = driver._pathlist("InstanceId", list(ids))
        return self._describe(driver, params)

    def list_images(
        self, driver: Any, *, image_id: str | None, name: str | None,
        properties: Mapping[str, str],
    ) -> list[Any]:
        # EC2 lists every public AMI without filters: ask for exactly what the spec names.
        if image_id is not None:
            return list(driver.list_images(ex_image_ids=[image_id]))
        filters: dict[str, str] = {f"tag:{k}": v for k, v in properties.items()}
        if name is not None:
            filters["name"] = name
        return list(driver.list_images(ex_filters=filters))

    def set_tags(self, driver: Any, node: Any, tags: Mapping[str, str]) -> None:
        driver.ex_create_tags(node, dict(tags))

    def delete_tags(self, driver: Any, node: Any, keys: Sequence[str]) -> None:
        # DeleteTags with a value deletes the tag only when the value matches, and ""
        # means "only if empty": send the current values.
        current = self.tags_of(node)
        present = {k: current[k] for k in keys if k in current}
        if present:
            driver.ex_delete_tags(node, present)


def compute_quirks(driver: Any) -> ComputeQuirks:
    from libcloud.compute.drivers.ec2 import BaseEC2NodeDriver

    return Ec2ComputeQuirks() if isinstance(driver, BaseEC2NodeDriver) else ComputeQuirks()


class DnsQuirks:
    """Generic libcloud: one record per value; an update deletes then creates."""

    def replace(self, driver: Any, zone: Any, name: str, kind: str, values: Sequence[str],
                ttl: int, existing: Sequence[Any]) -> None:
        for record in existing:
            driver.delete_record(record)
        for value in values:
            driver.create_record(name, zone, kind, value, extra={"ttl": ttl})


class Route53DnsQuirks(DnsQuirks):
    """Route53: one UPSERT change with every value, so the name never resolves to nothing
    (libcloud's update deletes, then creates); a switch of type (A <-> AAAA, A/AAAA <->
    CNAME) deletes the old type in the same atomic change batch.

    The DELETEs come first in the batch, as in AWS's own example of replacing a CNAME: a
    batch is applied in order, all or nothing, and a CNAME may not be created beside
    another record of its name (nor an A beside a CNAME). A DELETE must repeat the record
    set exactly (TTL and every value as stored), hence the values as listed, not as
    Phoenix would write them."""

    def replace(self, driver: Any, zone: Any, name: str, kind: str, values: Sequence[str],
                ttl: int, existing: Sequence[Any]) -> None:
        import xml.etree.ElementTree as ET

        from libcloud.dns.drivers.route53 import API_ROOT, NAMESPACE

        fqdn = f"{name}.{zone.domain}" if name else zone.domain
        request = ET.Element("ChangeResourceRecordSetsRequest", {"xmlns": NAMESPACE})
        changes = ET.SubElement(ET.SubElement(request, "ChangeBatch"), "Changes")

        def change(action: str, rtype: str, rttl: int, rvalues: Sequence[str]) -> None:
            item = ET.SubElement(changes, "Change")
            ET.SubElement(item, "Action").text = action
            rrs = ET.SubElement(item, "ResourceRecordSet")
            ET.SubElement(rrs, "Name").text = fqdn
            ET.SubElement(rrs, "Type").text = rtype
            ET.SubElement(rrs, "TTL").text = str(rttl)
            records = ET.SubElement(rrs, "ResourceRecords")
            for value in rvalues:
                ET.SubElement(ET.SubElement(records, "ResourceRecord"), "Value").text = value

        stale: dict[str, tuple[int, list[str]]] = {}
        for record in existing:
            rtype = str(record.type)
            if rtype != kind:
                old_ttl = int(record.ttl or (record.extra or {}).get("ttl") or ttl)
                stale.setdefault(rtype, (old_ttl, []))[1].append(str(record.data))
        for rtype, (old_ttl, old_values) in stale.items():
            change("DELETE", rtype, old_ttl, old_values)
        change("UPSERT", kind, ttl, values)
        driver.connection.set_context({"zone_id": zone.id})
        driver.connection.request(
            f"{API_ROOT}hostedzone/{zone.id}/rrset", method="POST", data=ET.tostring(request)
        )


def dns_quirks(driver: Any) -> DnsQuirks:
    from libcloud.dns.drivers.route53 import Route53DNSDriver

    return Route53DnsQuirks() if isinstance(driver, Route53DNSDriver) else DnsQuirks()


class StorageQuirks:
    """Generic libcloud: ``upload_object_via_stream`` with the headers given."""

    def upload(self, driver: Any, container: Any, key: str, data: bytes,
               headers: Mapping[str, str]) -> None:
        driver.upload_object_via_stream(iter([data]), container, key, headers=dict(headers))


class S3StorageQuirks(StorageQuirks):
    """S3: libcloud streams through a multipart upload, whose first request drops the
    headers that matter at the end (``If-None-Match`` is checked on completion): small
    objects go in one PUT instead."""

    def upload(self, driver: Any, container: Any, key: str, data: bytes,
               headers: Mapping[str, str]) -> None:
        driver._put_object(container=container, object_name=key, stream=iter([data]),
                           verify_hash=False, headers=dict(headers))


def storage_quirks(driver: Any) -> StorageQuirks:
    from libcloud.storage.drivers.s3 import BaseS3StorageDriver

    return S3StorageQuirks() if isinstance(driver, BaseS3StorageDriver) else StorageQuirks()


class BalancerQuirks:
    """Generic libcloud: one attach or detach call per member."""

    def register(self, driver: Any, balancer: Any, nodes: Sequence[Any]) -> None:
        for node in nodes:
            driver.balancer_attach_compute_node(balancer, node)

    def deregister(self, driver: Any, balancer: Any, members: Sequence[Any]) -> None:
        for member in members:
            driver.balancer_detach_member(balancer, member)


class ElbBalancerQuirks(BalancerQuirks):
    """Classic ELB: ``RegisterInstancesWithLoadBalancer`` and its opposite take a list of
    instances, so a poll's changes are one request each way (libcloud sends one
    instance per request)."""

    def register(self, driver: Any, balancer: Any, nodes: Sequence[Any]) -> None:
        self._instances(driver, balancer, "RegisterInstancesWithLoadBalancer",
                        [str(n.id) for n in nodes])

    def deregister(self, driver: Any, balancer: Any, members: Sequence[Any]) -> None:
        self._instances(driver, balancer, "DeregisterInstancesFromLoadBalancer",
                        [str(m.id) for m in members])

    def _instances(self, driver: Any, balancer: Any, action: str, ids: Sequence[str]) -> None:
        from libcloud.loadbalancer.drivers.elb import ROOT

        if not ids:
            return
        params = {"Action": action, "LoadBalancerName": balancer.id}
        for number, instance in enumerate(ids, start=1):
            params[f"Instances.member.{number}.InstanceId"] = instance
        driver.connection.request(ROOT, params=params)


def balancer_quirks(driver: Any) -> BalancerQuirks:
    from libcloud.loadbalancer.drivers.elb import ElasticLBDriver

    return ElbBalancerQuirks() if isinstance(driver, ElasticLBDriver) else BalancerQuirks()
