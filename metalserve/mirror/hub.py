"""A read-only Hugging Face Hub mirror for air-gapped sites and tests.

It serves the repos that ``metalserve mirror add`` indexed under a folder (see ``index.py``) over
exactly the HTTP endpoints that ``huggingface_hub.snapshot_download`` (2.4) and ``hf cache verify``
use, so hosts fetch weights through the same code path as from huggingface.co, with
``HF_ENDPOINT`` set to the mirror:

* ``GET /api/models/<org>/<name>[/revision/<rev>]``: repo info with ``sha`` and ``siblings``;
* ``GET /api/models/<org>/<name>/tree/<rev>[/<path>]?recursive=``: files with their git blob id,
  size and, for LFS-style files, ``lfs.oid`` (sha256) — what checksums are verified against;
* ``HEAD``/``GET /<org>/<name>/resolve/<rev>/<path>``: the file, streamed with ``sendfile``, with
  ``X-Repo-Commit``, ``ETag`` (``X-Linked-Etag``/``X-Linked-Size`` for LFS files) and ``Range``.

Why this server and not an established one: olah (PyPI, https://github.com/vtuber-plan/olah; 0.5.4
is its 22nd release, so maintained) is a caching proxy of huggingface.co. Offline, it serves its cache, and local repos only as git
repositories (``mirrors-path``); in its ``olah/mirror/repos.py`` a local file is read whole into
memory before it is streamed and a LFS object is read and sha256-hashed on every ``HEAD`` (700 GB
checkpoints), local files have no ``Range``, its own clients are not authenticated (it passes
``Authorization`` upstream, and skips checks offline), and xet works only by proxying the Hub. It
would also bring FastAPI, uvicorn and GitPython onto the mirror host. Clients need three routes,
tested here with the real client, so this small server stays. ``huggingface_hub`` 2.4 no longer
uses hf_transfer (``HF_HUB_ENABLE_HF_TRANSFER`` only warns, ``constants.py``) and takes the xet
path only when a response carries ``X-Xet-Hash`` (``utils/_xet.py``), which this mirror never
sends: clients download over plain HTTP.

What makes it safe to expose on a site network:

* only files in a repo's index are served, each resolved again when opened and refused if it now
  resolves outside the mirror folder or differs from what ``add`` hashed; no request ever hashes;
* response headers carry only what the server computed (hashes, sizes, fixed error texts); a path
  with control characters (``%0d%0a``, ``%00``) is a 400;
* ``--token-file``: clients must send ``Authorization: Bearer <token>`` (``huggingface_hub`` does
  with ``HF_TOKEN``/``HF_TOKEN_PATH``), else 401; the token is never logged. It is plain HTTP, so
  the token crosses the network in clear: bind to the site network, or put TLS in front;
* a fixed pool of ``--workers`` threads, as many connections again waiting, any more answered 503
  at once; a request head must arrive whole within ``--timeout`` however slowly its bytes drip
  (slowloris), and a send may stall at most ``--timeout``; a kept-alive connection is closed
  after 2 s idle, or after its response when another connection waits for a worker.

Example::

    metalserve mirror add /srv/hub acme/tiny-moe ./tiny-moe      # copy in and index
    metalserve mirror add /srv/hub acme/big-moe                  # index a folder rsync'd in place
    metalserve mirror serve /srv/hub --bind 10.0.0.1:8090 --token-file /etc/metalserve/hub_token
    HF_ENDPOINT=http://10.0.0.1:8090 HF_TOKEN_PATH=~/hub_token hf download acme/tiny-moe
"""

from __future__ import annotations

import contextlib
import hmac
import io
import json
import queue
import re
import socket
import stat
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qs, unquote, urlsplit

import click

from metalserve.errors import MetalserveError
from metalserve.mirror.index import (
    INDEX_FILE,
    REPO_ID,
    ChangedSinceIndexed,
    MirrorError,
    MirrorRepo,
    OutsideMirror,
    index_repo,
    mirror_root,
    open_indexed,
    publish,
    read_repo,
    repo_folders,
)

