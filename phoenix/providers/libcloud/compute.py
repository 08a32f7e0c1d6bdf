"""``Compute`` over a libcloud NodeDriver, one driver per region."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from phoenix import errors
from phoenix.model import (
    TAG_APP,
    Flavor,
    Image,
    Node,
    NodeRequest,
    NodeState,
    Quota,
    tag_fields,
)
from phoenix.providers.base import Clock, ImageQuery
from phoenix.providers.libcloud.quirks import ComputeQuirks, compute_quirks
from phoenix.providers.libcloud.translate import Part, translated

NAME_TAG = "Name"  # what EC2 consoles (and libcloud's node.name) show


def _state(node: Any) -> NodeState:
    """Phoenix's state of a libcloud node. A stopped (or stopping) server is an ERROR: it
    serves nothing and will not come back by itself, so it gets replaced; only a server
    on its way out of existence is DELETING."""
    from libcloud.compute.types import NodeState as LcState

    raw = str((getattr(node, "extra", None) or {}).get("status") or "").lower()
    if raw in ("shutting-down", "terminating", "deleting"):
        return NodeState.DELETING
    if raw in ("stopping", "stopped"):
        return NodeState.ERROR
    state = node.state
    if state == LcState.RUNNING:
        return NodeState.ACTIVE
    if state in (LcState.PENDING, LcState.STARTING, LcState.REBOOTING):
        return NodeState.BUILD
    if state == LcState.TERMINATED:
        return NodeState.DELETING
    if state in (LcState.ERROR, LcState.STOPPED, LcState.STOPPING, LcState.SUSPENDED,
                 LcState.PAUSED):
        return NodeState.ERROR
    return NodeState.BUILD


def _time(raw: Any) -> datetime | None:
    if isinstance(raw, datetime):
        return raw if raw.tzinfo else raw.replace(tzinfo=UTC)
    if isinstance(raw, str) and raw:
        try:
            parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


class LibcloudCompute(Part):
    service = "compute"

    def __init__(self, drivers: Callable[[str], Any], clock: Clock) -> None:
        self._drivers = drivers
        self._clock = clock
        self._lock = threading.Lock()
        self._create_locks: dict[tuple[str, str], threading.Lock] = {}
        self._known_images: dict[tuple[str, str], Any] = {}
        self._sizes: dict[tuple[str, str], Any] = {}
        self._create_sent: set[tuple[str, str]] = set()

    def _quirks(self, region: str) -> tuple[Any, ComputeQuirks]:
        driver = self._drivers(region)
        return driver, compute_quirks(driver)

    def to_node(self, raw: Any, region: str, quirks: ComputeQuirks) -> Node:
        tags = quirks.tags_of(raw)
        state = _state(raw)
        ips = list(getattr(raw, "private_ips", None) or []) + list(
            getattr(raw, "public_ips", None) or []
        )
        extra = getattr(raw, "extra", None) or {}
        created = _time(getattr(raw, "created_at", None)) or _time(extra.get("launch_time"))
        fault = None
        if state is NodeState.ERROR:
            reason = extra.get("state_reason") or extra.get("status") or "error"
            fault = f"server is {reason}"
        return Node(
            id=str(raw.id),
            name=tags.get(NAME_TAG) or str(raw.name),
            region=region,
            **tag_fields(tags),
            state=state,
            created_at=created or self._clock.now(),
            address=ips[0] if ips else None,
            fault=fault,
            metadata=tags,
        )

    @translated
    def list_nodes(self, region: str, app: str) -> list[Node]:
        return self.nodes_tagged(region, TAG_APP, app)

    @translated
    def nodes_by_ids(self, region: str, ids: list[str]) -> list[Node]:
        driver, quirks = self._quirks(region)
        return [self.to_node(raw, region, quirks) for raw in quirks.list_by_ids(driver, ids)]

    @translated
    def nodes_tagged(self, region: str, key: str, value: str) -> list[Node]:
        driver, quirks = self._quirks(region)
        return [
            self.to_node(raw, region, quirks) for raw in quirks.list_tagged(driver, key, value)
        ]

    def _create_lock(self, region: str, name: str) -> threading.Lock:
        with self._lock:
            return self._create_locks.setdefault((region, name), threading.Lock())

    @translated
    def create_node(self, region: str, request: NodeRequest) -> Node:
        app = request.metadata.get(TAG_APP, "")
        if not app:
            raise errors.BadRequest(f"{request.name}: a server needs the {TAG_APP} tag",
                                    region=region)
        with self._create_lock(region, request.name):
            # The engine asks for a name only after its listing showed none, under the
            # app's lease: only a retry of a create sent from here (its answer lost) can
            # find the server there. Listing the app's servers before every create would
            # cost O(n) per server, O(n^2) per deploy.
            if (region, request.name) in self._create_sent:
                for node in self.nodes_tagged(region, NAME_TAG, request.name):
                    if node.app == app and node.state is not NodeState.DELETING:
                        return node
            driver, quirks = self._quirks(region)
            size = self._size(driver, region, request.flavor)
            image = self._image(driver, region, request.image_id)
            tags = {NAME_TAG: request.name, **request.metadata}
            kwargs = quirks.create_kwargs(driver, user_data=request.user_data, tags=tags)
            if request.key_name:
                kwargs["ex_keyname"] = request.key_name
            if request.security_groups:
                kwargs["ex_security_groups"] = list(request.security_groups)
            if request.availability_zone:
                kwargs["location"] = self._location(driver, region, request.availability_zone)
            self._create_sent.add((region, request.name))
            created = driver.create_node(name=request.name, size=size, image=image, **kwargs)
            return self.to_node(created, region, quirks)

    def _size(self, driver: Any, region: str, name: str) -> Any:
        """The size called ``name``, listed once per region and name (a size's meaning
        does not change; the listing is long on EC2)."""
        if (region, name) in self._sizes:
            return self._sizes[(region, name)]
        for size in driver.list_sizes():
            if name in (str(size.id), str(size.name)):
                self._sizes[(region, name)] = size
                return size
        raise errors.UnknownResource(f"flavor {name!r} not found in {region}; check the spec's"
                                     " flavor (a size id of the compute driver)")

    def _image(self, driver: Any, region: str, image_id: str) -> Any:
        """The image, checked to exist first (once per id): a clear error before a create
        that some clouds would accept and fail later, or never."""
        key = (region, image_id)
        if key not in self._known_images:
            found = [
                raw for raw in compute_quirks(driver).list_images(
                    driver, image_id=image_id, name=None, properties={}
                )
                if str(raw.id) == image_id
            ]
            if not found:
                raise errors.UnknownResource(
                    f"image {image_id!r} not found in {region}; check the spec's image, or"
                    " copy the image to that region"
                )
            self._known_images[key] = found[0]
        return self._known_images[key]

    def _location(self, driver: Any, region: str, zone: str) -> Any:
        for location in driver.list_locations():
            if zone in (str(location.id), str(location.name),
                        str((location.extra or {}).get("availability_zone", ""))):
                return location
        raise errors.UnknownResource(f"availability zone {zone!r} not found in {region}")

    @translated
    def delete_node(self, region: str, node_id: str) -> None:
        from libcloud.compute.base import Node as LcNode
        from libcloud.compute.types import NodeState as LcState

        driver, _ = self._quirks(region)
        node = LcNode(id=node_id, name=node_id, state=LcState.UNKNOWN, public_ips=[],
                      private_ips=[], driver=driver)
        try:
            driver.destroy_node(node)
        except Exception as exc:  # a missing server is not an error (contract)
            from phoenix.providers.libcloud.translate import translate

            if isinstance(translate(exc, region=region, service=self.service), errors.NotFound):
                return
            raise

    def raw_node(self, region: str, node_id: str) -> Any:
        driver, quirks = self._quirks(region)
        found = quirks.list_by_ids(driver, [node_id])
        if not found:
            raise errors.NotFound(f"server {node_id} not found", region=region)
        return found[0]

    @translated
    def set_metadata(self, region: str, node_id: str, metadata: Mapping[str, str]) -> None:
        driver, quirks = self._quirks(region)
        raw = self.raw_node(region, node_id)
        empty = [k for k, v in metadata.items() if v == ""]
        values = {k: v for k, v in metadata.items() if v != ""}
        if values:
            quirks.set_tags(driver, raw, values)
        if empty:
            quirks.delete_tags(driver, raw, empty)

    @translated
    def find_images(self, region: str, query: ImageQuery) -> list[Image]:
        driver, quirks = self._quirks(region)
        found = quirks.list_images(
            driver, image_id=query.id, name=query.name, properties=query.properties
        )
        images = [self._to_image(raw) for raw in found]
        return [
            image for image in images
            if (query.id is None or image.id == query.id)
            and (query.name is None or image.name == query.name)
            and all(image.properties.get(k) == str(v) for k, v in query.properties.items())
        ]

    @staticmethod
    def _to_image(raw: Any) -> Image:
        extra = getattr(raw, "extra", None) or {}
        properties = {str(k): str(v) for k, v in (extra.get("tags") or {}).items()}
        return Image(
            id=str(raw.id),
            name=str(raw.name or ""),
            created_at=_time(extra.get("creation_date") or getattr(raw, "created_at", None)),
            properties=properties,
        )

    @translated
    def delete_image(self, region: str, image_id: str) -> None:
        """Delete (EC2: deregister) the image; a missing one is not an error."""
        try:
            if not self.find_images(region, ImageQuery(id=image_id)):
                return
        except (errors.NotFound, errors.UnknownResource):
            return  # EC2 answers a lookup of an id it does not have with an error
        from libcloud.compute.base import NodeImage

        driver, _ = self._quirks(region)
        driver.delete_image(NodeImage(id=image_id, name=image_id, driver=driver))

    @translated
    def get_flavor(self, region: str, name: str) -> Flavor:
        driver, _ = self._quirks(region)
        size = self._size(driver, region, name)
        extra = size.extra or {}
        vcpus = extra.get("cpu") or extra.get("vcpus") or 1
        return Flavor(id=str(size.id), name=str(size.name), vcpus=int(vcpus),
                      ram_mb=int(size.ram or 0))

    def quota(self, region: str) -> Quota:
        # libcloud has no generic quota API (EC2's lives in Service Quotas): unknown,
        # so the preflight passes and the cloud's own limit error fails the create.
        return Quota(instances=None, vcpus=None, ram_mb=None)
