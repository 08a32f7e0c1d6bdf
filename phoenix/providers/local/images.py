"""Golden images for the local provider: content-addressed, immutable directory snapshots.

A real cloud boots every server from an image that nobody edits afterwards; that is what
makes a release reproducible and a rollback trustworthy. Locally an image is a copy of a
directory, made read-only, whose id is derived from its content: importing the same
directory twice gives the same id (and keeps the first record), changing any file gives a
new image, and editing the source after import cannot change a release that uses it.

The image holds ``phoenix-image.yaml`` (``MANIFEST``): the service the image runs at boot,
like a systemd unit baked into a real image. It is validated at import, so a broken image
is refused before any deploy can pick it.

Layout: ``<images_root>/<id>/root`` (the read-only copy) and ``<images_root>/<id>/image.json``.
An import copies into a temporary directory and renames it into place, so readers never
see half an image and two processes importing the same image at once both succeed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from phoenix.errors import InputError, UnknownResource
from phoenix.files import atomic_write

MANIFEST = "phoenix-image.yaml"
RECORD = "image.json"
DEFAULT_STOP_TIMEOUT = 5.0
MAX_STOP_TIMEOUT = 600.0

NODE_VARIABLES = (
    "PHOENIX_NODE_ADDRESS",
    "PHOENIX_NODE_NAME",
    "PHOENIX_NODE_ID",
    "PHOENIX_NODE_ROOT",
    "PHOENIX_REGION",
    "PATH",
    "HOME",
    "LANG",
)
"""Variables every node's commands and service get (``${VAR}`` may name them)."""

_SKIP_NAMES = frozenset({"__pycache__", ".git"})
_SKIP_SUFFIXES = (".pyc",)
_ID_PATTERN = re.compile(r"img-[0-9a-f]{12}")
_VAR_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MANIFEST_KEYS = ("command", "env", "stop_timeout")
_EXAMPLE_COMMAND = "command: [python3, server.py, --bind, '${PHOENIX_NODE_ADDRESS}']"


@dataclass(frozen=True)
class ImageManifest:
    """What ``phoenix-image.yaml`` says: the image's service and how to stop it."""

    command: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    stop_timeout: float = DEFAULT_STOP_TIMEOUT

    def service_env(self, base: Mapping[str, str]) -> dict[str, str]:
        """``base`` (the node's variables) plus the manifest's ``env``, ``${VAR}`` expanded
        from ``base``."""
        merged = dict(base)
        for key, value in self.env.items():
            merged[key] = expand(value, base)
        return merged

    def service_argv(self, env: Mapping[str, str]) -> list[str]:
        """The service's argv with ``${VAR}`` expanded from ``env`` (see ``service_env``)."""
        return [expand(arg, env) for arg in self.command]


@dataclass(frozen=True)
class LocalImage:
    """An imported image; ``root`` is its read-only copy."""

    id: str
    name: str
    digest: str
    created_at: datetime
    source: str
    root: Path

    def manifest(self) -> ImageManifest:
        """The image's validated ``phoenix-image.yaml``."""
        return read_manifest(self.root)


def import_image(
    images_root: Path, source: Path, *, name: str | None = None, now: datetime
) -> LocalImage:
    """Import ``source`` (a directory holding ``phoenix-image.yaml``) as an image.

    The same content gives the same id and returns the existing image unchanged (first
    ``name`` and ``created_at`` win). Raises ``InputError`` for a missing directory, a
    missing or invalid manifest, or a file that cannot be part of an image.
    """
    if not source.is_dir():
        raise InputError(f"{source}: not a directory; import a directory that holds {MANIFEST}")
    read_manifest(source)
    image_id = _image_id(digest_tree(source))
    existing = _load_record(images_root, image_id)
    if existing is not None:
        return existing

    images_root.mkdir(parents=True, exist_ok=True)
    staging = images_root / f".import-{secrets.token_hex(6)}"
    try:
        staging.mkdir()
        _copy_tree(source, staging / "root")
        # The copy is what the image holds: its digest is the id, even if the source
        # changed while it was being copied.
        digest = digest_tree(staging / "root")
        image_id = _image_id(digest)
        read_manifest(staging / "root", shown=source / MANIFEST)
        _make_read_only(staging / "root")
        record = {
            "id": image_id,
            "name": name or source.resolve().name,
            "digest": digest,
            "created_at": now.isoformat(),
            "source": str(source.resolve()),
        }
        write_json_atomic(staging / RECORD, record, mode=0o444)
        try:
            os.rename(staging, images_root / image_id)
        except OSError:
            # Another process imported the same content first; its record wins.
            winner = _load_record(images_root, image_id)
            if winner is None:
                raise
            return winner
    finally:
        if staging.exists():
            remove_tree(staging)
    image = _load_record(images_root, image_id)
    assert image is not None  # just renamed into place; images are never removed
    return image


