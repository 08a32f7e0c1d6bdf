"""The OpenStack provider's error boundary: real SDK exceptions in, phoenix.errors out.

Exceptions are made the way openstacksdk and keystoneauth make them (``raise_from_response``
and ``from_response`` on real ``requests.Response`` objects, ``openstack.connect`` with a
missing cloud), so a change in the SDK's exception shapes fails here, not in a deploy.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import openstack
import openstack.exceptions as os_exc
import pytest
import requests
from keystoneauth1 import exceptions as ks_exc
from keystoneauth1.exceptions.http import from_response as ks_from_response
from pydantic import ValidationError

from phoenix import errors
from phoenix.clock import FakeClock
from phoenix.providers.base import Compute, LoadBalancer, PoolEndpoint, Store
from phoenix.providers.openstack import (
    OpenStackCloud,
    OpenStackCompute,
    OpenStackLoadBalancer,
    SwiftStore,
    app_tag,
    open_openstack_provider,
    release_tag,
    translate,
)
from phoenix.spec import Spec

URL = "https://compute.example.test/v2.1/servers"
SWIFT = "https://swift.example.test/v1/AUTH_demo"


def _response(
    status: int,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    method: str = "POST",
    url: str = URL,
) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.url = url
    response.reason = requests.status_codes._codes[status][0].upper()  # type: ignore[attr-defined]
    response.headers.update(headers or {})
    if body is not None:
        response._content = json.dumps(body).encode()
        response.headers.setdefault("Content-Type", "application/json")
    else:
        response._content = b""
    response.request = requests.Request(method, url).prepare()
    return response


def _sdk_error(status: int, body: Any = None, **kwargs: Any) -> os_exc.HttpException:
    """The exception openstacksdk raises for this response."""
    with pytest.raises(os_exc.HttpException) as info:
        os_exc.raise_from_response(_response(status, body, **kwargs))
    return info.value


def _ks_error(status: int, body: Any = None, **kwargs: Any) -> ks_exc.HttpError:
    """The exception keystoneauth raises for this response (e.g. while authenticating)."""
    response = _response(status, body, **kwargs)
    error = ks_from_response(response, "POST", response.url)
    assert isinstance(error, ks_exc.HttpError)
    return error


# --- HTTP statuses -----------------------------------------------------------------------------


def test_not_found_is_not_found() -> None:
    body = {"itemNotFound": {"message": "Instance x could not be found.", "code": 404}}
    exc = _sdk_error(404, body)
    assert isinstance(exc, os_exc.ResourceNotFound)
    err = translate(exc, region="RegionOne")
    assert type(err) is errors.NotFound
    assert err.region == "RegionOne"
    assert "could not be found" in str(err)


@pytest.mark.parametrize("make", [_sdk_error, _ks_error])
def test_401_is_auth_error_pointing_at_credentials(make: Any) -> None:
    body = {"error": {"message": "The request you have made requires authentication."}}
    err = translate(make(401, body), region="r1")
    assert type(err) is errors.AuthError
    assert err.exit_code == errors.ExitCode.BAD_INPUT
    assert "clouds.yaml" in str(err)
    assert "OS_" in str(err)


def test_403_without_quota_is_auth_error_naming_roles() -> None:
    message = "Policy doesn't allow os_compute_api:servers:create to be performed."
    exc = _sdk_error(403, {"forbidden": {"message": message, "code": 403}})
    err = translate(exc, region="r1")
    assert type(err) is errors.AuthError
    assert "roles" in str(err)


@pytest.mark.parametrize("status", [403, 413])
def test_quota_exceeded_carries_novas_message(status: int) -> None:
    message = "Quota exceeded for instances: Requested 1, but already used 10 of 10 instances"
    exc = _sdk_error(status, {"forbidden": {"message": message, "code": status}})
    err = translate(exc, region="r2")
    assert type(err) is errors.QuotaExceeded
    assert message in str(err)
    assert err.region == "r2"


def test_413_rate_limit_is_transient_with_retry_after_seconds() -> None:
    exc = _sdk_error(413, {"overLimit": {"message": "Rate limited"}}, headers={"Retry-After": "7"})
    err = translate(exc, region="r1")
    assert isinstance(err, errors.Transient)
    assert err.retry_after == 7.0


def test_429_retry_after_as_http_date_is_relative_to_the_servers_date() -> None:
    exc = _ks_error(
        429,
        {"error": {"message": "slow down"}},
        headers={
            "Retry-After": "Wed, 21 Oct 2026 07:28:30 GMT",
            "Date": "Wed, 21 Oct 2026 07:28:00 GMT",
        },
    )
    err = translate(exc, region="r1")
    assert isinstance(err, errors.Transient)
    assert err.retry_after == 30.0


def test_409_pending_update_is_transient() -> None:
    exc = _sdk_error(
        409,
        {"faultstring": "Invalid state PENDING_UPDATE of loadbalancer resource lb-1"},
        method="PUT",
    )
    assert isinstance(exc, os_exc.ConflictException)
    err = translate(exc, region="r1")
    assert isinstance(err, errors.Transient)
    assert "PENDING_UPDATE" in str(err)


def test_400_is_bad_request() -> None:
    exc = _sdk_error(400, {"badRequest": {"message": "Invalid imageRef provided.", "code": 400}})
    err = translate(exc, region="r1")
    assert type(err) is errors.BadRequest
    assert "Invalid imageRef" in str(err)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_transient(status: int) -> None:
    err = translate(_sdk_error(status, headers={"Retry-After": "2"}), region="r1")
    assert isinstance(err, errors.Transient)
    assert err.retry_after == 2.0


def test_no_valid_host_is_capacity_error() -> None:
    exc = _sdk_error(500, {"computeFault": {"message": "No valid host was found. ", "code": 500}})
    assert type(translate(exc, region="r1")) is errors.CapacityError
    failure = os_exc.ResourceFailure(
        "Error in creating the server. Code: 500. Reason: No valid host was found."
    )
    assert type(translate(failure, region="r1")) is errors.CapacityError


# --- connection and catalog -------------------------------------------------------------------


def test_connect_failure_is_region_unavailable() -> None:
    exc = ks_exc.ConnectFailure("Unable to establish connection to https://nova.r9:8774")
    err = translate(exc, region="r9")
    assert type(err) is errors.RegionUnavailable
    assert err.region == "r9"


@pytest.mark.parametrize(
    "reason",
    [
        "('Connection aborted.', RemoteDisconnected('Remote end closed connection without"
        " response'))",
        "('Connection aborted.', ConnectionResetError(104, 'Connection reset by peer'))",
    ],
)
def test_connection_dropped_mid_request_is_transient(reason: str) -> None:
    """Made, then lost: a retry is worth it, and it is no reason to leave the region."""
    exc = ks_exc.ConnectFailure(f"Unable to establish connection to https://nova.r1: {reason}")
    err = translate(exc, region="r1")
    assert type(err) is errors.Transient
    assert err.region == "r1"


def test_connection_refused_is_region_unavailable() -> None:
    exc = ks_exc.ConnectFailure(
        "Unable to establish connection to https://nova.r1: HTTPSConnectionPool(host='nova.r1',"
        " port=8774): Max retries exceeded (Caused by NewConnectionError('[Errno 111]"
        " Connection refused'))"
    )
    assert type(translate(exc, region="r1")) is errors.RegionUnavailable


def test_connect_timeout_is_transient() -> None:
    err = translate(ks_exc.ConnectTimeout("Request to https://nova timed out"), region="r1")
    assert isinstance(err, errors.Transient)


def test_discovery_failure_is_region_unavailable() -> None:
    exc = ks_exc.DiscoveryFailure("Could not find versioned identity endpoints")
    err = translate(exc, region="r1")
    assert type(err) is errors.RegionUnavailable


@pytest.mark.parametrize(
    "exc",
    [
        ks_exc.EndpointNotFound("public endpoint for compute service in r7 region not found"),
        os_exc.EndpointNotFound("no endpoint"),
    ],
)
def test_endpoint_not_found_is_region_unavailable_naming_the_region(exc: Exception) -> None:
    err = translate(exc, region="r7")
    assert type(err) is errors.RegionUnavailable
    assert "'r7'" in str(err)


# --- configuration ----------------------------------------------------------------------------


@pytest.fixture
def clouds_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An isolated clouds.yaml with one cloud, and no OS_* variables."""
    import os

    for name in list(os.environ):
        if name.startswith("OS_"):
            monkeypatch.delenv(name)
    path = tmp_path / "clouds.yaml"
    path.write_text(
        "clouds:\n"
        "  testcloud:\n"
        "    auth:\n"
        "      auth_url: http://127.0.0.1:9/v3\n"
        "      username: demo\n"
        "      password: secret-password\n"
        "      project_name: demo\n"
        "      user_domain_name: Default\n"
        "      project_domain_name: Default\n"
        "    regions: [RegionOne, RegionTwo]\n"
    )
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    monkeypatch.chdir(tmp_path)
    yield path


