"""The Hub mirror exposed to a site network: paths stay inside its folder, no request text reaches a
response header, a token guards it, a fixed pool of workers with deadlines serves it, and nothing
is hashed while serving. Everything runs over 127.0.0.1 with bounded waits."""

from __future__ import annotations

import http.client
import json
import os
import select
import shutil
import socket
import stat
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner
from huggingface_hub import snapshot_download
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

from metalserve.mirror import index as mirror_index
from metalserve.mirror.hub import ServeLimits, make_server, mirror_group, running_mirror
from metalserve.mirror.index import INDEX_FILE, MirrorError, index_repo, publish

REPO = "acme/small"
PUBLIC = b"public-data!"
SECRET = b"SECRET-DATA!"
"""As long as PUBLIC, so a link swapped in for a public file passes the size check."""
TOKEN = "hub-token-5f2c9a"
QUICK = ServeLimits(workers=4, queued=4, timeout_s=5.0)


def _write(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A mirror with one small indexed repo, and a secret beside (outside) the mirror folder."""
    hub = tmp_path / "hub"
    folder = hub / REPO
    _write(folder / "config.json", b'{"model_type": "tiny"}\n')
    _write(folder / "notes.txt", PUBLIC)
    _write(folder / "sub" / "notes.txt", PUBLIC)
    _write(folder / "weights.safetensors", bytes(range(256)) * 64)
    _write(tmp_path / "secret.txt", SECRET)
    index_repo(hub, REPO)
    return hub


@pytest.fixture
def endpoint(root: Path) -> Iterator[str]:
    with running_mirror(root, limits=QUICK) as url:
        yield url


def _address(endpoint: str) -> tuple[str, int]:
    parts = urlsplit(endpoint)
    assert parts.hostname and parts.port
    return parts.hostname, parts.port


def _http(
    endpoint: str, target: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, list[tuple[str, str]], bytes]:
    """Send ``target`` exactly as written (no client-side normalising); status, headers, body."""
    lines = [f"{method} {target} HTTP/1.1", "Host: mirror", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    with socket.create_connection(_address(endpoint), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        response = http.client.HTTPResponse(sock, method=method)
        response.begin()
        return response.status, response.getheaders(), response.read()


def _swap_for_link(path: Path, outside: Path, content: bytes) -> None:
    """Replace ``path`` by a link to ``outside`` holding ``content`` with the same size and mtime,
    so only the check that the path stays inside the mirror can tell them apart."""
    before = path.stat()
    _write(outside, content)
    os.utime(outside, ns=(before.st_atime_ns, before.st_mtime_ns))
    path.unlink()
    path.symlink_to(outside)


# -- paths stay inside the mirror folder ---------------------------------------------------------


def test_a_file_swapped_for_a_link_out_of_the_mirror_is_refused(
    root: Path, endpoint: str, tmp_path: Path
) -> None:
    _swap_for_link(root / REPO / "notes.txt", tmp_path / "elsewhere" / "notes.txt", SECRET)

    status, _, body = _http(endpoint, f"/{REPO}/resolve/main/notes.txt")

    assert status == 404
    assert SECRET not in body


def test_a_folder_swapped_for_a_link_out_of_the_mirror_is_refused(
    root: Path, endpoint: str, tmp_path: Path
) -> None:
    sub = root / REPO / "sub"
    before = (sub / "notes.txt").stat()
    outside = tmp_path / "elsewhere-sub"
    shutil.move(sub, outside)
    (outside / "notes.txt").write_bytes(SECRET)
    os.utime(outside / "notes.txt", ns=(before.st_atime_ns, before.st_mtime_ns))
    sub.symlink_to(outside, target_is_directory=True)

    status, _, body = _http(endpoint, f"/{REPO}/resolve/main/sub/notes.txt")

    assert status == 404
    assert SECRET not in body


def test_a_repo_folder_linked_out_of_the_mirror_is_not_served(
    root: Path, endpoint: str, tmp_path: Path
) -> None:
    """The issue's case: a repo folder that is a link to a folder elsewhere (e.g. /etc/ssh)."""
    moved = tmp_path / "etc-like"
    os.rename(root / REPO, moved)  # still indexed, mtimes unchanged: only the link is wrong
    (root / REPO).symlink_to(moved, target_is_directory=True)

    info_status, _, info = _http(endpoint, f"/api/models/{REPO}")
    file_status, _, body = _http(endpoint, f"/{REPO}/resolve/main/notes.txt")

    assert (info_status, file_status) == (404, 404)
    assert b"notes.txt" not in info and PUBLIC not in body


@pytest.mark.parametrize(
    "target",
    [
        f"/{REPO}/resolve/main/../../../secret.txt",
        f"/{REPO}/resolve/main/%2e%2e/%2e%2e/%2e%2e/secret.txt",
        f"/{REPO}/resolve/main/%2E%2E%2F%2E%2E%2F%2E%2E%2Fsecret.txt",
        f"/{REPO}/resolve/main/sub/../../../../secret.txt",
        "/%2e%2e/%2e%2e/resolve/main/secret.txt",
        f"/api/models/{REPO}/tree/main/../../..",
    ],
)
def test_dot_dot_in_any_spelling_never_leaves_the_repo(endpoint: str, target: str) -> None:
    status, _, body = _http(endpoint, target)
    assert 400 <= status < 500
    assert SECRET not in body and b"secret.txt" not in body


def test_an_absolute_path_is_not_a_file_of_the_repo(endpoint: str, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    status, _, body = _http(endpoint, f"/{REPO}/resolve/main/{secret}")
    assert status == 404
    assert SECRET not in body


def test_a_nul_byte_in_the_path_is_a_bad_request(endpoint: str) -> None:
    status, _, body = _http(endpoint, f"/{REPO}/resolve/main/notes.txt%00.json")
    assert status == 400
    assert PUBLIC not in body


def test_add_refuses_a_repo_that_links_out_of_the_mirror(root: Path, tmp_path: Path) -> None:
    (root / REPO / "leak.txt").symlink_to(tmp_path / "secret.txt")
    result = CliRunner().invoke(mirror_group, ["add", str(root), REPO])
    assert result.exit_code == 2
    assert "found a link to" in result.output and "Traceback" not in result.output
    assert "leak.txt" not in (root / REPO / INDEX_FILE).read_text()


def test_add_refuses_a_repo_folder_that_is_a_link_out_of_the_mirror(
    root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "ssh-like"
    _write(outside / "ssh_config", b"Host *\n")
    (root / "acme" / "ssh").symlink_to(outside, target_is_directory=True)
    with pytest.raises(MirrorError, match="found a link to"):
        index_repo(root, "acme/ssh")
    assert not (outside / INDEX_FILE).exists()


def test_links_inside_the_mirror_are_served(root: Path, tmp_path: Path) -> None:
    """A file linked to another file of the mirror (as a Hub cache snapshot links to its blobs)."""
    (root / REPO / "alias.txt").symlink_to(root / REPO / "notes.txt")
    index_repo(root, REPO)
    with running_mirror(root, limits=QUICK) as url:
        status, _, body = _http(url, f"/{REPO}/resolve/main/alias.txt")
    assert (status, body) == (200, PUBLIC)


# -- no request data in a response header --------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/%0d%0aSet-Cookie:%20stolen=1",
        f"/api/models/{REPO}/tree/main/x%0d%0aSet-Cookie:%20stolen=1",
        f"/{REPO}/resolve/main/x%0D%0ASet-Cookie:%20stolen=1",
        f"/{REPO}/resolve/main%0aSet-Cookie:%20stolen=1/notes.txt",
    ],
)
def test_a_crlf_in_the_path_is_a_bad_request_and_injects_no_header(
    endpoint: str, target: str
) -> None:
    status, headers, _ = _http(endpoint, target)
    assert status == 400
    assert "set-cookie" not in {name.lower() for name, _ in headers}
    assert not any("stolen" in value for _, value in headers)


@pytest.mark.parametrize(
    "target",
    [
        "/no-such-route-marker",
        "/api/models/acme/marker-repo",
        f"/api/models/{REPO}/revision/marker-rev",
        f"/api/models/{REPO}/tree/main/marker-dir",
        f"/{REPO}/resolve/main/marker-file.bin",
        f"/{REPO}/resolve/marker-rev/notes.txt",
    ],
)
def test_no_part_of_the_request_is_echoed_into_a_header(endpoint: str, target: str) -> None:
    status, headers, _ = _http(endpoint, target)
    assert status == 404
    assert not any("marker" in value for _, value in headers), headers


# -- token authentication ------------------------------------------------------------------------


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "hub_token"
    path.touch(mode=0o600)
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture
def guarded(root: Path, token_file: Path) -> Iterator[str]:
    with running_mirror(root, token_file=token_file, limits=QUICK) as url:
        yield url


def test_huggingface_hub_with_the_token_downloads_the_repo(guarded: str, tmp_path: Path) -> None:
    local = Path(snapshot_download(REPO, endpoint=guarded, local_dir=tmp_path / "dl", token=TOKEN))
    assert (local / "notes.txt").read_bytes() == PUBLIC
    assert (local / "sub" / "notes.txt").read_bytes() == PUBLIC


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, "Bearer "],
)
@pytest.mark.parametrize("target", [f"/api/models/{REPO}", f"/{REPO}/resolve/main/notes.txt"])
def test_without_the_right_bearer_token_every_route_is_401(
    guarded: str, authorization: str | None, target: str
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    status, answer, body = _http(guarded, target, headers)
    assert status == 401
    assert dict(answer)["WWW-Authenticate"].startswith("Bearer")
    assert PUBLIC not in body and b"notes.txt" not in body


def test_the_token_is_never_logged(
    root: Path, token_file: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    with running_mirror(root, token_file=token_file, limits=QUICK, verbose=True) as url:
        for token in (TOKEN, "wrong-guess-93"):
            _http(url, f"/api/models/{REPO}", {"Authorization": f"Bearer {token}"})
    logged = capfd.readouterr()
    assert f"/api/models/{REPO}" in logged.err, "verbose logging is on"
    assert TOKEN not in logged.out + logged.err
    assert "wrong-guess-93" not in logged.out + logged.err


def test_a_token_file_others_can_read_is_refused_in_one_line(root: Path, token_file: Path) -> None:
    token_file.chmod(0o644)
    result = CliRunner().invoke(
        mirror_group, ["serve", str(root), "--bind", "127.0.0.1:0", "--token-file", str(token_file)]
    )
    assert result.exit_code == 2
    assert "expected mode 0600, found 0644" in result.output
    assert "Traceback" not in result.output and TOKEN not in result.output


# -- bounded workers and deadlines ---------------------------------------------------------------


def _idle_connections(endpoint: str, count: int) -> list[socket.socket]:
    return [socket.create_connection(_address(endpoint), timeout=10) for _ in range(count)]


def _first_reply(sock: socket.socket, timeout_s: float) -> bytes:
    """What the server sends first on ``sock`` (b"" once it closed), within ``timeout_s``."""
    sock.settimeout(timeout_s)
    try:
        return sock.recv(4096)
    except ConnectionResetError:
        return b""


def test_connections_beyond_the_pool_and_its_queue_get_503_at_once(root: Path) -> None:
    limits = ServeLimits(workers=2, queued=1, timeout_s=30.0)
    with running_mirror(root, limits=limits) as url:
        held = _idle_connections(url, limits.workers + limits.queued)
        try:
            with socket.create_connection(_address(url), timeout=10) as extra:
                reply = _first_reply(extra, timeout_s=5.0)  # far below the 30 s head deadline
        finally:
            for sock in held:
                sock.close()
    assert reply.startswith(b"HTTP/1.1 503 ")


def test_worker_threads_stay_fixed_however_many_clients_connect(root: Path) -> None:
    limits = ServeLimits(workers=3, queued=3, timeout_s=30.0)
    with running_mirror(root, limits=limits) as url:
        before = threading.active_count()
        held = _idle_connections(url, 20)
        try:
            with socket.create_connection(_address(url), timeout=10) as last:
                # answered only once the server accepted all 20 before it
                assert _first_reply(last, timeout_s=5.0).startswith(b"HTTP/1.1 503 ")
            after = threading.active_count()
        finally:
            for sock in held:
                sock.close()
    assert after <= before


def test_a_client_that_sends_half_a_request_is_cut_after_the_timeout(root: Path) -> None:
    limits = ServeLimits(workers=2, queued=2, timeout_s=0.5)
    with (
        running_mirror(root, limits=limits) as url,
        socket.create_connection(_address(url), timeout=10) as slow,
    ):
        slow.sendall(f"GET /api/models/{REPO} HTTP/1.1\r\nHost: mirror\r\n".encode())
        assert _first_reply(slow, timeout_s=5.0) == b""  # closed, long before 5 s


def test_a_client_dripping_its_request_byte_by_byte_is_cut_at_the_deadline(root: Path) -> None:
    """Each byte arrives well within the timeout; only a deadline on the whole head cuts it."""
    drip = b"GET /api/models/acme/small HTTP/1.1\r\nX-Padding: " + b"a" * 200
    limits = ServeLimits(workers=2, queued=2, timeout_s=1.0)
    with (
        running_mirror(root, limits=limits) as url,
        socket.create_connection(_address(url), timeout=10) as slow,
    ):
        sent, cut = 0, False
        for byte in drip[:60]:  # 60 bytes at 0.1 s: 6 s, far past the 1 s deadline
            try:
                slow.sendall(bytes([byte]))
            except OSError:
                cut = True
                break
            sent += 1
            readable, _, _ = select.select([slow], [], [], 0.1)
            if readable and _first_reply(slow, timeout_s=1.0) == b"":
                cut = True
                break
    assert cut, f"still connected after {sent} bytes"
    assert sent < 60


def test_a_stalled_client_does_not_stall_a_fast_one(root: Path) -> None:
    limits = ServeLimits(workers=2, queued=2, timeout_s=30.0)
    with (
        running_mirror(root, limits=limits) as url,
        socket.create_connection(_address(url), timeout=10) as slow,
    ):
        slow.sendall(f"GET /api/models/{REPO} HTTP/1.1\r\n".encode())
        with urllib.request.urlopen(f"{url}/{REPO}/resolve/main/notes.txt", timeout=5) as fast:
            assert fast.read() == PUBLIC
        slow.settimeout(0.01)
        with pytest.raises(TimeoutError):
            slow.recv(1)  # the slow one is still held open: the fast one was not queued behind


def test_with_one_worker_a_stalled_client_frees_it_at_the_timeout(root: Path) -> None:
    limits = ServeLimits(workers=1, queued=4, timeout_s=1.0)
    with (
        running_mirror(root, limits=limits) as url,
        socket.create_connection(_address(url), timeout=10) as slow,
    ):
        slow.sendall(f"GET /api/models/{REPO} HTTP/1.1\r\n".encode())
        started = time.monotonic()
        with urllib.request.urlopen(f"{url}/{REPO}/resolve/main/notes.txt", timeout=10) as fast:
            assert fast.read() == PUBLIC
    # the fast request waited for the slow one's deadline, not for the client's own 10 s timeout
    assert time.monotonic() - started < 10


def test_an_idle_kept_alive_connection_frees_its_worker_for_a_waiting_client(root: Path) -> None:
    with running_mirror(root, limits=ServeLimits(workers=1, queued=4, timeout_s=30.0)) as url:
        idle = http.client.HTTPConnection(*_address(url), timeout=10)
        try:
            idle.request("GET", f"/{REPO}/resolve/main/notes.txt")  # HTTP/1.1: kept alive
            assert idle.getresponse().read() == PUBLIC
            # the only worker waits on the idle connection: for 2 s, not the 30 s head timeout
            with urllib.request.urlopen(
                f"{url}/{REPO}/resolve/main/notes.txt", timeout=10
            ) as next_:
                assert next_.read() == PUBLIC
        finally:
            idle.close()


def _until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait (polling, bounded) for the server to reach a state the test then relies on."""
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert condition(), f"not reached within {timeout_s} s"


def test_a_response_closes_its_connection_when_another_waits_for_a_worker(root: Path) -> None:
    server = make_server(root, "127.0.0.1:0", limits=ServeLimits(workers=1, queued=4, timeout_s=30))
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    head = f"GET /{REPO}/resolve/main/notes.txt HTTP/1.1\r\nHost: mirror\r\n"
    try:
        with socket.create_connection(_address(server.endpoint), timeout=10) as first, \
                socket.create_connection(_address(server.endpoint), timeout=10) as second:  # fmt: skip
            first.sendall(head.encode())  # holds the only worker, head not yet complete
            _until(lambda: server.busy() == 1)
            second.sendall((head + "\r\n").encode())
            _until(lambda: server.waiting() == 1)
            first.sendall(b"\r\n")
            answer = http.client.HTTPResponse(first, method="GET")
            answer.begin()
            assert (answer.read(), answer.getheader("Connection")) == (PUBLIC, "close")
            served = http.client.HTTPResponse(second, method="GET")
            served.begin()
            assert served.read() == PUBLIC
    finally:
        server.shutdown()
        server.server_close()
        serving.join()


# -- hashing happens at add, never while serving -------------------------------------------------


def test_add_records_every_files_size_and_sha256(tmp_path: Path) -> None:
    import hashlib

    source = tmp_path / "src"
    _write(source / "config.json", b"{}\n")
    _write(source / "model.safetensors", os.urandom(4096))
    _write(source / "nested" / "tokenizer.json", b'{"v": 1}\n')
    _write(source / ".git" / "HEAD", b"ref: refs/heads/main\n")  # hidden: never served
    hub = tmp_path / "hub"

    result = CliRunner().invoke(mirror_group, ["add", str(hub), REPO, str(source)])

    assert result.exit_code == 0, result.output
    recorded = json.loads((hub / REPO / INDEX_FILE).read_text())["files"]
    expected = {
        path.relative_to(source).as_posix(): (path.stat().st_size,
                                              hashlib.sha256(path.read_bytes()).hexdigest())
        for path in source.rglob("*")
        if path.is_file() and ".git" not in path.parts
    }  # fmt: skip
    assert {entry["path"]: (entry["size"], entry["sha256"]) for entry in recorded} == expected


def test_serving_never_hashes_and_an_unindexed_file_is_not_served(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_hashing(path: Path) -> tuple[str, str]:
        raise AssertionError(f"hashed {path} while serving")

    monkeypatch.setattr(mirror_index, "_hash_file", no_hashing)
    _write(root / REPO / "dropped-in-later.bin", b"\0" * 1024)

    with running_mirror(root, limits=QUICK) as url:
        local = Path(snapshot_download(REPO, endpoint=url, local_dir=tmp_path / "dl", token=False))
        status, _, _ = _http(url, f"/{REPO}/resolve/main/dropped-in-later.bin")

    assert (local / "notes.txt").read_bytes() == PUBLIC
    assert not (local / "dropped-in-later.bin").exists()
    assert status == 404


def test_a_file_changed_after_add_is_refused_until_added_again(root: Path) -> None:
    (root / REPO / "notes.txt").write_bytes(b"edited in place")
    with running_mirror(root, limits=QUICK) as url:
        refused, _, body = _http(url, f"/{REPO}/resolve/main/notes.txt")
        index_repo(root, REPO)
        served, _, again = _http(url, f"/{REPO}/resolve/main/notes.txt")
    assert (refused, served) == (409, 200)
    assert b"edited" not in body and again == b"edited in place"


def test_a_file_removed_after_add_is_refused_at_once_not_dropped(
    root: Path, tmp_path: Path
) -> None:
    """A dropped connection makes huggingface_hub retry for tens of seconds; an answer does not."""
    (root / REPO / "notes.txt").unlink()
    with running_mirror(root, limits=QUICK) as url:
        refused, headers, body = _http(url, f"/{REPO}/resolve/main/notes.txt")
        started = time.monotonic()
        # huggingface_hub reports the file as not found, the mirror's answer as its cause
        with pytest.raises(LocalEntryNotFoundError) as raised:
            snapshot_download(REPO, endpoint=url, local_dir=tmp_path / "dl", token=False)
        seconds = time.monotonic() - started
    assert isinstance(raised.value.__cause__, HfHubHTTPError)
    assert "409" in str(raised.value.__cause__)
    assert refused == 409 and dict(headers)["X-Error-Code"] == "ChangedSinceIndexed"
    assert b"Entry" not in body and seconds < 10


def test_a_repo_folder_never_added_is_not_served(root: Path) -> None:
    _write(root / "acme" / "unadded" / "config.json", b"{}\n")
    with running_mirror(root, limits=QUICK) as url:
        status, headers, _ = _http(url, "/api/models/acme/unadded")
    assert status == 404 and dict(headers)["X-Error-Code"] == "RepoNotFound"


def test_publish_keeps_the_index_with_the_repo_it_describes(tmp_path: Path) -> None:
    """The index is written into the new copy before it is swapped in: never one without other."""
    source = tmp_path / "src"
    _write(source / "a.txt", b"one")
    first = publish(tmp_path / "hub", REPO, source)
    _write(source / "a.txt", b"two!")
    second = publish(tmp_path / "hub", REPO, source)
    index = json.loads((tmp_path / "hub" / REPO / INDEX_FILE).read_text())
    assert first.sha != second.sha
    assert [(e["path"], e["size"]) for e in index["files"]] == [("a.txt", 4)]
    assert stat.S_IMODE((tmp_path / "hub" / REPO).stat().st_mode) == 0o755
