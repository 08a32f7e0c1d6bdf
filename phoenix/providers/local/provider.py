"""The local provider assembled: Compute, LoadBalancer, Store and DNS over the state dir.

Layout of the state directory (mode 0700; default ``.phoenix/local`` under the current
directory, so a deploy and a later ``status`` from the same place share it)::

    images/<image-id>/           immutable, content-addressed image copies
    regions.json                 region name -> number (addresses are 127.<number>.x.y)
    regions/<region>/apps/<app>/nodes/...   one directory and agent process per server
    regions/<region>/pools/<pool>/   one load-balancer process per pool
    regions/<region>/outage.json     present while the region is down (``outage.py``)
    store/                       release records, history, the deploy lock
    dns.json                     the DNS stand-in's record sets
    frontends.json               DNS record -> front-end number k
    frontends/<name>.<zone>/     the record's front-end balancer (``frontend.py``)

Each region's load balancer listens on ``127.<number>.255.254:<lb_port>``; each DNS
record's front end on ``127.0.<k>.254:<lb_port>``, balancing over the region balancers
the record names (the local stand-in for DNS failover).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from phoenix.errors import (
    BadRequest,
    InputError,
    NotFound,
    QuotaExceeded,
    Transient,
    UnknownResource,
)
from phoenix.files import locked
from phoenix.model import (
    TAG_APP,
    Flavor,
    Image,
    Member,
    MemberChange,
    Node,
    NodeRequest,
    NodeState,
    Quota,
    tag_fields,
)
from phoenix.provider_options import LocalOptions, parse_options
from phoenix.providers.base import Clock, ImageQuery, Provider
from phoenix.providers.local.balancer import Balancer, BalancerConfig, saved_members
from phoenix.providers.local.frontend import LocalDns
from phoenix.providers.local.images import (
    LocalImage,
    delete_image,
    get_image,
    import_image,
    list_images,
)
from phoenix.providers.local.nodes import LocalNodes, NodeRecord
from phoenix.providers.local.outage import OUTAGE_FILE, check_region
from phoenix.providers.local.store import DirectoryStore
from phoenix.providers.local.supervisor import LOG_FILE as SUPERVISOR_LOG
from phoenix.providers.local.supervisor import stopped_on_purpose, supervisor_running

LB_HOST_OCTETS = (255, 254)
# One path component that stays put: no separator, no "..", nothing a shell or a config
# file would read as syntax (the spec holds names to this already; this is the backstop).
_STATE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def state_child(parent: Path, name: str, what: str) -> Path:
    """``parent / name`` for a region, app or pool name, or ``InputError`` when ``name``
    is not one plain path component (``/some/dir`` or ``..`` would leave the state dir)."""
    if not _STATE_NAME.fullmatch(name):
        raise InputError(
            f"{what} {name[:80]!r}: not usable as a name here; use letters, digits, dots,"
            " dashes and underscores, starting with a letter or digit"
        )
    return parent / name


class LocalCloud:
    """Shared state of one local provider instance."""

    def __init__(
        self,
        state_dir: Path,
        *,
        clock: Clock,
        balancer: str = "auto",
        lb_port: int = 8080,
        max_nodes: int = 64,
        flavors: Sequence[str] = ("local",),
        check_path: str | None = "/healthz",
        check_interval: float = 0.5,
    ) -> None:
        self.state_dir = state_dir
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        state_dir.chmod(0o700)
        self.clock = clock
        self.balancer_kind = balancer
        self.lb_port = lb_port
        self.max_nodes = max_nodes
        self.flavors = tuple(flavors)
        self.check_path = check_path
        self.check_interval = check_interval
        self._lock = threading.Lock()
        self._nodes: dict[str, LocalNodes] = {}

    # --- regions and addresses ------------------------------------------------------

    def region_number(self, region: str) -> int:
        path = self.state_dir / "regions.json"
        with locked(self.state_dir / ".regions.lock", parents=True):
            numbers: dict[str, int] = json.loads(path.read_text()) if path.exists() else {}
            if region not in numbers:
                numbers[region] = max(numbers.values(), default=0) + 1
                if numbers[region] > 250:
                    raise InputError("the local provider supports at most 250 regions")
                path.write_text(json.dumps(numbers, indent=1, sort_keys=True))
            return numbers[region]

    def region_dir(self, region: str) -> Path:
        return state_child(self.state_dir / "regions", region, "region")

    def check_available(self, region: str) -> None:
        """``RegionUnavailable`` while the region has a simulated outage (``outage.py``).

        Called first by every region-scoped method, before anything is read or started.
        """
        check_region(self.state_dir, region)

    def nodes(self, region: str, app: str) -> LocalNodes:
        """The app's servers in the region (apps are namespaced, as on a real cloud)."""
        key = f"{region}/{app}"
        with self._lock:
            if key not in self._nodes:
                directory = state_child(self.region_dir(region) / "apps", app, "app")
                directory.mkdir(parents=True, exist_ok=True, mode=0o700)
                self._nodes[key] = LocalNodes(directory, region=region)
            return self._nodes[key]

    def all_nodes(self, region: str) -> list[LocalNodes]:
        apps = self.region_dir(region) / "apps"
        names = sorted(p.name for p in apps.iterdir()) if apps.is_dir() else []
        # A stray entry (an editor's .swp, a hand-made dir) is not an app.
        return [self.nodes(region, name) for name in names if _STATE_NAME.fullmatch(name)]

    def owner_of(self, region: str, node_id: str) -> LocalNodes | None:
        for nodes in self.all_nodes(region):
            if any(node_id in (r.id, r.name) for r in nodes.list()):
                return nodes
        return None

    def next_address(self, region: str, used: set[str]) -> str:
        number = self.region_number(region)
        for slot in range(254 * 254):
            high, low = divmod(slot, 254)
            address = f"127.{number}.{high}.{low + 1}"
            if (high, low + 1) != LB_HOST_OCTETS and address not in used:
                return address
        raise InputError(f"region {region}: no free loopback address left")

    def lb_host(self, region: str) -> str:
        return f"127.{self.region_number(region)}.{LB_HOST_OCTETS[0]}.{LB_HOST_OCTETS[1]}"

    # --- load balancers -------------------------------------------------------------

    def balancer(self, region: str, pool: str) -> Balancer:
        """The region pool's balancer; its supervisor leaves it down during an outage."""
        return self.make_balancer(
            BalancerConfig(
                pool_dir=state_child(self.region_dir(region) / "pools", pool, "pool"),
                listen_host=self.lb_host(region),
                listen_port=self.lb_port,
                check_path=self.check_path,
                check_interval=self.check_interval,
                hold_file=self.region_dir(region) / OUTAGE_FILE,
            )
        )

    def make_balancer(self, config: BalancerConfig) -> Balancer:
        """A balancer of the configured kind (the region pools' and the DNS front ends')."""
        kind = self.balancer_kind
        if kind == "auto":
            from phoenix.providers.local.haproxy import haproxy_available

            kind = "haproxy" if haproxy_available() else "builtin"
        if kind == "haproxy":
            from phoenix.providers.local.haproxy import HaproxyBalancer

            return HaproxyBalancer(config)
        from phoenix.providers.local.proxy import BuiltinBalancer

        return BuiltinBalancer(config)

    def pools(self, region: str) -> list[str]:
        directory = self.region_dir(region) / "pools"
        if not directory.is_dir():
            return []
        return sorted(p.name for p in directory.iterdir() if _STATE_NAME.fullmatch(p.name))


