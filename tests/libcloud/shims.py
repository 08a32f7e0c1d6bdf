"""Test-only patches that let apache-libcloud 3.9.1 talk to moto 5.2.5's server.

Phoenix's libcloud provider is pure libcloud; these shims make moto look, on the wire, like
the AWS that libcloud's drivers were written against. Each patch sits at the connection or
response class (the layer every request goes through: the drivers' own methods and the
provider's raw ``driver.connection.request(...)`` calls alike), and libcloud's module
constants (``ec2.NAMESPACE``, ``route53.API_ROOT`` ...) are left as they are, so code that
imported them before ``apply()`` still agrees with what the shimmed responses contain.

Mismatches covered (measured with apache-libcloud 3.9.1 against moto[server] 5.2.5):

EC2
  1. Response namespace: moto writes ``xmlns="http://ec2.amazonaws.com/doc/2016-11-15"``
     (botocore's model, no trailing slash); libcloud parses with ``NAMESPACE =
     ".../2016-11-15/"``, so every list parses empty and ``create_node`` returns ``[]``.
     Success bodies get the slash back.
  2. Error namespace: real EC2 errors carry no namespace and libcloud reads
     ``Errors/Error`` without one; moto's carry the namespace above, so every error
     message comes back empty (``BaseHTTPError('')``). Error bodies lose the namespace.
  3. ``ex_create_tags`` / ``ex_delete_tags`` send ``ResourceId.0`` / ``Tag.0.Key``
     (0-based, which AWS accepts); moto's query parser wants 1-based lists and rejects
     them. The indexes are shifted by one before signing.
  4. CreateTags, DeleteTags (and other actions whose output is empty) answer AWS-style
     ``<return>true</return>``, which libcloud's ``_get_boolean`` reads; moto sends only
     ``requestId``, so ``ex_create_tags`` returned False after succeeding. An empty
     success gets ``<return>true</return>``.
  (EC2 also needs SigV4, or moto, which routes by the SigV4 credential scope, answers as
  S3 with empty lists: that is the constructor kwarg ``signature_version="4"``, not a
  patch. A SigV2 EC2 connection to a loopback host raises an error saying so.)

ELB (classic)
  5. libcloud requests ``/2012-06-01/``; moto answers the ELB API only at ``/``. The path
     is rewritten to ``/``.
  6. ``ElasticLBDriver(key, secret, region, token=None)`` takes no host/port/secure: its
     connection always goes to ``elasticloadbalancing.REGION.amazonaws.com:443``. With an
     ``endpoint`` given to ``apply()`` the driver's connection is built with
     ``url=endpoint`` instead (libcloud's ``Connection`` takes host, port and scheme from
     ``url``).

Route53
  7. libcloud speaks API 2012-02-29 (paths ``/2012-02-29/...``, namespace
     ``https://route53.amazonaws.com/doc/2012-02-29/``); moto serves only the 2013-04-01
     paths and answers in that namespace. Paths go out as ``/2013-04-01/``, request bodies
     carry the 2013-04-01 namespace, and responses (errors too: else they read as ``''``
     and NoSuchHostedZone is no ZoneDoesNotExistError) come back in libcloud's.
  8. libcloud signs with ``X-Amzn-Authorization: AWS3-HTTPS`` (no ``Authorization``
     header); moto routes by the SigV4 credential scope, so such requests land in S3.
     Requests are signed with SigV4 (scope ``us-east-1/route53``, as AWS signs Route53).

S3 needs no patch: the driver is SigV4 and path-style already.

Paging: moto cuts DescribeInstances at 100 reservations when no ``MaxResults`` is given,
and ``list_nodes`` does not page. Nothing here touches ``MaxResults``/``NextToken``: a
caller pages with ``driver.connection.request(driver.path, params={"Action":
"DescribeInstances", "MaxResults": ..., "NextToken": ...})`` and gets moto's
``nextToken`` in the (namespace-fixed) body.

``apply(endpoint=...)`` is idempotent (a second call only changes the ELB endpoint);
``remove()`` restores every patched attribute. ``PHOENIX_MOTO_ENDPOINT`` in the
environment is the default endpoint (the CLI wrapper, ``phoenix_cli.py``, relies on it).
"""

from __future__ import annotations

import ipaddress
import os
import re
import warnings
from collections.abc import Callable
from importlib import metadata
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

ENDPOINT_ENV = "PHOENIX_MOTO_ENDPOINT"
# The versions these patches were measured against (pyproject pins moto; libcloud is
# ">=3.8,<4" for Phoenix): apply() warns when others are installed.
PINNED = {"apache-libcloud": "3.9.1", "moto": "5.2.5"}

_MISSING = object()
# (owner, attribute, value before apply(), or _MISSING when it was inherited)
_saved: list[tuple[Any, str, Any]] = []
_state: dict[str, str | None] = {"endpoint": None}

# --- EC2 ------------------------------------------------------------------------------------

