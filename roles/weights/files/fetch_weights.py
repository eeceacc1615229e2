#!/usr/bin/env python3
"""Bring a Hugging Face repo onto this host, check it, and stamp it — run by the weights role.

Runs inside the host's hub venv (``huggingface_hub`` from the pushed wheelhouse). Everything it
needs comes from the environment or flags, never a secret on the command line:

* ``HF_ENDPOINT``: the Hub or a mirror (``metalserve mirror serve``);
* ``HF_TOKEN_PATH``: a 0600 file holding the token, read by ``huggingface_hub`` itself.

Steps: list the repo at the revision and keep the files ``--allow``/``--ignore`` select (fnmatch
patterns, as ``snapshot_download`` matches them; the first ``--allow`` names the weights and must
match) → remove any kept file whose size is not the Hub's (cut short by a full disk, damaged
afterwards) and the stamp → refuse if the free space is short → download those files into
``--local-dir`` in worker processes forked from this one, one file at a time each, ``--max-workers``
of them (``download_processes``). A worker streams a plain-HTTP file
(a site mirror, an LFS file on the Hub's CDN) itself and hashes it as it lands against the Hub's
checksum (sha256 for LFS files, git blob sha1 otherwise), renaming it into place only when it
matches (``_stream_file``); a broken connection goes on from where it stopped. Behind a proxy
the environment names, ``hf_hub_download`` fetches them instead (``proxied``); files the Hub
stores with Xet go to threads of this process, as ``hf_xet`` transfers in parallel itself
(``by_transfer``); both are hashed once they land. A file already here at the Hub's size is
hashed (a file hashed by an earlier run at the same size and time is not hashed again) and
fetched again if it does not match → write ``.metalserve-weights.json`` last, atomically, with
every file's size. The stamp is what tells the role it is done; the sizes let the role notice,
with a stat, a file deleted or truncated afterwards. A full disk is one line naming how much to
free where; the partial downloads are removed, and no stamp is written. A worker killed (the OOM
killer) is one line too: the others stop, the finished files are kept, and the unfinished ones
go on from their bytes next time; the workers die with the fetcher.

Every ``--progress-every`` seconds one line goes to stdout (the unit's journal) and to
``.cache/metalserve-progress.json`` (read by the deploy, and by the other nodes of a cluster that
share the folder): bytes done, total, rate, files. A killed or failed run leaves its finished files
in place and the next run skips them; a file a worker was streaming goes on from its partial
file's bytes (hashed again first). huggingface_hub 2.4 does not resume a file across runs (each of
its runs writes its own ``.incomplete`` file): behind a proxy, or for a Xet file, that one starts
again from zero.

Example::

    HF_ENDPOINT=http://10.77.1.1:8090 /opt/metalserve/hub-venv/bin/python fetch_weights.py \\
        --repo metalserve/tiny-moe --revision main --local-dir /var/lib/metalserve/models/tiny-moe \\
        --allow '*.safetensors' --allow '*.json' --ignore 'original/*' --max-workers 16
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import hashlib
import http.client
import json
import math
import multiprocessing
import os
import shutil
import signal
import ssl
import stat
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import (
    FIRST_COMPLETED,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from concurrent.futures.process import BrokenProcessPool
from fnmatch import fnmatch
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

STAMP = ".metalserve-weights.json"
EXIT_OPERATOR_ERROR = 2
PARTIAL_DOWNLOADS = ".cache/huggingface/download"
"""Where ``snapshot_download(local_dir=...)`` keeps its ``.incomplete`` files (huggingface_hub
``_local_folder.get_local_download_paths``)."""
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
PROGRESS = ".cache/metalserve-progress.json"
"""The last progress line, for the deploy and for nodes sharing the folder."""
VERIFIED = ".cache/metalserve-verified.json"
"""Files already hashed: path → [size, mtime_ns, expected hash, matched]."""
HASH_CHUNK = 8 * 1024 * 1024


class FetchError(Exception):
    """One line for the operator: what was expected, what was found, what to do."""


def _check_token_file() -> None:
    token_path = os.environ.get("HF_TOKEN_PATH")
    if not token_path:
        return
    path = Path(token_path)
    if not path.is_file():
        raise FetchError(
            f"HF_TOKEN_PATH: expected a token file, found nothing at {path} — "
            "fix: write the token there with mode 0600, or unset HF_TOKEN_PATH"
        )
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise FetchError(f"{path}: expected mode 0600, found {mode:04o} — fix: chmod 600 {path}")


def read_stamp(local_dir: Path) -> dict[str, object] | None:
    try:
        return json.loads((local_dir / STAMP).read_text())
    except (OSError, ValueError):
        return None


def _write_json(path: Path, document: object, indent: int | None = 2) -> None:
    """Atomically: a temporary name beside ``path``, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f"{path.name}.",
                                     delete=False) as tmp:  # fmt: skip
        try:
            json.dump(document, tmp, indent=indent, sort_keys=True)
            tmp.write("\n")
            tmp.flush()
        except OSError:
            Path(tmp.name).unlink(missing_ok=True)
            raise
    os.chmod(tmp.name, 0o644)
    os.replace(tmp.name, path)


