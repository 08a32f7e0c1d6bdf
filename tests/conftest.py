"""Fixtures shared across test folders."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def openstack_cloud() -> Iterator[object]:
    """Real OpenStack services on 127.0.0.1 (tests/openstack/harness.py), opt-in.

    Runs only with PHOENIX_OPENSTACK_TESTS=1: the first run installs about 1 GB of venvs
    under .openstack/ and takes a few minutes; later runs reuse a running harness. Set
    PHOENIX_OPENSTACK_KEEP=1 to leave the services running after the session.
    """
    if os.environ.get("PHOENIX_OPENSTACK_TESTS") != "1":
        pytest.skip(
            "real-OpenStack tests are opt-in: set PHOENIX_OPENSTACK_TESTS=1 "
            "(installs and starts keystone/nova/neutron/glance/placement/octavia "
            "on 127.0.0.1 via tests/openstack/harness.py)"
        )
    from tests.openstack import harness

    info = harness.start()
    os.environ["OS_CLIENT_CONFIG_FILE"] = str(info.clouds_yaml)
    yield info
    if info.started and os.environ.get("PHOENIX_OPENSTACK_KEEP") != "1":
        harness.stop()