DEFAULT_BRANCH = "main"
_API = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?:/(?P<verb>revision|tree)/(?P<rest>.*))?$")
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

_ERRORS: dict[str, tuple[HTTPStatus, str]] = {
    "BadRequest": (HTTPStatus.BAD_REQUEST, "Bad request: control characters in the path"),
    "Unauthorized": (HTTPStatus.UNAUTHORIZED, "Invalid credentials in Authorization header"),
    "RepoNotFound": (HTTPStatus.NOT_FOUND, "Repository not found"),
    "RevisionNotFound": (HTTPStatus.NOT_FOUND, "Revision not found"),
    "EntryNotFound": (HTTPStatus.NOT_FOUND, "Entry not found"),
    "ChangedSinceIndexed": (HTTPStatus.CONFLICT,
                            "File changed since the mirror indexed it; ask its operator to re-add"),
    "IndexUnreadable": (HTTPStatus.INTERNAL_SERVER_ERROR, "The mirror's index of this repo is "
                        "unreadable; ask its operator to re-add it"),
}  # fmt: skip
"""Every error a client can get: the ``X-Error-Code`` and fixed ``X-Error-Message`` the Hub sends
(``huggingface_hub`` maps the codes to its exceptions, ``utils/_http.py``); never request data.
"Invalid credentials in Authorization header" is the Hub's own text for a bad token."""

KEEP_ALIVE_S = 2.0
"""How long a kept-alive connection may sit idle before its next request: a worker waits on it
meanwhile, and reconnecting on a site network costs less than a worker held idle."""

_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n"
    b"X-Error-Message: Mirror busy, retry later\r\nConnection: close\r\n\r\n"
)


@dataclass(frozen=True)
class ServeLimits:
    """How much of the machine clients may hold: worker threads, connections waiting for one, and
    the seconds a request head may take to arrive (and a send may stall)."""

    workers: int = 32
    queued: int = 32
    timeout_s: float = 15.0


