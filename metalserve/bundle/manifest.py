"""``bundle.json``: read, written atomically, and checked against the files beside it.

Example::

    manifest = read_manifest(Path("/srv/bundle"))
    file_problems(Path("/srv/bundle"), manifest)   # ['sources/x.tar.gz: truncated (…)', …]
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from pydantic import ValidationError

from metalserve.artefacts.cache import sha256_file
from metalserve.bundle.fetch import BundleError
from metalserve.offline import BundleManifest, FileRecord
from metalserve.sources import BundleLayout
from metalserve.types import printable


def manifest_path(root: Path) -> Path:
    return root / BundleLayout().manifest


def read_manifest(root: Path) -> BundleManifest:
    path = manifest_path(root)
    try:
        return BundleManifest.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise BundleError(
            f"{printable(str(root))}: expected a bundle (bundle.json), found none — fix: metalserve "
            "bundle build INVENTORY --out DIR"
        ) from None
    except (OSError, ValidationError, ValueError) as error:
        first = str(error).splitlines()[0][:160]
        raise BundleError(
            f"{printable(str(path))}: expected a bundle manifest, found {printable(first)} — "
            "fix: build the bundle again"
        ) from None


def write_manifest(root: Path, manifest: BundleManifest) -> None:
    path = manifest_path(root)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(
        json.dumps(manifest.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"
    )
    os.replace(partial, path)


def file_records(
    root: Path, names: Iterable[str], known: dict[str, FileRecord]
) -> dict[str, FileRecord]:
    """Size and sha256 of each file; a file still at its ``known`` size keeps its recorded sha256
    (a re-run does not hash hundreds of GB again; ``bundle verify`` does)."""
    records = {}
    for name in sorted(set(names)):
        path = root / name
        size = path.stat().st_size
        old = known.get(name)
        sha = old.sha256 if old is not None and old.size == size else sha256_file(path)
        records[name] = FileRecord(size=size, sha256=sha)
    return records


def file_problems(
    root: Path, manifest: BundleManifest, hashing: bool = True, extras: bool = True
) -> list[str]:
    """Each listed file that is missing, truncated (another size) or altered (another sha256,
    with ``hashing``); with ``extras``, files found that the manifest does not list (a
    left-over, or something put there)."""
    problems = []
    for name, record in sorted(manifest.files.items()):
        path = root / name
        if not path.is_file():
            problems.append(f"{name}: missing")
            continue
        size = path.stat().st_size
        if size != record.size:
            problems.append(
                f"{name}: truncated or grown: {size} bytes, the manifest says {record.size}"
            )
        elif hashing and sha256_file(path) != record.sha256:
            problems.append(f"{name}: altered: its sha256 differs from the manifest's")
    listed = set(manifest.files) | {BundleLayout().manifest}
    for path in sorted(root.rglob("*")) if extras else ():
        name = path.relative_to(root).as_posix()
        if path.is_file() and name not in listed and not path.name.startswith("."):
            problems.append(f"{name}: not in the manifest")
    return problems
