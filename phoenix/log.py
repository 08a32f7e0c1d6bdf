"""Structured logging for Phoenix: one configuration, deploy context on every event, no secrets.

Why this module exists:

* **stdout belongs to results.** ``phoenix ... --output json`` prints machine-readable
  results on stdout, so every log line goes to stderr (or a stream the caller passes in).
* **Humans and CI read different formats.** On a TTY we render for people (console);
  anywhere else (CI, a pipe, a file) we emit one JSON object per line so log tooling can
  index it.
* **Every event of a deploy is attributable.** :func:`bind_deploy` puts app, release,
  region and a deploy id into structlog's context variables, so code deep in the engine
  or a provider logs plain events and still carries the deploy they belong to.
* **Secrets never reach a log.** Redaction runs as the last step before rendering -- after
  exceptions and stacks have been turned into text -- so tracebacks, event messages and
  nested values are covered; a final pass over the rendered line catches what hides in an
  object's ``repr``.

Context variables do not flow into threads started by a plain ``ThreadPoolExecutor``;
run worker callables under ``contextvars.copy_context().run`` to keep the deploy context.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterable, Mapping
from secrets import token_hex
from typing import Any, Literal, TextIO, cast

import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

from phoenix import secret_mask

__all__ = [
    "REDACTED",
    "bind_deploy",
    "clear_secrets",
    "configure_logging",
    "get_logger",
    "new_deploy_id",
    "redact",
    "register_secrets",
    "unbind_deploy",
]

REDACTED = secret_mask.REDACTED
"""What a secret, or a value under a credential-named key, is replaced with."""

# Secrets shorter than this are not redacted by substring: replacing every "ab" or "42" in
# every log line would mangle unrelated text (ids, timestamps, numbers) without protecting
# anything -- a value that short is guessable and is not a real credential. Values under
# credential-named keys are still redacted whatever their length.
MIN_SECRET_LENGTH = 3

# Substrings of a key name that mark its value as a credential. Matching is on substrings
# of the lower-cased name (so "db_password", "X-Auth-Token" and "OS_API_KEY" all match);
# a false positive such as "author" costs a little debuggability, a false negative leaks.
_CREDENTIAL_KEY_MARKERS = (
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "credential",
    "private_key",
    "auth",
)

_DEPLOY_KEYS = ("app", "deploy_id", "release", "region")

_secrets_lock = threading.Lock()
_secrets: set[str] = set()
# A snapshot swapped in whole under the lock, so readers never see a set being changed.
_registered: frozenset[str] = frozenset()


# --- secrets registry --------------------------------------------------------------------


def register_secrets(values: Iterable[str]) -> None:
    """Add ``values`` to the process-wide set of strings redacted from every log event.

    Empty values and values shorter than ``MIN_SECRET_LENGTH`` (3) characters are skipped:
    substituting them everywhere would garble ordinary log text without protecting a
    real credential. Registering the same value twice is harmless.
    """
    global _registered
    with _secrets_lock:
        _secrets.update(v for v in values if len(v) >= MIN_SECRET_LENGTH)
        _registered = frozenset(_secrets)


def clear_secrets() -> None:
    """Forget every registered secret (for tests)."""
    global _registered
    with _secrets_lock:
        _secrets.clear()
        _registered = frozenset()


# --- redaction ---------------------------------------------------------------------------


def _is_credential_key(key: str) -> bool:
    lowered = key.lower().replace("-", "_")
    return any(marker in lowered for marker in _CREDENTIAL_KEY_MARKERS)


def _redact_str(text: str) -> str:
    registered = _registered
    return secret_mask.mask(text, registered) if registered else text


def redact(value: object) -> object:
    """Return ``value`` with every registered secret replaced by ``"***"``.

    Recurses into ``str``, ``dict``, ``list`` and ``tuple`` (returning new containers,
    never mutating the input). In a dict, the value under a key whose name looks like a
    credential (``password``, ``token``, ``api_key``, ``auth``, ...) becomes ``"***"``
    whatever it is. Other objects are returned unchanged; the rendered log line gets a
    final substring pass that covers their ``repr``.
    """
    if isinstance(value, str):
        return _redact_str(value)
    if isinstance(value, Mapping):
        return _redact_mapping(value)
    if isinstance(value, list):
        return [redact(item) for item in value]
    if isinstance(value, tuple):
        return tuple(redact(item) for item in value)
    return value


def _redact_mapping(mapping: Mapping[Any, object]) -> dict[Any, object]:
    result: dict[Any, object] = {}
    for key, item in mapping.items():
        if isinstance(key, str) and _is_credential_key(key):
            result[_redact_str(key)] = REDACTED
        else:
            result[redact(key)] = redact(item)
    return result


def _redact_event(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Processor: redact the whole event dict (event message, values, formatted tracebacks)."""
    return _redact_mapping(event_dict)


