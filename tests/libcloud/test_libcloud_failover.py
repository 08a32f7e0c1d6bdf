"""Region failover on AWS through the libcloud provider, against moto's server: EC2 and a
classic ELB in two regions, the app's name in Route53 as a CNAME to the serving region's
ELB (an ELB is known by its DNS name, not by an IP address).

The CLI runs in a real subprocess (``phoenix_cli.py``: Phoenix's CLI with the test-only
moto shims), as a user runs it; every assertion reads moto's side with boto3, independently
of libcloud: the record sets of the name, instances per region, ELB registrations.

moto's instances have addresses nothing answers on, so health is ``mode: provider`` (trust
the instance state), which also leaves out the gate's HTTP check of the ELB itself (an
ELB's DNS name in moto resolves nowhere).

moto has no way to make EC2 short of capacity, so the region-level failure is injected on
the client side (``_no_capacity``): RunInstances in one region raises what libcloud raises
for AWS's ``InsufficientInstanceCapacity``. Nothing about Route53 or ELB is faked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from phoenix import errors
from phoenix.clock import SystemClock
from phoenix.providers.libcloud import open_libcloud_provider
from phoenix.spec import Spec
from tests.libcloud import shims
from tests.libcloud.moto_server import SECRET_KEY, MotoServer

REPO = Path(__file__).resolve().parents[2]
EAST, WEST = "us-east-1", "us-west-2"
POOL = "web-pool"
BUCKET = "phoenix-failover"
ZONE = "shop.example."
FQDN = f"web.{ZONE}"
APP = "shop"
NO_CAPACITY_ENV = "PHOENIX_TEST_NO_CAPACITY_IN"
# One of the AMIs moto loads into every region, with the same id in each (moto differs
# from AWS here: AWS's AMI ids are per region; test_failover_with_a_golden_ami_per_region
# covers that case with a golden AMI registered in each region).
SHARED_IMAGE = "ubuntu/images/hvm-ssd/ubuntu-xenial-16.04-amd64-server-20170721"


def _no_capacity() -> None:
    """Run Phoenix's CLI (with the moto shims) where EC2 has no capacity in the regions
    named by ``$PHOENIX_TEST_NO_CAPACITY_IN``: a test-only fault, not a moto mismatch, so
    it lives here rather than in ``shims.py``. It raises what libcloud 3.9.1 raises for an
    EC2 error response (``Exception("Code: message")``, from ``EC2Response.parse_error``)
    before the request leaves, so no instance is created in that region."""
    from libcloud.compute.drivers.ec2 import EC2Connection

    from tests.libcloud import phoenix_cli

    regions = set(os.environ.get(NO_CAPACITY_ENV, "").split(","))
    request: Any = EC2Connection.request

    def short_of_capacity(self: Any, action: str, params: Any = None, *args: Any,
                          **kwargs: Any) -> Any:
        if (params or {}).get("Action") == "RunInstances" and \
                getattr(self.driver, "region_name", None) in regions:
            raise Exception(
                "InsufficientInstanceCapacity: We currently do not have sufficient t2.micro"
                " capacity in the Availability Zone you requested (injected by the test)"
            )
        return request(self, action, params, *args, **kwargs)

    EC2Connection.request = short_of_capacity  # type: ignore[method-assign]
    phoenix_cli.main()


class Regions:
    """The app's two regions on moto, the spec, the CLI, and moto's view with boto3."""

    def __init__(self, moto: MotoServer, tmp: Path, image: str = SHARED_IMAGE) -> None:
        self.moto, self.tmp = moto, tmp
        (tmp / "t.yaml.j2").write_text("#cloud-config\nwrite_files: []\n")
        route53 = moto.client("route53")
        self.zone_id = str(route53.create_hosted_zone(
            Name=ZONE, CallerReference="failover")["HostedZone"]["Id"])
        self.elb_dns: dict[str, str] = {}
        self.golden: dict[str, str] = {}
        for region in (EAST, WEST):
            ec2 = moto.client("ec2", region)
            # A golden image of our own in each region: on AWS (and here) each copy has
            # its own id.
            self.golden[region] = str(ec2.copy_image(
                Name="golden", SourceImageId=ec2.describe_images(
                    Filters=[{"Name": "name", "Values": [SHARED_IMAGE]}])["Images"][0]["ImageId"],
                SourceRegion=region)["ImageId"])
            self.elb_dns[region] = str(moto.client("elb", region).create_load_balancer(
                LoadBalancerName=POOL,
                Listeners=[{"Protocol": "HTTP", "LoadBalancerPort": 80,
                            "InstancePort": 8080}],
                AvailabilityZones=[f"{region}a"],
            )["DNSName"]).lower()
        spec: dict[str, Any] = {
            "app": APP,
            "provider": {"name": "libcloud",
                         "options": moto.provider_options(container=BUCKET)},
            "regions": [EAST, WEST],
            "image": {"name": image},
            "flavor": "t2.micro",
            "count": 2,
            "template": "t.yaml.j2",
            "health": {"mode": "provider", "interval": "1s", "timeout": "0.5s",
                       "healthy_threshold": 1, "deadline": "60s"},
            "rollout": {"strategy": "blue-green", "deadline": "5m", "drain_timeout": "1s"},
            "load_balancer": {"pool": POOL, "member_port": 8080},
            "dns": {"zone": ZONE, "record": "web", "ttl": 1},
        }
        self.spec = spec
        (tmp / "phoenix.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))

    def phoenix(self, *args: str, no_capacity_in: str = "") -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **self.moto.environ()}
        if no_capacity_in:
            command = [sys.executable, "-c",
                       "from tests.libcloud.test_libcloud_failover import _no_capacity;"
                       " _no_capacity()"]
            env.update({NO_CAPACITY_ENV: no_capacity_in,
                        "PYTHONPATH": os.pathsep.join(filter(None, [
                            str(REPO), os.environ.get("PYTHONPATH")]))})
        else:
            command = [sys.executable, str(REPO / "tests" / "libcloud" / "phoenix_cli.py")]
        done = subprocess.run(
            [*command, "--output", "json", *args, "phoenix.yaml"],
            cwd=self.tmp, capture_output=True, text=True, timeout=120, check=False, env=env,
        )
        assert SECRET_KEY not in done.stdout + done.stderr
        return done

    def rrsets(self) -> list[tuple[str, int, list[str]]]:
        """Every record set of the app's name: (type, TTL, values)."""
        listed = self.moto.client("route53").list_resource_record_sets(
            HostedZoneId=self.zone_id)["ResourceRecordSets"]
        return [(r["Type"], int(r["TTL"]), [v["Value"] for v in r["ResourceRecords"]])
                for r in listed if r["Name"] == FQDN]

    def cname_target(self) -> str:
        (rrset,) = self.rrsets()  # exactly one record set for the name
        kind, ttl, (target,) = rrset
        assert (kind, ttl) == ("CNAME", 1)
        return target.rstrip(".").lower()

    def instances(self, region: str, states: tuple[str, ...] = ("pending", "running")
                  ) -> set[str]:
        found: set[str] = set()
        pages = self.moto.client("ec2", region).get_paginator("describe_instances").paginate(
            Filters=[{"Name": "tag:phoenix:app", "Values": [APP]},
                     {"Name": "instance-state-name", "Values": list(states)}])
        for page in pages:
            for reservation in page["Reservations"]:
                found |= {i["InstanceId"] for i in reservation["Instances"]}
        return found

    def registered(self, region: str) -> set[str]:
        (lb,) = self.moto.client("elb", region).describe_load_balancers(
            LoadBalancerNames=[POOL])["LoadBalancerDescriptions"]
        return {i["InstanceId"] for i in lb["Instances"]}

    def status(self) -> dict[str, Any]:
        shown = self.phoenix("status")
        assert shown.returncode == 0, shown.stderr[-3000:]
        result: dict[str, Any] = json.loads(shown.stdout)
        return result


