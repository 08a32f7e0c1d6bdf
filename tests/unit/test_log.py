"""Tests for phoenix.log: formats, deploy context, level filtering and secret redaction."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from phoenix import log as plog

SECRET = "s3cr3t-Planted-Value"


class _TTY(io.StringIO):
    """A StringIO that claims to be a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    plog.clear_secrets()
    structlog.contextvars.clear_contextvars()
    yield
    plog.clear_secrets()
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()


def _json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def _json_stream(level: str = "info") -> io.StringIO:
    stream = io.StringIO()
    plog.configure_logging(fmt="json", level=level, stream=stream)
    return stream


# --- formats and context -----------------------------------------------------------------


def test_json_mode_emits_one_object_per_line_with_deploy_context() -> None:
    stream = _json_stream()
    plog.bind_deploy(app="shop", deploy_id="d-0000abcd", release="r42", region="eu-west")
    log = plog.get_logger()

    log.info("server booted", server="web-1")
    log.warning("slow health check", seconds=3)

    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    events = [json.loads(line) for line in lines]
    for event in events:
        assert {"event", "level", "timestamp", "app", "release", "region", "deploy_id"} <= set(
            event
        )
        assert event["app"] == "shop"
        assert event["release"] == "r42"
        assert event["region"] == "eu-west"
        assert event["deploy_id"] == "d-0000abcd"
    assert events[0]["event"] == "server booted"
    assert events[0]["level"] == "info"
    assert events[0]["server"] == "web-1"
    assert events[1]["level"] == "warning"


def test_timestamp_is_iso_utc() -> None:
    stream = _json_stream()
    plog.get_logger().info("tick")
    (event,) = _json_lines(stream)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", event["timestamp"])


def test_unbind_deploy_removes_context() -> None:
    stream = _json_stream()
    plog.bind_deploy(app="shop", deploy_id="d-1", release="r1", region="eu")
    plog.unbind_deploy()
    plog.get_logger().info("after")
    (event,) = _json_lines(stream)
    assert not {"app", "deploy_id", "release", "region"} & set(event)


def test_rebinding_does_not_leak_previous_release_or_region() -> None:
    stream = _json_stream()
    plog.bind_deploy(app="shop", deploy_id="d-1", release="r1", region="eu")
    plog.bind_deploy(app="blog", deploy_id="d-2")
    plog.get_logger().info("second deploy")
    (event,) = _json_lines(stream)
    assert event["app"] == "blog"
    assert event["deploy_id"] == "d-2"
    assert "release" not in event
    assert "region" not in event


def test_named_logger_adds_logger_name_and_follows_reconfiguration() -> None:
    log = plog.get_logger("phoenix.engine")
    first = _json_stream()
    log.info("hello")
    second = _json_stream()
    log.info("again")
    assert _json_lines(first)[0]["logger_name"] == "phoenix.engine"
    assert _json_lines(second)[0]["logger_name"] == "phoenix.engine"


def test_console_mode_contains_event_text() -> None:
    stream = io.StringIO()
    plog.configure_logging(fmt="console", stream=stream)
    plog.get_logger().info("traffic moved", weight=100)
    out = stream.getvalue()
    assert "traffic moved" in out
    assert "weight=100" in out
    assert "\x1b[" not in out  # not a TTY: no colour codes
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)


def test_console_colours_only_on_a_tty() -> None:
    stream = _TTY()
    plog.configure_logging(stream=stream)  # auto on a TTY -> console with colours
    plog.get_logger().info("traffic moved")
    out = stream.getvalue()
    assert "traffic moved" in out
    assert "\x1b[" in out


def test_auto_picks_json_for_non_tty_stringio() -> None:
    stream = io.StringIO()
    plog.configure_logging(stream=stream)
    plog.get_logger().info("auto mode")
    (event,) = _json_lines(stream)
    assert event["event"] == "auto mode"


def test_default_stream_is_stderr_looked_up_at_call_time(
    capsys: pytest.CaptureFixture[str],
) -> None:
    plog.configure_logging(fmt="json")
    plog.get_logger().info("to stderr")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert json.loads(captured.err)["event"] == "to stderr"


def test_configure_twice_reconfigures_cleanly() -> None:
    first = io.StringIO()
    plog.configure_logging(fmt="json", stream=first)
    log = plog.get_logger()  # obtained before the reconfiguration
    log.info("one")

    second = io.StringIO()
    plog.configure_logging(fmt="console", level="warning", stream=second)
    log.info("dropped")
    log.warning("two")

    assert [e["event"] for e in _json_lines(first)] == ["one"]
    out = second.getvalue()
    assert "two" in out
    assert "dropped" not in out
    assert len(out.splitlines()) == 1


