"""A read-only Hugging Face Hub mirror for air-gapped sites and tests.

It serves model repositories laid out as plain folders, ``DIR/<org>/<name>/...``, over exactly the
HTTP endpoints that ``huggingface_hub.snapshot_download`` (2.4) and ``hf cache verify`` use, so
hosts fetch weights through the same code path as from huggingface.co, with ``HF_ENDPOINT`` set to
the mirror:

* ``GET /api/models/<org>/<name>[/revision/<rev>]``: repo info with ``sha`` and ``siblings``;
* ``GET /api/models/<org>/<name>/tree/<rev>[/<path>]?recursive=``: files with their git blob id,
  size and, for LFS-style files, ``lfs.oid`` (sha256) — what checksums are verified against;
* ``HEAD``/``GET /<org>/<name>/resolve/<rev>/<path>``: the file, streamed, with ``X-Repo-Commit``,
  ``ETag`` (``X-Linked-Etag``/``X-Linked-Size`` for LFS files) and ``Range`` support.

The revision of a repo is a 40-hex digest of its file list and hashes, so it changes exactly when
the content changes. Hashes are computed once per file and kept in ``DIR/.hubmirror-index.json``,
keyed by size and mtime. Files are streamed from disk, never read whole into memory.

``olah`` (PyPI) can serve local repos too, but only as git repositories, and it reads every file
whole into memory and re-hashes LFS objects on every ``HEAD``: unusable for 700 GB checkpoints.

Example::

    metalserve mirror add /srv/hub acme/tiny-moe ./tiny-moe
    metalserve mirror serve /srv/hub --bind 10.0.0.1:8090
    HF_ENDPOINT=http://10.0.0.1:8090 hf download acme/tiny-moe --local-dir /models/tiny
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import click

from metalserve.errors import MetalserveError

INDEX_FILE = ".hubmirror-index.json"
DEFAULT_BRANCH = "main"
LFS_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth", ".ckpt", ".h5", ".model", ".onnx")
"""Stored through LFS on the Hub by its default ``.gitattributes`` (a subset: the weight formats)."""
LFS_MIN_SIZE = 10 * 1024 * 1024
"""The Hub refuses plain-git files above 10 MB, so anything larger is LFS there too."""
_CHUNK = 1 << 20
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
_EPOCH = "1970-01-01T00:00:00.000Z"


class MirrorError(MetalserveError):
    """A mirror folder or repo that cannot be served or published."""


@dataclass(frozen=True)
class MirrorFile:
    """One file of a repo as the Hub describes it."""

    path: str
    size: int
    sha256: str
    git_sha1: str
    lfs: bool

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
    """A repo folder and its files; ``sha`` is its revision."""

    repo_id: str
    root: Path
    files: tuple[MirrorFile, ...]

    @property
    def sha(self) -> str:
        digest = hashlib.sha1()
        for item in self.files:
            digest.update(f"{item.path}\0{item.blob_id}\0".encode())
        return digest.hexdigest()

    def file(self, path: str) -> MirrorFile | None:
        return next((item for item in self.files if item.path == path), None)

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


def _git_blob_sha1(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _hash_file(path: Path) -> tuple[str, str]:
    size = path.stat().st_size
    sha256 = hashlib.sha256()
    sha1 = hashlib.sha1(b"blob %d\0" % size)
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(_CHUNK), b""):
            sha256.update(block)
            sha1.update(block)
    return sha256.hexdigest(), sha1.hexdigest()


def is_lfs(path: str, size: int) -> bool:
    """Whether the Hub would keep this file in LFS.

    >>> is_lfs("model-00001-of-00002.safetensors", 100), is_lfs("config.json", 600)
    (True, False)
    """
    return path.endswith(LFS_SUFFIXES) or size >= LFS_MIN_SIZE


def _is_served(relative: Path) -> bool:
    return not any(part.startswith(".") for part in relative.parts)


class MirrorIndex:
    """The repos under a mirror folder, hashed lazily and cached on disk by size and mtime."""

    def __init__(self, root: Path) -> None:
        if not root.is_dir():
            raise MirrorError(
                f"mirror folder: expected a directory, found nothing at {root} — fix: create it "
                "and add repos with `metalserve mirror add`"
            )
        self.root = root
        self._lock = threading.Lock()
        index_path = root / INDEX_FILE
        self._hashes: dict[str, list[Any]] = (
            json.loads(index_path.read_text()) if index_path.is_file() else {}
        )

    def repo_ids(self) -> list[str]:
        return sorted(
            f"{org.name}/{repo.name}"
            for org in self.root.iterdir()
            if org.is_dir() and _is_served(Path(org.name))
            for repo in org.iterdir()
            if repo.is_dir() and _is_served(Path(repo.name))
        )

    def repo(self, repo_id: str) -> MirrorRepo | None:
        if not _REPO_ID.match(repo_id):
            return None
        folder = self.root / repo_id
        if not folder.is_dir():
            return None
        with self._lock:
            files = tuple(self._describe(folder, path) for path in sorted(folder.rglob("*"))
                          if path.is_file() and _is_served(path.relative_to(folder)))  # fmt: skip
            self._save()
        return MirrorRepo(repo_id, folder, files)

    def _describe(self, folder: Path, path: Path) -> MirrorFile:
        stat = path.stat()
        key = path.relative_to(self.root).as_posix()
        cached = self._hashes.get(key)
        if cached is None or cached[:2] != [stat.st_size, stat.st_mtime_ns]:
            cached = [stat.st_size, stat.st_mtime_ns, *_hash_file(path)]
            self._hashes[key] = cached
        relative = path.relative_to(folder).as_posix()
        return MirrorFile(
            relative, stat.st_size, cached[2], cached[3], is_lfs(relative, stat.st_size)
        )

    def _save(self) -> None:
        target = self.root / INDEX_FILE
        with tempfile.NamedTemporaryFile("w", dir=self.root, prefix=".index.", delete=False) as tmp:
            json.dump(self._hashes, tmp, sort_keys=True)
        os.replace(tmp.name, target)


_API = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?:/(?P<verb>revision|tree)/(?P<rest>.*))?$")
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class _Handler(BaseHTTPRequestHandler):
    server: _MirrorServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's signature
        if self.server.verbose:
            super().log_message(format, *args)

    def do_HEAD(self) -> None:  # noqa: N802 - stdlib naming
        self._route(send_body=False)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._route(send_body=True)

    def _route(self, send_body: bool) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path)
        if api := _API.match(path):
            self._api(api["repo"], api["verb"], api["rest"] or "", parse_qs(url.query), send_body)
        elif resolve := _RESOLVE.match(path):
            self._resolve(resolve["repo"], resolve["rev"], resolve["path"], send_body)
        else:
            self._error(HTTPStatus.NOT_FOUND, "RepoNotFound", f"no such route: {path}", send_body)

    def _repo_at(self, repo_id: str, revision: str, send_body: bool) -> MirrorRepo | None:
        repo = self.server.index.repo(repo_id)
        if repo is None:
            self._error(HTTPStatus.NOT_FOUND, "RepoNotFound", f"{repo_id}: no such repo", send_body)
            return None
        if revision not in (DEFAULT_BRANCH, repo.sha):
            self._error(HTTPStatus.NOT_FOUND, "RevisionNotFound",
                        f"{repo_id}: revision {revision} not found", send_body)  # fmt: skip
            return None
        return repo

    def _api(self, repo_id: str, verb: str | None, rest: str, query: dict[str, list[str]],
             send_body: bool) -> None:  # fmt: skip
        revision, _, sub_path = rest.partition("/")
        repo = self._repo_at(repo_id, revision or DEFAULT_BRANCH, send_body)
        if repo is None:
            return
        if verb == "tree":
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            listing = repo.tree(sub_path, recursive)
            if listing is None:
                self._error(HTTPStatus.NOT_FOUND, "EntryNotFound", f"{sub_path}: not found",
                            send_body, repo.sha)  # fmt: skip
                return
            self._json(listing, send_body, repo.sha)
        else:
            self._json(repo.info(), send_body, repo.sha)

    def _resolve(self, repo_id: str, revision: str, path: str, send_body: bool) -> None:
        repo = self._repo_at(repo_id, revision, send_body)
        if repo is None:
            return
        item = repo.file(path)
        if item is None:
            self._error(HTTPStatus.NOT_FOUND, "EntryNotFound", f"{path}: not found", send_body,
                        repo.sha)  # fmt: skip
            return
        start, end = 0, item.size - 1
        status = HTTPStatus.OK
        if (asked := self.headers.get("Range")) and (match := _RANGE.match(asked.strip())):
            first, last = match.groups()
            if first:
                start, end = int(first), min(int(last), end) if last else end
            elif last:
                start = max(item.size - int(last), 0)
            if start > end:
                self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                self.send_header("Content-Range", f"bytes */{item.size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = HTTPStatus.PARTIAL_CONTENT
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{item.etag}"')
        self.send_header("X-Repo-Commit", repo.sha)
        if item.lfs:
            self.send_header("X-Linked-Etag", f'"{item.etag}"')
            self.send_header("X-Linked-Size", str(item.size))
        if status == HTTPStatus.PARTIAL_CONTENT:
            self.send_header("Content-Range", f"bytes {start}-{end}/{item.size}")
        self.end_headers()
        if send_body:
            with (repo.root / item.path).open("rb") as stream:
                stream.seek(start)
                remaining = end - start + 1
                while remaining > 0 and (block := stream.read(min(_CHUNK, remaining))):
                    self.wfile.write(block)
                    remaining -= len(block)

    def _json(self, document: Any, send_body: bool, commit: str) -> None:
        body = json.dumps(document).encode()
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Repo-Commit", commit)
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def _error(self, status: HTTPStatus, code: str, message: str, send_body: bool,
               commit: str | None = None) -> None:  # fmt: skip
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        if commit:
            self.send_header("X-Repo-Commit", commit)
        self.end_headers()
        if send_body:
            self.wfile.write(body)


class _MirrorServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], index: MirrorIndex, verbose: bool) -> None:
        super().__init__(address, _Handler)
        self.index = index
        self.verbose = verbose

    @property
    def endpoint(self) -> str:
        """The URL clients put in ``HF_ENDPOINT``, e.g. ``http://127.0.0.1:8090``."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