@pytest.fixture
def regions(moto: MotoServer, tmp_path: Path) -> Regions:
    moto.reset()
    return Regions(moto, tmp_path)


def test_failover_with_a_golden_ami_per_region(moto: MotoServer, tmp_path: Path) -> None:
    """AMI ids are per region: a golden AMI copied to each region has a different id in
    each, and a failover builds from the copy in the region it moves to."""
    moto.reset()
    regions = Regions(moto, tmp_path, image="golden")
    deployed = regions.phoenix("deploy")
    assert deployed.returncode == 0, deployed.stderr[-3000:]
    moved = regions.phoenix("failover", "--to", WEST, "--yes")
    try:
        assert moved.returncode == 0, moved.stderr[-3000:]
        _serving_in(regions, WEST)
    finally:
        regions.phoenix("destroy", "--yes", "--purge-records")


def _serving_in(regions: Regions, region: str) -> set[str]:
    """The app serves from ``region`` only: the CNAME, the nodes, the pool registrations."""
    assert regions.cname_target() == regions.elb_dns[region]
    live = regions.instances(region)
    assert len(live) == 2
    assert regions.registered(region) == live
    other = WEST if region == EAST else EAST
    assert regions.instances(other) == set()
    assert regions.registered(other) == set()
    return live


def test_deploy_failover_and_failback_move_the_cname_between_regions(
    regions: Regions,
) -> None:
    deployed = regions.phoenix("deploy")
    assert deployed.returncode == 0, deployed.stderr[-3000:]
    result = json.loads(deployed.stdout)
    assert result["dns"] == regions.elb_dns[EAST]
    assert [(a["region"], a["outcome"]) for a in result["attempts"]] == [(EAST, "succeeded")]
    east = _serving_in(regions, EAST)

    moved = regions.phoenix("failover", "--to", WEST, "--yes")
    assert moved.returncode == 0, moved.stderr[-3000:]
    result = json.loads(moved.stdout)
    assert result["dns"] == regions.elb_dns[WEST]
    assert result["region"] == WEST
    _serving_in(regions, WEST)
    # us-east-1 was retired once the TTL had passed: its instances are terminated.
    assert regions.instances(EAST, ("terminated", "shutting-down")) == east
    status = regions.status()
    assert status["serving_region"] == WEST

    back = regions.phoenix("failback", "--yes")
    assert back.returncode == 0, back.stderr[-3000:]
    assert json.loads(back.stdout)["dns"] == regions.elb_dns[EAST]
    _serving_in(regions, EAST)
    assert regions.status()["serving_region"] == EAST

    # The same deploy again: the CNAME is already right, nothing is written.
    again = regions.phoenix("deploy")
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout)["outcome"] == "unchanged"
    _serving_in(regions, EAST)

    gone = regions.phoenix("destroy", "--yes", "--purge-records")
    assert gone.returncode == 0, gone.stderr[-3000:]
    assert regions.instances(EAST) == regions.instances(WEST) == set()


