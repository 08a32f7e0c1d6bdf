"""SwiftStore and OpenStackDns over HTTP: the real openstacksdk against a loopback fake.

The loopback OpenStack harness has no Swift and no Designate, so these tests start
``fake_object_dns.FakeObjectDns`` (a stdlib HTTP server on 127.0.0.1 that answers the Swift
object API and the Designate v2 API the way the real services do) and open the provider
exactly as a user would: a spec naming a cloud, ``OS_CLIENT_CONFIG_FILE`` pointing at a
clouds.yaml whose endpoints lead to the fake, and ``open_openstack_provider``. Everything
in between -- openstacksdk proxies, keystoneauth sessions and version discovery, requests,
real sockets -- is the real thing. They run in the normal test run (no opt-in, no harness).
"""

from __future__ import annotations

import io
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openstack
import openstack.exceptions as os_exc
import pytest
import structlog

from phoenix import errors
from phoenix.clock import SystemClock
from phoenix.log import configure_logging
from phoenix.model import DnsRecord
from phoenix.providers.base import Dns, Provider, Store
from phoenix.providers.openstack import open_openstack_provider
from phoenix.spec import Spec
from tests.openstack.fake_object_dns import READER_TOKEN, FakeObjectDns, LoggedRequest

CLOUD = "fake"
ZONE = "example.com"
ZONE_FQDN = "example.com."
CONTAINER = "phoenix"

# openstacksdk's own deprecation notices, raised inside the SDK on every proxy and resource
# (nothing Phoenix calls): kept out of the report.
pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning:openstack")

WriteClouds = Callable[..., Path]
OpenProvider = Callable[..., Provider]


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeObjectDns]:
    """The fake on a free loopback port, with the zone example.com. (small listing pages)."""
    with FakeObjectDns(page_size=3) as server:
        server.add_zone(ZONE)
        yield server


