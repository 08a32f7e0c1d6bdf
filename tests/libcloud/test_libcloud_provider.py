"""The libcloud provider against moto, beyond the shared contract suite: listings larger
than one page, Route53 record switches checked on moto's side with boto3, and member
changes batched into one ELB request each way."""

from __future__ import annotations

import dataclasses
import re
import time
from typing import Any

import pytest

from phoenix import request_tally
from phoenix.clock import SystemClock
from phoenix.model import MemberAction, MemberChange, MemberState, NodeRequest
from phoenix.providers.base import MemberBatcher, Provider
from phoenix.providers.libcloud import open_libcloud_provider
from phoenix.providers.libcloud.quirks import Ec2ComputeQuirks
from phoenix.spec import Spec
from tests.libcloud import shims
from tests.libcloud.moto_server import REGION, MotoServer

ZONE = "shop.example."


@pytest.fixture
def provider(moto: MotoServer) -> Any:
    moto.reset()
    spec = Spec.model_validate({
        "app": "shop",
        "provider": {"name": "libcloud", "options": moto.provider_options()},
        "regions": [REGION],
        "image": {"name": "golden"},
        "flavor": "t2.micro",
        "count": 1,
        "template": "t.j2",
        "health": {"mode": "provider"},
        "load_balancer": {"pool": "web", "member_port": 8080},
        "dns": {"zone": ZONE, "record": "www"},
    })
    shims.apply(endpoint=moto.endpoint)
    try:
        yield open_libcloud_provider(spec, clock=SystemClock(), environ=moto.environ())
    finally:
        shims.remove()


