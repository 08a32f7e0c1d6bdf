"""The OpenStack provider: Nova, Glance, Neutron, Octavia, Designate and Swift via openstacksdk.

Why it looks the way it does:

* **One boundary.** openstacksdk and keystoneauth raise their own exception types (and
  some calls answer with a plain ``requests.Response``). Every adapter method runs under
  ``@translated``, which turns anything the SDK raises into a ``phoenix.errors`` type with
  the single function ``translate``. The engine never imports an SDK and decides retry /
  fail fast / fail over from the type alone (409 and 5xx are ``Transient``, a region whose
  API cannot be reached is ``RegionUnavailable``, bad credentials are ``AuthError``).
* **State lives in the cloud.** Servers carry Phoenix's ``phoenix:*`` keys as Nova
  metadata (keys may contain ``:``) plus two server *tags* (``phoenix-app=<app>``,
  ``phoenix-release=<release>``; Nova tags may not contain ``,`` or ``/`` and are at most
  60 characters), because Nova can filter a listing by tag but not by metadata.
  ``create_node`` is idempotent by name: it lists the app's servers first.
* **Octavia answers 409 while a load balancer is PENDING_*.** Every member write first
  waits (bounded, with the injected clock) for ``provisioning_status == ACTIVE``, and
  writes to one load balancer from this process are serialised so they do not collide.
  A poll's member changes go in one batch member update (``PUT .../members`` with the
  whole desired list): one PENDING_UPDATE cycle instead of one per member.
* **Swift holds the release records and the deploy lock.** ``create_exclusive`` is a PUT
  with ``If-None-Match: *`` (412 means the object exists), done with the connection's
  session-level request because the SDK's ``create_object`` has no such switch.
* **Any is contained.** openstacksdk is untyped; SDK objects are read through small
  helpers and never leave this package: callers get ``phoenix.model`` values.

One ``openstack.connect(cloud=..., region_name=...)`` per region, created lazily and
shared by worker threads; credentials come from clouds.yaml or ``OS_*`` variables and
are never logged.

The modules: ``translate.py`` (the error boundary), ``cloud.py`` (connections, locks,
caches; the adapters' base), ``readers.py`` (SDK objects to model values),
``compute.py`` (Nova), ``balancer.py`` (Octavia), ``dns.py`` (Designate), ``store.py``
(Swift), ``request_counter.py`` (requests counted at the session), ``provider.py``
(opening it from a spec).
"""

from __future__ import annotations

from phoenix.providers.openstack.balancer import OpenStackLoadBalancer
from phoenix.providers.openstack.cloud import OpenStackCloud
from phoenix.providers.openstack.compute import OpenStackCompute
from phoenix.providers.openstack.dns import OpenStackDns
from phoenix.providers.openstack.provider import open_openstack_provider
from phoenix.providers.openstack.readers import app_tag, release_tag
from phoenix.providers.openstack.store import SwiftStore
from phoenix.providers.openstack.translate import translate

__all__ = [
    "OpenStackCloud",
    "OpenStackCompute",
    "OpenStackDns",
    "OpenStackLoadBalancer",
    "SwiftStore",
    "app_tag",
    "open_openstack_provider",
    "release_tag",
    "translate",
]
