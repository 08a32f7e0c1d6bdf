"""The subset of cloud-init the local provider applies, parsed into a plan before boot.

A local node has no cloud-init: its agent (``agent.py``) applies the user-data itself. It
can do that faithfully only for a small subset, so the subset is explicit: user-data that
asks for anything else (packages, users, mounts, ...) is refused with ``BadRequest``
listing every unsupported key, before a node directory exists. Silently skipping a key
would let a deploy pass locally and then fail on a real cloud (or the other way round).

Supported (see docs/local-provider.md): ``write_files`` (path, content, encoding,
permissions, append, defer; ``owner`` is accepted and reported in ``notes`` because a local
node cannot chown), ``bootcmd``, ``runcmd``, and a ``#!`` script instead of cloud-config.
Values are validated and decoded here (base64, gzip, permissions), so a node either gets a
plan that can be applied or is never created. Messages name keys and positions but never
quote values: rendered user-data holds secrets.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import yaml

from phoenix.errors import BadRequest

CLOUD_CONFIG_HEADER = "#cloud-config"
SUPPORTED_KEYS = ("write_files", "bootcmd", "runcmd")
WRITE_FILE_KEYS = ("path", "content", "encoding", "permissions", "append", "defer", "owner")
DEFAULT_PERMISSIONS = "0644"  # cloud-init's default for write_files

Command: TypeAlias = str | tuple[str, ...]
"""A ``bootcmd``/``runcmd`` entry: a string runs with ``/bin/sh -c``; a tuple is an argv."""

_ENCODINGS = {
    "": "text",
    "text/plain": "text",
    "b64": "b64",
    "base64": "b64",
    "gz": "gz",
    "gzip": "gz",
    "gz+b64": "gz+b64",
    "gz+base64": "gz+b64",
    "gzip+b64": "gz+b64",
    "gzip+base64": "gz+b64",
}
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


@dataclass(frozen=True)
class WriteFile:
    """One ``write_files`` entry, decoded: ``content`` holds the bytes to write."""

    path: str  # absolute and normalised, e.g. "/etc/app/config"
    content: bytes
    permissions: str = DEFAULT_PERMISSIONS  # octal string, e.g. "0644"
    encoding: str = "text"  # as written: "text", "b64", "gz" or "gz+b64"
    append: bool = False
    defer: bool = False
    owner: str | None = None  # accepted, never applied (see ``UserData.notes``)

    @property
    def mode(self) -> int:
        """``permissions`` as a number for ``os.chmod``."""
        return int(self.permissions, 8)


@dataclass(frozen=True)
class UserData:
    """What a node's user-data asks for, in the order cloud-init would do it.

    ``kind`` is ``"cloud-config"`` (``write_files``/``bootcmd``/``runcmd``) or ``"script"``
    (``script`` holds the whole ``#!`` text). ``notes`` say what was accepted but cannot
    take effect on a local node; the agent prints them to the console log.
    """

    kind: Literal["cloud-config", "script"]
    write_files: tuple[WriteFile, ...] = ()
    bootcmd: tuple[Command, ...] = ()
    runcmd: tuple[Command, ...] = ()
    script: str | None = None
    notes: tuple[str, ...] = ()


def parse_user_data(text: str) -> UserData:
    """Parse rendered user-data into a plan, or raise ``BadRequest`` listing every problem.

    Empty user-data is an empty cloud-config (cloud-init does nothing with it either).
    """
    if text.startswith("#!"):
        return UserData(kind="script", script=text)
    if not text.strip():
        return UserData(kind="cloud-config")
    if text.split("\n", 1)[0].rstrip() != CLOUD_CONFIG_HEADER:
        raise BadRequest(
            "user-data must start with '#cloud-config' alone on its first line, or be a"
            " script starting with '#!' (the local provider supports no other user-data"
            " format, such as #include, #cloud-boothook or MIME multipart)"
        )
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise BadRequest(f"user-data is not valid YAML{at}") from exc
    if document is None:
        return UserData(kind="cloud-config")
    if not isinstance(document, dict):
        raise BadRequest(
            f"user-data's #cloud-config holds a {type(document).__name__}, not a mapping of"
            " cloud-init modules (write_files:, runcmd:, ...)"
        )
    return _Parser().parse(document)


def command_argv(command: Command) -> list[str]:
    """The argv that runs ``command``: strings go through ``/bin/sh -c`` as cloud-init does."""
    if isinstance(command, str):
        return ["/bin/sh", "-c", command]
    return list(command)


class _Parser:
    """Collects every problem in one pass, so one error lists all of them."""

    def __init__(self) -> None:
        self.unsupported: list[str] = []
        self.problems: list[str] = []
        self.notes: list[str] = []

    def parse(self, document: Mapping[Any, Any]) -> UserData:
        self.unsupported.extend(f"'{key}'" for key in document if key not in SUPPORTED_KEYS)
        files = self._write_files(document.get("write_files"))
        bootcmd = self._commands("bootcmd", document.get("bootcmd"))
        runcmd = self._commands("runcmd", document.get("runcmd"))
        self._raise_if_any()
        return UserData(
            kind="cloud-config",
            write_files=files,
            bootcmd=bootcmd,
            runcmd=runcmd,
            notes=tuple(self.notes),
        )

    def _raise_if_any(self) -> None:
        lines: list[str] = []
        if self.unsupported:
            lines.append(
                "user-data uses cloud-init keys the local provider does not support: "
                + ", ".join(self.unsupported)
                + ". The local provider supports only the documented subset (top level:"
                f" {', '.join(SUPPORTED_KEYS)}; write_files entries: {', '.join(WRITE_FILE_KEYS)};"
                " or a '#!' script), see docs/local-provider.md — bake the rest into the"
                " golden image"
            )
        lines.extend(self.problems)
        if lines:
            raise BadRequest("\n".join(lines))

    def _write_files(self, value: Any) -> tuple[WriteFile, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.problems.append("write_files: must be a list of entries (- path: ...)")
            return ()
        files: list[WriteFile] = []
        for index, entry in enumerate(value):
            where = f"write_files[{index}]"
            if not isinstance(entry, dict):
                self.problems.append(f"{where}: must be a mapping with at least 'path'")
                continue
            self.unsupported.extend(
                f"'{where}.{key}'" for key in entry if key not in WRITE_FILE_KEYS
            )
            parsed = self._write_file(where, entry)
            if parsed is not None:
                files.append(parsed)
        return tuple(files)

    def _write_file(self, where: str, entry: Mapping[Any, Any]) -> WriteFile | None:
        problems_before = len(self.problems)
        path = self._path(where, entry.get("path"))
        encoding = self._encoding(where, entry.get("encoding"))
        permissions = self._permissions(where, entry.get("permissions"))
        append = self._bool(where, "append", entry.get("append"))
        defer = self._bool(where, "defer", entry.get("defer"))
        owner = entry.get("owner")
        if owner is not None and not isinstance(owner, str):
            self.problems.append(f"{where}.owner: must be a string like 'root:root'")
        content = self._content(where, entry.get("content"), encoding)
        if len(self.problems) != problems_before or path is None or content is None:
            return None
        if isinstance(owner, str):
            self.notes.append(
                f"{where}.owner ({owner}) is ignored: a local node cannot chown, so {path}"
                " belongs to the user running Phoenix"
            )
        return WriteFile(
            path=path,
            content=content,
            permissions=permissions or DEFAULT_PERMISSIONS,
            encoding=encoding or "text",
            append=append,
            defer=defer,
            owner=owner if isinstance(owner, str) else None,
        )

    def _path(self, where: str, value: Any) -> str | None:
        if not isinstance(value, str) or not value.strip():
            self.problems.append(f"{where}.path: required, an absolute path like /etc/app/conf")
            return None
        if "\0" in value:
            self.problems.append(f"{where}.path: contains a NUL character")
            return None
        if ".." in value.split("/"):
            self.problems.append(
                f"{where}.path: '..' is not allowed (the file must stay inside the node)"
            )
            return None
        # cloud-init resolves a relative path against "/" (its working directory).
        return posixpath.normpath("/" + value.lstrip("/"))

    def _encoding(self, where: str, value: Any) -> str | None:
        if value is None:
            return "text"
        name = value.strip().lower() if isinstance(value, str) else None
        if name is None or name not in _ENCODINGS:
            self.problems.append(
                f"{where}.encoding: unsupported; write one of text/plain, b64, base64, gz,"
                " gzip, gz+b64 (or gzip+base64)"
            )
            return None
        return _ENCODINGS[name]

    def _permissions(self, where: str, value: Any) -> str | None:
        if value is None:
            return DEFAULT_PERMISSIONS
        mode: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            mode = value  # YAML 1.1 reads an unquoted 0644 as octal, as cloud-init does
        elif isinstance(value, str):
            try:
                mode = int(value.strip(), 8)
            except ValueError:
                mode = None
        if mode is None or not 0 <= mode <= 0o7777:
            self.problems.append(
                f"{where}.permissions: not an octal file mode; write a quoted string like"
                " '0644' or '0755'"
            )
            return None
        return f"{mode:04o}"

    def _bool(self, where: str, key: str, value: Any) -> bool:
        if value is None or isinstance(value, bool):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        self.problems.append(f"{where}.{key}: must be true or false")
        return False

    def _content(self, where: str, value: Any, encoding: str | None) -> bytes | None:
        if value is None:
            return b""
        if not isinstance(value, str | bytes):
            self.problems.append(
                f"{where}.content: must be a string (quote it) or !!binary data,"
                f" not a {type(value).__name__}"
            )
            return None
        if encoding is None:
            return None  # already reported
        raw = value.encode("utf-8") if isinstance(value, str) else value
        try:
            if encoding in ("b64", "gz+b64"):
                raw = base64.b64decode(raw)
            if encoding in ("gz", "gz+b64"):
                raw = gzip.decompress(raw)
        except (binascii.Error, ValueError):
            self.problems.append(f"{where}.content: is not valid base64 ({encoding})")
            return None
        except (OSError, EOFError):
            self.problems.append(f"{where}.content: is not valid gzip data ({encoding})")
            return None
        return raw

    def _commands(self, key: str, value: Any) -> tuple[Command, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.problems.append(
                f"{key}: must be a list; each entry a string (run with /bin/sh -c) or a list"
                " (an argv)"
            )
            return ()
        commands: list[Command] = []
        for index, entry in enumerate(value):
            where = f"{key}[{index}]"
            if isinstance(entry, str):
                commands.append(entry)
            elif isinstance(entry, list) and entry and all(_is_arg(arg) for arg in entry):
                commands.append(tuple(str(arg) for arg in entry))
            else:
                self.problems.append(
                    f"{where}: must be a string (run with /bin/sh -c) or a non-empty list of"
                    " strings (an argv); quote values YAML would read as true/false/null"
                )
        return tuple(commands)


def _is_arg(value: Any) -> bool:
    return isinstance(value, str | int | float) and not isinstance(value, bool)
