"""``Store`` over Swift: the release records and the deploy lock.

``create_exclusive`` is a PUT with ``If-None-Match: *`` (412 means the object exists),
done with the connection's session-level request because the SDK's ``create_object`` has
no such switch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import openstack.exceptions as os_exc

from phoenix import errors
from phoenix.providers.openstack.cloud import Adapter, OpenStackCloud, translated


def _object_path(key: str) -> str:
    """``key`` quoted for a Swift URL, each ``/``-separated segment kept.

    ``.`` and ``..`` segments are percent-encoded: requests (urllib3) resolves dot segments
    of a URL before sending it (RFC 3986), which would turn the key ``a/../b`` into the
    object ``b``; encoded, they reach Swift as written and Swift keeps them in the name.
    """
    return "/".join(
        segment.replace(".", "%2E") if segment in (".", "..") else quote(segment, safe="")
        for segment in key.split("/")
    )


class SwiftStore(Adapter):
    """``Store`` over one Swift container, through session-level requests.

    Objects are small (release records, the lock), so plain PUT/GET/DELETE suffice and
    ``If-None-Match: *`` gives ``create_exclusive``. Threads of this process contend on a
    per-key lock first; between processes Swift's 412 decides.
    """

    def __init__(self, cloud: OpenStackCloud) -> None:
        super().__init__(cloud)
        self._container_ready = False

    def _region_of_call(self, args: tuple[Any, ...]) -> str | None:
        return self._cloud.store_region

    @property
    def _region(self) -> str:
        return self._cloud.store_region

    def _swift(self) -> Any:
        return self._cloud.conn(self._region).object_store

    def _path(self, key: str) -> str:
        if not key:  # "/<container>/" would address the container itself
            raise errors.BadRequest("a store key cannot be empty")
        return f"/{quote(self._cloud.container, safe='')}/{_object_path(key)}"

    def _ensure_container(self) -> None:
        if self._container_ready:
            return
        response = self._swift().put(f"/{quote(self._cloud.container, safe='')}")
        os_exc.raise_from_response(response)
        self._container_ready = True

    def _put(self, key: str, data: bytes, headers: Mapping[str, str]) -> Any:
        path = self._path(key)
        self._ensure_container()
        response = self._swift().put(path, data=data, headers=dict(headers))
        if response.status_code == 404:  # the container went away: make it again
            self._container_ready = False
            self._ensure_container()
            response = self._swift().put(path, data=data, headers=dict(headers))
        return response

    @translated
    def put(self, key: str, data: bytes) -> None:
        response = self._put(key, bytes(data), {"Content-Type": "application/octet-stream"})
        os_exc.raise_from_response(response)

    @translated
    def get(self, key: str) -> bytes | None:
        response = self._swift().get(self._path(key))
        if response.status_code == 404:
            return None
        os_exc.raise_from_response(response)
        return bytes(response.content)

    @translated
    def list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        marker = ""
        container = f"/{quote(self._cloud.container, safe='')}"
        while True:
            params = {"format": "json", "prefix": prefix}
            if marker:
                params["marker"] = marker
            response = self._swift().get(container, params=params)
            if response.status_code == 404:
                return []
            os_exc.raise_from_response(response)
            if response.status_code == 204 or not response.content:
                break
            page = [str(item["name"]) for item in response.json() if "name" in item]
            if not page:
                break
            keys.extend(page)
            marker = page[-1]
        return sorted(keys)

    @translated
    def delete(self, key: str) -> None:
        response = self._swift().delete(self._path(key))
        if response.status_code == 404:
            return
        os_exc.raise_from_response(response)

    @translated
    def create_exclusive(self, key: str, data: bytes) -> bool:
        with self._cloud.named_lock("store", key):
            response = self._put(
                key,
                bytes(data),
                {"If-None-Match": "*", "Content-Type": "application/octet-stream"},
            )
            if response.status_code == 412:
                return False
            os_exc.raise_from_response(response)
            return True