def _write_stamp(local_dir: Path, stamp: dict[str, object]) -> None:
    _write_json(local_dir / STAMP, stamp)


def remove_partials(local_dir: Path, downloads: bool = True,
                    keep: frozenset[Path] = frozenset()) -> list[Path]:  # fmt: skip
    """Delete what a cut-short run leaves behind: this script's unfinished stamp files and, with
    ``downloads``, the ``.incomplete`` files but those in ``keep`` (the streamed files a run goes
    on with, see ``resumable_partial``). huggingface_hub's own each have a name of their own
    (``<etag>.<uuid>.incomplete``), removed when a download fails, but a killed process leaves
    them and no later run reads them again (huggingface_hub 2.4 ``_download_to_tmp_and_move``):
    the run holding the lock removes them. Returns what it removed."""
    leftovers = list(local_dir.glob(f"{STAMP}.*"))
    if downloads:
        leftovers += (local_dir / PARTIAL_DOWNLOADS).glob("**/*.incomplete")
    removed = [path for path in leftovers if path not in keep]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def resumable_partial(local_dir: Path, name: str, expected_digest: str) -> Path:
    """Where a streamed file's bytes gather until it is whole, named by the checksum it must
    reach: a later run (after a kill, a reboot, a network outage) goes on from those bytes, and a
    new revision's file, with another checksum, never does."""
    return local_dir / PARTIAL_DOWNLOADS / f"{name}.{expected_digest}.incomplete"


def resumable(local_dir: Path, remote: dict[str, Any]) -> frozenset[Path]:
    return frozenset(
        resumable_partial(local_dir, n, expected_hash(f)[1]) for n, f in remote.items()
    )


def wrong_sized(local_dir: Path, sizes: dict[str, int]) -> list[str]:
    """Files of the repo that are on disk with another size than the Hub lists (a stat each)."""
    wrong = []
    for name, size in sorted(sizes.items()):
        path = local_dir / name
        if path.is_file() and path.stat().st_size != size:
            wrong.append(name)
    return wrong


def bytes_to_fetch(local_dir: Path, sizes: dict[str, int]) -> int:
    present = sum(s for n, s in sizes.items() if (local_dir / n).is_file()
                  and (local_dir / n).stat().st_size == s)  # fmt: skip
    return sum(sizes.values()) - present


def gigabytes(size: float, up: bool = True) -> str:
    """Decimal GB to a tenth: a need rounded up, what is there rounded down."""
    tenths = max(size, 0) / 1e8
    return f"{(math.ceil(tenths) if up else math.floor(tenths)) / 10:.1f}"


def _intact(local_dir: Path, stamp: dict[str, object]) -> bool:
    sizes = stamp.get("sizes")
    if not isinstance(sizes, dict) or not sizes:
        return False  # a stamp from before sizes were kept: it cannot vouch for the files
    return all((local_dir / n).is_file() for n in sizes) and not wrong_sized(local_dir, sizes)


class RunningDigest:
    """The checksum the Hub lists for a file, computed as its bytes come: sha256 for an LFS file,
    git's blob sha1 (``blob <size>\\0``, then the bytes) for another."""

    def __init__(self, algorithm: str, size: int) -> None:
        self.algorithm, self.size = algorithm, size
        self.restart()

    def restart(self) -> None:
        self.hash = hashlib.sha256() if self.algorithm == "sha256" else hashlib.sha1()  # noqa: S324
        if self.algorithm != "sha256":
            self.hash.update(f"blob {self.size}\0".encode())

    def update(self, data: bytes | memoryview) -> None:
        self.hash.update(data)

    def read_from(self, stream: Any) -> None:
        """Every byte left in ``stream``, a file opened for binary reading."""
        while chunk := stream.read(HASH_CHUNK):
            self.hash.update(chunk)

    def hexdigest(self) -> str:
        return self.hash.hexdigest()


def _hash(path: Path, algorithm: str) -> str:
    """sha256 of an LFS file, or git's blob sha1 of another, read back from disk."""
    digest = RunningDigest(algorithm, path.stat().st_size)
    with path.open("rb") as stream:
        digest.read_from(stream)
    return digest.hexdigest()