def test_list_nodes_pages_beyond_one_page(
    provider: Provider, moto: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EC2 answers at most MaxResults reservations per DescribeInstances (moto at most 100
    without it): 130 single-instance reservations of the app, plus 5 of another app, all
    come back, in pages of 50."""
    monkeypatch.setattr(Ec2ComputeQuirks, "page_size", 50)
    ec2 = moto.client("ec2", REGION)
    image = ec2.describe_images()["Images"][0]["ImageId"]

    def launch(app: str, count: int) -> None:
        for index in range(count):  # one reservation each: the worst case for paging
            ec2.run_instances(
                ImageId=image, InstanceType="t2.micro", MinCount=1, MaxCount=1,
                TagSpecifications=[{"ResourceType": "instance", "Tags": [
                    {"Key": "phoenix:app", "Value": app},
                    {"Key": "Name", "Value": f"{app}-r1-{index}"},
                    {"Key": "phoenix:index", "Value": str(index)},
                ]}],
            )

    launch("shop", 130)
    launch("other", 5)
    nodes = provider.compute.list_nodes(REGION, "shop")
    assert len(nodes) == 130
    assert sorted(n.index for n in nodes) == list(range(130))
    assert {n.app for n in nodes} == {"shop"}
    # Terminated instances linger in EC2's listings for a while: they are not nodes.
    victim = nodes[0]
    provider.compute.delete_node(REGION, victim.id)
    assert victim.id not in {n.id for n in provider.compute.list_nodes(REGION, "shop")}


def _rrsets(moto: MotoServer, name: str) -> list[tuple[str, int, list[str]]]:
    route53 = moto.client("route53")
    (zone,) = [z for z in route53.list_hosted_zones()["HostedZones"] if z["Name"] == ZONE]
    return sorted(
        (r["Type"], int(r["TTL"]), sorted(v["Value"] for v in r["ResourceRecords"]))
        for r in route53.list_resource_record_sets(HostedZoneId=zone["Id"])[
            "ResourceRecordSets"]
        if r["Name"] == name and r["Type"] in ("A", "AAAA")
    )


def test_route53_record_switch_is_one_rrset_each_time(
    provider: Provider, moto: MotoServer
) -> None:
    moto.client("route53").create_hosted_zone(Name=ZONE, CallerReference="switch")
    dns = provider.dns
    assert dns is not None
    fqdn = "www.shop.example."
    assert dns.get_record(ZONE, "www") is None

    dns.set_record(ZONE, "www", ("192.0.2.10",), 60)  # region A serves
    assert _rrsets(moto, fqdn) == [("A", 60, ["192.0.2.10"])]

    dns.set_record(ZONE, "www", ("198.51.100.7", "198.51.100.8"), 30)  # switch to region B
    assert _rrsets(moto, fqdn) == [("A", 30, ["198.51.100.7", "198.51.100.8"])]
    record = dns.get_record(ZONE, "www.shop.example.")
    assert record is not None and record.values == ("198.51.100.7", "198.51.100.8")

    dns.set_record(ZONE, "www", ("2001:db8::7",), 30)  # A -> AAAA in one change batch
    assert _rrsets(moto, fqdn) == [("AAAA", 30, ["2001:db8::7"])]


def test_a_batch_of_member_changes_is_one_elb_request_each_way(
    provider: Provider, moto: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 15: ELB takes a list of instances; a poll that adds three members and drains
    two makes one RegisterInstancesWithLoadBalancer and one Deregister..., where libcloud
    alone sends one request per instance."""
    moto.client("elb", REGION).create_load_balancer(
        LoadBalancerName="web",
        Listeners=[{"Protocol": "HTTP", "LoadBalancerPort": 80, "InstancePort": 8080}],
        AvailabilityZones=[f"{REGION}a"],
    )
    ec2 = moto.client("ec2", REGION)
    image = ec2.describe_images()["Images"][0]["ImageId"]
    names = [f"shop-r{1 + i // 3}-{i % 3}" for i in range(5)]  # r1-0..2, r2-0..1
    for name in names:
        ec2.run_instances(ImageId=image, InstanceType="t2.micro", MinCount=1, MaxCount=1,
                          TagSpecifications=[{"ResourceType": "instance", "Tags": [
                              {"Key": "phoenix:app", "Value": "shop"},
                              {"Key": "Name", "Value": name}]}])
    lb = provider.load_balancer
    assert isinstance(lb, MemberBatcher)
    old, new = names[:3], names[3:]
    lb.change_members(REGION, "web", [MemberChange(MemberAction.ADD, n, "", 8080) for n in old])

    from libcloud.loadbalancer.drivers.elb import ElasticLBDriver

    actions: list[str] = []
    original = ElasticLBDriver.connectionCls.request

    def counting(self: Any, action: str, params: Any = None, *args: Any, **kwargs: Any) -> Any:
        actions.append(str((params or {}).get("Action")))
        return original(self, action, params, *args, **kwargs)

    monkeypatch.setattr(ElasticLBDriver.connectionCls, "request", counting)
    lb.change_members(REGION, "web",
                      [MemberChange(MemberAction.ADD, n, "", 8080) for n in new]
                      + [MemberChange(MemberAction.DRAIN, n) for n in old[:2]]
                      + [MemberChange(MemberAction.REMOVE, old[2])])

    writes = [a for a in actions if a.startswith(("Register", "Deregister"))]
    assert writes == ["RegisterInstancesWithLoadBalancer",
                      "DeregisterInstancesFromLoadBalancer"], actions
    states = {m.name: m.state for m in lb.list_members(REGION, "web")}
    assert states == {**dict.fromkeys(new, MemberState.SERVING),
                      **dict.fromkeys(old[:2], MemberState.DRAINING)}


_SERVED = re.compile(r'"[A-Z]+ \S+ HTTP/1\.[01]" \d{3}')
_COLOUR = re.compile(r"\x1b\[[0-9;]*m")  # werkzeug colours lines of non-200 answers


def _served(moto: MotoServer) -> int:
    """Requests moto's server has answered so far (it logs one line for each)."""
    log = _COLOUR.sub("", moto.log_path.read_text(errors="replace"))
    return len(_SERVED.findall(log))


def _served_after(moto: MotoServer, at_least: int, wait: float = 3.0) -> int:
    """The served count once the log has caught up (a line is written after the answer)."""
    deadline = time.monotonic() + wait
    while _served(moto) < at_least and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)
    return _served(moto)


