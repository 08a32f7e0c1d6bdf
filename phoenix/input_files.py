"""Read the files that user input names (var files, templates) without trusting the name.

A spec, its templates and a release record are shared input: a name in them must not
reach outside the folder it belongs to (``/etc/shadow``, ``../../x``, a symlink out), and
the file it names must not hang Phoenix (a FIFO), exhaust its memory (``/dev/zero``, a
huge file) or be a directory. So a name is resolved inside its folder first, the file is
checked to be a regular file before it is opened (and again, on the open descriptor,
after), and it is read with a bounded read.

The limits are far above what a var or a cloud-init template needs (user-data must fit
Nova's 64 KiB once rendered), and low enough that a mistake fails at once.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

from phoenix.errors import InputError

VAR_FILE_LIMIT = 1024 * 1024
"""Bytes a ``vars: {x: {file: ...}}`` file may hold."""

TEMPLATE_FILE_LIMIT = 256 * 1024
"""Bytes one template file (the spec's template or one it includes) may hold."""


class InputFileError(InputError):
    """A file named by user input is outside its folder, not a regular file, too large or
    unreadable. The message says which path and why; the caller adds where it was named
    (``file:line: field``)."""


def resolve_inside(root: Path, name: str) -> Path:
    """The real path of ``name`` (relative, ``/``-separated) inside the folder ``root``.

    Refuses a name that is empty, absolute, starts with ``~``, has a ``..`` part, or whose
    real path (symlinks followed) is outside the real path of ``root``.
    """
    if not name or name.startswith(("/", "~", "\\")) or PurePosixPath(name).is_absolute():
        raise InputFileError(
            f"{name!r} is not a path relative to {root} — files must be inside that folder"
        )
    if ".." in PurePosixPath(name).parts or "\\" in name:
        raise InputFileError(
            f"{name!r} leaves its folder {root} ('..' or '\\' in the path) — files must be"
            " inside that folder"
        )
    real_root = Path(os.path.realpath(root))
    target = Path(os.path.realpath(real_root / name))
    if target != real_root and real_root not in target.parents:
        raise InputFileError(
            f"{name!r} resolves to {target}, outside {real_root} (a symlink leads out) — files"
            " must be inside that folder"
        )
    return target


def read_limited(path: Path, *, limit: int) -> bytes:
    """The bytes of the regular file ``path``, refused when larger than ``limit`` bytes.

    A directory, device or FIFO is refused before it is opened; the open is non-blocking
    and the descriptor is checked again, so a file swapped for a FIFO cannot hang.
    """
    try:
        _check_regular(path, os.stat(path), limit)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise InputFileError(
            f"cannot read file {path}: {exc.strerror or type(exc).__name__}"
        ) from None
    try:
        _check_regular(path, os.fstat(fd), limit)
        chunks: list[bytes] = []
        left = limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise InputFileError(
            f"cannot read file {path}: {exc.strerror or type(exc).__name__}"
        ) from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        raise _too_large(path, limit)
    return data


def read_var_file(base_dir: Path, name: str) -> str:
    """The UTF-8 text of var file ``name``, which must be inside the spec's folder
    ``base_dir`` (pass a value from outside with ``env:`` instead)."""
    path = resolve_inside(base_dir, name)
    data = read_limited(path, limit=VAR_FILE_LIMIT)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputFileError(f"{path} is not UTF-8 text") from None


def _check_regular(path: Path, status: os.stat_result, limit: int) -> None:
    if not stat.S_ISREG(status.st_mode):
        kind = "a directory" if stat.S_ISDIR(status.st_mode) else "a device, pipe or socket"
        raise InputFileError(f"{path} is {kind}, not a regular file — name a file")
    if status.st_size > limit:
        raise _too_large(path, limit)


def _too_large(path: Path, limit: int) -> InputFileError:
    return InputFileError(
        f"{path} is larger than {limit // 1024} KiB, the limit for this file — keep large"
        " content in the image or fetch it at boot"
    )