def read_token(path: Path) -> bytes:
    """The bearer token in ``path``: one line, in a file only its owner can read."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        token = path.read_text().strip()
    except OSError as error:
        raise MirrorError(
            f"--token-file: expected a file holding the token, found {error.strerror} at {path} "
            "— fix: write the token there with mode 0600"
        ) from error
    if mode & 0o077:
        raise MirrorError(
            f"--token-file {path}: expected mode 0600, found {mode:04o} — fix: chmod 600 {path}"
        )
    if not token or any(char.isspace() or not char.isprintable() for char in token):
        raise MirrorError(
            f"--token-file {path}: expected one token on one line, found "
            f"{'nothing' if not token else 'spaces or control characters'} — fix: write the "
            "token alone, e.g. `openssl rand -hex 32 > FILE`"
        )
    return token.encode()


class _Repos:
    """The indexed repos under the mirror folder, each re-read only when its index file changes
    (``mirror add`` replaces it, and ``publish`` the whole folder, atomically)."""

    def __init__(self, root: Path) -> None:
        self.root = mirror_root(root)
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[tuple[int, ...], MirrorRepo]] = {}

    def get(self, repo_id: str) -> MirrorRepo | None:
        if not REPO_ID.match(repo_id):
            return None
        try:
            now = (self.root / repo_id / INDEX_FILE).stat()
        except OSError:
            return None
        key = (now.st_dev, now.st_ino, now.st_size, now.st_mtime_ns)
        with self._lock:
            hit = self._cache.get(repo_id)
        if hit and hit[0] == key:
            return hit[1]
        repo = read_repo(self.root, repo_id)
        if repo is not None:
            with self._lock:
                self._cache[repo_id] = (key, repo)
        return repo

    def folders(self) -> list[str]:
        return repo_folders(self.root)


class _DeadlineReader(socket.SocketIO):
    """A socket reader that fails once ``deadline`` has passed, so a request head must arrive
    whole in time however slowly its bytes drip in; a plain socket timeout restarts on every
    byte and lets a slowloris client hold a worker for ever."""

    def __init__(self, connection: socket.socket) -> None:
        super().__init__(connection, "rb")
        self.connection = connection
        self.deadline: float | None = None

    def readinto(self, buffer: Any) -> int | None:
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the request head did not arrive in time")
            self.connection.settimeout(left)
        return super().readinto(buffer)


class _Handler(BaseHTTPRequestHandler):
    server: MirrorServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.limits.timeout_s)
        self.rfile.close()  # the stdlib's reader, replaced by one with a deadline
        self._head = _DeadlineReader(self.connection)
        self._requests = 0
        self.rfile = io.BufferedReader(self._head)

    def handle_one_request(self) -> None:
        limits = self.server.limits
        wait = limits.timeout_s if self._requests == 0 else min(limits.timeout_s, KEEP_ALIVE_S)
        self._head.deadline = time.monotonic() + wait
        super().handle_one_request()
        self._requests += 1

    def end_headers(self) -> None:
        if self.server.waiting():
            # another connection waits for a worker: hand this one over after this response
            self.send_header("Connection", "close")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's signature
        if self.server.verbose:
            super().log_message(format, *args)

    def _warn(self, message: str) -> None:
        """Always logged: refusals an operator must see (links out, files changed since add)."""
        sys.stderr.write(f"{self.address_string()} - hub mirror refused: {message}\n")

    def do_HEAD(self) -> None:  # noqa: N802 - stdlib naming
        self._route(send_body=False)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._route(send_body=True)

    def _route(self, send_body: bool) -> None:
        self._head.deadline = None  # the head is in; sends get the plain per-operation timeout
        self.connection.settimeout(self.server.limits.timeout_s)
        if not self._authorized():
            self._error("Unauthorized", send_body)
            return
        url = urlsplit(self.path)
        path = unquote(url.path)
        if _CONTROL.search(path) or _CONTROL.search(unquote(url.query)):
            self._error("BadRequest", send_body)
            return
        try:
            if api := _API.match(path):
                self._api(api["repo"], api["verb"], api["rest"] or "", parse_qs(url.query),
                          send_body)  # fmt: skip
            elif resolve := _RESOLVE.match(path):
                self._resolve(resolve["repo"], resolve["rev"], resolve["path"], send_body)
            else:
                self._error("RepoNotFound", send_body)
        except OutsideMirror as error:
            self._warn(str(error))
            self._error("EntryNotFound", send_body)
        except ChangedSinceIndexed as error:
            self._warn(str(error))
            self._error("ChangedSinceIndexed", send_body)
        except MirrorError as error:
            self._warn(str(error))
            self._error("IndexUnreadable", send_body)

    def _authorized(self) -> bool:
        expected = self.server.token
        if expected is None:
            return True
        scheme, _, given = (self.headers.get("Authorization") or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected)

    def _repo_at(self, repo_id: str, revision: str, send_body: bool) -> MirrorRepo | None:
        repo = self.server.repos.get(repo_id)
        if repo is None:
            self._error("RepoNotFound", send_body)
            return None
        if revision not in (DEFAULT_BRANCH, repo.sha):
            self._error("RevisionNotFound", send_body)
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
                self._error("EntryNotFound", send_body, repo.sha)
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
            self._error("EntryNotFound", send_body, repo.sha)
            return
        with open_indexed(self.server.repos.root, repo, item) as stream:
            span = self._range(item.size)
            if span is None:
                return
            start, end, partial = span
            self.send_response(HTTPStatus.PARTIAL_CONTENT if partial else HTTPStatus.OK)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(end - start + 1))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", f'"{item.etag}"')
            self.send_header("X-Repo-Commit", repo.sha)
            if item.lfs:
                self.send_header("X-Linked-Etag", f'"{item.etag}"')
                self.send_header("X-Linked-Size", str(item.size))
            if partial:
                self.send_header("Content-Range", f"bytes {start}-{end}/{item.size}")
            self.end_headers()
            if send_body and end >= start:
                self._send_file(stream, start, end - start + 1)

    def _range(self, size: int) -> tuple[int, int, bool] | None:
        """The byte span ``Range`` asks for and whether it is partial (all of the file without
        one, or with one this server does not parse); None once a 416 is sent."""
        start, end = 0, size - 1
        asked = self.headers.get("Range")
        match = _RANGE.match(asked.strip()) if asked else None
        if match is None:
            return start, end, False
        first, last = match.groups()
        if first:
            start, end = int(first), min(int(last), end) if last else end
        elif last:
            start = max(size - int(last), 0)
        if start > end:
            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        return start, end, True

    def _send_file(self, stream: BinaryIO, offset: int, count: int) -> None:
        try:
            self.connection.sendfile(stream, offset, count)
        except ConnectionError:
            self.close_connection = True  # the client went away mid-file: nothing to answer

    def _json(self, document: Any, send_body: bool, commit: str) -> None:
        body = json.dumps(document).encode()
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Repo-Commit", commit)
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def _error(self, code: str, send_body: bool, commit: str | None = None) -> None:
        status, message = _ERRORS[code]
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        if status == HTTPStatus.UNAUTHORIZED:
            self.send_header("WWW-Authenticate", 'Bearer realm="metalserve hub mirror"')
        if commit:
            self.send_header("X-Repo-Commit", commit)
        self.end_headers()
        if send_body:
            self.wfile.write(body)


class MirrorServer(HTTPServer):
    """An HTTP server with a fixed pool of worker threads: at most ``workers`` connections are
    served and ``queued`` wait at once; any further connection is answered 503 and closed."""

    request_queue_size = 128

    def __init__(self, address: tuple[str, int], repos: _Repos, limits: ServeLimits,
                 token: bytes | None, verbose: bool) -> None:  # fmt: skip
        super().__init__(address, _Handler)
        self.repos = repos
        self.limits = limits
        self.token = token
        self.verbose = verbose
        self._slots = threading.BoundedSemaphore(limits.workers + limits.queued)
        self._busy, self._busy_lock = 0, threading.Lock()
        self._waiting: queue.SimpleQueue[tuple[socket.socket, Any] | None] = queue.SimpleQueue()
        self._workers = [
            threading.Thread(target=self._work, name=f"hubmirror-{n}", daemon=True)
            for n in range(limits.workers)
        ]
        for worker in self._workers:
            worker.start()

    @property
    def endpoint(self) -> str:
        """The URL clients put in ``HF_ENDPOINT``, e.g. ``http://127.0.0.1:8090``."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            if self.verbose:
                sys.stderr.write(f"{client_address[0]} - busy: connection refused with 503\n")
            with contextlib.suppress(OSError):
                request.settimeout(1.0)
                request.sendall(_BUSY)
            self.shutdown_request(request)
            return
        self._waiting.put((request, client_address))

    def _work(self) -> None:
        while (job := self._waiting.get()) is not None:
            request, client_address = job
            self._count_busy(+1)
            try:
                self.finish_request(request, client_address)
            except Exception:
                self.handle_error(request, client_address)
            finally:
                self.shutdown_request(request)
                self._count_busy(-1)
                self._slots.release()

    def _count_busy(self, change: int) -> None:
        with self._busy_lock:
            self._busy += change

    def busy(self) -> int:
        """How many workers are serving a connection now."""
        return self._busy

    def waiting(self) -> int:
        """How many accepted connections wait for a worker."""
        return self._waiting.qsize()

    def server_close(self) -> None:
        super().server_close()
        for _ in self._workers:
            self._waiting.put(None)


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