def test_missing_cloud_from_connect_is_input_error(clouds_yaml: Path) -> None:
    with pytest.raises(os_exc.ConfigException) as info:
        openstack.connect(cloud="no-such-cloud", region_name="RegionOne")
    err = translate(info.value, region="RegionOne", cloud="no-such-cloud")
    assert type(err) is errors.InputError
    assert "no-such-cloud" in str(err)
    assert "clouds.yaml" in str(err)


def _spec(cloud: str | None, regions: list[str], **options: Any) -> Spec:
    return Spec.model_validate(
        {
            "app": "web",
            "provider": {"name": "openstack", "cloud": cloud, "options": options},
            "regions": regions,
            "image": {"name": "golden"},
            "flavor": "m1.small",
            "count": 2,
            "template": "cloud-init.yaml.j2",
            "health": {"http": {"port": 8080}},
            "load_balancer": {"pool": "web-pool", "member_port": 8080},
        }
    )


def test_open_with_nonexistent_cloud_is_input_error(clouds_yaml: Path) -> None:
    with pytest.raises(errors.InputError) as info:
        open_openstack_provider(_spec("no-such-cloud", ["RegionOne"]), clock=FakeClock())
    message = str(info.value)
    assert "no-such-cloud" in message
    assert "clouds.yaml" in message
    assert info.value.exit_code == errors.ExitCode.BAD_INPUT


