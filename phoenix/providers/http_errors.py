"""HTTP status codes of cloud APIs as ``phoenix.errors``: one table for every provider.

Providers differ in how an SDK reports a status (an attribute, a message, a code string)
but not in what a status means for a deploy: retry it, fail fast, or ask the user to fix
credentials. Providers add their own special cases first (e.g. Nova's "No valid host").
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from dataclasses import dataclass

from phoenix import errors


@dataclass(frozen=True)
class AuthHints:
    """What the user should check, in this provider's words, after a 401 or a 403."""

    unauthorized: str
    forbidden: str


def error_for_status(
    status: int,
    text: str,
    headers: Mapping[str, str],
    *,
    region: str | None,
    where: str,
    hints: AuthHints,
) -> errors.PhoenixError:
    """The error for an HTTP answer ``status`` with the service's message ``text``.

    ``headers`` are lower-cased (``retry-after``, ``date``); ``where`` is appended to
    messages (e.g. `` in region r1``).
    """
    lowered = text.lower()
    if status in (403, 413) and "quota" in lowered:
        return errors.QuotaExceeded(
            f"quota exceeded{where}: {text}; delete unused resources or ask for a higher"
            " quota",
            region=region,
        )
    if status == 401:
        return errors.AuthError(
            f"authentication failed{where} (HTTP 401: {text}); {hints.unauthorized}",
            region=region,
        )
    if status == 403:
        return errors.AuthError(
            f"permission denied{where} (HTTP 403: {text}); {hints.forbidden}", region=region
        )
    if status == 404:
        return errors.NotFound(f"not found{where}: {text}", region=region)
    if status in (408, 409, 413, 429) or status >= 500:
        return errors.Transient(
            f"HTTP {status}{where}: {text}; retry",
            region=region,
            retry_after=retry_after(headers),
        )
    if status == 400:
        return errors.BadRequest(f"bad request{where}: {text}", region=region)
    return errors.Permanent(f"HTTP {status}{where}: {text}", region=region)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a Retry-After header (delta-seconds, or an HTTP date vs ``Date``)."""
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
        sent = headers.get("date")
        # The server's own Date header is the reference: no local clock needed.
        now = email.utils.parsedate_to_datetime(sent) if sent else None
    except (TypeError, ValueError):
        return None
    if now is None:
        return None
    return max(0.0, (when - now).total_seconds())