_MOTO_EC2_XMLNS = 'xmlns="http://ec2.amazonaws.com/doc/2016-11-15"'
_ANY_XMLNS = re.compile(r'\sxmlns="[^"]*"')
# an empty success: the root holds nothing but requestId
_EMPTY_RESULT = re.compile(
    r"(<(\w+)Response\b[^>]*>\s*<requestId>[^<]*</requestId>)(\s*</\2Response>)\s*$"
)
_ZERO_BASED_LIST = re.compile(r"^(ResourceId|Tag)\.(\d+)(\..+)?$")
_ZERO_BASED_ACTIONS = frozenset({"CreateTags", "DeleteTags"})

# --- ELB ------------------------------------------------------------------------------------

_ELB_ROOT = "/2012-06-01/"

# --- Route53 --------------------------------------------------------------------------------

_R53_MOTO_VERSION = "2013-04-01"
_R53_MOTO_NAMESPACE = f"https://route53.amazonaws.com/doc/{_R53_MOTO_VERSION}/"


def _patch(owner: Any, name: str, value: Any) -> None:
    _saved.append((owner, name, owner.__dict__.get(name, _MISSING)))
    setattr(owner, name, value)


def _original(owner: type, name: str) -> Callable[..., Any]:
    """The attribute as it is now (before this module patches it): own or inherited."""
    return getattr(owner, name)  # type: ignore[no-any-return]


def applied() -> bool:
    return bool(_saved)


def endpoint() -> str | None:
    """The endpoint drivers without host/port arguments (ELB) are sent to."""
    return _state["endpoint"]


def apply(endpoint: str | None = None) -> None:
    """Patch libcloud for moto. ``endpoint`` (``http://127.0.0.1:PORT``, default
    ``$PHOENIX_MOTO_ENDPOINT``) is where the ELB driver, which takes no host/port, goes."""
    endpoint = endpoint or os.environ.get(ENDPOINT_ENV) or _state["endpoint"]
    if endpoint is not None:
        _check_loopback(endpoint)
    _state["endpoint"] = endpoint
    if _saved:
        return
    _warn_unless_pinned()
    _apply_ec2()
    _apply_elb()
    _apply_route53()


def _warn_unless_pinned() -> None:
    for dist, pinned in PINNED.items():
        try:
            installed = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue  # moto is not needed in a process that only talks to it
        if installed != pinned:
            warnings.warn(
                f"tests/libcloud/shims.py was written for {dist} {pinned}, found"
                f" {installed}: check each mismatch it patches still exists",
                stacklevel=3,
            )


def _loopback_host(host: str | None) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def _check_loopback(url: str) -> None:
    """Tests talk to moto on this machine only."""
    parsed = urlsplit(url)
    loopback = _loopback_host(parsed.hostname)
    if parsed.scheme not in ("http", "https") or not loopback or parsed.port is None:
        raise ValueError(f"moto endpoint must be http://<loopback address>:PORT, got {url!r}")


def remove() -> None:
    """Undo apply(): every patched attribute gets its old value (or is deleted again)."""
    while _saved:
        owner, name, value = _saved.pop()
        if value is _MISSING:
            delattr(owner, name)
        else:
            setattr(owner, name, value)
    _state["endpoint"] = None


def _apply_ec2() -> None:
    from libcloud.compute.drivers.ec2 import NAMESPACE, EC2Connection, EC2Response

    # Mismatch 1 [libcloud 3.9.1, moto 5.2.5]: EC2 response namespace without the trailing
    # slash.
    libcloud_xmlns = f'xmlns="{NAMESPACE}"'
    parse_body = _original(EC2Response, "parse_body")

    def ec2_parse_body(self: Any) -> Any:
        if self.body:
            self.body = self.body.replace(_MOTO_EC2_XMLNS, libcloud_xmlns, 1)
            # Mismatch 4 [libcloud 3.9.1, moto 5.2.5]: no <return>true</return> in an
            # empty success (a short body: no need to scan a listing).
            if len(self.body) < 1024:
                self.body = _EMPTY_RESULT.sub(r"\1<return>true</return>\3", self.body, count=1)
        return parse_body(self)

    # Mismatch 2 [libcloud 3.9.1, moto 5.2.5]: EC2 errors in a namespace; libcloud reads
    # Errors/Error without one.
    parse_error = _original(EC2Response, "parse_error")

    def ec2_parse_error(self: Any) -> Any:
        if self.body:
            self.body = _ANY_XMLNS.sub("", self.body, count=1)
        return parse_error(self)

    # Mismatch 3 [libcloud 3.9.1, moto 5.2.5]: CreateTags/DeleteTags lists numbered from 0.
    add_default_params = _original(EC2Connection, "add_default_params")

    def ec2_add_default_params(self: Any, params: dict[str, Any]) -> Any:
        if str(getattr(self, "signature_version", "4")) != "4" and _loopback_host(self.host):
            raise RuntimeError(
                "EC2 against moto needs signature_version='4' (moto routes requests by the"
                " SigV4 credential scope; a SigV2 request is answered as S3: empty lists)"
            )
        if params.get("Action") in _ZERO_BASED_ACTIONS and "ResourceId.0" in params:
            params = {_one_based(key): value for key, value in params.items()}
        return add_default_params(self, params)

    _patch(EC2Response, "parse_body", ec2_parse_body)
    _patch(EC2Response, "parse_error", ec2_parse_error)
    _patch(EC2Connection, "add_default_params", ec2_add_default_params)