def test_open_without_cloud_or_env_is_input_error(clouds_yaml: Path) -> None:
    clouds_yaml.write_text("clouds: {}\n")  # (with exactly one cloud, the SDK picks it)
    with pytest.raises(errors.InputError) as info:
        open_openstack_provider(_spec(None, ["RegionOne"]), clock=FakeClock())
    assert "OS_" in str(info.value)


def test_open_with_region_unknown_to_the_cloud_is_input_error(clouds_yaml: Path) -> None:
    with pytest.raises(errors.InputError) as info:
        open_openstack_provider(_spec("testcloud", ["RegionOne", "Nowhere"]), clock=FakeClock())
    assert "Nowhere" in str(info.value)


def test_an_unknown_option_is_refused_with_the_spec(clouds_yaml: Path) -> None:
    with pytest.raises(ValidationError, match=r"provider\.openstack\.options\.bogus"):
        _spec("testcloud", ["RegionOne"], bogus=1)


def test_open_is_offline_and_parts_satisfy_the_protocols(clouds_yaml: Path) -> None:
    provider = open_openstack_provider(
        _spec("testcloud", ["RegionOne", "RegionTwo"], interface="public", api_timeout=30),
        clock=FakeClock(),
    )
    assert provider.name == "openstack"
    assert isinstance(provider.compute, Compute)
    assert isinstance(provider.load_balancer, LoadBalancer)
    assert isinstance(provider.load_balancer, PoolEndpoint)
    assert isinstance(provider.store, Store)
    assert provider.dns is None  # the spec has no dns section
    provider.close()


def test_errors_never_carry_the_password(clouds_yaml: Path) -> None:
    with pytest.raises(errors.PhoenixError) as info:
        open_openstack_provider(_spec("testcloud", ["Nowhere"]), clock=FakeClock())
    assert "secret-password" not in str(info.value)


def test_phoenix_errors_pass_through() -> None:
    original = errors.UnknownResource("flavor 'x' not found")
    assert translate(original, region="r1") is original


def test_other_sdk_errors_are_permanent_provider_errors() -> None:
    err = translate(os_exc.SDKException("something odd"), region="r1")
    assert isinstance(err, errors.Permanent)
    assert "something odd" in str(err)


# --- the boundary around adapter methods ------------------------------------------------------


