"""The contract environment: one provider, ready for the shared suite.

Every provider runs the same tests (``test_provider_contract.py``). To add one, write a
factory ``(request, tmp_path) -> context manager yielding ContractEnv`` and register it in
``ENV_FACTORIES``; a factory that cannot run here (no credentials, no binary) calls
``pytest.skip`` with the reason. ``settle()`` is the only place a provider's notion of
time shows: the memory cloud advances its FakeClock, real clouds poll until no node of the
test's apps is BUILD or DELETING.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from phoenix.clock import FakeClock
from phoenix.model import (
    TAG_APP,
    TAG_ATTEMPT,
    TAG_INDEX,
    TAG_RELEASE,
    TAG_SPEC_DIGEST,
    Flavor,
    Image,
    NodeRequest,
)
from phoenix.providers.base import Provider
from phoenix.providers.memory import MemoryCloud


@dataclass
class ContractEnv:
    """What a contract test needs from one provider."""

    provider: Provider
    region: str
    image_id: str
    image_name: str
    image_properties: Mapping[str, str]  # a subset of the image's properties
    flavor: str  # flavor name
    flavor_id: str
    pool: str
    settle: Callable[[], None]  # wait until no BUILD/DELETING node of this test remains
    zone: str = "contract.example."
    # Members are servers, not addresses (classic ELB registers instances): the load
    # balancer tests then make a server for each member name first.
    members_are_servers: bool = False
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def app(self) -> str:
        """An app name unique to this test, so real clouds can be shared."""
        return f"ct{self.run_id}"

    @property
    def other_app(self) -> str:
        return f"ct{self.run_id}-other"

    @property
    def key_prefix(self) -> str:
        """Store keys of this test live under here."""
        return f"contract/{self.run_id}/"

    def node_request(
        self,
        index: int = 0,
        *,
        app: str | None = None,
        release: str = "r1",
        attempt: int = 0,
        name: str | None = None,
        image_id: str | None = None,
        flavor: str | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> NodeRequest:
        """A request tagged the way the executor tags nodes."""
        app = app or self.app
        metadata = {
            TAG_APP: app,
            TAG_RELEASE: release,
            TAG_INDEX: str(index),
            TAG_ATTEMPT: str(attempt),
            TAG_SPEC_DIGEST: "sd-contract",
            **(extra or {}),
        }
        return NodeRequest(
            name=name or f"{app}-{release}-{index}",
            image_id=image_id or self.image_id,
            flavor=flavor or self.flavor,
            network=None,
            user_data="#cloud-config\n{}\n",
            metadata=metadata,
        )

    def member_target(self, name: str, address: str) -> str:
        """The address to add member ``name`` with: ``address`` itself, or, where members
        are servers, the address of a server made for it (named ``name``)."""
        if not self.members_are_servers:
            return address
        node = self.provider.compute.create_node(self.region, self.node_request(name=name))
        self.settle()
        (found,) = [n for n in self.provider.compute.list_nodes(self.region, self.app)
                    if n.id == node.id]
        return found.address or address

    def cleanup(self) -> None:
        """Best effort: leave a shared cloud as it was found."""
        compute = self.provider.compute
        for app in (self.app, self.other_app):
            with contextlib.suppress(Exception):
                for node in compute.list_nodes(self.region, app):
                    compute.delete_node(self.region, node.id)
        with contextlib.suppress(Exception):
            lb = self.provider.load_balancer
            for member in lb.list_members(self.region, self.pool):
                if member.name.startswith(self.app):
                    lb.remove_member(self.region, self.pool, member.name)
        with contextlib.suppress(Exception):
            for key in self.provider.store.list(self.key_prefix):
                self.provider.store.delete(key)


def wait_until_settled(env: ContractEnv, *, timeout: float, interval: float) -> None:
    """Real clouds: poll until no server of this test's apps is BUILD or DELETING."""
    import time

    from phoenix.model import NodeState

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        nodes = [
            node
            for app in (env.app, env.other_app)
            for node in env.provider.compute.list_nodes(env.region, app)
        ]
        if all(n.state not in (NodeState.BUILD, NodeState.DELETING) for n in nodes):
            return
        time.sleep(interval)
    raise AssertionError(f"{env.provider.name} servers did not settle in {timeout:g} s")


