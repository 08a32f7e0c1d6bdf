"""libcloud's exceptions as ``phoenix.errors``: the one place they are interpreted.

libcloud reports failures in several shapes: typed exceptions (``InvalidCredsError``,
``ObjectDoesNotExistError``, ``RateLimitReachedError``), ``ProviderError``/``BaseHTTPError``
with an HTTP code, and for AWS query APIs a plain ``Exception("Code: message")``. The AWS
error codes below are matched by name; the rest by HTTP status through the shared table.
"""

from __future__ import annotations

import functools
import socket
import ssl
from collections.abc import Callable, Mapping
from typing import Any, Concatenate, ParamSpec, TypeVar

from phoenix import errors
from phoenix.providers.http_errors import AuthHints, error_for_status

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S")

_HINTS = AuthHints(
    unauthorized="check provider.options.credentials (the variables or file it names)",
    forbidden="check the permissions of the credentials' user or role",
)

# AWS (and AWS-compatible) error codes: what they mean for a deploy.
_NOT_FOUND = (
    "InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed", "LoadBalancerNotFound",
    "NoSuchHostedZone", "NoSuchKey", "NoSuchBucket", "InvalidChangeBatch:",
)
_UNKNOWN_RESOURCE = (
    "InvalidAMIID", "InvalidKeyPair.NotFound", "InvalidGroup.NotFound",
    "InvalidSubnetID.NotFound", "InvalidInstanceType",
)
_QUOTA = ("InstanceLimitExceeded", "VcpuLimitExceeded", "ResourceLimitExceeded",
          "TooManyLoadBalancers")
_CAPACITY = ("InsufficientInstanceCapacity", "InsufficientHostCapacity", "Unsupported:")
_TRANSIENT = ("RequestLimitExceeded", "Throttling", "ThrottlingException", "ServiceUnavailable",
              "InternalError", "InternalFailure", "Unavailable", "PriorRequestNotComplete",
              "SlowDown", "RequestTimeout")
_AUTH = ("AuthFailure", "UnauthorizedOperation", "InvalidClientTokenId", "SignatureDoesNotMatch",
         "AccessDenied", "InvalidAccessKeyId", "ExpiredToken")
_BAD_REQUEST = ("InvalidParameterValue", "InvalidParameterCombination", "MissingParameter",
                "ValidationError", "InvalidInput", "MalformedPolicyDocument")


def _has_code(text: str, codes: tuple[str, ...]) -> bool:
    return any(code in text for code in codes)


def translate(exc: BaseException, *, region: str | None, service: str) -> errors.PhoenixError:
    """The ``phoenix.errors`` type for an exception raised by a libcloud driver."""
    from libcloud.common.exceptions import RateLimitReachedError
    from libcloud.common.types import InvalidCredsError
    from libcloud.dns.types import RecordDoesNotExistError, ZoneDoesNotExistError
    from libcloud.storage.types import ContainerDoesNotExistError, ObjectDoesNotExistError

    if isinstance(exc, errors.PhoenixError):
        return exc
    where = f" ({service}{', ' + region if region else ''})"
    text = _describe(exc)
    if isinstance(exc, RateLimitReachedError):
        retry = getattr(exc, "retry_after", None)
        return errors.Transient(
            f"rate limited{where}: {text}", region=region,
            retry_after=float(retry) if retry else None,
        )
    if isinstance(exc, InvalidCredsError) or _has_code(text, _AUTH):
        return errors.AuthError(f"authentication failed{where}: {text}; {_HINTS.unauthorized}",
                                region=region)
    if isinstance(exc, ObjectDoesNotExistError | ContainerDoesNotExistError
                  | RecordDoesNotExistError):
        return errors.NotFound(f"not found{where}: {text}", region=region)
    if isinstance(exc, ZoneDoesNotExistError):
        return errors.UnknownResource(f"DNS zone not found{where}: {text}; fix dns.zone")
    if _has_code(text, _QUOTA):
        return errors.QuotaExceeded(f"quota exceeded{where}: {text}", region=region)
    if _has_code(text, _CAPACITY):
        return errors.CapacityError(f"no capacity{where}: {text}", region=region)
    if _has_code(text, _UNKNOWN_RESOURCE):
        return errors.UnknownResource(f"{text}{where}; check the spec's image, flavor or key")
    if _has_code(text, _NOT_FOUND):
        return errors.NotFound(f"not found{where}: {text}", region=region)
    if _has_code(text, _TRANSIENT):
        return errors.Transient(f"{text}{where}; retry", region=region)
    if _has_code(text, _BAD_REQUEST):
        return errors.BadRequest(f"request refused{where}: {text}", region=region)
    status = _status_of(exc)
    if status is not None:
        return error_for_status(status, text, _headers_of(exc), region=region, where=where,
                                hints=_HINTS)
    if isinstance(exc, ConnectionRefusedError | socket.gaierror | ssl.SSLError):
        return errors.RegionUnavailable(f"cannot reach the API{where}: {text}", region=region)
    if isinstance(exc, TimeoutError | ConnectionError):
        return errors.Transient(f"connection problem{where}: {text}", region=region)
    if _is_requests_connection_error(exc):
        refused = "refused" in text.lower() or "name or service" in text.lower()
        if refused:
            return errors.RegionUnavailable(f"cannot reach the API{where}: {text}",
                                            region=region)
        return errors.Transient(f"connection problem{where}: {text}", region=region)
    return errors.Permanent(f"libcloud call failed{where}: {text}", region=region)


def _is_requests_connection_error(exc: BaseException) -> bool:
    try:
        import requests
    except ImportError:  # pragma: no cover - libcloud depends on requests
        return False
    return isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout)


def _status_of(exc: BaseException) -> int | None:
    for attr in ("http_code", "code", "status"):
        value = getattr(exc, attr, None)
        if isinstance(value, int) and 100 <= value <= 599:
            return value
    return None


def _headers_of(exc: BaseException) -> Mapping[str, str]:
    headers = getattr(exc, "headers", None)
    if not isinstance(headers, Mapping):
        return {}
    return {str(k).lower(): str(v) for k, v in headers.items()}


def _describe(exc: BaseException) -> str:
    value = getattr(exc, "value", None)
    text = str(value if isinstance(value, str) and value else exc).strip()
    return text or exc.__class__.__name__


class Part:
    """Base of the adapters: the service name and region a call goes to, for errors."""

    service = "libcloud"

    def _region_of_call(self, args: tuple[Any, ...]) -> str | None:
        first = args[0] if args else None
        return first if isinstance(first, str) else None


def translated(method: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
    """Run an adapter method so that no libcloud exception escapes it."""

    @functools.wraps(method)
    def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except errors.PhoenixError:
            raise
        except Exception as exc:
            part: Any = self
            region = part._region_of_call(tuple(args))
            raise translate(exc, region=region, service=part.service) from exc

    return wrapper