def _node(record: NodeRecord, region: str) -> Node:
    metadata = dict(record.metadata)
    state = NodeState(record.state) if record.state in NodeState.__members__ else NodeState.ERROR
    return Node(
        id=record.id,
        name=record.name,
        region=region,
        **tag_fields(metadata),
        state=state,
        created_at=record.created_at,
        address=record.address,
        fault=record.fault,
        metadata=metadata,
    )


def _image(image: LocalImage) -> Image:
    return Image(image.id, image.name, image.created_at, {"digest": image.digest})


class LocalCompute:
    """Servers are directories plus agent processes; images are directory snapshots."""

    def __init__(self, cloud: LocalCloud) -> None:
        self.cloud = cloud
        self.images_root = cloud.state_dir / "images"

    def list_nodes(self, region: str, app: str) -> list[Node]:
        self.cloud.check_available(region)
        nodes = (_node(r, region) for r in self.cloud.nodes(region, app).list())
        return [n for n in nodes if n.app == app]

    def create_node(self, region: str, request: NodeRequest) -> Node:
        self.cloud.check_available(region)
        image = get_image(self.images_root, request.image_id)
        self.get_flavor(region, request.flavor)
        app = request.metadata.get(TAG_APP, "")
        if not app:
            raise BadRequest(f"{request.name}: a server needs the {TAG_APP} tag")
        nodes = self.cloud.nodes(region, app)
        with locked(self.cloud.region_dir(region) / ".create.lock", parents=True):
            existing = [r for r in nodes.list() if r.name == request.name]
            if existing:
                return _node(existing[0], region)
            everyone = [r for n in self.cloud.all_nodes(region) for r in n.list()]
            active = [r for r in everyone if r.state != NodeState.DELETING.value]
            if len(active) >= self.cloud.max_nodes:
                raise QuotaExceeded(
                    f"region {region}: {len(active)} local nodes, the limit (max_nodes) is"
                    f" {self.cloud.max_nodes}",
                    region=region,
                )
            used = {r.address for r in everyone}
            address = self.cloud.next_address(region, used)
            record = nodes.create(
                name=request.name,
                address=address,
                image=image,
                user_data=request.user_data,
                metadata=request.metadata,
                now=self.cloud.clock.now(),
            )
        return _node(record, region)

    def delete_node(self, region: str, node_id: str) -> None:
        self.cloud.check_available(region)
        owner = self.cloud.owner_of(region, node_id)
        if owner is not None:
            owner.delete(node_id)

    def set_metadata(self, region: str, node_id: str, metadata: Mapping[str, str]) -> None:
        self.cloud.check_available(region)
        owner = self.cloud.owner_of(region, node_id)
        if owner is None:
            raise NotFound(f"server {node_id} not found in {region}", region=region)
        owner.set_metadata(node_id, metadata)

    def find_images(self, region: str, query: ImageQuery) -> list[Image]:
        self.cloud.check_available(region)
        found = list_images(self.images_root)
        if query.id is not None:
            found = [i for i in found if i.id == query.id]
        if query.name is not None:
            found = [i for i in found if i.name == query.name]
        images = [_image(i) for i in found]
        if query.properties:
            wanted = dict(query.properties)
            images = [i for i in images if wanted.items() <= dict(i.properties).items()]
        return images

    def import_image(self, region: str, source: Path, name: str | None = None) -> Image:
        self.cloud.check_available(region)
        return _image(
            import_image(self.images_root, source, name=name, now=self.cloud.clock.now())
        )

    def delete_image(self, region: str, image_id: str) -> None:
        """Images are this machine's, shared by its regions: gone from all of them."""
        self.cloud.check_available(region)
        delete_image(self.images_root, image_id)

    def get_flavor(self, region: str, name: str) -> Flavor:
        self.cloud.check_available(region)
        # Local nodes share this machine: a flavor is a name that is recorded, not a size.
        if name not in self.cloud.flavors:
            raise UnknownResource(
                f"flavor {name!r} does not exist on the local provider (flavors:"
                f" {', '.join(self.cloud.flavors)}); use one of them, or list yours under"
                " provider.options.flavors"
            )
        return Flavor(id=name, name=name, vcpus=1, ram_mb=512)  # nominal, not enforced

    def quota(self, region: str) -> Quota:
        self.cloud.check_available(region)
        used = sum(len(n.list()) for n in self.cloud.all_nodes(region))
        return Quota(instances=max(0, self.cloud.max_nodes - used), vcpus=None, ram_mb=None)