def parse_bind(bind: str) -> tuple[str, int]:
    """``"127.0.0.1:8090"`` → ``("127.0.0.1", 8090)``; port 0 picks a free port.

    >>> parse_bind("10.77.1.1:8090")
    ('10.77.1.1', 8090)
    """
    host, _, port = bind.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise MirrorError(
            f"--bind: expected HOST:PORT such as 127.0.0.1:8090, found {bind!r} — fix: give an "
            "address of this machine and a free port"
        )
    return host.strip("[]"), int(port)


def make_server(root: Path, bind: str, verbose: bool = False) -> _MirrorServer:
    """A mirror server bound (not yet serving) on ``bind`` for the repos under ``root``."""
    index = MirrorIndex(root)
    for repo_id in index.repo_ids():
        index.repo(repo_id)  # hash every file now, not on a client's first request
    try:
        return _MirrorServer(parse_bind(bind), index, verbose)
    except OSError as error:
        raise MirrorError(
            f"--bind {bind}: expected a free address, found {error.strerror} — fix: choose "
            "another port, or an address this machine owns"
        ) from error


@contextlib.contextmanager
def running_mirror(root: Path, bind: str = "127.0.0.1:0") -> Iterator[str]:
    """Serve ``root`` in a background thread; yields the endpoint URL for ``HF_ENDPOINT``."""
    server = make_server(root, bind)
    thread = threading.Thread(target=server.serve_forever, name="hubmirror", daemon=True)
    thread.start()
    try:
        yield server.endpoint
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def publish(root: Path, repo_id: str, source: Path) -> MirrorRepo:
    """Copy the folder ``source`` into the mirror as ``repo_id``, replacing it atomically.

    The new copy is written beside the old one and swapped in by renames, so a client never sees
    a half-copied repo.
    """
    if not _REPO_ID.match(repo_id):
        raise MirrorError(
            f"repo id: expected ORG/NAME, found {repo_id!r} — fix: name it like acme/tiny-moe"
        )
    if not source.is_dir():
        raise MirrorError(f"{source}: expected a folder with the repo's files, found none — "
                          "fix: pass the folder of a downloaded or generated checkpoint")  # fmt: skip
    target = root / repo_id
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        shutil.copytree(source, staging, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(".*", "manifest.json"))  # fmt: skip
        staging.chmod(0o755)
        retired = target.parent / f".{target.name}.old-{time.time_ns()}"
        if target.exists():
            target.rename(retired)
        staging.rename(target)
        shutil.rmtree(retired, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    repo = MirrorIndex(root).repo(repo_id)
    assert repo is not None
    return repo


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def _operator_errors() -> Iterator[None]:
    """Bad input ends the command with its one-line message and exit code 2, no traceback."""
    try:
        yield
    except MetalserveError as error:
        click.echo(f"error: {error}", err=True)
        raise SystemExit(2) from None


@click.group("mirror")
def mirror_group() -> None:
    """A local Hugging Face Hub mirror for air-gapped hosts (HF_ENDPOINT)."""


@mirror_group.command("add")
@click.argument("root", type=click.Path(path_type=Path, file_okay=False))
@click.argument("repo_id")
@click.argument("source", type=click.Path(path_type=Path, exists=True, file_okay=False))
def add_command(root: Path, repo_id: str, source: Path) -> None:
    """Publish the folder SOURCE as REPO_ID in the mirror ROOT."""
    root.mkdir(parents=True, exist_ok=True)
    with _operator_errors():
        repo = publish(root, repo_id, source)
    click.echo(f"{repo_id}: {len(repo.files)} files, revision {repo.sha}")


@mirror_group.command("serve")
@click.argument("root", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--bind", default="127.0.0.1:8090", show_default=True, help="HOST:PORT to listen on.")
@click.option("--verbose", is_flag=True, help="Log every request.")
def serve_command(root: Path, bind: str, verbose: bool) -> None:
    """Serve the repos under ROOT until interrupted."""
    with _operator_errors():
        server = make_server(root, bind, verbose)
    for repo_id in server.index.repo_ids():
        click.echo(f"serving {repo_id}")
    click.echo(f"HF_ENDPOINT={server.endpoint}")
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    server.server_close()
