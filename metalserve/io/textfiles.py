"""Edge: read an operator's file as text — a regular file only, up to a size, decoded without a
traceback — or say in one line why not.

A FIFO or a device is refused before anything is read from it (opening is non-blocking, so a FIFO
with no writer cannot hang the command); a file over the limit is refused, not half-read; bytes
that are not text give one line saying so.

Example::

    text = read_text_file(Path("all_reduce.log"), "a saved nccl-tests output", LOG_LIMIT,
                          fix="pass the log file written by the run", lenient=True)
"""

from __future__ import annotations

import codecs
import json
import os
import stat
from pathlib import Path

from metalserve.errors import MetalserveError
from metalserve.types import printable

MIB = 1 << 20
LOG_LIMIT = 256 * MIB
"""nccl-tests output with NCCL_DEBUG=INFO from hundreds of ranks stays well below this."""
JSON_LIMIT = 64 * MIB
"""A diag report, an nccl-tests -J file, a config.json or safetensors index."""
INVENTORY_LIMIT = 4 * MIB
"""A pyinfra inventory is a short Python file."""

_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)

_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a directory",
}


def _refuse(path: Path, expected: str, found: str, fix: str) -> MetalserveError:
    return MetalserveError(
        f"{printable(str(path))}: expected {expected}, found {found} — fix: {fix}"
    )


def missing(path: Path) -> bool:
    """Nothing at ``path`` (a name too long or a symlink loop is there, but unreadable)."""
    try:
        path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        return False
    return False


def regular_file_problem(path: Path) -> str | None:
    """What ``path`` is when it is not a regular file (``a FIFO``, ``nothing``…); None if it is.
    ``stat`` reads no data, so a FIFO is named without being opened."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        return "nothing readable" if exc.strerror is None else exc.strerror.lower()
    if stat.S_ISREG(mode):
        return None
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def read_bytes_file(path: Path, expected: str, limit: int, fix: str) -> bytes:
    """At most ``limit`` bytes of the regular file ``path``; one-line error otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise _refuse(path, expected, (exc.strerror or str(exc)).lower(), fix) from None
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if not stat.S_ISREG(mode):
            kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
            raise _refuse(path, f"{expected} (a regular file)", kind, fix)
        try:
            data = handle.read(limit + 1)
        except OSError as exc:
            raise _refuse(path, expected, (exc.strerror or str(exc)).lower(), fix) from None
    return within_limit(data, path, expected, limit, fix)


def within_limit(data: bytes, path: Path, expected: str, limit: int, fix: str) -> bytes:
    """``data`` where it is at most ``limit`` bytes; one-line error otherwise."""
    if len(data) > limit:
        raise _refuse(path, f"{expected} of at most {limit // MIB} MiB", "a larger file", fix)
    return data


def is_text(data: bytes) -> bool:
    """Text as :func:`decode_text` reads it: UTF-16 with its BOM, or anything without a NUL byte."""
    return data.startswith(_UTF16_BOMS) or b"\0" not in data


def decode_text(data: bytes, path: Path, expected: str, fix: str, lenient: bool) -> str:
    """UTF-8 (a BOM is dropped), or UTF-16 with its BOM. ``lenient``: undecodable bytes become
    U+FFFD (a log with bytes from interleaved ranks); otherwise they are refused."""
    if data.startswith(_UTF16_BOMS):
        return data.decode("utf-16", errors="replace")
    if not lenient and not is_text(data):
        at = data.index(b"\0")
        raise _refuse(path, f"{expected} (UTF-8 text)", f"binary data (a NUL byte at {at})", fix)
    try:
        return data.decode("utf-8-sig", errors="replace" if lenient else "strict")
    except UnicodeDecodeError as exc:
        found = f"bytes that are not UTF-8 (at byte {exc.start})"
        raise _refuse(path, f"{expected} (UTF-8 text)", found, fix) from None


def read_text_file(path: Path, expected: str, limit: int, fix: str, lenient: bool = False) -> str:
    """The text of a regular file of at most ``limit`` bytes, or one line saying why not."""
    return decode_text(read_bytes_file(path, expected, limit, fix), path, expected, fix, lenient)


def read_json_file(path: Path, expected: str, fix: str) -> object:
    """A JSON document; invalid JSON, numbers past Python's 4300-digit limit included, is one
    line naming the file."""
    text = read_text_file(path, expected, JSON_LIMIT, fix)
    return parse_json_text(text, path, expected, fix)


def parse_json_text(text: str, path: Path, expected: str, fix: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _refuse(path, expected, f"invalid JSON ({exc.msg}, line {exc.lineno})", fix) from None
    except (ValueError, RecursionError) as exc:  # int digits limit, nesting too deep
        raise _refuse(
            path, expected, f"unreadable JSON ({printable(str(exc))[:80]})", fix
        ) from None
