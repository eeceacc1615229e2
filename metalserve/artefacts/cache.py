"""A content-keyed cache of built artefacts on the control host, written atomically.

Each product lives in ``${METALSERVE_CACHE:-~/.cache/metalserve}/<kind>/<key>/`` where ``key``
hashes everything the product was built from. An entry is built in a temporary sibling folder and
renamed into place only once complete, so a killed build never leaves a folder that looks done.

Example::

    entry = cached_build("llamacpp-source", {"sdist_sha256": digest}, build_fn)
    entry.manifest["files"]["llama.cpp.tar.gz"]["sha256"]
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metalserve.errors import MetalserveError

MANIFEST = "manifest.json"
"""Written last inside every entry: its inputs and the sha256 and size of each file it holds."""

_KEY_LENGTH = 20


class ArtefactError(MetalserveError):
    """An artefact could not be built or a cached one does not match its manifest."""


@dataclass(frozen=True)
class CacheEntry:
    """A complete cache entry: its folder and its parsed manifest."""

    path: Path
    manifest: dict[str, Any]

    def file(self, name: str) -> Path:
        """The path of a file the manifest lists, e.g. ``entry.file("llama.cpp.tar.gz")``."""
        if name not in self.manifest["files"]:
            raise ArtefactError(
                f"cache entry {self.path}: expected a file {name!r}, found "
                f"{sorted(self.manifest['files'])} — fix: delete {self.path} and build again"
            )
        return self.path / name

    def sha256(self, name: str) -> str:
        return str(self.manifest["files"][name]["sha256"])


def cache_root() -> Path:
    """``$METALSERVE_CACHE`` or ``~/.cache/metalserve``."""
    configured = os.environ.get("METALSERVE_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "metalserve"


def cache_key(inputs: Mapping[str, Any]) -> str:
    """A short stable hash of a JSON-able description of what a product is built from.

    >>> cache_key({"b": 1, "a": [2]}) == cache_key({"a": [2], "b": 1})
    True
    """
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:_KEY_LENGTH]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _file_table(folder: Path) -> dict[str, dict[str, Any]]:
    table: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != MANIFEST:
            name = path.relative_to(folder).as_posix()
            table[name] = {"sha256": sha256_file(path), "size": path.stat().st_size}
    return table


def _make_readable(folder: Path) -> None:
    """Entries are shared read-only inputs: folders 0755, files 0644 (0755 if executable)."""
    folder.chmod(0o755)
    for path in folder.rglob("*"):
        if path.is_dir():
            path.chmod(0o755)
        elif path.is_file():
            path.chmod(0o755 if path.stat().st_mode & 0o100 else 0o644)


def cached_build(
    kind: str,
    inputs: Mapping[str, Any],
    build: Callable[[Path], Mapping[str, Any] | None],
) -> CacheEntry:
    """Return the entry for ``inputs`` under ``kind``, building it first if it is absent.

    ``build(folder)`` fills an empty temporary folder and may return extra manifest fields. The
    folder is renamed to its final name only after ``build`` returned and the manifest is written;
    if another process finished the same entry first, its entry wins and ours is discarded.
    """
    key = cache_key(inputs)
    final = cache_root() / kind / key
    if (final / MANIFEST).is_file():
        return CacheEntry(final, json.loads((final / MANIFEST).read_text()))
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}.", suffix=".partial", dir=final.parent))
    try:
        extra = build(staging) or {}
        _make_readable(staging)
        manifest = {"kind": kind, "key": key, "inputs": dict(inputs), **extra}
        manifest["files"] = _file_table(staging)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        try:
            staging.rename(final)
        except OSError:
            if not (final / MANIFEST).is_file():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return CacheEntry(final, json.loads((final / MANIFEST).read_text()))


def verify_entry(entry: CacheEntry) -> None:
    """Check every file of an entry against its manifest (size and sha256).

    Raises :class:`ArtefactError` naming the first file that differs.
    """
    for name, expected in entry.manifest["files"].items():
        path = entry.path / name
        found = sha256_file(path) if path.is_file() else "missing"
        if found != expected["sha256"]:
            raise ArtefactError(
                f"cache entry {entry.path}: {name} should have sha256 {expected['sha256']}, "
                f"found {found} — fix: delete {entry.path} and build again"
            )