def test_the_request_tally_counts_what_aws_served_by_service(
    provider: Provider, moto: MotoServer
) -> None:
    """Issue 15: the provider counts its API requests at libcloud's connection, so the
    deploy result, history and metrics report what the cloud served: here equal to the
    requests moto logged, split by service."""
    moto.client("elb", REGION).create_load_balancer(
        LoadBalancerName="web",
        Listeners=[{"Protocol": "HTTP", "LoadBalancerPort": 80, "InstancePort": 8080}],
        AvailabilityZones=[f"{REGION}a"],
    )
    moto.client("route53").create_hosted_zone(Name=ZONE, CallerReference="tally")
    assert provider.requests is not None
    tally_before = provider.requests.snapshot()
    served_before = _served_after(moto, 0)

    provider.compute.list_nodes(REGION, "shop")
    provider.load_balancer.list_members(REGION, "web")
    provider.store.put("apps/shop/probe.json", b"{}")
    provider.store.get("apps/shop/probe.json")
    provider.store.list("apps/shop/")
    assert provider.dns is not None
    provider.dns.get_record(ZONE, "www")

    counted = request_tally.since(tally_before, provider.requests.snapshot())
    assert set(counted) == {"compute", "load_balancer", "store", "dns"}
    assert _served_after(moto, served_before + sum(counted.values())) - served_before == sum(
        counted.values())


def test_creates_send_no_listing_but_a_retry_finds_its_server(
    provider: Provider, moto: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 15: the engine asks for a name only after its listing showed none, so a
    create lists nothing (it listed the app's servers and the sizes each time: O(n^2) a
    deploy); only a repeated create of a name, a retry after a lost answer, looks it up."""
    from libcloud.compute.drivers.ec2 import EC2NodeDriver

    ec2 = moto.client("ec2", REGION)
    image = ec2.describe_images()["Images"][0]["ImageId"]
    actions: list[str] = []
    original = EC2NodeDriver.connectionCls.request

    def counting(self: Any, action: str, params: Any = None, *args: Any, **kwargs: Any) -> Any:
        actions.append(str((params or {}).get("Action")))
        return original(self, action, params, *args, **kwargs)

    monkeypatch.setattr(EC2NodeDriver.connectionCls, "request", counting)
    compute = provider.compute
    request = NodeRequest(name="shop-r1-0", image_id=image, flavor="t2.micro", user_data="",
                          network=None,
                          metadata={"phoenix:app": "shop", "phoenix:release": "r1",
                                    "phoenix:index": "0"})
    first = compute.create_node(REGION, request)
    for index in (1, 2):
        compute.create_node(REGION, dataclasses.replace(request, name=f"shop-r1-{index}"))
    assert "DescribeInstances" not in actions, actions
    assert actions.count("RunInstances") == 3
    assert sum(a.startswith("DescribeInstanceTypes") for a in actions) <= 1, actions

    again = compute.create_node(REGION, request)
    assert again.id == first.id
    assert actions.count("RunInstances") == 3
    assert len(compute.list_nodes(REGION, "shop")) == 3


def test_delete_image_deregisters_the_ami_and_ignores_a_missing_one(
    provider: Provider, moto: MotoServer
) -> None:
    """``image prune`` on libcloud: EC2 deregisters the AMI; a second delete (a rerun)
    and an id EC2 never had are not errors (EC2 answers their lookup with an error)."""
    from phoenix.providers.base import ImageDeleter, ImageQuery

    ec2 = moto.client("ec2", REGION)
    base = ec2.describe_images()["Images"][0]["ImageId"]
    instance = ec2.run_instances(ImageId=base, InstanceType="t2.micro", MinCount=1,
                                 MaxCount=1)["Instances"][0]["InstanceId"]
    made = ec2.create_image(InstanceId=instance, Name="golden-old")["ImageId"]
    compute = provider.compute
    assert isinstance(compute, ImageDeleter)
    assert [i.id for i in compute.find_images(REGION, ImageQuery(id=made))] == [made]

    compute.delete_image(REGION, made)
    assert ec2.describe_images(Filters=[{"Name": "image-id", "Values": [made]}])["Images"] == []
    compute.delete_image(REGION, made)  # again: nothing to do
    compute.delete_image(REGION, "ami-12345678")  # never existed
    assert ec2.describe_images(ImageIds=[base])["Images"]  # the others stay