def make_server(
    root: Path,
    bind: str,
    *,
    token_file: Path | None = None,
    limits: ServeLimits = ServeLimits(),  # noqa: B008 - frozen, shared safely
    verbose: bool = False,
) -> MirrorServer:
    """A mirror server bound (not yet serving) on ``bind`` for the indexed repos under ``root``."""
    repos = _Repos(root)
    token = read_token(token_file) if token_file else None
    address = parse_bind(bind)
    try:
        return MirrorServer(address, repos, limits, token, verbose)
    except OSError as error:
        raise MirrorError(
            f"--bind {bind}: expected a free address, found {error.strerror} — fix: choose "
            "another port, or an address this machine owns"
        ) from error


@contextlib.contextmanager
def running_mirror(
    root: Path,
    bind: str = "127.0.0.1:0",
    *,
    token_file: Path | None = None,
    limits: ServeLimits = ServeLimits(),  # noqa: B008 - frozen, shared safely
    verbose: bool = False,
) -> Iterator[str]:
    """Serve ``root`` in a background thread; yields the endpoint URL for ``HF_ENDPOINT``."""
    server = make_server(root, bind, token_file=token_file, limits=limits, verbose=verbose)
    thread = threading.Thread(target=server.serve_forever, name="hubmirror", daemon=True)
    thread.start()
    try:
        yield server.endpoint
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


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


