"""Facts only preflight reads: GPU persistence mode, and the space of a filesystem path.

Each is a command plus a pure ``process()``, tested on recorded outputs in
``tests/fixtures/facts/preflight.*``.
"""

from __future__ import annotations

import shlex
from typing import Any

from pyinfra.api import FactBase

from metalserve.errors import ParseError
from metalserve.preflight import DiskSpace


def parse_persistence(output: list[str]) -> dict[str, bool]:
    """Parse ``nvidia-smi --query-gpu=pci.bus_id,persistence_mode --format=csv,noheader``
    (``00000000:18:00.0, Enabled``); lines that are not such a pair (nvidia-smi failing) are left
    to the driver checks.

    Example::

        >>> parse_persistence(["00000000:18:00.0, Enabled", "00000000:2A:00.0, Disabled"])
        {'00000000:18:00.0': True, '00000000:2a:00.0': False}
    """
    modes: dict[str, bool] = {}
    for line in output:
        # one line at a time: a stray quote or line break in one line spoils only that line
        bus_id, comma, mode = line.strip().partition(",")
        if comma and mode.strip() in ("Enabled", "Disabled") and "\n" not in bus_id:
            modes[bus_id.strip().lower()] = mode.strip() == "Enabled"
    return modes


class NvidiaPersistenceMode(FactBase[dict[str, bool]]):
    """Persistence mode per GPU (bus id -> on); empty without a GPU or a working nvidia-smi."""

    default = dict

    def requires_command(self, *args: Any, **kwargs: Any) -> str:
        return "nvidia-smi"

    def command(self) -> str:
        return (
            "nvidia-smi --query-gpu=pci.bus_id,persistence_mode --format=csv,noheader "
            "2>/dev/null || true"
        )

    def process(self, output: list[str]) -> dict[str, bool]:
        return parse_persistence(output)


def parse_path_space(output: list[str]) -> DiskSpace | None:
    """Parse ``path <path>``, then ``df -B1 --output=avail,size`` (a header line, then ``<avail>
    <size>``) and an optional ``used <bytes>`` line from ``du -sxB1``; ``None`` when df printed
    nothing (the path's filesystem cannot be read).

    Example::

        >>> parse_path_space(["path /dev/shm", "      Avail    1B-blocks",
        ...                   "25276510208  25276510208"]).size_bytes
        25276510208
    """
    path = ""
    avail_size: tuple[int, int] | None = None
    used_bytes: int | None = None
    header = ""
    for raw in output:
        key, _, rest = raw.strip().partition(" ")
        if key == "path":
            path = rest.strip()
        elif key == "used":
            used_bytes = int(rest) if rest.strip().isdigit() else None
        elif key.isdigit() and rest.strip().isdigit() and avail_size is None:
            avail_size = (int(key), int(rest))
        elif raw.strip():
            header = raw.strip()
    if avail_size is None:
        if header and header.split()[0] != "Avail":
            raise ParseError(
                f"df {path}: expected '<avail> <size>' in bytes, found {header!r} — "
                "fix: check that df is GNU coreutils (df --output)"
            )
        return None
    return DiskSpace(
        path=path, avail_bytes=avail_size[0], size_bytes=avail_size[1], used_bytes=used_bytes
    )


class PathSpace(FactBase[DiskSpace | None]):
    """Free and total bytes of the filesystem that holds ``path`` (its nearest existing parent
    where it does not exist yet) and, where it exists, the bytes already under it."""

    def command(self, path: str) -> str:
        q = shlex.quote(path)
        return (
            f'echo "path "{q}; p={q}; while [ ! -e "$p" ]; do p=$(dirname "$p"); done; '
            'df -B1 --output=avail,size "$p" 2>/dev/null || true; '
            f'if [ -e {q} ]; then echo "used $(du -sxB1 {q} 2>/dev/null | cut -f1)"; fi'
        )

    def process(self, output: list[str]) -> DiskSpace | None:
        return parse_path_space(output)