# --- level filtering ---------------------------------------------------------------------


def test_level_filtering_drops_lower_levels() -> None:
    stream = _json_stream(level="warning")
    log = plog.get_logger()
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    assert [e["event"] for e in _json_lines(stream)] == ["w", "e"]


def test_debug_level_lets_debug_through_and_level_is_case_insensitive() -> None:
    stream = _json_stream(level="DEBUG")
    plog.get_logger().debug("d")
    assert [e["level"] for e in _json_lines(stream)] == ["debug"]


def test_unknown_level_and_format_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        plog.configure_logging(level="loud", stream=io.StringIO())
    with pytest.raises(ValueError, match="unknown log format"):
        plog.configure_logging(fmt="xml", stream=io.StringIO())  # type: ignore[arg-type]


# --- redaction: end to end ---------------------------------------------------------------


@pytest.fixture(params=["json", "console"])
def fmt_stream(request: pytest.FixtureRequest) -> io.StringIO:
    stream = io.StringIO()
    plog.configure_logging(fmt=request.param, stream=stream)
    plog.register_secrets([SECRET])
    return stream


def test_secret_as_value_is_redacted(fmt_stream: io.StringIO) -> None:
    plog.get_logger().info("connecting", value=SECRET)
    out = fmt_stream.getvalue()
    assert SECRET not in out
    assert "***" in out


def test_secret_in_nested_dict_is_redacted(fmt_stream: io.StringIO) -> None:
    plog.get_logger().info("config", cfg={"cloud": {"extra": [("x", SECRET)]}})
    assert SECRET not in fmt_stream.getvalue()


def test_secret_in_event_message_is_redacted(fmt_stream: io.StringIO) -> None:
    log = plog.get_logger()
    log.info(f"using {SECRET} for login")
    log.info("positional %s", SECRET)
    out = fmt_stream.getvalue()
    assert SECRET not in out
    assert "using *** for login" in out


def test_secret_in_fstring_kwarg_is_redacted(fmt_stream: io.StringIO) -> None:
    plog.get_logger().info("request", url=f"https://api.example/v1?key={SECRET}&x=1")
    out = fmt_stream.getvalue()
    assert SECRET not in out
    assert "key=***&x=1" in out


def test_secret_in_logged_exception_is_redacted(fmt_stream: io.StringIO) -> None:
    log = plog.get_logger()
    try:
        raise RuntimeError(f"auth failed with {SECRET}")
    except RuntimeError:
        log.exception("provider call failed")
    out = fmt_stream.getvalue()
    assert "RuntimeError" in out  # the traceback is there...
    assert SECRET not in out  # ...without the secret


def test_secret_in_chained_exception_via_exc_info_is_redacted(fmt_stream: io.StringIO) -> None:
    log = plog.get_logger()
    try:
        try:
            raise KeyError(SECRET)
        except KeyError as inner:
            raise ValueError("wrapped") from inner
    except ValueError as exc:
        log.error("failed", exc_info=exc)
    out = fmt_stream.getvalue()
    assert "wrapped" in out
    assert SECRET not in out


def test_secret_inside_object_repr_is_redacted_in_rendered_output(
    fmt_stream: io.StringIO,
) -> None:
    class Opaque:
        def __repr__(self) -> str:
            return f"Opaque({SECRET})"

    plog.get_logger().info("object", thing=Opaque())
    out = fmt_stream.getvalue()
    assert "Opaque(***)" in out
    assert SECRET not in out


def test_credential_named_keys_are_redacted_end_to_end() -> None:
    stream = _json_stream()
    plog.get_logger().info(
        "login",
        password="hunter2",
        api_key="k",
        headers={"X-Auth-Token": "tok-123", "Accept": "json"},
        user="alice",
    )
    (event,) = _json_lines(stream)
    assert event["password"] == "***"
    assert event["api_key"] == "***"
    assert event["headers"] == {"X-Auth-Token": "***", "Accept": "json"}
    assert event["user"] == "alice"
    assert "hunter2" not in stream.getvalue()
    assert "tok-123" not in stream.getvalue()