def expected_hash(remote: Any) -> tuple[str, str]:
    """What the Hub lists for a file: ``lfs.sha256`` for an LFS file, else its git blob id."""
    lfs = getattr(remote, "lfs", None)
    sha256 = getattr(lfs, "sha256", None) if lfs is not None else None
    return ("sha256", str(sha256).lower()) if sha256 else ("git-sha1", str(remote.blob_id).lower())


class Verifier:
    """Checks files against the Hub's checksums, each once: a result holds while the file keeps
    the size and modification time it was hashed at (kept in ``VERIFIED`` across runs)."""

    def __init__(self, local_dir: Path, remote: dict[str, Any]) -> None:
        self.local_dir, self.remote = local_dir, remote
        self.lock = threading.Lock()
        try:
            known = json.loads((local_dir / VERIFIED).read_text())
        except (OSError, ValueError):
            known = {}
        self.known: dict[str, list[Any]] = known if isinstance(known, dict) else {}

    def check(self, name: str) -> bool | None:
        """True/False: the file matches the Hub's checksum or not; None: not complete yet."""
        try:
            st = (self.local_dir / name).stat()
        except FileNotFoundError:
            return None
        if st.st_size != self.remote[name].size:
            return None
        algorithm, expected = expected_hash(self.remote[name])
        key = self._key(name, st)
        with self.lock:
            cached = self.known.get(name)
        if isinstance(cached, list) and cached[:3] == key:
            return bool(cached[3])
        ok = _hash(self.local_dir / name, algorithm) == expected
        with self.lock:
            self.known[name] = [*key, ok]
        return ok

    def _key(self, name: str, st: os.stat_result) -> list[Any]:
        """What a result holds for: the file's size and time, and the checksum it was held to."""
        return [st.st_size, st.st_mtime_ns, expected_hash(self.remote[name])[1]]

    def record(self, name: str) -> None:
        """``name`` was hashed as it arrived and matched (``_stream_file``)."""
        key = self._key(name, (self.local_dir / name).stat())
        with self.lock:
            self.known[name] = [*key, True]

    def verified(self) -> int:
        with self.lock:
            return sum(1 for entry in self.known.values() if entry[3])

    def save(self) -> None:
        with self.lock:
            known = dict(self.known)
        _write_json(self.local_dir / VERIFIED, {n: v for n, v in known.items() if n in self.remote},
                    indent=None)  # fmt: skip


def _megabytes(rate: float) -> str:
    return f"{max(rate, 0) / 1e6:.1f}"


class Progress:
    """Bytes on disk against the total, every ``every`` seconds: finished files at their size and
    the ``.incomplete`` files huggingface_hub is writing."""

    def __init__(self, local_dir: Path, sizes: dict[str, int], verifier: Verifier | None,
                 every: float) -> None:  # fmt: skip
        self.local_dir, self.sizes, self.verifier, self.every = local_dir, sizes, verifier, every
        self.last: tuple[float, int] | None = None

    def done(self) -> tuple[int, int]:
        """Bytes on disk and files finished."""
        finished = [n for n, s in self.sizes.items()
                    if (self.local_dir / n).is_file() and (self.local_dir / n).stat().st_size == s]  # fmt: skip
        partial = sum(p.stat().st_size for p in
                      (self.local_dir / PARTIAL_DOWNLOADS).glob("**/*.incomplete") if p.is_file())  # fmt: skip
        return sum(self.sizes[n] for n in finished) + partial, len(finished)

    def report(self, phase: str, line: str | None = None) -> dict[str, object]:
        done, files_done = self.done()
        now = time.monotonic()
        rate = (
            (done - self.last[1]) / (now - self.last[0])
            if self.last and now > self.last[0]
            else 0.0
        )
        self.last = (now, done)
        total = sum(self.sizes.values())
        verified = self.verifier.verified() if self.verifier else 0
        percent = 100 * done / total if total else 100.0
        line = line or (
            f"weights: {gigabytes(done, up=False)} of {gigabytes(total)} GB ({percent:.1f} %), "
            f"{_megabytes(rate)} MB/s, {files_done} of {len(self.sizes)} files, {verified} verified"
        )
        document = {"phase": phase, "done": done, "total": total, "rate": round(rate),
                    "files_done": files_done, "files": len(self.sizes), "verified": verified,
                    "line": line, "updated": time.time()}  # fmt: skip
        _write_json(self.local_dir / PROGRESS, document, indent=None)
        print(line, flush=True)
        return document


def report_failure(local_dir: Path, line: str) -> None:
    """The last progress says the run failed, and why (for nodes waiting on a shared folder)."""
    with contextlib.suppress(OSError):  # the folder itself is the problem: the line says so
        _write_json(local_dir / PROGRESS, {"phase": "failed", "line": line,
                                           "updated": time.time()}, indent=None)  # fmt: skip


TRANSFER_CHUNK = 1024 * 1024
"""Bytes huggingface_hub hands the fetcher per write (see ``_download``)."""


