"""``Store`` over the memory cloud."""

from __future__ import annotations

from phoenix.providers.memory.core import CloudCore


class MemoryStore:
    """``Store`` over the memory cloud; ``create_exclusive`` is atomic under the lock."""

    def __init__(self, cloud: CloudCore) -> None:
        self._cloud = cloud

    def put(self, key: str, data: bytes) -> None:
        with self._cloud.call("store.put", None, mutating=True, key=key) as state:
            state.objects[key] = bytes(data)
            self._cloud.dirty = True

    def get(self, key: str) -> bytes | None:
        with self._cloud.call("store.get", None, key=key) as state:
            return state.objects.get(key)

    def list(self, prefix: str) -> list[str]:
        with self._cloud.call("store.list", None) as state:
            return sorted(key for key in state.objects if key.startswith(prefix))

    def delete(self, key: str) -> None:
        with self._cloud.call("store.delete", None, mutating=True, key=key) as state:
            if state.objects.pop(key, None) is not None:
                self._cloud.dirty = True

    def create_exclusive(self, key: str, data: bytes) -> bool:
        with self._cloud.call("store.create_exclusive", None, mutating=True,
                               key=key) as state:
            if key in state.objects:
                return False
            state.objects[key] = bytes(data)
            self._cloud.dirty = True
            return True