def test_a_region_without_capacity_fails_over_to_the_next(regions: Regions) -> None:
    deployed = regions.phoenix("deploy", no_capacity_in=EAST)
    assert deployed.returncode == 0, deployed.stderr[-3000:]
    result = json.loads(deployed.stdout)
    attempts = [(a["region"], a["outcome"]) for a in result["attempts"]]
    assert attempts == [(EAST, "failed"), (WEST, "succeeded")]
    assert "InsufficientInstanceCapacity" in result["attempts"][0]["reason"]
    assert result["dns"] == regions.elb_dns[WEST]
    _serving_in(regions, WEST)
    assert regions.instances(EAST, ("pending", "running", "terminated")) == set()

    # With capacity back, a failback moves the serving release home.
    back = regions.phoenix("failback", "--yes")
    assert back.returncode == 0, back.stderr[-3000:]
    _serving_in(regions, EAST)

    gone = regions.phoenix("destroy", "--yes", "--purge-records")
    assert gone.returncode == 0, gone.stderr[-3000:]


# --- the DNS adapter on moto's Route53: A/AAAA <-> CNAME switches --------------------------


@pytest.fixture
def provider(moto: MotoServer, tmp_path: Path) -> Any:
    moto.reset()
    spec = Spec.model_validate({
        "app": APP,
        "provider": {"name": "libcloud", "options": moto.provider_options()},
        "regions": [EAST],
        "image": {"name": "golden"},
        "flavor": "t2.micro",
        "count": 1,
        "template": "t.j2",
        "health": {"mode": "provider"},
        "load_balancer": {"pool": POOL, "member_port": 8080},
        "dns": {"zone": ZONE, "record": "web"},
    })
    moto.client("route53").create_hosted_zone(Name=ZONE, CallerReference="switch")
    shims.apply(endpoint=moto.endpoint)
    try:
        yield open_libcloud_provider(spec, clock=SystemClock(), environ=moto.environ())
    finally:
        shims.remove()


