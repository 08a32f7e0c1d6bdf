"""Fixtures and hooks shared across test folders.

The real-OpenStack tests (marked ``openstack``; they use the ``openstack_cloud`` fixture) run
by default,
against services that ``tests/openstack/harness.py`` installs (about 1 GB under
.openstack/, a few minutes the first time) and starts on 127.0.0.1. To keep the session
short, the install starts in a background thread as soon as collection shows such a test,
and those tests run last, after everything else. ``PHOENIX_OPENSTACK_TESTS=0`` skips them
(a quick local loop); ``PHOENIX_OPENSTACK_KEEP=1`` leaves the services running afterwards
so the next session reuses them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest


def openstack_tests_enabled() -> bool:
    return os.environ.get("PHOENIX_OPENSTACK_TESTS", "1") != "0"


class _BackgroundInstall:
    """The harness install (pip and apt, mostly waiting on the network), run beside the
    other tests; the first OpenStack test waits for it and sees its error, if any."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def begin(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="openstack-install", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from tests.openstack import harness

        try:
            harness.install()
        except BaseException as exc:  # reported to the test that needs the harness
            self._error = exc

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise RuntimeError(f"OpenStack harness install failed: {self._error}") from self._error


_install = _BackgroundInstall()


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Real-cloud tests last (stable order otherwise), and their install under way now."""
    needs_cloud = [item for item in items if item.get_closest_marker("openstack")]
    if not needs_cloud or not openstack_tests_enabled():
        return
    others = [item for item in items if not item.get_closest_marker("openstack")]
    items[:] = others + needs_cloud
    if not config.option.collectonly:
        _install.begin()


@pytest.fixture(autouse=True)
def _outside_github_actions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the CLI as off a GitHub runner, even when the suite runs on one: no
    ``::error`` annotations in the output the tests read, and nothing appended to the
    runner's own job summary. Tests of that behaviour set the variables themselves."""
    for name in ("GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY", "GITHUB_WORKSPACE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def openstack_cloud() -> Iterator[object]:
    """Real OpenStack services on 127.0.0.1 (tests/openstack/harness.py).

    Reuses a harness that already answers; otherwise installs what is missing and starts
    it, and stops it after the session unless PHOENIX_OPENSTACK_KEEP=1.
    """
    if not openstack_tests_enabled():
        pytest.skip("real-OpenStack tests skipped: PHOENIX_OPENSTACK_TESTS=0")
    from tests.openstack import harness

    _install.wait()
    info = harness.start()
    os.environ["OS_CLIENT_CONFIG_FILE"] = str(info.clouds_yaml)
    yield info
    if info.started and os.environ.get("PHOENIX_OPENSTACK_KEEP") != "1":
        harness.stop()


CONTRACT_ZONE = "contract.example."


@pytest.fixture(scope="session")
def harness_object_dns(openstack_cloud: object) -> Iterator[object]:
    """Swift and Designate for the harness: the loopback fake (tests/openstack/
    fake_object_dns.py) listed in the harness Keystone's catalog as object-store and dns,
    checking every token with Keystone. The harness cannot run the real ones; this way the
    provider still finds them by service type and authenticates as on a real cloud."""
    import openstack

    from tests.openstack import harness
    from tests.openstack.fake_object_dns import FakeObjectDns, KeystoneTokens, listed_in_catalog

    admin = openstack.connect(cloud="phoenix-harness-admin", region_name=harness.REGION)
    fake = FakeObjectDns(token_validator=KeystoneTokens(admin.session, harness.KEYSTONE_URL))
    with fake, listed_in_catalog(admin, fake, harness.REGION):
        fake.add_zone(CONTRACT_ZONE)
        yield fake
    admin.close()


@pytest.fixture(scope="session")
def moto() -> Iterator[object]:
    """moto's server on 127.0.0.1 for the session (EC2, ELB, Route53, S3 for libcloud)."""
    from tests.libcloud.moto_server import MotoServer

    with MotoServer() as server:
        yield server