def _cloud(conn: Any, clock: FakeClock | None = None, **kwargs: Any) -> OpenStackCloud:
    return OpenStackCloud(
        "testcloud", ["r1"], clock=clock or FakeClock(), connect=lambda **_: conn, **kwargs
    )


def _raising(exc: BaseException) -> Any:
    def call(*args: Any, **kwargs: Any) -> Any:
        raise exc

    return call


def test_adapter_methods_translate_sdk_exceptions() -> None:
    conn = SimpleNamespace(
        compute=SimpleNamespace(
            servers=_raising(ks_exc.ConnectFailure("Unable to establish connection")),
            get_limits=_raising(_sdk_error(503)),
            delete_server=_raising(_sdk_error(404)),
        )
    )
    compute = OpenStackCompute(_cloud(conn))
    with pytest.raises(errors.RegionUnavailable) as info:
        compute.list_nodes("r1", "web")
    assert info.value.region == "r1"
    assert isinstance(info.value.__cause__, ks_exc.ConnectFailure)
    with pytest.raises(errors.Transient):
        compute.quota("r1")
    compute.delete_node("r1", "gone")  # NotFound on delete is success


def test_load_balancer_write_waits_for_pending_update_with_the_clock() -> None:
    clock = FakeClock()
    start = clock.now()
    statuses = iter(["PENDING_UPDATE", "PENDING_UPDATE", "ACTIVE"])
    updates: list[dict[str, Any]] = []
    member = SimpleNamespace(
        id="m-1", name="web-r1-0", address="192.0.2.5", protocol_port=8080, weight=1,
        is_admin_state_up=True, operating_status="ONLINE",
    )
    octavia = SimpleNamespace(
        find_pool=lambda *a, **k: SimpleNamespace(
            id="pool-1", loadbalancers=[{"id": "lb-1"}], listeners=[{"id": "ls-1"}]
        ),
        members=lambda pool_id: [member],
        get_load_balancer=lambda lb_id: SimpleNamespace(provisioning_status=next(statuses)),
        update_member=lambda member_id, pool_id, **attrs: updates.append(attrs),
    )
    lb = OpenStackLoadBalancer(_cloud(SimpleNamespace(load_balancer=octavia), clock))
    lb.drain_member("r1", "web-pool", "web-r1-0")
    assert updates == [{"weight": 0}]
    assert clock.now() > start  # it slept on the injected clock, not for real


def test_load_balancer_stuck_pending_is_transient_after_the_bound() -> None:
    clock = FakeClock()
    octavia = SimpleNamespace(
        find_pool=lambda *a, **k: SimpleNamespace(
            id="pool-1", loadbalancers=[{"id": "lb-1"}], listeners=[]
        ),
        members=lambda pool_id: [],
        get_load_balancer=lambda lb_id: SimpleNamespace(provisioning_status="PENDING_UPDATE"),
    )
    lb = OpenStackLoadBalancer(
        _cloud(SimpleNamespace(load_balancer=octavia), clock, lb_wait_seconds=10)
    )
    with pytest.raises(errors.Transient, match="PENDING_UPDATE"):
        lb.add_member("r1", "web-pool", "web-r1-0", "192.0.2.5", 8080)


def test_store_create_exclusive_maps_412_to_false() -> None:
    calls: list[tuple[str, dict[str, str]]] = []

    def put(path: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
        calls.append((path, dict(headers or {})))
        if path == "/phoenix":
            return _response(201, method="PUT", url=SWIFT + path)
        return _response(412 if len(calls) > 2 else 201, method="PUT", url=SWIFT + path)

    store = SwiftStore(_cloud(SimpleNamespace(object_store=SimpleNamespace(put=put))))
    assert store.create_exclusive("web/lock", b"owner-1") is True
    assert store.create_exclusive("web/lock", b"owner-2") is False
    assert calls[1] == ("/phoenix/web/lock", {
        "If-None-Match": "*", "Content-Type": "application/octet-stream",
    })


def test_tags_fit_novas_rules() -> None:
    for tag in (app_tag("a" * 40), release_tag("r12-abcdef01"), release_tag("x/y,z" * 30)):
        assert 1 <= len(tag) <= 60
        assert "," not in tag and "/" not in tag