def test_secret_with_json_special_characters_is_redacted() -> None:
    tricky = 'pa"ss\\wörd'
    stream = _json_stream()
    plog.register_secrets([tricky])

    class Opaque:
        def __repr__(self) -> str:
            return tricky

    plog.get_logger().info("x", value=tricky, thing=Opaque())
    out = stream.getvalue()
    assert json.dumps(tricky)[1:-1] not in out
    event = _json_lines(stream)[0]
    assert event["value"] == "***"
    assert event["thing"] == "***"


def test_secrets_registered_after_configure_and_cleared() -> None:
    stream = _json_stream()
    log = plog.get_logger()
    plog.register_secrets([SECRET])
    log.info("one", v=SECRET)
    plog.clear_secrets()
    log.info("two", v=SECRET)
    first, second = _json_lines(stream)
    assert first["v"] == "***"
    assert second["v"] == SECRET


# --- redact() as a pure function ---------------------------------------------------------


def test_redact_replaces_every_occurrence_in_strings() -> None:
    plog.register_secrets([SECRET])
    assert plog.redact(f"{SECRET}/{SECRET}") == "***/***"
    assert plog.redact("nothing here") == "nothing here"


def test_redact_recurses_into_containers_without_mutating_input() -> None:
    plog.register_secrets([SECRET])
    value = {"a": [SECRET, ("x", SECRET)], "b": {"c": SECRET}, "n": 3}
    assert plog.redact(value) == {"a": ["***", ("x", "***")], "b": {"c": "***"}, "n": 3}
    assert value["b"] == {"c": SECRET}


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "db_password",
        "PASSWD",
        "client_secret",
        "token",
        "X-Auth-Token",
        "api_key",
        "OS_APIKEY",
        "credentials",
        "private_key",
        "auth",
        "Authorization",
    ],
)
def test_redact_credential_named_keys_regardless_of_value(key: str) -> None:
    assert plog.redact({key: {"nested": 1}}) == {key: "***"}
    assert plog.redact({key: "x"}) == {key: "***"}


@pytest.mark.parametrize("key", ["user", "region", "event", "deploy_id", "image"])
def test_redact_leaves_ordinary_keys_alone(key: str) -> None:
    assert plog.redact({key: "value"}) == {key: "value"}


def test_redact_prefers_longest_overlapping_secret() -> None:
    plog.register_secrets(["abc", "abcdef"])
    assert plog.redact("xabcdefx abc") == "x***x ***"


def test_overlapping_secrets_leave_no_part_showing_and_agree_with_the_cli() -> None:
    """Issue 16: one masker for logs and output. Two secrets overlapping ("abc", "bcd"
    in "abcd") hide the whole run; a regex alternation matched "abc" and left "d"."""
    from phoenix.render import mask_secrets

    plog.register_secrets(["abc", "bcd"])
    assert plog.redact("xabcdx") == "x***x"
    assert plog.redact("xabcdx") == mask_secrets("xabcdx", ["abc", "bcd"])


def test_register_secrets_skips_empty_and_very_short_values() -> None:
    plog.register_secrets(["", "a", "ab", "abc"])
    assert plog.redact("a ab abc") == "a ab ***"


def test_redact_returns_other_objects_unchanged() -> None:
    plog.register_secrets([SECRET])
    marker = object()
    assert plog.redact(marker) is marker
    assert plog.redact(42) == 42
    assert plog.redact(None) is None


# --- ids -----------------------------------------------------------------------------------


def test_new_deploy_id_is_short_random_and_prefixed() -> None:
    ids = {plog.new_deploy_id() for _ in range(50)}
    assert len(ids) == 50
    for deploy_id in ids:
        assert re.fullmatch(r"d-[0-9a-f]{8}", deploy_id)


def test_third_party_stdlib_logging_is_redacted_too() -> None:
    """openstacksdk, keystoneauth and httpx log through stdlib logging."""
    import logging

    secret = "Sdk-T0ken-Planted-Value"
    stream = io.StringIO()
    plog.configure_logging(fmt="json", stream=stream)
    plog.register_secrets([secret])
    try:
        logging.getLogger("keystoneauth.session").warning("REQ: X-Auth-Token: %s", secret)
        logging.getLogger("openstack").info("chatter stays out at info: %s", secret)
        logging.getLogger("openstack").error("failed with password=%s", secret)
    finally:
        plog.clear_secrets()
        logging.getLogger().handlers = [
            h for h in logging.getLogger().handlers if not hasattr(h, "_phoenix_handler")
        ]
    text = stream.getvalue()
    assert secret not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert [line["logger"] for line in lines] == ["keystoneauth.session", "openstack"]
    assert "***" in lines[0]["event"]