class Options:
    def __init__(self, allow: list[str], ignore: list[str], max_workers: int,
                 progress_every: float, headroom: float) -> None:  # fmt: skip
        self.allow, self.ignore, self.max_workers = allow, ignore, max_workers
        self.progress_every, self.headroom = progress_every, headroom


def _selected(repo: str, commit: str, files: list[Any], opts: Options) -> list[Any]:
    from huggingface_hub.utils import filter_repo_objects

    kept = list(filter_repo_objects(files, allow_patterns=opts.allow or None,
                                    ignore_patterns=opts.ignore or None, key=lambda f: f.path))  # fmt: skip
    if opts.allow and not any(fnmatch(f.path, opts.allow[0]) for f in kept):
        raise FetchError(f"{repo}@{commit[:12]}: expected files matching {opts.allow[0]}, found "
                         f"none among its {len(files)} files — fix: check model.repo_id (a "
                         "safetensors checkpoint) or model.gguf_file (the path the Hub lists)")  # fmt: skip
    return kept


def download_processes(max_workers: int, files: int, direct: bool) -> int:
    """Worker processes, each downloading one file at a time: ``--max-workers``, nor more than
    the files. Streamed directly (``_stream_file``), a file costs little CPU (the socket read, the
    hash and the write are C, outside the GIL) and the link decides: the more parallel
    connections, the fuller a link that holds each one back (a WAN's round trips, a shaped or
    shared link). bench/download.py, 4 GB in 8 files on a 2-core machine, over an 8000 Mbit/s
    link: 2 processes 430 MB/s, 8 processes 658 MB/s (curl, 8 at once: 947); on the loopback
    both about 1 GB/s. Through ``hf_hub_download`` (behind a proxy) a file keeps a core busy in
    Python (httpx), so there are no more processes than CPUs: the threads of one process would
    share one GIL, while processes add up, and more than the CPUs only take turns (2 cores, 1 GB
    in 4 files: 16 threads in one process 413 MB/s; 1 process 490; 2 processes 580; 4 processes
    515)."""
    return max(1, min(max_workers, files) if direct else min(max_workers, usable_cpus(), files))


