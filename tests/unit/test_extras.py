"""The cloud SDKs are extras (issue 16): a local-provider user does not install them, and
a spec naming a provider whose SDK is missing says which extra to install."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

from phoenix.clock import SystemClock
from phoenix.errors import InputError
from phoenix.providers.registry import open_provider
from phoenix.spec import Spec

ROOT = Path(__file__).resolve().parents[2]


def _spec(provider: dict[str, object]) -> Spec:
    return Spec.model_validate({
        "app": "web", "provider": provider, "regions": ["r1"], "image": {"name": "golden"},
        "flavor": "m1.small", "count": 1, "template": "t.j2",
        "health": {"mode": "provider"},
        "load_balancer": {"pool": "web", "member_port": 8080},
    })


def _without(monkeypatch: pytest.MonkeyPatch, sdk: str, ours: str) -> None:
    """As if ``sdk`` were not installed: importing it fails, and our adapter is
    imported afresh."""
    monkeypatch.setitem(sys.modules, sdk, None)  # type: ignore[arg-type]
    for name in [n for n in sys.modules if n == ours or n.startswith(f"{ours}.")]:
        monkeypatch.delitem(sys.modules, name)


@pytest.mark.parametrize(("provider", "sdk", "ours", "extra"), [
    ({"name": "openstack", "cloud": "c"}, "openstack", "phoenix.providers.openstack",
     "openstack"),
    ({"name": "libcloud", "options": {"credentials": {"key_env": "K", "secret_env": "S"},
                                      "compute": {"driver": "ec2"},
                                      "load_balancer": {"driver": "elb"},
                                      "storage": {"driver": "s3"}}},
     "libcloud", "phoenix.providers.libcloud", "libcloud"),
])
def test_a_missing_sdk_names_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch, provider: dict[str, object], sdk: str, ours: str,
    extra: str,
) -> None:
    spec = _spec(provider)
    _without(monkeypatch, sdk, ours)
    with pytest.raises(InputError) as refused:
        open_provider(spec, clock=SystemClock())
    assert f"pip install 'phoenix-deploy[{extra}]'" in str(refused.value)
    assert str(refused.value).startswith("provider.name:")


def test_the_sdks_are_extras_and_the_test_install_brings_them() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"])
    for sdk in ("openstacksdk", "apache-libcloud", "keystoneauth1"):
        assert sdk not in core
    extras = project["optional-dependencies"]
    assert any(d.startswith("openstacksdk") for d in extras["openstack"])
    assert any(d.startswith("apache-libcloud") for d in extras["libcloud"])
    # The README's install (".[test]") and CI's (".[dev]") include both.
    assert "phoenix-deploy[openstack,libcloud]" in extras["test"]
    assert "phoenix-deploy[test]" in extras["dev"]
