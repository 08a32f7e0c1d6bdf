"""The OpenStack provider counts its API requests at openstacksdk's session (issue 15).

Counted by a response hook on the keystoneauth session's ``requests.Session``, and named
by service from the token's catalog; checked here against a second, independent count:
the requests keystoneauth's debug log shows in the same window, by the port each went to.
"""

from __future__ import annotations

import collections
import logging
import re
import urllib.parse
from collections.abc import Iterator

import pytest

from phoenix import request_tally
from phoenix.clock import SystemClock
from phoenix.model import MemberAction, MemberChange
from phoenix.providers.base import MemberBatcher, Provider
from phoenix.spec import Spec

pytestmark = pytest.mark.openstack


@pytest.fixture
def provider(openstack_cloud: object, harness_object_dns: object) -> Iterator[Provider]:
    import openstack

    from phoenix.providers.openstack import open_openstack_provider
    from tests.openstack import harness

    conn = openstack.connect(cloud="phoenix-harness", region_name=harness.REGION)
    with harness.octavia_pool(conn, "tally-pool"):
        spec = Spec.model_validate({
            "app": "tally",
            "provider": {"name": "openstack", "cloud": "phoenix-harness"},
            "dns": {"zone": "contract.example.", "record": "tally"},
            "regions": [harness.REGION],
            "image": {"name": "golden"},
            "flavor": "m1.small",
            "count": 1,
            "template": "t.j2",
            "health": {"mode": "provider"},
            "load_balancer": {"pool": "tally-pool", "member_port": 80},
        })
        opened = open_openstack_provider(spec, clock=SystemClock())
        try:
            yield opened
        finally:
            opened.close()
    conn.close()


class _RequestLog(logging.Handler):
    """keystoneauth's debug log of each request it sends ("REQ: curl ... -X GET <url>"),
    counted by the service listening on the URL's port."""

    REQUEST = re.compile(r"REQ: curl -g -i (?:--\S+ )*-X \w+ (\S+)")

    def __init__(self, services: dict[int, str]) -> None:
        super().__init__(logging.DEBUG)
        self.services = services
        self.sent: collections.Counter[str] = collections.Counter()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        match = self.REQUEST.search(message)
        # The Swift/Designate fake runs in this process and checks each token it is shown
        # with Keystone (X-Subject-Token): those requests are the fake's, not Phoenix's.
        if match and "X-Subject-Token" not in message:
            port = urllib.parse.urlsplit(match.group(1).strip('"')).port or 0
            self.sent[self.services.get(port, "fake swift/designate")] += 1


def test_the_request_tally_matches_keystoneauths_request_log_by_service(
    provider: Provider,
) -> None:
    from tests.openstack import harness

    log = _RequestLog({port: name for name, port in harness.PORTS.items()})
    logger = logging.getLogger("keystoneauth.session")
    level = logger.level
    assert provider.requests is not None
    before = provider.requests.snapshot()
    logger.setLevel(logging.DEBUG)
    logger.addHandler(log)
    try:
        _calls(provider, harness.REGION)
    finally:
        logger.removeHandler(log)
        logger.setLevel(level)
    sent = log.sent

    counted_by_service = request_tally.since(before, provider.requests.snapshot())
    assert counted_by_service == {
        # keystoneauth does not log the token request (it carries the password): +1
        "identity": sent["keystone"] + 1,
        "compute": sent["nova"],
        "load_balancer": sent["octavia"],
        # the fake serves both Swift and Designate on one address
        **{k: v for k, v in counted_by_service.items() if k in ("store", "dns")},
    }, (counted_by_service, sent)
    assert counted_by_service["store"] + counted_by_service["dns"] == sent[
        "fake swift/designate"]
    assert counted_by_service["compute"] >= 2 and counted_by_service["load_balancer"] >= 1
    assert counted_by_service["store"] >= 2 and counted_by_service["dns"] >= 1


def _calls(provider: Provider, region: str) -> None:
    """A few calls to every service the provider uses."""
    provider.compute.list_nodes(region, "tally")  # connects: a token, then Nova
    provider.compute.get_flavor(region, "m1.small")
    provider.load_balancer.list_members(region, "tally-pool")
    lb = provider.load_balancer
    assert isinstance(lb, MemberBatcher)
    lb.change_members(region, "tally-pool", [MemberChange(MemberAction.REMOVE, "nobody")])
    provider.store.put("apps/tally/probe.json", b"{}")
    provider.store.get("apps/tally/probe.json")
    assert provider.dns is not None
    provider.dns.get_record("contract.example.", "tally")
