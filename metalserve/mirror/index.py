"""The repos of a Hub mirror on disk, and their index: every file hashed once, at ``mirror add``.

A mirror folder holds one folder per repo, ``DIR/<org>/<name>/...``. ``metalserve mirror add``
writes ``DIR/<org>/<name>/.hubmirror-index.json``: each file's path, size, mtime and its sha256
and git blob id, which is everything the Hub API describes a file by. The server only reads the
index; it never hashes. A file that is not in the index is not served, and a file whose size or
mtime differs from its entry (edited or replaced since ``add``) is refused until ``add`` runs again.

Every path stays inside the mirror folder: ``add`` refuses links that lead out of it, and the
server resolves each file again when it opens it (a link swapped in after ``add`` is refused).

Example::

    publish(Path("/srv/hub"), "acme/tiny-moe", Path("./tiny-moe"))   # copy in, index, swap in
    index_repo(Path("/srv/hub"), "acme/big-moe")     # index a folder already in place (rsync'd)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from metalserve.errors import MetalserveError

INDEX_FILE = ".hubmirror-index.json"
INDEX_FORMAT = 1
LFS_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth", ".ckpt", ".h5", ".model", ".onnx")
"""Stored through LFS on the Hub by its default ``.gitattributes`` (a subset: the weight formats)."""
LFS_MIN_SIZE = 10 * 1024 * 1024
"""The Hub refuses plain-git files above 10 MB, so anything larger is LFS there too."""
_CHUNK = 1 << 20
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
"""``org/name`` as the Hub spells repo ids; no part starts with a dot, so never ``..``."""
_EPOCH = "1970-01-01T00:00:00.000Z"


class MirrorError(MetalserveError):
    """A mirror folder or repo that cannot be served or published."""


class OutsideMirror(MirrorError):
    """A served path that resolves outside the mirror folder (a link leading out)."""


class ChangedSinceIndexed(MirrorError):
    """A file whose size or mtime is no longer what ``mirror add`` recorded."""


def is_lfs(path: str, size: int) -> bool:
    """Whether the Hub would keep this file in LFS.

    >>> is_lfs("model-00001-of-00002.safetensors", 100), is_lfs("config.json", 600)
    (True, False)
    """
    return path.endswith(LFS_SUFFIXES) or size >= LFS_MIN_SIZE


def _git_blob_sha1(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass(frozen=True)
class MirrorFile:
    """One file of a repo as the index records it and the Hub describes it."""

    path: str
    size: int
    mtime_ns: int
    sha256: str
    git_sha1: str

    @property
    def lfs(self) -> bool:
        return is_lfs(self.path, self.size)

    @property
    def pointer(self) -> bytes:
        """The git-lfs pointer the Hub stores in git in place of an LFS file."""
        return (
            f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\n"
            f"size {self.size}\n"
        ).encode()

    @property
    def blob_id(self) -> str:
        """The git blob id: of the pointer for LFS files, of the content otherwise."""
        return _git_blob_sha1(self.pointer) if self.lfs else self.git_sha1

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.git_sha1

    def tree_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "type": "file",
            "oid": self.blob_id,
            "size": self.size,
            "path": self.path,
        }
        if self.lfs:
            entry["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": len(self.pointer)}
        return entry


@dataclass(frozen=True)
class MirrorRepo:
    """A repo folder and its indexed files; ``sha`` is its revision."""

    repo_id: str
    folder: Path
    files: tuple[MirrorFile, ...]

    @cached_property
    def sha(self) -> str:
        """A 40-hex digest of the file list and blob ids: it changes exactly when content does."""
        digest = hashlib.sha1()
        for item in self.files:
            digest.update(f"{item.path}\0{item.blob_id}\0".encode())
        return digest.hexdigest()

    @cached_property
    def _by_path(self) -> dict[str, MirrorFile]:
        return {item.path: item for item in self.files}

    def file(self, path: str) -> MirrorFile | None:
        return self._by_path.get(path)

    def info(self) -> dict[str, Any]:
        return {
            "id": self.repo_id,
            "modelId": self.repo_id,
            "author": self.repo_id.split("/")[0],
            "sha": self.sha,
            "private": False,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "createdAt": _EPOCH,
            "lastModified": _EPOCH,
            "siblings": [{"rfilename": item.path} for item in self.files],
        }

    def tree(self, prefix: str, recursive: bool) -> list[dict[str, Any]] | None:
        """The tree listing under ``prefix`` (``""`` for the root), or None if it is no folder."""
        base = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        below = [item for item in self.files if item.path.startswith(base)]
        if base and not below:
            return None
        entries: dict[str, dict[str, Any]] = {}
        for item in below:
            rest = item.path[len(base) :].split("/")
            for depth in range(1, len(rest)):
                folder = base + "/".join(rest[:depth])
                if recursive or depth == 1:
                    entries.setdefault(folder, {"type": "directory", "oid": "0" * 40, "size": 0,
                                                "path": folder})  # fmt: skip
            if recursive or len(rest) == 1:
                entries[item.path] = item.tree_entry()
        return [entries[key] for key in sorted(entries)]


def check_repo_id(repo_id: str) -> str:
    if not REPO_ID.match(repo_id):
        raise MirrorError(
            f"repo id: expected ORG/NAME, found {repo_id!r} — fix: name it like acme/tiny-moe"
        )
    return repo_id


def mirror_root(root: Path) -> Path:
    """The mirror folder with every link resolved: what served paths must stay inside."""
    if not root.is_dir():
        raise MirrorError(
            f"mirror folder: expected a directory, found nothing at {root} — fix: create it "
            "and add repos with `metalserve mirror add`"
        )
    return root.resolve(strict=True)


def resolve_inside(root: Path, path: Path) -> Path:
    """``path`` with its links resolved, if that stays inside the resolved mirror folder ``root``."""
    real = Path(os.path.realpath(path))
    if not real.is_relative_to(root):
        raise OutsideMirror(
            f"{path}: expected a path inside the mirror folder {root}, found a link to {real} — "
            "fix: copy or move it into the repo folder (links may only point inside the mirror)"
        )
    return real


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def repo_folders(root: Path) -> list[str]:
    """Every ``org/name`` folder under ``root``, indexed or not."""
    return sorted(
        f"{org.name}/{repo.name}"
        for org in root.iterdir()
        if org.is_dir() and not _is_hidden(org.name)
        for repo in org.iterdir()
        if repo.is_dir() and not _is_hidden(repo.name)
    )


def _hash_file(path: Path) -> tuple[str, str]:
    """The sha256 and the git blob id of a file, read once in 1 MiB blocks."""
    size = path.stat().st_size
    sha256 = hashlib.sha256()
    sha1 = hashlib.sha1(b"blob %d\0" % size)
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(_CHUNK), b""):
            sha256.update(block)
            sha1.update(block)
    return sha256.hexdigest(), sha1.hexdigest()


def _repo_files(root: Path, folder: Path) -> list[tuple[str, Path]]:
    """``(path in the repo, resolved file)`` for every served file under ``folder``; hidden entries
    (``.git``, the index) are left out, links must resolve to regular files inside ``root``."""
    found: list[tuple[str, Path]] = []
    for current, dirnames, filenames in os.walk(folder):
        here = Path(current)
        dirnames[:] = sorted(name for name in dirnames if not _is_hidden(name))
        for name in dirnames:
            if (here / name).is_symlink():
                raise MirrorError(
                    f"{here / name}: expected a folder, found a link to a folder — fix: copy or "
                    "move the folder itself into the repo"
                )
        for name in sorted(filenames):
            if _is_hidden(name):
                continue
            real = resolve_inside(root, here / name)
            if not real.is_file():
                raise MirrorError(
                    f"{here / name}: expected a regular file, found something else — fix: "
                    "remove it from the repo folder"
                )
            found.append(((here / name).relative_to(folder).as_posix(), real))
    return found


def _index_file(path: str, real: Path, previous: MirrorFile | None) -> MirrorFile:
    before = real.stat()
    if previous and (previous.size, previous.mtime_ns) == (before.st_size, before.st_mtime_ns):
        return previous
    sha256, git_sha1 = _hash_file(real)
    after = real.stat()
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
        raise MirrorError(
            f"{real}: expected a file at rest, found it changing while being hashed — fix: run "
            "`metalserve mirror add` again once the copy into the mirror is complete"
        )
    return MirrorFile(path, before.st_size, before.st_mtime_ns, sha256, git_sha1)


def _build_index(root: Path, repo_id: str, folder: Path, previous: MirrorRepo | None) -> MirrorRepo:
    """Hash every file of ``folder`` (reusing ``previous`` entries whose size and mtime match) and
    write the index into it atomically."""
    files = tuple(
        _index_file(path, real, previous.file(path) if previous else None)
        for path, real in _repo_files(root, folder)
    )
    document = {
        "format": INDEX_FORMAT,
        "repo": repo_id,
        "files": [
            {"path": f.path, "size": f.size, "mtime_ns": f.mtime_ns, "sha256": f.sha256,
             "git_sha1": f.git_sha1}
            for f in files
        ],
    }  # fmt: skip
    with tempfile.NamedTemporaryFile("w", dir=folder, prefix=".index.", delete=False) as tmp:
        json.dump(document, tmp, indent=1)
    os.replace(tmp.name, folder / INDEX_FILE)
    return MirrorRepo(repo_id, folder, files)


def _parse_entry(entry: Any) -> MirrorFile:
    item = MirrorFile(
        path=str(entry["path"]),
        size=int(entry["size"]),
        mtime_ns=int(entry["mtime_ns"]),
        sha256=str(entry["sha256"]),
        git_sha1=str(entry["git_sha1"]),
    )
    parts = PurePosixPath(item.path).parts
    if item.path.startswith("/") or not parts or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"path {item.path!r} is not relative to the repo")
    return item


def read_repo(root: Path, repo_id: str) -> MirrorRepo | None:
    """The indexed repo ``repo_id`` under the resolved mirror folder ``root``; None when it has no
    index (never added) or its folder resolves outside ``root``."""
    if not REPO_ID.match(repo_id):
        return None
    folder = root / repo_id
    try:
        index = resolve_inside(root, folder / INDEX_FILE)
        document = json.loads(index.read_text())
    except (OutsideMirror, FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError) as error:
        raise MirrorError(
            f"{folder / INDEX_FILE}: expected the index `mirror add` writes, found "
            f"unreadable data ({error}) — fix: run `metalserve mirror add {root} {repo_id}`"
        ) from error
    try:
        if document["format"] != INDEX_FORMAT or document["repo"] != repo_id:
            raise ValueError(f"format {document['format']!r} of repo {document['repo']!r}")
        files = tuple(_parse_entry(entry) for entry in document["files"])
    except (KeyError, TypeError, ValueError) as error:
        raise MirrorError(
            f"{index}: expected index format {INDEX_FORMAT} of {repo_id}, found {error} — fix: "
            f"run `metalserve mirror add {root} {repo_id}`"
        ) from error
    return MirrorRepo(repo_id, folder, files)


def open_indexed(root: Path, repo: MirrorRepo, item: MirrorFile) -> BinaryIO:
    """The file of ``item``, opened for reading, if it still resolves inside ``root``, is still
    there and still has the size and mtime it was hashed at."""
    real = resolve_inside(root, repo.folder / item.path)
    try:
        stream = real.open("rb")
    except FileNotFoundError:
        # answered like a change (409), not by a dropped connection the client retries for
        # tens of seconds
        raise ChangedSinceIndexed(
            f"{repo.repo_id}/{item.path}: expected the file `mirror add` hashed, found it gone "
            f"— fix: restore it, or run `metalserve mirror add` for {repo.repo_id} again"
        ) from None
    try:
        now = os.fstat(stream.fileno())
        if not stat.S_ISREG(now.st_mode) or (now.st_size, now.st_mtime_ns) != (
            item.size,
            item.mtime_ns,
        ):
            raise ChangedSinceIndexed(
                f"{repo.repo_id}/{item.path}: expected the file `mirror add` hashed, found it "
                f"changed — fix: run `metalserve mirror add` for {repo.repo_id} again"
            )
    except BaseException:
        stream.close()
        raise
    return stream


def index_repo(root: Path, repo_id: str) -> MirrorRepo:
    """Index the folder ``root/repo_id`` in place (files copied there by other means, e.g. rsync);
    files unchanged since the last index (same size and mtime) are not hashed again."""
    check_repo_id(repo_id)
    real_root = mirror_root(root)
    folder = root / repo_id
    if not folder.is_dir():
        raise MirrorError(
            f"{folder}: expected the repo's folder, found none — fix: copy the files there, or "
            "pass the folder holding them as SOURCE"
        )
    resolve_inside(real_root, folder)
    return _build_index(real_root, repo_id, folder, _previous(real_root, repo_id))


def _previous(root: Path, repo_id: str) -> MirrorRepo | None:
    try:
        return read_repo(root, repo_id)
    except MirrorError:
        return None


def publish(root: Path, repo_id: str, source: Path) -> MirrorRepo:
    """Copy the folder ``source`` into the mirror as ``repo_id``, index it, and swap it in.

    The new copy and its index are written beside the old repo and swapped in by renames, so a
    client never sees a half-copied or unindexed repo. Links in ``source`` are copied as the files
    they point to.
    """
    check_repo_id(repo_id)
    if not source.is_dir():
        raise MirrorError(f"{source}: expected a folder with the repo's files, found none — "
                          "fix: pass the folder of a downloaded or generated checkpoint")  # fmt: skip
    root.mkdir(parents=True, exist_ok=True)
    real_root = mirror_root(root)
    target = real_root / repo_id
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        shutil.copytree(source, staging, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(".*", "manifest.json"))  # fmt: skip
        staging.chmod(0o755)
        built = _build_index(real_root, repo_id, staging, _previous(real_root, repo_id))
        retired = target.parent / f".{target.name}.old-{time.time_ns()}"
        if target.is_symlink() or target.exists():
            target.rename(retired)
        staging.rename(target)
        shutil.rmtree(retired, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return MirrorRepo(repo_id, target, built.files)