def _rrsets(moto: MotoServer) -> list[tuple[str, int, list[str]]]:
    route53 = moto.client("route53")
    (zone,) = [z for z in route53.list_hosted_zones()["HostedZones"] if z["Name"] == ZONE]
    return sorted(
        (r["Type"], int(r["TTL"]), sorted(v["Value"] for v in r["ResourceRecords"]))
        for r in route53.list_resource_record_sets(HostedZoneId=zone["Id"])[
            "ResourceRecordSets"]
        if r["Name"] == FQDN
    )


def test_route53_address_and_cname_switches_leave_one_record_set(
    provider: Any, moto: MotoServer
) -> None:
    dns = provider.dns
    east = "web-pool-1.us-east-1.elb.amazonaws.com"
    west = "web-pool-2.us-west-2.elb.amazonaws.com"

    dns.set_record(ZONE, "web", ("192.0.2.10", "192.0.2.11"), 60)
    dns.set_record(ZONE, "web", (east.upper(),), 1)  # A -> CNAME, one change batch
    assert _rrsets(moto) == [("CNAME", 1, [east + "."])]
    record = dns.get_record(ZONE, "web")
    assert record is not None and record.values == (east,) and record.ttl == 1

    dns.set_record(ZONE, "web", (west,), 1)  # CNAME -> CNAME: an UPSERT
    assert _rrsets(moto) == [("CNAME", 1, [west + "."])]

    dns.set_record(ZONE, "web", ("2001:db8::7",), 30)  # CNAME -> AAAA
    assert _rrsets(moto) == [("AAAA", 30, ["2001:db8::7"])]

    dns.set_record(ZONE, "web", (east + ".",), 1)  # AAAA -> CNAME
    assert _rrsets(moto) == [("CNAME", 1, [east + "."])]


def test_route53_setting_the_same_cname_again_sends_no_change(
    provider: Any, moto: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from phoenix.providers.libcloud.quirks import Route53DnsQuirks

    dns = provider.dns
    target = "web-pool-1.us-east-1.elb.amazonaws.com"
    dns.set_record(ZONE, "web", (target,), 1)
    sent: list[str] = []
    monkeypatch.setattr(Route53DnsQuirks, "replace",
                        lambda self, *args: sent.append("change"))
    dns.set_record(ZONE, "web", (target.upper() + ".",), 1)
    assert sent == []
    with pytest.raises(errors.BadRequest, match=r"web in shop\.example\.: give IP addresses"):
        dns.set_record(ZONE, "web", (target, "192.0.2.1"), 1)
    assert _rrsets(moto) == [("CNAME", 1, [target + "."])]