class _RedactRendered:
    """Wrap a renderer and redact its output: the backstop for secrets inside a ``repr``."""

    def __init__(self, renderer: structlog.dev.ConsoleRenderer | structlog.processors.JSONRenderer):
        self._renderer = renderer

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> str | bytes:
        rendered = self._renderer(logger, method, event_dict)
        return _redact_str(rendered) if isinstance(rendered, str) else rendered


# --- configuration -----------------------------------------------------------------------


def _level_number(level: str) -> int:
    levels = logging.getLevelNamesMapping()
    number = levels.get(level.upper())
    if number is None:
        choices = ", ".join(sorted(name.lower() for name in levels if name != "NOTSET"))
        raise ValueError(f"unknown log level {level!r}; use one of: {choices}")
    return number


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or already closed
        return False


def configure_logging(
    *,
    fmt: Literal["auto", "console", "json"] = "auto",
    level: str = "info",
    stream: TextIO | None = None,
) -> None:
    """Configure structlog for Phoenix; safe to call again to reconfigure.

    ``stream`` defaults to ``sys.stderr`` as it is *at call time* (stdout is reserved for
    ``--output json`` results). ``fmt="auto"`` renders for people on a TTY and as JSON
    lines otherwise; colors are used only on a TTY. ``level`` is a stdlib level name
    (``debug``, ``info``, ``warning``, ``error``, ``critical``); events below it are
    dropped cheaply. Raises ``ValueError`` for an unknown ``fmt`` or ``level``.
    """
    out = sys.stderr if stream is None else stream
    tty = _is_tty(out)
    if fmt == "auto":
        fmt = "console" if tty else "json"

    renderer: structlog.dev.ConsoleRenderer | structlog.processors.JSONRenderer
    if fmt == "console":
        # Exceptions are already text by the time they reach the renderer (so they can be
        # redacted); plain_traceback keeps older structlog versions from warning about it.
        renderer = structlog.dev.ConsoleRenderer(
            colors=tty, exception_formatter=structlog.dev.plain_traceback
        )
    elif fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        raise ValueError(f"unknown log format {fmt!r}; use one of: auto, console, json")

    processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        # After format_exc_info and StackInfoRenderer: tracebacks are text now, so
        # secrets in exception messages are covered.
        _redact_event,
        _RedactRendered(renderer),
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_level_number(level)),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        # Not cached: loggers obtained before a reconfiguration (module-level ``log``)
        # must follow the new stream, format and level.
        cache_logger_on_first_use=False,
    )
    _route_stdlib_logging(out, renderer, level)


_HANDLER_MARK = "_phoenix_handler"


def _route_stdlib_logging(
    out: TextIO,
    renderer: structlog.dev.ConsoleRenderer | structlog.processors.JSONRenderer,
    level: str,
) -> None:
    """Send the SDKs' stdlib logging (openstacksdk, keystoneauth, libcloud, httpx) through
    the same redaction and rendering, so a token or password they log never gets out.

    Third-party INFO chatter (every HTTP request) is kept out unless Phoenix logs at debug.
    """
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _redact_event,
            _RedactRendered(renderer),
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if _level_number(level) <= logging.DEBUG else logging.WARNING)


# --- deploy context ----------------------------------------------------------------------


def bind_deploy(
    *, app: str, deploy_id: str, release: str | None = None, region: str | None = None
) -> None:
    """Attach the deploy's identity to every event logged in this context.

    Replaces any previous deploy binding, so a ``release`` or ``region`` from an earlier
    deploy never lingers; ``None`` values are left out of events.
    """
    unbind_deploy()
    values = {"app": app, "deploy_id": deploy_id, "release": release, "region": region}
    structlog.contextvars.bind_contextvars(
        **{key: value for key, value in values.items() if value is not None}
    )


def unbind_deploy() -> None:
    """Remove the deploy identity bound by :func:`bind_deploy` from this context."""
    structlog.contextvars.unbind_contextvars(*_DEPLOY_KEYS)


def get_logger(name: str | None = None) -> FilteringBoundLogger:
    """Return a logger; ``name``, if given, is added to each event as ``logger_name``.

    (``logger_name`` rather than ``logger``: the latter is a parameter of structlog's own
    ``wrap_logger``; the console renderer shows either.)
    """
    initial = {} if name is None else {"logger_name": name}
    return cast(FilteringBoundLogger, structlog.get_logger(**initial))


def new_deploy_id() -> str:
    """Return a short random deploy id such as ``"d-1f2e3d4c"``."""
    return "d-" + token_hex(4)
