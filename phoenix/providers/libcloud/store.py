"""``Store`` over a libcloud storage driver: one bucket/container of small objects.

``create_exclusive`` (the deploy lock) is a conditional write, ``If-None-Match: *``,
which S3 (since 2024), GCS's XML API and Swift honour: the service, not a read-then-write
race, decides who created the object.
"""

from __future__ import annotations

import threading
from typing import Any

from phoenix import errors
from phoenix.providers.libcloud.quirks import storage_quirks
from phoenix.providers.libcloud.translate import Part, translate, translated


class LibcloudStore(Part):
    service = "storage"

    def __init__(self, driver: Any, container: str, region: str | None) -> None:
        self._driver = driver
        self._container_name = container
        self._region = region
        self._container: Any = None
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}

    def _region_of_call(self, args: tuple[Any, ...]) -> str | None:
        return self._region

    def _bucket(self) -> Any:
        from libcloud.storage.types import ContainerDoesNotExistError

        with self._lock:
            if self._container is not None:
                return self._container
            try:
                self._container = self._driver.get_container(self._container_name)
            except ContainerDoesNotExistError:
                self._container = self._driver.create_container(self._container_name)
            return self._container

    @staticmethod
    def _check(key: str) -> None:
        if not key:
            raise errors.BadRequest("a store key cannot be empty")

    def _upload(self, key: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        storage_quirks(self._driver).upload(
            self._driver, self._bucket(), key, bytes(data), headers or {}
        )

    @translated
    def put(self, key: str, data: bytes) -> None:
        self._check(key)
        self._upload(key, data)

    @translated
    def get(self, key: str) -> bytes | None:
        from libcloud.storage.types import ContainerDoesNotExistError, ObjectDoesNotExistError

        self._check(key)
        try:
            obj = self._driver.get_object(self._container_name, key)
        except (ObjectDoesNotExistError, ContainerDoesNotExistError):
            return None
        return b"".join(self._driver.download_object_as_stream(obj))

    @translated
    def list(self, prefix: str) -> list[str]:
        objects = self._driver.list_container_objects(self._bucket(), prefix=prefix)
        return sorted(str(o.name) for o in objects if str(o.name).startswith(prefix))

    @translated
    def delete(self, key: str) -> None:
        from libcloud.storage.types import ContainerDoesNotExistError, ObjectDoesNotExistError

        self._check(key)
        try:
            obj = self._driver.get_object(self._container_name, key)
            self._driver.delete_object(obj)
        except (ObjectDoesNotExistError, ContainerDoesNotExistError):
            return

    @translated
    def create_exclusive(self, key: str, data: bytes) -> bool:
        self._check(key)
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            try:
                self._upload(key, data, {"If-None-Match": "*"})
            except Exception as exc:
                if _precondition_failed(exc):
                    return False
                raise translate(exc, region=self._region, service=self.service) from exc
            return True


def _precondition_failed(exc: BaseException) -> bool:
    status = getattr(exc, "http_code", None) or getattr(exc, "code", None)
    text = str(getattr(exc, "value", "") or exc)
    return status == 412 or "412" in text or "PreconditionFailed" in text