EnvFactory = Callable[[pytest.FixtureRequest, Path], contextlib.AbstractContextManager[ContractEnv]]


@contextlib.contextmanager
def memory_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ContractEnv]:
    clock = FakeClock()
    cloud = MemoryCloud(("region-a", "region-b"), clock=clock, boot_seconds=2.0)
    cloud.add_image(
        Image(id="img-1", name="golden", properties={"role": "web", "os": "ubuntu-24.04"})
    )
    cloud.add_image(Image(id="img-2", name="other", properties={"role": "db"}))
    cloud.add_flavor(Flavor(id="flv-1", name="m1.small", vcpus=1, ram_mb=1024))

    def settle() -> None:
        clock.advance(cloud.boot_seconds + cloud.faults.slow_boot_seconds + 60)

    yield ContractEnv(
        provider=cloud.provider(),
        region="region-a",
        image_id="img-1",
        image_name="golden",
        image_properties={"role": "web"},
        flavor="m1.small",
        flavor_id="flv-1",
        pool="web-pool",
        settle=settle,
    )


@contextlib.contextmanager
def local_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ContractEnv]:
    """Real node processes and a real balancer process, all under tmp_path."""
    import socket

    from phoenix.clock import SystemClock
    from phoenix.providers.local.provider import open_local_provider

    image_dir = tmp_path / "image"
    image_dir.mkdir()
    (image_dir / "phoenix-image.yaml").write_text(
        'command: ["python3", "-c", "import time; time.sleep(3600)"]\nstop_timeout: 1\n'
    )
    with socket.socket() as probe:
        probe.bind(("127.1.255.254", 0))
        port = probe.getsockname()[1]
    provider = open_local_provider(
        {"state_dir": str(tmp_path / "state"), "balancer": "builtin", "lb_port": port,
         "flavors": ["local", "local-big"]},
        ["local-a", "local-b"],
        clock=SystemClock(),
    )
    compute = provider.compute
    image = compute.import_image("local-a", image_dir, "golden")  # type: ignore[attr-defined]
    env: ContractEnv

    def settle() -> None:
        wait_until_settled(env, timeout=20, interval=0.1)

    env = ContractEnv(
        provider=provider,
        region="local-a",
        image_id=image.id,
        image_name="golden",
        image_properties={"digest": image.properties["digest"]},
        flavor="local",
        flavor_id="local",
        pool="web-pool",
        settle=settle,
    )
    try:
        yield env
    finally:
        lb = provider.load_balancer
        for region in ("local-a", "local-b"):
            with contextlib.suppress(Exception):
                lb.delete_pool(region, "web-pool")  # type: ignore[attr-defined]


@dataclass(frozen=True)
class OpenStackPool:
    """A load balancer, listener and pool on the harness, shared by the session's tests."""

    name: str
    image_id: str
    flavor_id: str


@pytest.fixture(scope="session")
def openstack_contract_pool(openstack_cloud: object) -> Iterator[OpenStackPool]:
    """One Octavia pool for every openstack contract test.

    Making a load balancer, listener and pool costs about 8 s on the harness (three waits
    for ACTIVE); per test that was most of the suite's time. Tests share the pool safely:
    each adds members named after its own app and removes them in ``cleanup()``.
    """
    import openstack

    from tests.openstack import harness

    conn = openstack.connect(cloud="phoenix-harness", region_name=harness.REGION)
    name = f"ct-pool-{uuid.uuid4().hex[:6]}"
    try:
        with harness.octavia_pool(conn, name):
            image = next(iter(conn.image.images(name="golden")))
            flavor = conn.compute.find_flavor("m1.small", ignore_missing=False)
            yield OpenStackPool(name=name, image_id=image.id, flavor_id=flavor.id)
    finally:
        conn.close()