def _serving_line(server: MirrorServer, root: Path, repo_id: str) -> tuple[str, bool]:
    """What ``serve`` says of one repo folder at start, and whether it is served."""
    try:
        repo = server.repos.get(repo_id)
    except MirrorError as error:
        return f"not serving {repo_id}: {error}", False
    if repo is None:
        fix = f"`metalserve mirror add {root} {repo_id}`"
        return f"not serving {repo_id}: expected an index, found none — fix: {fix}", False
    return f"serving {repo_id} ({len(repo.files)} files, revision {repo.sha})", True


@click.group("mirror")
def mirror_group() -> None:
    """A local Hugging Face Hub mirror for air-gapped hosts (HF_ENDPOINT)."""


@mirror_group.command("add")
@click.argument("root", type=click.Path(path_type=Path, file_okay=False))
@click.argument("repo_id")
@click.argument(
    "source", required=False, type=click.Path(path_type=Path, exists=True, file_okay=False)
)
def add_command(root: Path, repo_id: str, source: Path | None) -> None:
    """Index REPO_ID in the mirror ROOT: copy SOURCE in as ROOT/REPO_ID first, or, without
    SOURCE, index the files already in ROOT/REPO_ID. Every file is hashed here, once; the
    server serves only what was indexed."""
    with _operator_errors():
        repo = publish(root, repo_id, source) if source else index_repo(root, repo_id)
    click.echo(f"{repo_id}: {len(repo.files)} files, revision {repo.sha}")


@mirror_group.command("serve")
@click.argument("root", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--bind", default="127.0.0.1:8090", show_default=True, help="HOST:PORT to listen on.")
@click.option(
    "--token-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="A 0600 file with the token clients must send as 'Authorization: Bearer' (HF_TOKEN).",
)
@click.option("--workers", type=click.IntRange(1, 1024), default=ServeLimits.workers,
              show_default=True, help="Connections served at once; as many more may wait.")  # fmt: skip
@click.option("--timeout", "timeout_s", type=click.FloatRange(0.1, 3600), show_default=True,
              default=ServeLimits.timeout_s,
              help="Seconds a request head may take to arrive, and a send may stall.")  # fmt: skip
@click.option("--verbose", is_flag=True, help="Log every request.")
def serve_command(
    root: Path, bind: str, token_file: Path | None, workers: int, timeout_s: float, verbose: bool
) -> None:
    """Serve the repos indexed under ROOT until interrupted."""
    limits = ServeLimits(workers=workers, queued=workers, timeout_s=timeout_s)
    with _operator_errors():
        server = make_server(root, bind, token_file=token_file, limits=limits, verbose=verbose)
    for repo_id in server.repos.folders():
        line, served = _serving_line(server, root, repo_id)
        click.echo(line, err=not served)
    click.echo(f"HF_ENDPOINT={server.endpoint}")
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    server.server_close()