def list_images(images_root: Path) -> list[LocalImage]:
    """Every imported image, oldest first."""
    if not images_root.is_dir():
        return []
    images = [
        image
        for entry in sorted(images_root.iterdir())
        if _ID_PATTERN.fullmatch(entry.name)
        and (image := _load_record(images_root, entry.name)) is not None
    ]
    return sorted(images, key=lambda image: (image.created_at, image.id))


def get_image(images_root: Path, image_id: str) -> LocalImage:
    """The image with ``image_id``; ``UnknownResource`` when there is none."""
    image = _load_record(images_root, image_id) if _ID_PATTERN.fullmatch(image_id) else None
    if image is None:
        raise UnknownResource(
            f"image {image_id!r} is not among the local images in {images_root}; import the"
            " image directory first (ids look like img-0123456789ab and come from the import)"
        )
    return image


def read_manifest(root: Path, *, shown: Path | None = None) -> ImageManifest:
    """Read and validate ``root/phoenix-image.yaml``; ``InputError`` says what to write.

    ``shown`` is the path named in messages (defaults to the file read).
    """
    path = root / MANIFEST
    where = shown or path
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(
            f"{where}: missing; every local image needs {MANIFEST} naming the service it"
            f" runs at boot, e.g. {_EXAMPLE_COMMAND}"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{where}: cannot be read ({exc})") from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise InputError(f"{where}{line}: not valid YAML ({exc})") from exc
    if not isinstance(document, dict):
        raise InputError(f"{where}: must be a mapping; write at least {_EXAMPLE_COMMAND}")
    problems: list[str] = []
    unknown = [str(key) for key in document if key not in _MANIFEST_KEYS]
    if unknown:
        problems.append(
            f"unknown field(s) {', '.join(unknown)}: a manifest has only"
            f" {', '.join(_MANIFEST_KEYS)}"
        )
    command = _manifest_command(document.get("command"), problems)
    env = _manifest_env(document.get("env"), problems)
    stop_timeout = _manifest_stop_timeout(document.get("stop_timeout"), problems)
    if not problems:
        problems.extend(_undefined_references(command, env))
    if problems:
        raise InputError("\n".join(f"{where}: {problem}" for problem in problems))
    return ImageManifest(command=tuple(command), env=env, stop_timeout=stop_timeout)


def expand(text: str, env: Mapping[str, str]) -> str:
    """Replace each ``${VAR}`` in ``text`` with ``env[VAR]`` (unset variables: empty)."""
    return _VAR_PATTERN.sub(lambda match: env.get(match.group(1), ""), text)


def digest_tree(root: Path) -> str:
    """sha256 over the sorted relative paths, kinds, executable bits and contents."""
    digest = hashlib.sha256()
    for relative, kind, executable, payload in _scan(root):
        digest.update(json.dumps([relative, kind, executable, payload]).encode() + b"\n")
    return digest.hexdigest()


def write_json_atomic(path: Path, data: Mapping[str, Any], *, mode: int = 0o644) -> None:
    """Write JSON to ``path`` so that readers see the old or the new file, never a mix.

    The folder must exist: a node's files are written into its directory, which a
    delete may have removed meanwhile (and must not come back)."""
    atomic_write(path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode=mode)


def delete_image(images_root: Path, image_id: str) -> bool:
    """Delete an imported image; False when there was none. Nodes run from copies, so
    the image is not needed by the nodes booted from it.

    The image leaves the list at once and whole: its directory is first renamed out of
    the id pattern (one atomic rename), then removed; a crash in between leaves a
    ``.deleting-*`` directory that the next delete removes, never a half-image."""
    if not _ID_PATTERN.fullmatch(image_id):
        return False
    for leftover in images_root.glob(".deleting-*"):
        remove_tree(leftover)
    doomed = images_root / f".deleting-{image_id}-{secrets.token_hex(4)}"
    try:
        os.rename(images_root / image_id, doomed)
    except FileNotFoundError:
        return False
    remove_tree(doomed)
    return True


def remove_tree(path: Path) -> None:
    """Remove a directory tree, including read-only directories (images are read-only)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
        return
    if not path.exists():
        return
    # Deleting an entry needs write permission on its directory: grant it first.
    for directory, _dirs, _files in os.walk(path):
        with contextlib.suppress(OSError):
            os.chmod(directory, os.stat(directory).st_mode | stat.S_IRWXU)
    shutil.rmtree(path, ignore_errors=False)


# --- helpers ------------------------------------------------------------------------------


def _image_id(digest: str) -> str:
    return "img-" + digest[:12]


def _load_record(images_root: Path, image_id: str) -> LocalImage | None:
    try:
        record = json.loads((images_root / image_id / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return LocalImage(
        id=record["id"],
        name=record["name"],
        digest=record["digest"],
        created_at=datetime.fromisoformat(record["created_at"]),
        source=record["source"],
        root=images_root / image_id / "root",
    )


def _skipped(name: str) -> bool:
    return name in _SKIP_NAMES or name.endswith(_SKIP_SUFFIXES)


def _scan(root: Path) -> Iterator[tuple[str, str, bool, str]]:
    """(relative path, kind, executable, payload) for each entry, sorted by path."""
    entries: list[tuple[str, str, bool, str]] = []
    pending = [(root, "")]
    while pending:
        directory, prefix = pending.pop()
        with os.scandir(directory) as listing:
            for entry in listing:
                if _skipped(entry.name):
                    continue
                relative = prefix + entry.name
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISLNK(info.st_mode):
                    entries.append((relative, "link", False, os.readlink(entry.path)))
                elif stat.S_ISDIR(info.st_mode):
                    entries.append((relative, "dir", False, ""))
                    pending.append((Path(entry.path), relative + "/"))
                elif stat.S_ISREG(info.st_mode):
                    executable = bool(info.st_mode & 0o111)
                    entries.append((relative, "file", executable, _file_digest(entry.path)))
                else:
                    raise InputError(
                        f"{entry.path}: not a regular file, directory or symlink (a socket,"
                        " pipe or device cannot be part of an image); remove it"
                    )
    yield from sorted(entries)


def _file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _copy_tree(source: Path, target: Path) -> None:
    target.mkdir()
    for relative, kind, executable, payload in _scan(source):
        destination = target / relative
        if kind == "dir":
            destination.mkdir()
        elif kind == "link":
            os.symlink(payload, destination)
        else:
            shutil.copyfile(source / relative, destination)
            os.chmod(destination, 0o755 if executable else 0o644)


def _make_read_only(root: Path) -> None:
    for directory, _dirs, files in os.walk(root, topdown=False):
        for name in files:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                executable = os.stat(path).st_mode & 0o111
                os.chmod(path, 0o555 if executable else 0o444)
        os.chmod(directory, 0o555)


def _manifest_command(value: Any, problems: list[str]) -> list[str]:
    if value is None:
        problems.append(
            "field 'command' is required: the argv of the service this image runs at boot,"
            f" e.g. {_EXAMPLE_COMMAND}"
        )
        return []
    if isinstance(value, str):
        problems.append(
            f"field 'command' must be a list (an argv), not a string: e.g. {_EXAMPLE_COMMAND}"
        )
        return []
    if (
        not isinstance(value, list)
        or not value
        or not all(
            isinstance(arg, str | int | float) and not isinstance(arg, bool) for arg in value
        )
        or not str(value[0])
    ):
        problems.append(
            "field 'command' must be a non-empty list of strings (quote values YAML would"
            f" read as true/false/null): e.g. {_EXAMPLE_COMMAND}"
        )
        return []
    return [str(arg) for arg in value]


def _manifest_env(value: Any, problems: list[str]) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append("field 'env' must be a mapping of NAME: value, e.g. env: {PORT: '8080'}")
        return {}
    env: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not _ENV_NAME.fullmatch(key):
            problems.append(f"field 'env': {key!r} is not a variable name (letters, digits, _)")
        elif key.startswith("PHOENIX_"):
            problems.append(
                f"field 'env.{key}': PHOENIX_* variables are set by the node itself; rename it"
            )
        elif item is None or isinstance(item, bool) or not isinstance(item, str | int | float):
            problems.append(f"field 'env.{key}' must be a string (quote it)")
        else:
            env[key] = str(item)
    return env


def _manifest_stop_timeout(value: Any, problems: list[str]) -> float:
    if value is None:
        return DEFAULT_STOP_TIMEOUT
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value <= MAX_STOP_TIMEOUT
    ):
        problems.append(
            "field 'stop_timeout' must be a number of seconds between 0 and"
            f" {MAX_STOP_TIMEOUT:g}, e.g. stop_timeout: 10"
        )
        return DEFAULT_STOP_TIMEOUT
    return float(value)


def _undefined_references(command: list[str], env: Mapping[str, str]) -> list[str]:
    problems: list[str] = []
    for key, value in env.items():
        for name in _VAR_PATTERN.findall(value):
            if name not in NODE_VARIABLES:
                problems.append(
                    f"field 'env.{key}' uses ${{{name}}}, which a node does not set; env"
                    f" values may use {', '.join(NODE_VARIABLES)}"
                )
    for index, arg in enumerate(command):
        for name in _VAR_PATTERN.findall(arg):
            if name not in NODE_VARIABLES and name not in env:
                problems.append(
                    f"field 'command[{index}]' uses ${{{name}}}, which is not set; define it"
                    f" under env: or use one of {', '.join(NODE_VARIABLES)}"
                )
    return problems