@contextlib.contextmanager
def openstack_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ContractEnv]:
    """Real Nova/Glance/Neutron/Octavia on 127.0.0.1 (tests/openstack/harness.py)."""
    from phoenix.clock import SystemClock
    from phoenix.providers.openstack import open_openstack_provider
    from phoenix.spec import Spec

    shared: OpenStackPool = request.getfixturevalue("openstack_contract_pool")
    # Swift and Designate: the harness's catalog lists a loopback fake for them.
    request.getfixturevalue("harness_object_dns")
    spec = Spec.model_validate(
        {
            "app": "contract",
            "provider": {"name": "openstack", "cloud": "phoenix-harness"},
            "dns": {"zone": "contract.example.", "record": "contract"},
            "regions": ["RegionOne"],
            "image": {"name": "golden"},
            "flavor": "m1.small",
            "count": 1,
            "template": "t.j2",
            "health": {"mode": "provider"},
            "load_balancer": {"pool": shared.name, "member_port": 80},
        }
    )
    provider = open_openstack_provider(spec, clock=SystemClock())
    env: ContractEnv

    def settle() -> None:
        wait_until_settled(env, timeout=120, interval=0.5)

    env = ContractEnv(
        provider=provider,
        region="RegionOne",
        image_id=shared.image_id,
        image_name="golden",
        image_properties={"role": "web"},
        flavor="m1.small",
        flavor_id=shared.flavor_id,
        pool=shared.name,
        settle=settle,
    )
    yield env


@contextlib.contextmanager
def libcloud_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ContractEnv]:
    """EC2, classic ELB, Route53 and S3 through apache-libcloud, against moto's server on
    127.0.0.1 (tests/libcloud: the server, and the test-only shims for moto's mismatches)."""
    from phoenix.clock import SystemClock
    from phoenix.providers.libcloud import open_libcloud_provider
    from phoenix.spec import Spec
    from tests.libcloud import shims
    from tests.libcloud.moto_server import MotoServer

    moto: MotoServer = request.getfixturevalue("moto")
    moto.reset()
    region = "us-east-1"
    ec2 = moto.client("ec2", region)
    source = ec2.describe_images(
        Filters=[{"Name": "name", "Values": ["ubuntu/images/hvm-ssd/ubuntu-xenial-16.04-*"]}]
    )["Images"][0]
    golden = ec2.copy_image(Name="golden", SourceImageId=source["ImageId"],
                            SourceRegion=region)["ImageId"]
    ec2.create_tags(Resources=[golden], Tags=[{"Key": "role", "Value": "web"},
                                               {"Key": "os", "Value": "ubuntu"}])
    moto.client("elb", region).create_load_balancer(
        LoadBalancerName="web-pool",
        Listeners=[{"Protocol": "HTTP", "LoadBalancerPort": 80, "InstancePort": 8080}],
        AvailabilityZones=[f"{region}a"],
    )
    moto.client("route53").create_hosted_zone(Name="contract.example.", CallerReference="ct")
    spec = Spec.model_validate(
        {
            "app": "contract",
            "provider": {
                "name": "libcloud",
                "options": moto.provider_options(container="phoenix-contract"),
            },
            "regions": [region],
            "image": {"name": "golden"},
            "flavor": "t2.micro",
            "count": 1,
            "template": "t.j2",
            "health": {"mode": "provider"},
            "load_balancer": {"pool": "web-pool", "member_port": 8080},
            "dns": {"zone": "contract.example.", "record": "contract"},
        }
    )
    shims.apply(endpoint=moto.endpoint)
    try:
        provider = open_libcloud_provider(spec, clock=SystemClock(), environ=moto.environ())
        env: ContractEnv

        def settle() -> None:
            wait_until_settled(env, timeout=30, interval=0.2)

        env = ContractEnv(
            provider=provider,
            region=region,
            image_id=golden,
            image_name="golden",
            image_properties={"role": "web"},
            flavor="t2.micro",
            flavor_id="t2.micro",
            pool="web-pool",
            settle=settle,
            members_are_servers=True,
        )
        yield env
    finally:
        shims.remove()


ENV_FACTORIES: dict[str, EnvFactory] = {
    "memory": memory_env,
    "local": local_env,
    "openstack": openstack_env,
    "libcloud": libcloud_env,
}


@pytest.fixture(
    params=[
        pytest.param(name, marks=[pytest.mark.openstack] if name == "openstack" else [])
        for name in sorted(ENV_FACTORIES)
    ]
)
def contract_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ContractEnv]:
    """One provider per parameter; everything a test creates is cleaned up after it."""
    factory = ENV_FACTORIES[request.param]
    with factory(request, tmp_path) as env:
        try:
            yield env
        finally:
            env.cleanup()