class LocalLoadBalancer:
    """One balancer process per region and pool, started on first change, kept running by
    its supervisor (``supervisor.py``).

    Reads report, writers act: ``list_members`` (``phoenix status``, a deploy's observe)
    never starts or restarts a balancer, and ``pool_problems`` says when one is down;
    ``add_member``, ``drain_member``, ``remove_member``, ``change_members`` and
    ``ensure_pool`` start it (and its supervisor) when it is not running.
    """

    def __init__(self, cloud: LocalCloud) -> None:
        self.cloud = cloud

    def _running(self, region: str, pool: str) -> Balancer:
        balancer = self.cloud.balancer(region, pool)
        balancer.ensure_running()
        return balancer

    def list_members(self, region: str, pool: str) -> list[Member]:
        """The pool's members as its balancer serves them; a read that repairs nothing.

        A balancer that is not running (killed, and its supervisor not yet or no longer
        restarting it) serves nobody: its desired members from members.json come back
        with ``online=False``, and ``pool_problems`` names the problem. One that runs
        but does not answer raises ``Transient`` (callers retry).
        """
        self.cloud.check_available(region)
        balancer = self.cloud.balancer(region, pool)
        if not balancer.config.pool_dir.exists():
            return []  # never created: a read does not bring a load balancer up
        try:
            return balancer.list_members()
        except Transient:
            if balancer.pid() is not None:
                raise  # alive but not answering (or starting up): a retry will tell
            return saved_members(balancer.config.pool_dir)

    def pool_problems(self, region: str, pool: str) -> list[str]:
        """What is wrong with the pool's balancer itself, for ``phoenix status``: a
        balancer that should run and does not. A read: it starts nothing."""
        self.cloud.check_available(region)
        balancer = self.cloud.balancer(region, pool)
        pool_dir = balancer.config.pool_dir
        if not pool_dir.exists() or stopped_on_purpose(pool_dir) or balancer.pid() is not None:
            return []
        what = f"load balancer of pool {pool} in region {region} ({balancer.url()})"
        if supervisor_running(pool_dir):
            return [f"{what} is not running; its supervisor is restarting it (see"
                    f" {pool_dir / SUPERVISOR_LOG})"]
        return [f"{what} is not running and has no supervisor to restart it; the next"
                " change to the pool (a deploy that adds, drains or removes a member)"
                " restarts both from members.json"]

    def ensure_pool(self, region: str, pool: str) -> None:
        """Start the pool's balancer and its supervisor when they are not running (an
        actor's call, e.g. at the start of a deploy); a pool never created stays so."""
        self.cloud.check_available(region)
        balancer = self.cloud.balancer(region, pool)
        if balancer.config.pool_dir.exists():
            balancer.ensure_running()

    def add_member(self, region: str, pool: str, name: str, address: str, port: int) -> None:
        self.cloud.check_available(region)
        self._running(region, pool).add_member(name, address, port)

    def drain_member(self, region: str, pool: str, name: str) -> None:
        self.cloud.check_available(region)
        self._running(region, pool).drain_member(name)

    def remove_member(self, region: str, pool: str, name: str) -> None:
        self.cloud.check_available(region)
        self._running(region, pool).remove_member(name)

    def change_members(self, region: str, pool: str, changes: Sequence[MemberChange]) -> None:
        """A poll's member changes in one go (``MemberBatcher``): one start check, then
        the balancer's own batch (one HAProxy connection, one proxy control message)."""
        self.cloud.check_available(region)
        if changes:
            self._running(region, pool).change_members(changes)

    def url(self, region: str, pool: str) -> str:
        # Not guarded: computed from state, like a load balancer's DNS name that a client
        # still knows while the region is down.
        return self.cloud.balancer(region, pool).url()

    def delete_pool(self, region: str, pool: str) -> None:
        """Stop the pool's balancer process and its supervisor (``phoenix destroy``):
        nothing left running, and nothing restarts it."""
        self.cloud.check_available(region)
        self.cloud.balancer(region, pool).stop()