def usable_cpus() -> int:
    """The CPUs this process may run on."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return cpus or 1


PR_SET_PDEATHSIG = 1
"""prctl(2) (``linux/prctl.h``): the signal a process gets when the thread that forked it ends."""


def _die_with_parent(parent: int) -> None:
    """A worker is killed with the fetcher (SIGKILL, the OOM killer), so that none goes on
    writing into the folder a re-run cleans up (a unit's stop kills them all anyway)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # gone before the prctl
        os._exit(1)


def by_transfer(remote: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The files Xet stores (the listing gives their ``xet_hash``), then the others.

    huggingface_hub hands a Xet file to ``hf_xet``, which is Rust: it runs its own parallel
    transfers outside the GIL (``HF_XET_HIGH_PERFORMANCE`` widens them), so those files are
    fetched by threads of this process, as ``snapshot_download`` does, and ``hf_xet`` runs once.
    A worker process each would run one ``hf_xet`` apiece, multiplying its connections and
    buffers for nothing. The others (a site mirror, a plain LFS file) go over HTTP in Python,
    one core a stream, so they go to the worker processes."""
    xet: list[str] = []
    plain: list[str] = []
    for name, remote_file in remote.items():
        (xet if getattr(remote_file, "xet_hash", None) else plain).append(name)
    return xet, plain


def _fetch_file(repo: str, commit: str, local_dir: Path, name: str) -> str:
    """One file into ``local_dir``, in a worker process, as ``snapshot_download`` fetches each
    (``hf_hub_download``: nothing to do when the folder's metadata says it is this commit's; else
    written to an ``.incomplete`` file and renamed into place whole). What it raises comes back
    pickled (huggingface_hub 2.4's errors keep their type and message through it)."""
    import huggingface_hub  # an attribute looked up here: tests/faultkit.py replaces it

    huggingface_hub.hf_hub_download(repo, name, revision=commit, local_dir=local_dir)
    return name


TRANSFER_BUFFER = 8 * 1024 * 1024
"""Bytes a direct transfer reads from the socket per call (``readinto``), hashes and writes."""
TRANSFER_ATTEMPTS = 5
"""Tries per file when the connection breaks; each one asks for the rest (``Range``), as
huggingface_hub's ``http_get`` does."""
REDIRECTS = 5
"""The Hub answers an LFS file with a redirect to its CDN; a mirror answers it directly."""
REDIRECT_CODES = (301, 302, 303, 307, 308)


def proxied(url: str) -> bool:
    """Whether the environment sends ``url`` through a proxy (``HTTPS_PROXY``, ``NO_PROXY``...):
    the direct transfer does not speak to proxies, huggingface_hub's httpx does."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass_environment(parts.hostname or "", proxies)


class TransferError(Exception):
    """The server answered, but not with the file (a status other than 200/206)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(status, reason)
        self.status, self.reason = status, reason

    def __str__(self) -> str:
        return f"HTTP {self.status} {self.reason}" if self.status else self.reason


def _connect(url: str) -> tuple[http.client.HTTPConnection, str]:
    from huggingface_hub import constants

    parts = urlsplit(url)
    timeout = constants.HF_HUB_DOWNLOAD_TIMEOUT
    if parts.scheme == "https":  # the system's CAs, and SSL_CERT_FILE / SSL_CERT_DIR
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname or "", parts.port, timeout=timeout,
            context=ssl.create_default_context())  # fmt: skip
    elif parts.scheme == "http":
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    else:
        raise TransferError(0, f"unsupported scheme {parts.scheme!r}")
    return connection, parts.path + (f"?{parts.query}" if parts.query else "")


DEFAULT_PORTS = {"http": 80, "https": 443}


def keeps_token(origin: str, target: str) -> bool:
    """Whether a redirect from ``origin`` to ``target`` may carry the token on: to the same
    scheme, host and port, or from http to https on the same host (as httpx decides). Another
    host (the Hub's CDN, whose URL is signed) or a step down from https to http never gets it."""
    a, b = urlsplit(origin), urlsplit(target)
    if a.hostname != b.hostname:
        return False
    if a.scheme == "http" and b.scheme == "https":
        return True
    return (a.scheme, a.port or DEFAULT_PORTS.get(a.scheme)) == (
        b.scheme,
        b.port or DEFAULT_PORTS.get(b.scheme),
    )


def _open(url: str, headers: dict[str, str], start: int) -> tuple[http.client.HTTPResponse, int]:
    """A response streaming ``url`` from byte ``start`` on, redirects followed, and the byte it
    starts at (0 when the server ignored the ``Range``). The token goes no further than its own
    origin (``keeps_token``): a redirect to the Hub's CDN, whose URL is signed, drops it."""
    asked = {**headers, **({"Range": f"bytes={start}-"} if start else {})}
    for _ in range(REDIRECTS + 1):
        connection, target = _connect(url)
        connection.request("GET", target, headers=asked)
        response = connection.getresponse()
        if response.status in REDIRECT_CODES and response.getheader("Location"):
            following = urljoin(url, response.getheader("Location") or "")
            response.close()
            connection.close()
            if not keeps_token(url, following):
                asked = {k: v for k, v in asked.items() if k.lower() != "authorization"}
            url = following
            continue
        if response.status == 206 and start:
            return response, start
        if response.status == 200:
            return response, 0
        response.close()
        connection.close()
        raise TransferError(response.status, response.reason)
    raise TransferError(310, f"more than {REDIRECTS} redirects")


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        view = view[os.write(fd, view) :]


def _receive(response: http.client.HTTPResponse, fd: int, digest: RunningDigest, buffer: memoryview,
             got: int) -> tuple[int, BaseException | None]:  # fmt: skip
    """Copy the body into ``fd``, hashing as it goes; the bytes written and, if the connection
    broke, why. A write error (a full disk) is raised: no retry mends it."""
    while True:
        try:
            count = response.readinto(buffer)
        except (OSError, http.client.HTTPException) as error:
            return got, error
        if not count:
            return got, None
        digest.update(buffer[:count])
        _write_all(fd, buffer[:count])
        got += count


def _start_over(fd: int, digest: RunningDigest) -> None:
    """Empty the partial file ``fd`` and its running hash, to fetch it from byte 0."""
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    digest.restart()


def _transfer(
    url: str, headers: dict[str, str], fd: int, digest: RunningDigest, size: int, got: int
) -> None:
    """``url`` into ``fd`` and ``digest`` from byte ``got`` to ``size``; a broken connection, a
    refusal or a 5xx is tried again from where it stopped, ``TRANSFER_ATTEMPTS`` times in all,
    waiting a little longer each time; what cannot succeed (401, 403, 404, a certificate refused)
    raises at once."""
    if got >= size:  # an earlier run had it all: asking for more would get a 416
        return
    buffer = memoryview(bytearray(TRANSFER_BUFFER))
    broken: BaseException | None = None
    for attempt in range(TRANSFER_ATTEMPTS):
        if attempt:
            time.sleep(min(2**attempt, 10))
        try:
            response, start = _open(url, headers, got)
        except ssl.SSLCertVerificationError as error:
            raise TransferError(0, f"TLS: {error.verify_message}") from None
        except (OSError, http.client.HTTPException) as error:
            broken = error  # refused, reset, timed out
            continue
        except TransferError as error:
            if error.status < 500 and error.status != 429:
                raise
            broken = error
            continue
        if start != got:  # the server sends it from the start: so do we
            _start_over(fd, digest)
            got = 0
        with response:
            got, broken = _receive(response, fd, digest, buffer, got)
        if got >= size:  # all of it, even if the connection broke after the last byte
            break
    if got != size:
        raise TransferError(0, f"got {got} of {size} bytes ({broken or 'cut short'})")


def _resume(fd: int, digest: RunningDigest, size: int) -> int:
    """Hash what an earlier run left in the partial file ``fd``; the bytes it holds (none when it
    holds more than the file)."""
    have = os.fstat(fd).st_size
    if have > size:
        _start_over(fd, digest)
        return 0
    with open(fd, "rb", closefd=False) as stream:
        digest.read_from(stream)
    os.lseek(fd, have, os.SEEK_SET)
    return have


def _stream_file(repo: str, commit: str, local_dir: Path, name: str, size: int,
                 expected: tuple[str, str]) -> tuple[str, bool]:  # fmt: skip
    """One plain-HTTP file into ``local_dir``, in a worker process: read from the socket into one
    buffer, hashed and written from it, so the file is verified as it lands and never read back.
    huggingface_hub's own transfer (httpx, through ``hf_hub_download``) copies every 64 KiB
    through Python objects, and the fetcher then read the file again to hash it: bench/download.py
    measured that at a third of curl's rate from the same mirror. The bytes gather in a partial
    file (``resumable_partial``) that an earlier, cut-short run may have begun: its bytes are
    hashed and the download goes on after them (``Range``); if the whole then does not match, it
    is fetched once more from the start. Renamed into place only when the checksum matches: a
    mismatch keeps nothing. The name and whether it matched."""
    from huggingface_hub import constants, hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    url = hf_hub_url(repo, name, revision=commit, endpoint=constants.ENDPOINT)
    headers = {**build_hf_headers(), "Accept-Encoding": "identity"}
    algorithm, expected_digest = expected
    partial = resumable_partial(local_dir, name, expected_digest)
    partial.parent.mkdir(parents=True, exist_ok=True)
    digest = RunningDigest(algorithm, size)
    fd = os.open(partial, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        resumed = _resume(fd, digest, size)
        _transfer(url, headers, fd, digest, size, resumed)
        if resumed and digest.hexdigest() != expected_digest:
            _start_over(fd, digest)  # the earlier run's bytes were not the file's
            _transfer(url, headers, fd, digest, size, 0)
    except TransferError as error:  # the partial file stays: the next run goes on from it
        raise TransferError(error.status, f"{name}: {error.reason}") from None
    finally:
        os.close(fd)
    if digest.hexdigest() != expected_digest:
        partial.unlink()
        return name, False
    (local_dir / name).parent.mkdir(parents=True, exist_ok=True)
    os.replace(partial, local_dir / name)
    return name, True


class Downloads:
    """Every file of the run, each in the pool that suits it, and what came of it.

    * Plain-HTTP files (a site mirror, an LFS file on the Hub's CDN) go to the worker processes,
      streamed and hashed at once (``_stream_file``). One already here at the Hub's size is hashed
      instead (cached across runs, see ``Verifier``), and fetched again if it does not match (a
      new revision of the same size).
    * Behind a proxy the environment names (``proxied``) they go to the workers through
      ``hf_hub_download``, whose httpx speaks to proxies; each hashed once it lands.
    * Xet files go to threads of this process (``by_transfer``), then are hashed likewise."""

    def __init__(self, repo: str, commit: str, local_dir: Path, remote: dict[str, Any],
                 verifier: Verifier, pools: tuple[Any, Any, Any]) -> None:  # fmt: skip
        self.repo, self.commit, self.local_dir, self.remote = repo, commit, local_dir, remote
        self.verifier = verifier
        self.workers, self.in_process, self.hashing = pools
        self.pending: dict[Future[Any], tuple[str, str]] = {}
        self.matched: dict[str, bool] = {}

    def stream(self, name: str) -> None:
        remote = self.remote[name]
        future = self.workers.submit(_stream_file, self.repo, self.commit, self.local_dir, name,
                                     remote.size, expected_hash(remote))  # fmt: skip
        self.pending[future] = ("streamed", name)

    def through_hub(self, pool: Any, name: str) -> None:
        future = pool.submit(_fetch_file, self.repo, self.commit, self.local_dir, name)
        self.pending[future] = ("landed", name)

    def check(self, name: str, kind: str) -> None:
        self.pending[self.hashing.submit(self.verifier.check, name)] = (kind, name)

    def begin(self, xet: list[str], plain: list[str], direct: bool) -> None:
        """Every file on its way: streamed, hashed where it is here already, or through
        huggingface_hub."""
        for name in plain:
            if direct and (self.local_dir / name).is_file():
                self.check(name, "present")
            elif direct:
                self.stream(name)
            else:
                self.through_hub(self.workers, name)
        for name in xet:
            self.through_hub(self.in_process, name)

    def settle(self, future: Future[Any]) -> None:
        """What to do once ``future`` is done: record, hash, or fetch again."""
        kind, name = self.pending.pop(future)
        result = future.result()
        if kind == "streamed":
            self.matched[name] = result[1]
            if result[1]:
                self.verifier.record(name)
        elif kind == "landed":
            self.check(name, "checked")
        elif kind == "present" and not result:
            self.stream(name)
        else:
            self.matched[name] = bool(result)


def _download(repo: str, commit: str, local_dir: Path, opts: Options, remote: dict[str, Any],
              verifier: Verifier) -> None:  # fmt: skip
    from huggingface_hub import constants

    # huggingface_hub 2.4's http_get (behind a proxy) asks httpx for 10 MiB chunks
    # (DOWNLOAD_CHUNK_SIZE), which httpx assembles from 64 KiB socket reads through a BytesIO:
    # 1 MiB keeps the copies in cache. The workers inherit it.
    constants.DOWNLOAD_CHUNK_SIZE = TRANSFER_CHUNK
    xet, plain = by_transfer(remote)
    direct = not proxied(constants.ENDPOINT)
    workers = download_processes(opts.max_workers, len(plain), direct)
    progress = Progress(local_dir, {n: f.size for n, f in remote.items()}, verifier,
                        opts.progress_every)  # fmt: skip
    progress.report("download")
    # The workers are forked (the listing and the patched chunk size come with them) while this
    # process has no thread of its own yet: a fork copies no lock another thread holds. The pool
    # forks them all at its first submit (CPython gh-90622, 3.10.5 and later), made here before
    # any thread starts. With no plain file the pool forks nothing.
    fork = multiprocessing.get_context("fork")
    try:
        with (
            ProcessPoolExecutor(
                workers, mp_context=fork, initializer=_die_with_parent, initargs=(os.getpid(),)
            ) as pool,
            ThreadPoolExecutor(opts.max_workers) as in_process,
            ThreadPoolExecutor(min(workers, usable_cpus())) as hashing,
        ):
            run = Downloads(repo, commit, local_dir, remote, verifier, (pool, in_process, hashing))
            if plain:
                pool.submit(os.getpid).result()  # forks the workers, before any thread
            run.begin(xet, plain, direct)
            due = time.monotonic() + progress.every
            try:
                while run.pending:
                    done, _ = wait(run.pending, timeout=max(0.0, due - time.monotonic()),
                                   return_when=FIRST_COMPLETED)  # fmt: skip
                    for future in done:
                        run.settle(future)
                    if time.monotonic() >= due:
                        progress.report("download")
                        due = time.monotonic() + progress.every
            finally:
                for future in run.pending:
                    future.cancel()  # the running ones end: their files are kept or removed
    except BrokenProcessPool:
        # the pool killed the other workers mid-file: what they streamed is gone on with next time
        remove_partials(local_dir, keep=resumable(local_dir, remote))
        raise FetchError(f"{local_dir}: expected every download worker to finish, found one "
                         "killed (the OOM killer, or a signal) — fix: look for it in "
                         "`journalctl -k`, then run again (finished files are kept, unfinished "
                         "ones go on from where they stopped)") from None  # fmt: skip
    finally:
        verifier.save()
    bad = sorted(n for n in remote if not run.matched[n])
    for name in bad:
        (local_dir / name).unlink(missing_ok=True)  # a hub_download's file: not kept either
    if bad:
        raise FetchError(f"{repo}@{commit[:12]}: expected every file to match the Hub's "
                         f"checksum, found {len(bad)} that do not ({', '.join(bad[:3])}), "
                         "not kept — fix: run again; if it repeats, the source serves corrupt "
                         "files: check the mirror's copy against the Hub")  # fmt: skip
    progress.report("verified")


def fetch(repo: str, revision: str, local_dir: Path, opts: Options) -> dict[str, object]:
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    _check_token_file()
    api = HfApi()
    commit = api.repo_info(repo, revision=revision).sha
    if commit is None:
        raise FetchError(f"{repo}@{revision}: expected the endpoint to name a commit, found none — "
                         "fix: point HF_ENDPOINT at the Hub or a metalserve mirror")  # fmt: skip
    stamp = read_stamp(local_dir)
    if local_dir.is_dir():
        remove_partials(local_dir, downloads=False)  # a killed run's unfinished stamp
    chosen = {"allow": opts.allow, "ignore": opts.ignore}
    if (stamp and stamp.get("repo") == repo and stamp.get("commit") == commit
            and {k: stamp.get(k) for k in chosen} == chosen and _intact(local_dir, stamp)):  # fmt: skip
        remove_partials(local_dir)
        return {**stamp, "changed": False}

    listed = [f for f in api.list_repo_tree(repo, revision=commit, recursive=True)
              if isinstance(f, RepoFile)]  # fmt: skip
    remote = {f.path: f for f in _selected(repo, commit, listed, opts)}
    sizes = {name: f.size for name, f in remote.items()}
    local_dir.mkdir(parents=True, exist_ok=True)
    kept = resumable(local_dir, remote)
    remove_partials(local_dir, keep=kept)  # another revision's, huggingface_hub's
    (local_dir / STAMP).unlink(missing_ok=True)  # no stamp may outlive the files it describes
    for name in wrong_sized(local_dir, sizes):
        (local_dir / name).unlink()  # cut short or damaged: fetched again whole
    begun = sum(path.stat().st_size for path in kept if path.is_file())  # goes on from there
    needed = int(max(bytes_to_fetch(local_dir, sizes) - begun, 0) * opts.headroom)
    free = shutil.disk_usage(local_dir).free
    if free < needed:
        raise FetchError(f"{local_dir}: expected {needed} free bytes for {repo}@{commit[:12]} "
                         f"({len(remote)} files), found {free} — fix: free space or choose "
                         "another models directory")  # fmt: skip
    verifier = Verifier(local_dir, remote)
    try:
        _download(repo, commit, local_dir, opts, remote, verifier)
        stamp = {"repo": repo, "revision": revision, "commit": commit, "files": len(remote),
                 "bytes": sum(sizes.values()), "verified": verifier.verified(), "sizes": sizes,
                 **chosen}  # fmt: skip
        _write_stamp(local_dir, stamp)
    except OSError as error:
        if error.errno not in DISK_FULL:
            raise
        remove_partials(local_dir)
        still = int(bytes_to_fetch(local_dir, sizes) * opts.headroom)
        free = shutil.disk_usage(local_dir).free
        raise FetchError(f"{local_dir}: expected room for {repo}@{commit[:12]}, found the disk "
                         f"full ({os.strerror(error.errno)}) — fix: free space at {local_dir} "
                         f"until {gigabytes(still)} GB are free ({gigabytes(free, up=False)} GB now) or "
                         "choose another models directory, then run again (partial files "
                         "removed)") from None  # fmt: skip
    return {**stamp, "changed": True}


def _operator_line(error: BaseException, args: argparse.Namespace) -> str | None:
    """One line for an error the operator can fix; None for a bug (its traceback is kept)."""
    if isinstance(error, FetchError):
        return f"error: {error}"
    if isinstance(error, TransferError) or type(error).__module__.startswith(
        ("huggingface_hub", "httpx")
    ):
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
        found = (str(error).strip().splitlines() or [type(error).__name__])[0]
        return (f"error: {args.repo}@{args.revision}: expected {endpoint} to serve it, found "
                f"{found} — fix: check the repo id, revision, token file and HF_ENDPOINT")  # fmt: skip
    if isinstance(error, OSError):
        where = error.filename or args.local_dir
        return (f"error: {where}: expected to write {args.repo} there, found "
                f"{error.strerror or error} — fix: check the directory's owner, mode and disk, "
                "then run again")  # fmt: skip
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True, help="ORG/NAME on the Hub or the mirror")
    parser.add_argument("--revision", default="main")
    parser.add_argument("--local-dir", required=True, type=Path)
    parser.add_argument("--allow", action="append", default=[],
                        help="fetch only files matching (fnmatch); the first names the weights")  # fmt: skip
    parser.add_argument("--ignore", action="append", default=[], help="leave out matching files")
    parser.add_argument("--max-workers", type=int, default=8,
                        help="files fetched at once, one per process, at most one per CPU")  # fmt: skip
    parser.add_argument("--progress-every", type=float, default=10.0, help="seconds between lines")
    parser.add_argument("--headroom", type=float, default=1.05,
                        help="free space asked for, as a multiple of the bytes still to fetch")  # fmt: skip
    args = parser.parse_args(argv)
    opts = Options(args.allow, args.ignore, args.max_workers, args.progress_every, args.headroom)
    try:
        fetched = fetch(args.repo, args.revision, args.local_dir, opts)
        summary = json.dumps({k: v for k, v in fetched.items() if k != "sizes"})
    except Exception as error:
        line = _operator_line(error, args)
        if line is None:
            report_failure(args.local_dir, f"error: {type(error).__name__}: {error}")
            raise
        report_failure(args.local_dir, line)
        parser.exit(EXIT_OPERATOR_ERROR, f"{line}\n")
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
