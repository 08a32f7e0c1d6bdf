"""libcloud's failures as phoenix.errors: what each means for a deploy (retry, fail fast,
fix credentials, a region-level failure for failover)."""

from __future__ import annotations

import pytest
import requests
from libcloud.common.exceptions import BaseHTTPError, RateLimitReachedError
from libcloud.common.types import InvalidCredsError, LibcloudError
from libcloud.storage.types import ObjectDoesNotExistError

from phoenix import errors
from phoenix.providers.libcloud.translate import translate


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        # AWS query APIs: libcloud raises a plain Exception("Code: message").
        (Exception("InvalidInstanceID.NotFound: The instance ID 'i-1' does not exist"),
         errors.NotFound),
        (Exception("InstanceLimitExceeded: You have requested more instances (21)"),
         errors.QuotaExceeded),
        (Exception("InsufficientInstanceCapacity: We currently do not have capacity"),
         errors.CapacityError),
        (Exception("InvalidAMIID.NotFound: The image id '[ami-1]' does not exist"),
         errors.UnknownResource),
        (Exception("RequestLimitExceeded: Request limit exceeded."), errors.Transient),
        (Exception("UnauthorizedOperation: You are not authorized"), errors.AuthError),
        (Exception("InvalidParameterValue: Value (x) for parameter is invalid"),
         errors.BadRequest),
        # Typed libcloud exceptions and HTTP codes.
        (InvalidCredsError("bad key"), errors.AuthError),
        (RateLimitReachedError(headers={"retry-after": "3"}), errors.Transient),
        (BaseHTTPError(503, "Service Unavailable"), errors.Transient),
        (BaseHTTPError(404, "gone"), errors.NotFound),
        (BaseHTTPError(400, "what"), errors.BadRequest),
        (LibcloudError("Unknown error. Status code: 418"), errors.Permanent),
        # The network: refused is a region outage, a reset is worth a retry.
        (requests.exceptions.ConnectionError("[Errno 111] Connection refused"),
         errors.RegionUnavailable),
        (requests.exceptions.ConnectionError("Connection aborted: RemoteDisconnected"),
         errors.Transient),
        (TimeoutError("timed out"), errors.Transient),
    ],
)
def test_translation(exc: BaseException, expected: type[errors.PhoenixError]) -> None:
    translated = translate(exc, region="us-east-1", service="compute")
    assert type(translated) is expected
    if isinstance(translated, errors.ProviderError):
        assert translated.region == "us-east-1"
    assert "compute" in str(translated) or isinstance(translated, errors.UnknownResource)


def test_rate_limit_carries_retry_after() -> None:
    translated = translate(RateLimitReachedError(headers={"retry-after": "3"}),
                           region=None, service="dns")
    assert isinstance(translated, errors.Transient)
    assert translated.retry_after == 3.0


def test_a_missing_object_is_not_found() -> None:
    exc = ObjectDoesNotExistError(value="", driver=None, object_name="k")
    assert type(translate(exc, region=None, service="storage")) is errors.NotFound