def open_local_provider(
    raw_options: Mapping[str, Any] | LocalOptions,
    regions: Sequence[str],
    *,
    clock: Clock,
    check_path: str | None = "/healthz",
) -> Provider:
    """The local provider from the spec's ``provider.options``
    (``phoenix.provider_options.LocalOptions``; a plain mapping is validated first).

    ``balancer: auto`` picks HAProxy when installed. DNS is ``LocalDns``: record sets in
    dns.json, each served by a front-end balancer.
    """
    options = parse_options(LocalOptions, raw_options)
    balancer = options.balancer
    if balancer == "haproxy":
        from phoenix.providers.local.haproxy import haproxy_available

        if not haproxy_available():
            raise InputError(
                "provider.options.balancer: haproxy is not installed (apt-get install -y"
                " haproxy), or use balancer: builtin"
            )
    lb_port = options.lb_port
    max_nodes = options.max_nodes
    flavors = list(options.flavors)
    state_dir = Path(options.state_dir).expanduser()
    cloud = LocalCloud(
        state_dir.resolve(),
        clock=clock,
        balancer=balancer,
        lb_port=lb_port,
        max_nodes=max_nodes,
        flavors=flavors,
        check_path=check_path,
    )
    for region in regions:
        cloud.region_number(region)
    return Provider(
        name="local",
        compute=LocalCompute(cloud),
        load_balancer=LocalLoadBalancer(cloud),
        store=DirectoryStore(state_dir / "store"),
        dns=LocalDns(cloud),
        health_source=None,
    )
