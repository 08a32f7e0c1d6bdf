"""The libcloud provider's options: bad input names the option and the fix; no secret in
the spec; drivers are resolved (and their arguments checked) before any call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from phoenix import errors
from phoenix.clock import SystemClock
from phoenix.providers.libcloud import open_libcloud_provider
from phoenix.providers.libcloud.config import parse_options
from phoenix.spec import Spec

ENV = {"LC_KEY": "AKIDEXAMPLE", "LC_SECRET": "s3cr3t-value"}
GOOD: dict[str, Any] = {
    "credentials": {"key_env": "LC_KEY", "secret_env": "LC_SECRET"},
    "compute": {"driver": "ec2"},
    "load_balancer": {"driver": "elb"},
    "storage": {"driver": "s3", "container": "records"},
}


def _spec(options: dict[str, Any], *, dns: bool = False) -> Spec:
    raw: dict[str, Any] = {
        "app": "web",
        "provider": {"name": "libcloud", "options": options},
        "regions": ["us-east-1", "eu-west-1"],
        "image": {"name": "golden"},
        "flavor": "t3.micro",
        "count": 2,
        "template": "t.j2",
        "health": {"mode": "provider"},
        "load_balancer": {"pool": "web", "member_port": 80},
    }
    if dns:
        raw["dns"] = {"zone": "example.org", "record": "www"}
    return Spec.model_validate(raw)


def test_good_options_build_every_driver_without_network() -> None:
    provider = open_libcloud_provider(_spec(GOOD), clock=SystemClock(), environ=ENV)
    assert provider.name == "libcloud"
    assert provider.dns is None
    assert provider.health_source is not None


def test_dns_is_required_when_the_spec_has_dns() -> None:
    with pytest.raises(ValidationError, match=r"failover \(dns:\) needs a DNS driver"):
        _spec(GOOD, dns=True)
    with pytest.raises(errors.InputError, match=r"provider\.options\.dns: missing"):
        parse_options(GOOD, want_dns=True, environ=ENV)
    with_dns = {**GOOD, "dns": {"driver": "route53"}}
    provider = open_libcloud_provider(_spec(with_dns, dns=True), clock=SystemClock(),
                                      environ=ENV)
    assert provider.dns is not None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({**GOOD, "colour": 1}, r"provider\.options\.colour: unknown key"),
        ({k: v for k, v in GOOD.items() if k != "compute"},
         r"options\.compute: required option missing"),
        ({**GOOD, "compute": {"driver": "ec2", "args": {"secret": "x"}}},
         r"options\.compute\.args\.secret: credentials never go in the spec"),
        ({**GOOD, "compute": {"driver": "ec2", "flavour": 1}},
         r"options\.compute\.flavour: unknown key"),
        ({**GOOD, "credentials": {"key": "AKID", "secret": "x"}},
         r"options\.credentials\.key: unknown key \(secrets never go in the spec\)"),
        ({**GOOD, "credentials": {}}, r"options\.credentials: give \{key_env"),
        ({**GOOD, "storage": {"driver": "s3", "container": "a/b"}},
         r"options\.storage\.container: a bucket/container name cannot contain '/'"),
        ({**GOOD, "compute": {"driver": 5}}, r"options\.compute\.driver: .*string"),
    ],
)
def test_options_of_the_wrong_shape_are_refused_with_the_spec(
    options: dict[str, Any], message: str
) -> None:
    """Found by ``validate`` (the spec's model), and by ``parse_options`` for a library
    caller that passes a plain mapping: the same model, the same option named."""
    with pytest.raises(ValidationError):
        _spec(options)
    with pytest.raises(errors.InputError, match=message) as info:
        parse_options(options, want_dns=False, environ=ENV)
    assert ENV["LC_SECRET"] not in str(info.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({**GOOD, "compute": {"driver": "no-such-cloud"}},
         r"options\.compute\.driver: libcloud has no compute driver 'no-such-cloud'"),
        ({**GOOD, "credentials": {"key_env": "NOT_SET_ANYWHERE"}},
         r"credentials\.key_env: environment variable NOT_SET_ANYWHERE is not set"),
        ({**GOOD, "compute": {"driver": "ec2", "args": {"no_such_argument": 1}}},
         r"options\.compute\.args\.no_such_argument: the ec2 driver does not take it"),
    ],
)
def test_what_depends_on_the_machine_is_refused_when_the_provider_opens(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(errors.InputError, match=message) as info:
        open_libcloud_provider(_spec(options), clock=SystemClock(), environ=ENV)
    assert ENV["LC_SECRET"] not in str(info.value)


def test_credentials_from_a_file(tmp_path: Path) -> None:
    creds = tmp_path / "aws.yaml"
    creds.write_text("key: AKIDFILE\nsecret: from-file\n")
    parsed = parse_options({**GOOD, "credentials": {"file": str(creds)}}, want_dns=False,
                           environ={})
    assert parsed.credentials.key == "AKIDFILE"
    assert "from-file" not in repr(parsed)  # secrets stay out of reprs (and so of logs)
    creds.write_text("- not a mapping\n")
    with pytest.raises(errors.InputError, match="must be a YAML mapping with `key`"):
        parse_options({**GOOD, "credentials": {"file": str(creds)}}, want_dns=False,
                      environ={})
    with pytest.raises(errors.InputError, match="cannot read"):
        parse_options({**GOOD, "credentials": {"file": str(tmp_path / "missing.yaml")}},
                      want_dns=False, environ={})


@pytest.mark.parametrize(
    ("lc_state", "status", "expected"),
    [
        ("running", "running", "ACTIVE"),
        ("pending", "pending", "BUILD"),
        ("unknown", "shutting-down", "DELETING"),
        ("terminated", "terminated", "DELETING"),
        ("stopped", "stopped", "ERROR"),
        ("unknown", "stopping", "ERROR"),
        ("error", "", "ERROR"),
    ],
)
def test_node_states_map_to_phoenix_states(lc_state: str, status: str, expected: str) -> None:
    """A stopped server is replaced (ERROR), not waited for as if it were going away."""
    from types import SimpleNamespace

    from libcloud.compute.types import NodeState as LcState

    from phoenix.providers.libcloud.compute import _state

    node = SimpleNamespace(state=getattr(LcState, lc_state.upper()), extra={"status": status})
    assert _state(node).value == expected