@pytest.fixture
def clouds(
    fake: FakeObjectDns, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> WriteClouds:
    """Writes clouds.yaml for the fake and points OS_CLIENT_CONFIG_FILE at it (no other
    OS_* variable, and a cwd without a clouds.yaml). Called again, it rewrites the file."""
    for name in list(os.environ):
        if name.startswith("OS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)

    def write(**kwargs: Any) -> Path:
        path = fake.write_clouds_yaml(tmp_path, cloud=CLOUD, **kwargs)
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
        return path

    write()
    return write


def _spec(regions: tuple[str, ...] = ("RegionOne",), **options: Any) -> Spec:
    return Spec.model_validate(
        {
            "app": "web",
            "provider": {"name": "openstack", "cloud": CLOUD, "options": options},
            "regions": list(regions),
            "image": {"name": "golden"},
            "flavor": "m1.small",
            "count": 2,
            "template": "cloud-init.yaml.j2",
            "health": {"http": {"port": 8080}},
            "load_balancer": {"pool": "web-pool", "member_port": 8080},
            "dns": {"zone": ZONE, "record": "www", "ttl": 60},
        }
    )


@pytest.fixture
def open_provider(clouds: WriteClouds) -> Iterator[OpenProvider]:
    """Opens the provider from a spec, as the CLI does; closes every one at the end."""
    opened: list[Provider] = []

    def open_(regions: tuple[str, ...] = ("RegionOne",), **options: Any) -> Provider:
        provider = open_openstack_provider(_spec(regions, **options), clock=SystemClock())
        opened.append(provider)
        return provider

    yield open_
    for provider in opened:
        provider.close()


@pytest.fixture
def store(open_provider: OpenProvider) -> Store:
    return open_provider().store


@pytest.fixture
def dns(open_provider: OpenProvider) -> Dns:
    found = open_provider().dns
    assert found is not None
    return found


def _writes(fake: FakeObjectDns) -> list[LoggedRequest]:
    return [r for r in fake.api_requests(service="designate") if r.method != "GET"]


def _object_puts(fake: FakeObjectDns, key: str) -> list[LoggedRequest]:
    suffix = f"/{CONTAINER}/{key}"
    return [
        r for r in fake.api_requests("PUT", "swift") if r.decoded_path.endswith(suffix)
    ]


# --- Swift: the Store -------------------------------------------------------------------------


def test_put_get_overwrite_delete(store: Store, fake: FakeObjectDns) -> None:
    store.put("apps/web/releases/r1.json", b'{"id": "r1"}')
    assert store.get("apps/web/releases/r1.json") == b'{"id": "r1"}'
    store.put("apps/web/releases/r1.json", b'{"id": "r1", "v": 2}')
    assert store.get("apps/web/releases/r1.json") == b'{"id": "r1", "v": 2}'
    assert fake.objects(CONTAINER) == {"apps/web/releases/r1.json": b'{"id": "r1", "v": 2}'}
    store.delete("apps/web/releases/r1.json")
    assert store.get("apps/web/releases/r1.json") is None
    assert fake.objects(CONTAINER) == {}

    calls = fake.api_requests()
    assert [(r.method, r.status) for r in calls] == [
        ("PUT", 201),  # the container, once
        ("PUT", 201), ("GET", 200), ("PUT", 201), ("GET", 200), ("DELETE", 204), ("GET", 404),
    ]
    assert all(r.header("x-auth-token") == "***" for r in calls)  # a token on every call
    assert all(r.header("if-none-match") is None for r in calls)  # plain put overwrites


def test_get_missing_is_none_and_delete_missing_is_ok(store: Store, fake: FakeObjectDns) -> None:
    assert store.get("nothing/here") is None  # no container yet: 404 too
    store.delete("nothing/here")
    assert store.list("nothing/") == []
    store.put("something", b"x")
    assert store.get("nothing/here") is None
    store.delete("nothing/here")
    assert [r.status for r in fake.api_requests("DELETE")] == [404, 404]


def test_list_by_prefix_is_sorted_across_pages(store: Store, fake: FakeObjectDns) -> None:
    wanted = [f"apps/web/releases/r{n:02d}.json" for n in range(10)]
    for key in reversed(wanted):
        store.put(key, key.encode())
    for other in ("apps/web/deploys/d1.json", "apps/web2/releases/r1.json", "apps/we"):
        store.put(other, b"other")
    fake.clear_log()

    assert store.list("apps/web/releases/") == wanted
    listings = fake.api_requests("GET", "swift")
    # page size 3: four full or partial pages, then the empty page that ends the walk
    assert len(listings) == 5
    assert all(r.query["format"] == ("json",) for r in listings)
    assert all(r.query["prefix"] == ("apps/web/releases/",) for r in listings)
    assert [r.query.get("marker") for r in listings] == [
        None, (wanted[2],), (wanted[5],), (wanted[8],), (wanted[9],)
    ]
    assert store.list("apps/web") == sorted([*wanted, "apps/web/deploys/d1.json",
                                             "apps/web2/releases/r1.json"])
    assert store.list("zzz/") == []


KEYS = (
    "with space/a b.json",
    "unicode/ünïcödé/日本語.json",
    "slashes/a/b/c/",
    "/leading-slash",
    "double//slash",
    "dots/../escaped",
    "dots/./kept",
    "pct/100%/q?x=1&y=2#frag",
    "plus+semi;colon:tilde~",
)


def test_keys_round_trip_unchanged(store: Store, fake: FakeObjectDns) -> None:
    for n, key in enumerate(KEYS):
        store.put(key, f"content {n}".encode())
    for n, key in enumerate(KEYS):
        assert store.get(key) == f"content {n}".encode(), key
    # Swift holds exactly these names (nothing normalised away, e.g. "dots/../escaped")
    assert set(fake.objects(CONTAINER)) == set(KEYS)
    assert store.list("") == sorted(KEYS)
    assert store.list("dots/") == ["dots/../escaped", "dots/./kept"]
    for key in KEYS:
        store.delete(key)
    assert fake.objects(CONTAINER) == {}


def test_empty_key_is_refused_before_any_request(store: Store, fake: FakeObjectDns) -> None:
    for call in (lambda: store.put("", b"x"), lambda: store.get(""),
                 lambda: store.create_exclusive("", b"x")):
        with pytest.raises(errors.BadRequest, match="empty"):
            call()
    assert fake.requests == []


def test_container_is_made_on_first_write_and_again_when_deleted_behind_our_back(
    store: Store, fake: FakeObjectDns
) -> None:
    assert store.get("k") is None
    assert not fake.has_container(CONTAINER)  # reads do not create it
    store.put("k", b"1")
    assert fake.has_container(CONTAINER)

    fake.remove_container(CONTAINER)  # someone deleted it (and its objects)
    fake.clear_log()
    assert store.get("k") is None
    assert store.list("") == []
    store.put("k", b"2")
    assert fake.objects(CONTAINER) == {"k": b"2"}
    assert [(r.method, r.status) for r in fake.api_requests("PUT")] == [
        ("PUT", 404), ("PUT", 201), ("PUT", 201)  # object 404, container, object again
    ]

    fake.remove_container(CONTAINER)
    assert store.create_exclusive("lock", b"me") is True
    assert fake.objects(CONTAINER) == {"lock": b"me"}


def test_create_exclusive_is_true_once_then_false(store: Store, fake: FakeObjectDns) -> None:
    assert store.create_exclusive("apps/web/lock", b"first") is True
    assert store.create_exclusive("apps/web/lock", b"second") is False
    assert store.get("apps/web/lock") == b"first"
    store.delete("apps/web/lock")
    assert store.create_exclusive("apps/web/lock", b"third") is True
    puts = _object_puts(fake, "apps/web/lock")
    assert [(r.header("if-none-match"), r.status) for r in puts] == [
        ("*", 201), ("*", 412), ("*", 201)
    ]


def test_create_exclusive_has_one_winner_across_separately_opened_providers(
    open_provider: OpenProvider, fake: FakeObjectDns
) -> None:
    """Two providers (as two processes would be: no shared in-process lock), 8 threads
    each, all released at once: Swift's If-None-Match decides, exactly one wins."""
    stores = [open_provider().store, open_provider().store]
    threads_per_store = 8
    start = threading.Barrier(len(stores) * threads_per_store)
    results: dict[str, bool] = {}
    failures: list[BaseException] = []
    guard = threading.Lock()

    def contend(store: Store, owner: str) -> None:
        try:
            start.wait(timeout=10)
            won = store.create_exclusive("apps/web/lock", owner.encode())
            with guard:
                results[owner] = won
        except BaseException as exc:
            with guard:
                failures.append(exc)

    threads = [
        threading.Thread(target=contend, args=(store, f"p{p}-t{t}"))
        for p, store in enumerate(stores)
        for t in range(threads_per_store)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert failures == []
    winners = [owner for owner, won in results.items() if won]
    assert len(results) == 16
    assert len(winners) == 1
    assert fake.objects(CONTAINER)["apps/web/lock"] == winners[0].encode()
    puts = _object_puts(fake, "apps/web/lock")
    assert len(puts) == 16
    assert all(r.header("if-none-match") == "*" for r in puts)
    assert sorted(r.status for r in puts if r.status is not None) == [201] + [412] * 15


def test_5xx_beyond_the_retries_is_transient(
    clouds: WriteClouds, open_provider: OpenProvider, fake: FakeObjectDns
) -> None:
    clouds(status_code_retries=2)  # keystoneauth retries 503 twice (10 ms apart)
    store = open_provider().store
    store.put("warm", b"up")

    fake.fail_next(2, 503)
    store.put("k", b"1")  # two 503s, then the third attempt lands
    assert [r.status for r in _object_puts(fake, "k")] == [503, 503, 201]

    fake.fail_next(3, 503)
    with pytest.raises(errors.Transient) as info:
        store.get("k")
    assert info.value.region == "RegionOne"
    assert "503" in str(info.value)
    assert [r.status for r in fake.api_requests("GET")] == [503, 503, 503]


def test_503_without_retries_is_transient_with_the_servers_retry_after(
    store: Store, fake: FakeObjectDns
) -> None:
    store.put("k", b"1")
    fake.fail_next(1, 503, headers={"Retry-After": "7"})
    with pytest.raises(errors.Transient) as info:
        store.create_exclusive("k2", b"x")
    assert info.value.retry_after == 7.0
    fake.fail_next(1, 500)
    with pytest.raises(errors.Transient):
        store.list("")
    assert store.get("k") == b"1"  # the faults are used up


def test_dropped_connection_is_transient(
    clouds: WriteClouds, open_provider: OpenProvider, fake: FakeObjectDns
) -> None:
    """A connection closed without an answer: keystoneauth raises ConnectFailure, which
    translate() maps to Transient (the executor retries it); clouds.yaml's connect_retries
    retries it inside keystoneauth already."""
    store = open_provider().store
    store.put("k", b"1")
    fake.drop_next(1)
    with pytest.raises(errors.Transient) as info:
        store.get("k")
    assert info.value.region == "RegionOne"
    assert fake.requests[-1].status is None  # the fake saw it, and answered nothing
    assert store.get("k") == b"1"  # the next try goes through

    clouds(connect_retries=1)
    retried = open_provider().store
    fake.drop_next(1)
    assert retried.get("k") == b"1"
    assert [r.status for r in fake.api_requests("GET")][-2:] == [None, 200]


def test_401_and_403_are_auth_errors(
    clouds: WriteClouds, open_provider: OpenProvider, fake: FakeObjectDns
) -> None:
    clouds(token="not-a-valid-token")
    with pytest.raises(errors.AuthError, match="authentication failed") as info:
        open_provider().store.get("k")
    assert info.value.exit_code is errors.ExitCode.BAD_INPUT
    bad_dns = open_provider().dns
    assert bad_dns is not None
    with pytest.raises(errors.AuthError, match="authentication failed"):
        bad_dns.get_record(ZONE, "www")
    assert {r.status for r in fake.api_requests()} == {401}

    clouds(token=READER_TOKEN)  # a token whose role may read but not write
    reader = open_provider()
    assert reader.store.get("k") is None  # reading is allowed (404: nothing there)
    with pytest.raises(errors.AuthError, match="permission denied"):
        reader.store.put("k", b"1")
    assert reader.dns is not None
    assert reader.dns.get_record(ZONE, "www") is None
    with pytest.raises(errors.AuthError, match="permission denied"):
        reader.dns.set_record(ZONE, "www", ("192.0.2.10",), 60)
    assert fake.objects(CONTAINER) == {}


def test_store_in_an_unreachable_region_and_store_region(
    clouds: WriteClouds, open_provider: OpenProvider, fake: FakeObjectDns
) -> None:
    clouds(regions=("RegionOne", "RegionTwo"), unreachable=("RegionOne",))
    down = open_provider(("RegionOne", "RegionTwo")).store
    with pytest.raises(errors.RegionUnavailable) as info:
        down.put("k", b"1")
    assert info.value.region == "RegionOne"
    assert "RegionOne" in str(info.value)
    up = open_provider(("RegionOne", "RegionTwo"), store_region="RegionTwo").store
    up.put("k", b"1")
    assert fake.objects(CONTAINER) == {"k": b"1"}


def test_store_content_is_not_logged(store: Store, fake: FakeObjectDns) -> None:
    """Phoenix's own logging (which also carries the SDKs' stdlib logging) at its default
    level: no object content in any line."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    out = io.StringIO()
    try:
        configure_logging(fmt="json", level="info", stream=out)
        marker = b"stored-content-marker-8f3a"
        store.put("k", marker)
        assert store.get("k") == marker
        assert store.create_exclusive("k", marker) is False
        fake.fail_next(1, 503)
        with pytest.raises(errors.Transient) as info:
            store.put("k", marker)
        assert marker.decode() not in str(info.value)
        logging.getLogger("phoenix.test").warning("probe")  # the stream is wired
        text = out.getvalue()
        assert "probe" in text
        assert marker.decode() not in text
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        structlog.reset_defaults()


# --- Designate: Dns ---------------------------------------------------------------------------


def test_get_missing_record_is_none(dns: Dns, fake: FakeObjectDns) -> None:
    assert dns.get_record(ZONE, "www") is None
    # discovery first (anonymous, as Designate serves it), then token-bearing API calls
    assert fake.requests[0].service == "designate-versions"
    assert fake.requests[0].header("x-auth-token") is None
    assert all(r.header("x-auth-token") == "***" for r in fake.api_requests())


def test_set_creates_an_a_record_and_an_identical_set_writes_nothing(
    dns: Dns, fake: FakeObjectDns
) -> None:
    dns.set_record(ZONE, "www", ("192.0.2.11", "192.0.2.10"), 60)
    [create] = _writes(fake)
    assert (create.method, create.status) == ("POST", 202)
    assert create.json_body == {
        "name": "www.example.com.", "type": "A", "records": ["192.0.2.10", "192.0.2.11"],
        "ttl": 60,
    }
    assert fake.recordsets(ZONE) == [
        {"name": "www.example.com.", "type": "A", "records": ["192.0.2.10", "192.0.2.11"],
         "ttl": 60}
    ]
    assert dns.get_record(ZONE, "www") == DnsRecord(
        zone=ZONE, name="www", values=("192.0.2.10", "192.0.2.11"), ttl=60
    )

    fake.clear_log()
    dns.set_record(ZONE, "www", ("192.0.2.10", "192.0.2.11"), 60)
    dns.set_record(ZONE, "www", ("192.0.2.11", "192.0.2.10"), 60)  # order does not matter
    assert fake.api_requests() != []  # it did look
    assert _writes(fake) == []


def test_set_new_values_or_ttl_updates_with_put(dns: Dns, fake: FakeObjectDns) -> None:
    dns.set_record(ZONE, "www", ("192.0.2.10",), 60)
    fake.clear_log()
    dns.set_record(ZONE, "www", ("192.0.2.20", "192.0.2.21"), 60)
    [update] = _writes(fake)
    assert (update.method, update.status) == ("PUT", 202)
    assert update.json_body["records"] == ["192.0.2.20", "192.0.2.21"]

    fake.clear_log()
    dns.set_record(ZONE, "www", ("192.0.2.20", "192.0.2.21"), 300)
    [update] = _writes(fake)
    assert update.method == "PUT"
    assert update.json_body["ttl"] == 300
    assert fake.recordsets(ZONE) == [
        {"name": "www.example.com.", "type": "A", "records": ["192.0.2.20", "192.0.2.21"],
         "ttl": 300}
    ]


def test_ipv4_to_ipv6_switch_creates_aaaa_then_deletes_a(dns: Dns, fake: FakeObjectDns) -> None:
    dns.set_record(ZONE, "www", ("192.0.2.10",), 60)
    fake.clear_log()
    dns.set_record(ZONE, "www", ("2001:db8::10",), 60)
    assert [(r.method, r.status) for r in _writes(fake)] == [("POST", 202), ("DELETE", 202)]
    assert _writes(fake)[0].json_body["type"] == "AAAA"
    assert fake.recordsets(ZONE) == [
        {"name": "www.example.com.", "type": "AAAA", "records": ["2001:db8::10"], "ttl": 60}
    ]
    assert dns.get_record(ZONE, "www") == DnsRecord(
        zone=ZONE, name="www", values=("2001:db8::10",), ttl=60
    )
    dns.set_record(ZONE, "www", ("192.0.2.10",), 60)  # and back
    assert [rs["type"] for rs in fake.recordsets(ZONE)] == ["A"]


def test_a_failed_switch_leaves_the_old_record_in_place(dns: Dns, fake: FakeObjectDns) -> None:
    dns.set_record(ZONE, "www", ("192.0.2.10",), 60)
    fake.fail_next(1, 503, method="POST")
    with pytest.raises(errors.Transient):
        dns.set_record(ZONE, "www", ("2001:db8::10",), 60)
    assert fake.recordsets(ZONE) == [
        {"name": "www.example.com.", "type": "A", "records": ["192.0.2.10"], "ttl": 60}
    ]
    dns.set_record(ZONE, "www", ("2001:db8::10",), 60)  # the retry converges
    assert [rs["type"] for rs in fake.recordsets(ZONE)] == ["AAAA"]


def test_ipv6_written_differently_from_designate_is_still_idempotent(
    dns: Dns, fake: FakeObjectDns
) -> None:
    dns.set_record(ZONE, "www", ("2001:DB8:0:0::10",), 60)
    assert fake.recordsets(ZONE)[0]["records"] == ["2001:db8::10"]  # Designate's form
    fake.clear_log()
    dns.set_record(ZONE, "www", ("2001:DB8:0:0::10",), 60)
    assert _writes(fake) == []


def test_relative_and_absolute_names_are_the_same_record(dns: Dns, fake: FakeObjectDns) -> None:
    dns.set_record(ZONE, "www", ("192.0.2.10",), 60)
    for name in ("www.example.com", "www.example.com."):
        found = dns.get_record(ZONE, name)
        assert found is not None
        assert (found.values, found.ttl) == (("192.0.2.10",), 60)
    fake.clear_log()
    dns.set_record(ZONE_FQDN, "www.example.com.", ("192.0.2.10",), 60)
    assert _writes(fake) == []
    dns.set_record(ZONE, "api.example.com.", ("192.0.2.30",), 60)
    assert [rs["name"] for rs in fake.recordsets(ZONE)] == [
        "www.example.com.", "api.example.com."
    ]


def test_record_at_the_apex_is_found_among_soa_and_ns_across_pages(
    dns: Dns, fake: FakeObjectDns
) -> None:
    fake.page_size = 1  # SOA, NS and A share the apex name: three pages
    dns.set_record(ZONE, ZONE_FQDN, ("192.0.2.10",), 60)
    fake.clear_log()
    assert dns.get_record(ZONE, ZONE_FQDN) == DnsRecord(
        zone=ZONE, name=ZONE_FQDN, values=("192.0.2.10",), ttl=60
    )
    listings = [r for r in fake.api_requests("GET") if r.path.endswith("/recordsets")]
    assert len(listings) == 3
    assert [r.query.get("marker") is not None for r in listings] == [False, True, True]
    dns.set_record(ZONE, ZONE_FQDN, ("192.0.2.10",), 60)
    assert _writes(fake) == []


def test_record_made_by_another_tool_is_read_and_updated(
    dns: Dns, fake: FakeObjectDns
) -> None:
    fake.add_recordset(ZONE, "www.example.com.", "A", ["192.0.2.99"])  # no TTL of its own
    assert dns.get_record(ZONE, "www") == DnsRecord(
        zone=ZONE, name="www", values=("192.0.2.99",), ttl=3600  # the zone's
    )
    dns.set_record(ZONE, "www", ("192.0.2.10",), 60)
    assert [r.method for r in _writes(fake)] == ["PUT"]


def test_missing_zone_is_unknown_resource_naming_it(dns: Dns, fake: FakeObjectDns) -> None:
    with pytest.raises(errors.UnknownResource, match=r"'missing\.example\.'"):
        dns.get_record("missing.example", "www")
    with pytest.raises(errors.UnknownResource, match=r"'missing\.example\.'") as info:
        dns.set_record("missing.example.", "www", ("192.0.2.10",), 60)
    assert info.value.exit_code is errors.ExitCode.BAD_INPUT
    assert _writes(fake) == []


@pytest.mark.parametrize(
    "values", [("not-an-ip",), ("192.0.2.10", "www.example.org"), ("192.0.2.10", "2001:db8::1")]
)
def test_values_that_are_not_one_family_of_ips_fail_before_any_request(
    dns: Dns, fake: FakeObjectDns, values: tuple[str, ...]
) -> None:
    with pytest.raises(errors.BadRequest):
        dns.set_record(ZONE, "www", values, 60)
    assert fake.requests == []


def test_designate_5xx_is_transient_without_trying_another_region(
    clouds: WriteClouds, open_provider: OpenProvider, fake: FakeObjectDns
) -> None:
    clouds(regions=("RegionOne", "RegionTwo"))
    dns = open_provider(("RegionOne", "RegionTwo")).dns
    assert dns is not None
    assert dns.get_record(ZONE, "www") is None
    fake.clear_log()
    fake.fail_next(5, 503)
    with pytest.raises(errors.Transient) as info:
        dns.get_record(ZONE, "www")
    assert info.value.region == "RegionOne"
    # find_zone's lookup by id swallows its 503, the listing's 503 ends the call
    assert [r.status for r in fake.requests] == [503, 503]


def test_first_region_unreachable_the_second_answers(
    clouds: WriteClouds, open_provider: OpenProvider, fake: FakeObjectDns
) -> None:
    clouds(regions=("RegionOne", "RegionTwo"), unreachable=("RegionOne",))
    dns = open_provider(("RegionOne", "RegionTwo")).dns  # dns_region unset
    assert dns is not None
    assert dns.get_record(ZONE, "www") is None
    dns.set_record(ZONE, "www", ("192.0.2.10",), 60)
    found = dns.get_record(ZONE, "www")
    assert found is not None
    assert found.values == ("192.0.2.10",)
    assert [r.method for r in _writes(fake)] == ["POST"]  # RegionTwo's endpoint is the fake


def test_a_dropped_connection_is_retried_not_failed_over(
    clouds: WriteClouds, open_provider: OpenProvider, fake: FakeObjectDns
) -> None:
    """One lost connection is no region outage: the error is Transient (the executor
    retries it) and the second region is not asked."""
    clouds(regions=("RegionOne", "RegionTwo"))  # both regions lead to the fake
    dns = open_provider(("RegionOne", "RegionTwo")).dns
    assert dns is not None
    dns.set_record(ZONE, "www", ("192.0.2.10",), 60)
    fake.clear_log()
    fake.drop_next(1, path_contains="/v2/zones")
    with pytest.raises(errors.Transient) as info:
        dns.get_record(ZONE, "www")
    assert info.value.region == "RegionOne"
    assert [r.status for r in fake.requests] == [None]  # RegionTwo never asked
    found = dns.get_record(ZONE, "www")
    assert found is not None
    assert found.values == ("192.0.2.10",)


def test_dns_region_unreachable_is_region_unavailable(
    clouds: WriteClouds, open_provider: OpenProvider, fake: FakeObjectDns
) -> None:
    clouds(regions=("RegionOne", "RegionTwo"), unreachable=("RegionOne",))
    dns = open_provider(("RegionTwo",), dns_region="RegionOne").dns
    assert dns is not None
    with pytest.raises(errors.RegionUnavailable) as info:
        dns.get_record(ZONE, "www")
    assert info.value.region == "RegionOne"
    assert "RegionOne" in str(info.value)
    with pytest.raises(errors.RegionUnavailable):
        dns.set_record(ZONE, "www", ("192.0.2.10",), 60)
    assert fake.requests == []


# --- the fake itself: the real-service answers the tests rely on -------------------------------


@pytest.fixture
def conn(clouds: WriteClouds) -> Iterator[Any]:
    connection = openstack.connect(cloud=CLOUD, region_name="RegionOne")
    yield connection
    connection.close()


def test_fake_swift_answers_like_swift(conn: Any, fake: FakeObjectDns) -> None:
    swift = conn.object_store
    assert swift.put("/c/o", data=b"x").status_code == 404  # no container
    assert swift.put("/c").status_code == 201
    assert swift.put("/c").status_code == 202
    assert swift.get("/c", params={"format": "json"}).json() == []  # 200, an empty list
    assert swift.get("/c").status_code == 204  # plain listing of an empty container
    assert swift.put("/c/o", data=b"x", headers={"If-None-Match": "*"}).status_code == 201
    assert swift.put("/c/o", data=b"y", headers={"If-None-Match": "*"}).status_code == 412
    assert swift.put("/c/o", data=b"y", headers={"If-None-Match": "abc"}).status_code == 400
    assert swift.get("/c", params={"limit": "4"}).status_code == 412  # above page_size 3
    assert swift.get("/c").text == "o\n"
    assert swift.delete("/c").status_code == 409  # not empty
    assert swift.delete("/c/o").status_code == 204
    assert swift.delete("/c/o").status_code == 404
    assert swift.delete("/c").status_code == 204


def test_fake_designate_answers_like_designate(conn: Any, fake: FakeObjectDns) -> None:
    zone = conn.dns.find_zone(ZONE_FQDN, ignore_missing=False)
    created = conn.dns.create_recordset(
        zone, name="x.example.com.", type="A", records=["192.0.2.1"], ttl=60
    )
    assert created.status == "PENDING"
    assert fake.requests[-1].status == 202
    with pytest.raises(os_exc.ConflictException):  # DuplicateRecordset
        conn.dns.create_recordset(
            zone, name="x.example.com.", type="A", records=["192.0.2.2"], ttl=60
        )
    with pytest.raises(os_exc.BadRequestException):  # outside the zone
        conn.dns.create_recordset(zone, name="x.example.org.", type="A", records=["192.0.2.1"])
    with pytest.raises(os_exc.BadRequestException):  # not an IPv4 address
        conn.dns.create_recordset(zone, name="y.example.com.", type="A", records=["::1"])
    fake.page_size = 1
    types = [rs.type for rs in conn.dns.recordsets(zone)]
    assert types == ["SOA", "NS", "A"]  # three pages, links.next each time
    assert conn.dns.find_zone("nope.example.", ignore_missing=True) is None
    conn.dns.delete_recordset(created, zone)
    assert [r.status for r in fake.requests[-2:]] == [200, 202]  # GET then DELETE
    with pytest.raises(os_exc.NotFoundException):
        conn.dns.get_recordset(created.id, zone)