def _one_based(key: str) -> str:
    match = _ZERO_BASED_LIST.match(key)
    if not match:
        return key
    name, index, rest = match.groups()
    return f"{name}.{int(index) + 1}{rest or ''}"


def _apply_elb() -> None:
    from libcloud.loadbalancer.drivers.elb import ElasticLBDriver, ELBConnection

    # Mismatch 5 [libcloud 3.9.1, moto 5.2.5]: ELB answered at / only, libcloud asks
    # /2012-06-01/.
    morph = _original(ELBConnection, "morph_action_hook")

    def elb_morph_action_hook(self: Any, action: str) -> Any:
        action = morph(self, action)
        return "/" + action[len(_ELB_ROOT):] if action.startswith(_ELB_ROOT) else action

    # Mismatch 6 [libcloud 3.9.1, moto 5.2.5]: ElasticLBDriver takes no host/port/secure.
    # Its connection gets url=endpoint, which libcloud's Connection turns into host, port
    # and scheme.
    conn_kwargs = _original(ElasticLBDriver, "_ex_connection_class_kwargs")

    def elb_connection_class_kwargs(self: Any) -> Any:
        kwargs = conn_kwargs(self)
        if _state["endpoint"]:
            kwargs["url"] = _state["endpoint"]
        return kwargs

    _patch(ELBConnection, "morph_action_hook", elb_morph_action_hook)
    _patch(ElasticLBDriver, "_ex_connection_class_kwargs", elb_connection_class_kwargs)


def _apply_route53() -> None:
    from libcloud.common.aws import AWSRequestSignerAlgorithmV4
    from libcloud.dns.drivers.route53 import (
        API_ROOT,
        NAMESPACE,
        Route53Connection,
        Route53DNSResponse,
    )

    moto_root = f"/{_R53_MOTO_VERSION}/"

    # Mismatch 7 [libcloud 3.9.1, moto 5.2.5]: API 2012-02-29 vs 2013-04-01. Paths ...
    morph = _original(Route53Connection, "morph_action_hook")

    def r53_morph_action_hook(self: Any, action: str) -> Any:
        action = morph(self, action)
        return moto_root + action[len(API_ROOT):] if action.startswith(API_ROOT) else action

    # ... request bodies ...
    encode_data = _original(Route53Connection, "encode_data")

    def moto_body(data: Any) -> Any:
        if isinstance(data, bytes):
            return data.replace(NAMESPACE.encode(), _R53_MOTO_NAMESPACE.encode())
        if isinstance(data, str):
            return data.replace(NAMESPACE, _R53_MOTO_NAMESPACE)
        return data

    def r53_encode_data(self: Any, data: Any) -> Any:
        return encode_data(self, moto_body(data))

    # ... and responses, errors included (libcloud looks for <Error> in its namespace or
    # in none: moto's 2013-04-01 errors read as '', NoSuchHostedZone as no
    # ZoneDoesNotExistError).
    parse_body = _original(Route53DNSResponse, "parse_body")
    parse_error = _original(Route53DNSResponse, "parse_error")

    def r53_parse_body(self: Any) -> Any:
        if self.body:
            self.body = self.body.replace(_R53_MOTO_NAMESPACE, NAMESPACE)
        return parse_body(self)

    def r53_parse_error(self: Any) -> Any:
        if self.body:
            self.body = self.body.replace(_R53_MOTO_NAMESPACE, NAMESPACE)
        return parse_error(self)

    # Mismatch 8 [libcloud 3.9.1, moto 5.2.5]: AWS3-HTTPS signature; moto routes by the
    # SigV4 credential scope.
    def r53_pre_connect_hook(self: Any, params: Any, headers: Any) -> Any:
        scope = SimpleNamespace(
            driver=SimpleNamespace(region_name="us-east-1"), service_name="route53"
        )
        signer = AWSRequestSignerAlgorithmV4(
            access_key=self.user_id, access_secret=self.key, version=_R53_MOTO_VERSION,
            connection=scope,
        )
        return signer.get_request_headers(
            params=params, headers=headers, method=self.method, path=self.action,
            data=moto_body(self.data),  # the body as sent (see r53_encode_data)
        )

    _patch(Route53Connection, "morph_action_hook", r53_morph_action_hook)
    _patch(Route53Connection, "encode_data", r53_encode_data)
    _patch(Route53DNSResponse, "parse_body", r53_parse_body)
    _patch(Route53DNSResponse, "parse_error", r53_parse_error)
    _patch(Route53Connection, "pre_connect_hook", r53_pre_connect_hook)
