"""What a stamp stands for, checked cheaply: the sizes of the files it was written for.

A stamp says "done" for files that may be deleted or cut short afterwards (a disk cleanup, a copy
interrupted by a full disk, an operator's ``truncate``). Each stamp therefore records the size of
every file it stands for, and a role compares those sizes with one ``find`` on the host — a stat
per file, never a hash — before it trusts the stamp. A missing or resized file means the step runs
again.

Example::

    found = host.get_fact(FileSizes, path="/var/lib/metalserve/models/org--name")
    size_drift({"model-00001-of-00002.safetensors": 4_998_000_000}, found)  # [] when intact
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping

from pyinfra.api import FactBase

SKIPPED_DIR = ".cache"
"""huggingface_hub's bookkeeping inside a ``local_dir`` download (metadata, ``.incomplete``
files): not part of any artefact, and possibly thousands of entries."""


class FileSizes(FactBase[dict[str, int]]):
    """Every regular file under ``path`` (``.cache`` left out) and its size in bytes, keyed by
    its path relative to ``path``; empty when ``path`` does not exist.

    Example output line (GNU find ``-printf '%s %P\\n'``): ``4998000000 model-00001.safetensors``.
    """

    @staticmethod
    def default() -> dict[str, int]:
        # pyinfra gives a fact whose command printed nothing its default, not process([]):
        # a folder that does not exist yet (a fresh host) holds no files
        return {}

    def command(self, path: str) -> str:
        q = shlex.quote(path.rstrip("/"))
        skipped = shlex.quote(f"{path.rstrip('/')}/{SKIPPED_DIR}")
        return f"find {q} -path {skipped} -prune -o -type f -printf '%s %P\\n' 2>/dev/null || true"

    def process(self, output: list[str]) -> dict[str, int]:
        sizes: dict[str, int] = {}
        for line in output:
            size, _, name = line.partition(" ")
            if size.isdigit() and name:
                sizes[name] = int(size)
        return sizes


def size_drift(recorded: Mapping[str, object], found: Mapping[str, int]) -> list[str]:
    """The recorded files that are missing or whose size differs, each as ``name (why)``; a
    recorded size that is not a whole number counts as drift (the stamp cannot vouch for it)."""
    drift = []
    for name, size in sorted(recorded.items()):
        if name not in found:
            drift.append(f"{name} (missing)")
        elif not isinstance(size, int) or isinstance(size, bool) or found[name] != size:
            drift.append(f"{name} ({found[name]} bytes, stamped {size})")
    return drift
