"""Fixtures for the libcloud provider's tests against moto's server (``moto[server]``).

* ``moto`` (session, in tests/conftest.py: the contract suite shares it): one moto server
  subprocess (``moto_server.MotoServer``) on 127.0.0.1 for the whole run, started in
  about a second, stopped at the end.
* ``moto_reset`` (function): the same server with every backend emptied first
  (``POST /moto-api/reset``), so each test starts from a clean AWS.
* ``libcloud_shims`` (function): ``shims.apply(endpoint)`` for the test, ``remove()``
  after it, so no other test in the session sees a patched libcloud.
* ``aws`` (function): both of the above; what most tests want.

Nothing here is specific to tests/libcloud: these can move to tests/conftest.py too when
other folders need them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.libcloud import shims
from tests.libcloud.moto_server import MotoServer


@pytest.fixture
def moto_reset(moto: MotoServer) -> MotoServer:
    moto.reset()
    return moto


@pytest.fixture
def libcloud_shims(moto: MotoServer) -> Iterator[str]:
    shims.apply(endpoint=moto.endpoint)
    try:
        yield moto.endpoint
    finally:
        shims.remove()


@pytest.fixture
def aws(moto_reset: MotoServer, libcloud_shims: str) -> MotoServer:
    return moto_reset
