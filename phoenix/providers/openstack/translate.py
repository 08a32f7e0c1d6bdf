"""openstacksdk's and keystoneauth's exceptions as ``phoenix.errors``: the one place they
are interpreted.

Both SDKs raise their own exception types (and some calls answer with a plain
``requests.Response``). ``translate`` turns any of them into a ``phoenix.errors`` type, so
the engine decides retry / fail fast / fail over from the type alone: 409 and 5xx are
``Transient``, a region whose API cannot be reached is ``RegionUnavailable``, bad
credentials are ``AuthError``. ``SDK_ERRORS`` is what the adapters catch.
"""

from __future__ import annotations

from collections.abc import Mapping

import openstack.exceptions as os_exc
from keystoneauth1 import exceptions as ks_exc

from phoenix import errors
from phoenix.providers.http_errors import AuthHints, error_for_status

_CLOUDS_YAML_SEARCH = (
    "./clouds.yaml, ~/.config/openstack/clouds.yaml, /etc/openstack/clouds.yaml"
    " (or the file named by OS_CLIENT_CONFIG_FILE)"
)


def translate(
    exc: BaseException, *, region: str | None, cloud: str | None = None
) -> errors.PhoenixError:
    """The ``phoenix.errors`` type for an exception raised by openstacksdk or keystoneauth.

    ``region`` says where the call went (carried on provider errors and named in the
    message); ``cloud`` names the clouds.yaml entry for configuration errors.
    """
    if isinstance(exc, errors.PhoenixError):
        return exc
    where = f" in region {region}" if region else ""
    text = describe(exc)

    # Configuration: nothing was sent anywhere yet.
    if isinstance(exc, os_exc.ConfigException | ks_exc.AuthPluginException):
        return errors.InputError(_config_message(text, cloud))

    status = _status_of(exc)
    if status is not None:
        return _from_status(status, text, _headers_of(exc), region=region, where=where)

    if "no valid host" in text.lower():
        return errors.CapacityError(
            f"no capacity{where}: {text}; try another flavor or availability zone, or"
            " let failover use the next region",
            region=region,
        )
    if isinstance(
        exc,
        os_exc.EndpointNotFound | ks_exc.EndpointNotFound | os_exc.ServiceDiscoveryException,
    ):
        return errors.RegionUnavailable(
            f"no endpoint for region {region!r} in the service catalog ({text}); check the"
            " spec's regions against `openstack region list` / `openstack catalog list`",
            region=region,
        )
    if isinstance(exc, ks_exc.AuthorizationFailure | ks_exc.MissingAuthMethods):
        return errors.AuthError(
            f"authentication failed{where}: {text}; check the credentials in clouds.yaml"
            " (provider.cloud) or the OS_* environment variables",
            region=region,
        )
    if isinstance(exc, ks_exc.ConnectTimeout):
        return errors.Transient(f"timed out connecting to the API{where}: {text}", region=region)
    if isinstance(exc, ks_exc.ConnectionError) and _dropped_mid_request(text):
        return errors.Transient(
            f"the API closed the connection without answering{where}: {text}", region=region
        )
    if isinstance(exc, ks_exc.ConnectionError):  # refused, no route, DNS, TLS, unknown
        return errors.RegionUnavailable(
            f"cannot reach the API{where}: {text}; check the network path to the endpoint"
            " (and cacert / verify settings in clouds.yaml for TLS errors)",
            region=region,
        )
    if isinstance(exc, ks_exc.DiscoveryFailure):
        return errors.RegionUnavailable(
            f"API version discovery failed{where}: {text}", region=region
        )
    if isinstance(exc, os_exc.ResourceTimeout):
        return errors.Transient(f"timed out waiting{where}: {text}", region=region)
    if isinstance(exc, os_exc.DuplicateResource):
        return errors.InputError(f"ambiguous name{where}: {text}; use the id instead")
    if isinstance(
        exc,
        os_exc.InvalidRequest
        | os_exc.ValidationException
        | os_exc.InvalidResourceQuery
        | os_exc.NotSupported
        | os_exc.MethodNotSupported,
    ):
        return errors.BadRequest(f"request refused{where}: {text}", region=region)
    if isinstance(exc, os_exc.InvalidResponse | ks_exc.InvalidResponse):
        return errors.Transient(f"invalid response from the API{where}: {text}", region=region)
    return errors.Permanent(f"OpenStack call failed{where}: {text}", region=region)


_DROPPED_MARKERS = (
    "connection aborted",
    "remotedisconnected",
    "connection reset",
    "broken pipe",
    "incompleteread",
)


def _dropped_mid_request(text: str) -> bool:
    """A connection that was made and then lost (a reset, a proxy or server restarting):
    worth a retry. A region is unavailable only when nothing answers at all (refused,
    unresolvable, unroutable), which failover acts on."""
    lowered = text.lower()
    return any(marker in lowered for marker in _DROPPED_MARKERS)


_AUTH_HINTS = AuthHints(
    unauthorized="check the credentials in clouds.yaml (provider.cloud) or the OS_*"
    " environment variables",
    forbidden="check the project's roles (e.g. member, load-balancer_member) and the"
    " cloud's policy",
)


def _from_status(
    status: int, text: str, headers: Mapping[str, str], *, region: str | None, where: str
) -> errors.PhoenixError:
    if "no valid host" in text.lower():
        return errors.CapacityError(
            f"no capacity{where}: {text}; try another flavor or availability zone",
            region=region,
        )
    return error_for_status(status, text, headers, region=region, where=where, hints=_AUTH_HINTS)


def _status_of(exc: BaseException) -> int | None:
    if isinstance(exc, os_exc.HttpException):
        status = exc.status_code
        if status is None and exc.response is not None:
            status = exc.response.status_code
        return int(status) if status is not None else None
    if isinstance(exc, ks_exc.HttpError):
        return int(exc.http_status) if exc.http_status else None
    return None


def _headers_of(exc: BaseException) -> Mapping[str, str]:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return {}
    return {str(k).lower(): str(v) for k, v in headers.items()}


def describe(exc: BaseException) -> str:
    """The most useful one-line text of an SDK exception (never credentials)."""
    if isinstance(exc, os_exc.HttpException):
        details = exc.details or ""
        message = exc.message if exc.message and exc.message != "Error" else ""
        parts = [p for p in (message, str(details)) if p]
        text = ": ".join(dict.fromkeys(parts)) or exc.__class__.__name__
        method, url = _text_of(exc.method), _text_of(exc.url)
        if method and url:
            text = f"{text} ({method} {url})"
        return text
    if isinstance(exc, ks_exc.HttpError):
        return f"{exc.message}: {exc.details}" if exc.details else str(exc.message)
    text = str(exc).strip()
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


def _text_of(value: str | bytes | None) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value or ""


def _config_message(text: str, cloud: str | None) -> str:
    if cloud:
        head = f"provider.cloud: cannot use OpenStack cloud {cloud!r} ({text})"
    else:
        head = (
            "provider.cloud is not set and the OS_* environment variables do not describe a"
            f" cloud ({text})"
        )
    return (
        f"{head}; clouds.yaml is searched in {_CLOUDS_YAML_SEARCH}: add the cloud there and"
        " name it in provider.cloud, or export OS_AUTH_URL, OS_USERNAME, OS_PASSWORD,"
        " OS_PROJECT_NAME (and domains)"
    )


SDK_ERRORS: tuple[type[BaseException], ...] = (
    os_exc.SDKException,
    ks_exc.ClientException,
)
