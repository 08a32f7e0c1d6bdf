"""`phoenix deploy` from the CLI against moto's AWS (EC2, classic ELB, S3) through the
libcloud provider, in a real subprocess (``phoenix_cli.py``: Phoenix's CLI with the
test-only moto shims applied), as a user runs it: a spec naming libcloud drivers,
credentials from environment variables.

moto's instances have addresses nothing answers on, so health is ``mode: provider``
(trust the instance state). Assertions read moto's state with boto3, independently of
libcloud: instances and their tags and user data, ELB registrations, S3 records.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.libcloud.moto_server import REGION, SECRET_KEY, MotoServer

REPO = Path(__file__).resolve().parents[2]
POOL = "web-pool"
BUCKET = "phoenix-e2e"


class Deployer:
    def __init__(self, moto: MotoServer, tmp: Path, app: str) -> None:
        self.moto, self.tmp, self.app = moto, tmp, app
        self.ec2 = moto.client("ec2", REGION)
        (tmp / "t.yaml.j2").write_text(
            "#cloud-config\nwrite_files:\n  - path: /etc/app\n"
            "    content: '{{ vars.greeting }} {{ release }} {{ index }}'\n"
        )

    def image(self, name: str, source_name: str = "ubuntu/images/hvm-ssd/ubuntu-xenial-*") -> str:
        source = self.ec2.describe_images(
            Filters=[{"Name": "name", "Values": [source_name]}]
        )["Images"][0]
        return str(self.ec2.copy_image(Name=name, SourceImageId=source["ImageId"],
                                       SourceRegion=REGION)["ImageId"])

    def write(self, *, image: str = "golden", greeting: str = "one", count: int = 3,
              strategy: str = "blue-green", deadline: str = "5m",
              rollout: dict[str, Any] | None = None) -> None:
        spec: dict[str, Any] = {
            "app": self.app,
            "provider": {
                "name": "libcloud",
                "options": self.moto.provider_options(container=BUCKET, dns=False),
            },
            "regions": [REGION],
            "image": {"name": image},
            "flavor": "t2.micro",
            "count": count,
            "template": "t.yaml.j2",
            "vars": {"greeting": greeting},
            "health": {"mode": "provider", "interval": "1s", "timeout": "0.5s",
                       "healthy_threshold": 1, "deadline": "60s"},
            "rollout": {"strategy": strategy, "max_surge": 1, "max_unavailable": 0,
                        "deadline": deadline, "drain_timeout": "1s", **(rollout or {})},
            "load_balancer": {"pool": POOL, "member_port": 8080},
        }
        (self.tmp / "phoenix.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))

    def command(self, *args: str, debug: bool = False) -> list[str]:
        logging = ["--log-level", "debug"] if debug else []
        return [sys.executable, str(REPO / "tests" / "libcloud" / "phoenix_cli.py"),
                "--output", "json", *logging, *args, "phoenix.yaml"]

    @property
    def environ(self) -> dict[str, str]:
        return {**os.environ, **self.moto.environ()}

    def phoenix(self, *args: str, debug: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args, debug=debug), cwd=self.tmp, capture_output=True, text=True,
            timeout=300, check=False, env=self.environ,
        )

    def instances(self) -> list[dict[str, Any]]:
        found = []
        for page in self.ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": "tag:phoenix:app", "Values": [self.app]},
                     {"Name": "instance-state-name", "Values": ["pending", "running"]}]
        ):
            for reservation in page["Reservations"]:
                found += reservation["Instances"]
        return found

    def registered(self) -> set[str]:
        elb = self.moto.client("elb", REGION)
        (lb,) = elb.describe_load_balancers(LoadBalancerNames=[POOL])["LoadBalancerDescriptions"]
        return {i["InstanceId"] for i in lb["Instances"]}

    def user_data(self, instance_id: str) -> str:
        raw = self.ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
        return base64.b64decode(raw["UserData"]["Value"]).decode()

    def records(self) -> list[str]:
        s3 = self.moto.client("s3")
        listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"apps/{self.app}/")
        return [o["Key"] for o in listed.get("Contents", [])]


@pytest.fixture
def deployer(moto: MotoServer, tmp_path: Path) -> Deployer:
    moto.reset()
    moto.client("elb", REGION).create_load_balancer(
        LoadBalancerName=POOL,
        Listeners=[{"Protocol": "HTTP", "LoadBalancerPort": 80, "InstancePort": 8080}],
        AvailabilityZones=[f"{REGION}a"],
    )
    return Deployer(moto, tmp_path, "shop")


def _tags(instance: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in instance.get("Tags", [])}


def test_deploy_rolling_forced_rollback_and_destroy_through_the_cli(deployer: Deployer) -> None:
    golden = deployer.image("golden")
    deployer.write()
    first = deployer.phoenix("deploy", debug=True)
    assert first.returncode == 0, first.stderr[-3000:]
    # Every request was logged at debug level; the secret key never was.
    assert "DescribeInstances" in first.stderr
    assert SECRET_KEY not in first.stdout + first.stderr
    r1 = json.loads(first.stdout)["release"]
    # Its API requests, counted at libcloud's connection, by service (issue 15).
    requests = json.loads(first.stdout)["provider_requests"]
    assert {"compute", "load_balancer", "store"} <= set(requests), requests
    assert json.loads(first.stdout)["provider_calls"] == sum(requests.values())
    instances = deployer.instances()
    assert sorted(_tags(i)["Name"] for i in instances) == [f"shop-{r1}-{n}" for n in range(3)]
    for instance in instances:
        tags = _tags(instance)
        assert instance["ImageId"] == golden
        assert tags["phoenix:release"] == r1
        assert f"one {r1} {tags['phoenix:index']}" in deployer.user_data(instance["InstanceId"])
    assert deployer.registered() == {i["InstanceId"] for i in instances}
    assert f"apps/shop/releases/{r1}.json" in deployer.records()
    # The lease: one generation in S3, released when the deploy ended.
    leases = [k for k in deployer.records() if k.startswith("apps/shop/lease/")]
    assert leases == ["apps/shop/lease/000000000001"]
    lease = deployer.moto.client("s3").get_object(Bucket=BUCKET, Key=leases[0])
    assert json.loads(lease["Body"].read())["released"] is True

    # A rolling deploy of a second image.
    second = deployer.image("golden-2")
    deployer.write(image="golden-2", strategy="rolling")
    rolled = deployer.phoenix("deploy")
    assert rolled.returncode == 0, rolled.stderr[-3000:]
    r2 = json.loads(rolled.stdout)["release"]
    assert r2 != r1
    instances = deployer.instances()
    assert {i["ImageId"] for i in instances} == {second}
    assert {_tags(i)["phoenix:release"] for i in instances} == {r2}
    assert deployer.registered() == {i["InstanceId"] for i in instances}

    # A forced rollback: a deadline the new servers cannot meet; r2 keeps serving.
    deployer.write(image="golden-2", greeting="three", deadline="1s")
    failed = deployer.phoenix("deploy")
    assert failed.returncode == 1, failed.stderr[-3000:]
    assert json.loads(failed.stdout)["outcome"] == "rolled-back"
    instances = deployer.instances()
    assert {_tags(i)["phoenix:release"] for i in instances} == {r2}
    assert deployer.registered() == {i["InstanceId"] for i in instances}

    deployer.write()
    gone = deployer.phoenix("destroy", "--yes", "--purge-records")
    assert gone.returncode == 0, gone.stderr[-3000:]
    assert deployer.instances() == []
    assert deployer.registered() == set()
    # Only the lease's newest generation (the destroy's own, released) is kept, so that
    # generation numbers never go back.
    assert deployer.records() == ["apps/shop/lease/000000000004"]
    state = deployer.moto.snapshot()
    assert state.live_instances == {}
