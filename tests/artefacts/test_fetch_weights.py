"""roles/weights/files/fetch_weights.py, the host-side weights step, against a real mirror."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import http.server
import importlib.util
import json
import math
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from metalserve.artefacts.tinymodel import tiny_moe_checkpoint
from metalserve.checkpoint import WeightFormat
from metalserve.mirror.hub import running_mirror
from metalserve.mirror.index import publish
from metalserve.weights import allow_patterns, ignore_patterns
from tests.faultkit import (
    DOWNLOAD_FILLS_THE_DISK,
    DOWNLOAD_KILLED_MID_SHARD,
    FETCH_WEIGHTS,
    PARTIAL_WRITES,
    TRACEBACK,
    WORKER_KILLED_MID_SHARD,
    WORKERS_STUCK,
    host_script_argv,
    run_host_script,
)

REPO = "metalserve/tiny-moe"
SHARD = "model-00002-of-00002.safetensors"
STAMP = ".metalserve-weights.json"


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[str]:
    publish(tmp_path / "hub", REPO, tiny_moe_checkpoint(seed=0).path)
    with running_mirror(tmp_path / "hub") as url:
        yield url


def _env(endpoint: str, token: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    env.pop("HF_TOKEN", None)
    if token is not None:
        env["HF_TOKEN_PATH"] = str(token)
    return env


def _fetch(endpoint: str, local_dir: Path, *extra: str, token: Path | None = None,
           repo: str = REPO, inject: str = "", env: dict[str, str] | None = None,
           ) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """The fetcher run as the unit runs it; ``env`` adds to the unit's environment."""
    args = ["--repo", repo, "--local-dir", str(local_dir), *extra]
    return run_host_script(FETCH_WEIGHTS, args, {**_env(endpoint, token), **(env or {})}, inject)


def summary(result: subprocess.CompletedProcess[str]) -> dict:
    """The script's last stdout line: its JSON summary (progress lines come before it)."""
    return json.loads(result.stdout.splitlines()[-1])


def test_it_downloads_verifies_and_stamps_then_does_nothing_the_second_time(
    endpoint: str, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("hf_not_a_real_token\n")
    token.chmod(0o600)
    local = tmp_path / "models" / "tiny"

    first = _fetch(endpoint, local, token=token)
    assert first.returncode == 0, first.stderr
    done = summary(first)
    assert (done["changed"], done["files"], done["verified"]) == (True, 9, 9)
    stamp = json.loads((local / ".metalserve-weights.json").read_text())
    assert stamp["commit"] == done["commit"]

    second = _fetch(endpoint, local, token=token)
    assert summary(second)["changed"] is False


def test_the_token_never_appears_in_argv_and_a_loose_token_file_is_refused(
    endpoint: str, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("hf_secret\n")
    token.chmod(0o644)

    result = _fetch(endpoint, tmp_path / "m", token=token)

    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: {token}: expected mode 0600, found 0644 — fix: chmod 600 {token}"
    )
    assert "hf_secret" not in result.stderr + result.stdout


def test_short_free_space_stops_before_any_download(endpoint: str, tmp_path: Path) -> None:
    result = _fetch(endpoint, tmp_path / "m", "--headroom", "1e12")
    assert result.returncode == 2
    assert "free bytes for metalserve/tiny-moe" in result.stderr
    assert not any((tmp_path / "m").glob("*.safetensors"))


def test_a_missing_repo_is_one_line_not_a_traceback(endpoint: str, tmp_path: Path) -> None:
    result = _fetch(endpoint, tmp_path / "m", repo="acme/absent")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: acme/absent@main: expected {endpoint} to serve it")


def test_a_mirror_guarded_by_a_token_serves_the_host_that_holds_it(tmp_path: Path) -> None:
    """The sandbox path: the mirror's ``--token-file`` is the host's HF_TOKEN_PATH credential."""
    publish(tmp_path / "hub", REPO, tiny_moe_checkpoint(seed=0).path)
    token = tmp_path / "token"
    token.touch(mode=0o600)
    token.write_text("hub-mirror-token\n")
    other = tmp_path / "other"
    other.touch(mode=0o600)
    other.write_text("not-the-mirror-token\n")

    with running_mirror(tmp_path / "hub", token_file=token) as url:
        refused = _fetch(url, tmp_path / "refused", token=other)
        fetched = _fetch(url, tmp_path / "fetched", token=token)

    assert refused.returncode == 2
    assert "401 Unauthorized" in refused.stderr and "not-the-mirror-token" not in refused.stderr
    assert not any((tmp_path / "refused").glob("*.safetensors"))
    assert fetched.returncode == 0, fetched.stderr
    assert summary(fetched)["verified"] == 9


def test_the_stamp_records_every_file_size(endpoint: str, tmp_path: Path) -> None:
    local = tmp_path / "m"
    assert _fetch(endpoint, local).returncode == 0
    stamp = json.loads((local / ".metalserve-weights.json").read_text())
    on_disk = {p.name: p.stat().st_size for p in local.iterdir() if p.is_file()}
    assert stamp["sizes"] == {k: v for k, v in on_disk.items() if k != ".metalserve-weights.json"}
    assert sum(stamp["sizes"].values()) == stamp["bytes"] and len(stamp["sizes"]) == 9


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_a_shard_cut_short_or_deleted_after_the_stamp_is_fetched_again(
    endpoint: str, tmp_path: Path, damage: str
) -> None:
    local = tmp_path / "m"
    assert _fetch(endpoint, local).returncode == 0
    size = (local / SHARD).stat().st_size
    if damage == "truncate":
        os.truncate(local / SHARD, size // 3)
    else:
        (local / SHARD).unlink()

    again = _fetch(endpoint, local)

    assert again.returncode == 0, again.stderr
    assert summary(again)["changed"] is True
    assert (local / SHARD).stat().st_size == size
    assert json.loads((local / ".metalserve-weights.json").read_text())["sizes"][SHARD] == size


def test_a_full_disk_is_one_line_with_the_room_needed_and_leaves_nothing_taken_as_complete(
    endpoint: str, tmp_path: Path
) -> None:
    local = tmp_path / "m"

    full = _fetch(endpoint, local, inject=DOWNLOAD_FILLS_THE_DISK)

    assert full.returncode == 2
    assert TRACEBACK not in full.stderr and full.stderr.count("\n") == 1, full.stderr
    assert full.stderr.startswith(f"error: {local}: expected room for {REPO}@")
    assert "found the disk full (No space left on device)" in full.stderr
    # every byte of the repo (the mirror serves the checkpoint less its manifest.json) is still
    # to fetch, times the default 5 % headroom, in GB rounded up to a tenth
    checkpoint = tiny_moe_checkpoint(seed=0).path
    total = sum(f.stat().st_size for f in checkpoint.iterdir() if f.name != "manifest.json")
    needed = math.ceil(total * 1.05 / 1e8) / 10
    assert f"fix: free space at {local} until {needed:.1f} GB are free (" in full.stderr
    assert not list(local.rglob("*.incomplete")), "the partial download is removed"
    assert not (local / ".metalserve-weights.json").exists()


def test_a_stamp_left_half_written_by_a_killed_run_is_cleaned_up(
    endpoint: str, tmp_path: Path
) -> None:
    local = tmp_path / "m"
    assert _fetch(endpoint, local).returncode == 0
    orphan = local / ".metalserve-weights.json.k1ll3d"
    orphan.write_text('{"repo": "metalserve/tiny-mo')

    assert summary(_fetch(endpoint, local))["changed"] is False
    assert not orphan.exists()


# --------------------------------------------------------------------------- at scale

SAFETENSORS = WeightFormat.SAFETENSORS
PROGRESS_LINE = re.compile(
    r"weights: (?P<done>[\d.]+) of (?P<total>[\d.]+) GB \((?P<percent>[\d.]+) %\), "
    r"(?P<rate>[\d.]+) MB/s, (?P<files_done>\d+) of (?P<files>\d+) files, (?P<verified>\d+) verified"
)
GET = re.compile(r'"GET /metalserve/tiny-moe/resolve/[0-9a-f]+/(\S+) HTTP/1\.1"')


def selection(fmt: WeightFormat = SAFETENSORS, gguf_file: str | None = None) -> list[str]:
    """The script's flags for the files the core selects, as the role passes them."""
    return [*(a for p in allow_patterns(fmt, gguf_file) for a in ("--allow", p)),
            *(a for p in ignore_patterns(fmt) for a in ("--ignore", p))]  # fmt: skip


def served() -> dict[str, int]:
    """What the mirror serves of the tiny checkpoint (all but its manifest), with sizes."""
    source = tiny_moe_checkpoint(seed=0).path
    return {p.name: p.stat().st_size for p in source.iterdir() if p.name != "manifest.json"}


def whole_files(local: Path) -> set[str]:
    return {n for n, size in served().items() if (local / n).is_file()
            and (local / n).stat().st_size == size}  # fmt: skip


def test_only_the_files_the_core_selects_are_fetched_and_the_stamp_names_the_choice(
    endpoint: str, tmp_path: Path
) -> None:
    local = tmp_path / "m"
    result = _fetch(endpoint, local, *selection())
    assert result.returncode == 0, result.stderr
    wanted = set(served()) - {"README.md"}  # the model card is not part of the model
    assert {p.name for p in local.iterdir() if p.is_file()} == wanted | {STAMP}
    stamp = json.loads((local / STAMP).read_text())
    assert (stamp["allow"], stamp["ignore"]) == (list(allow_patterns(SAFETENSORS)), ["original/*"])
    assert (summary(result)["files"], summary(result)["verified"]) == (8, 8)
    # asked for every file instead, the stamp no longer vouches: the model card is fetched
    everything = _fetch(endpoint, local)
    assert summary(everything)["changed"] is True and (local / "README.md").is_file()


def test_a_repo_without_the_weights_the_core_expects_is_one_line(
    endpoint: str, tmp_path: Path
) -> None:
    result = _fetch(endpoint, tmp_path / "m", *selection(WeightFormat.GGUF, "model-Q4_K_M.gguf"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "expected files matching model-Q4_K_M.gguf, found none among its 9 files" in (
        result.stderr
    )
    assert not (tmp_path / "m" / STAMP).exists()


def test_progress_gives_bytes_total_rate_and_files_and_never_the_token(
    endpoint: str, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("hf_progress_secret\n")
    token.chmod(0o600)
    local = tmp_path / "m"
    result = _fetch(endpoint, local, *selection(), "--progress-every", "0.01", token=token)
    assert result.returncode == 0, result.stderr

    lines = [PROGRESS_LINE.fullmatch(x) for x in result.stdout.splitlines()[:-1]]
    assert lines and all(lines), result.stdout
    total = sum(size for name, size in served().items() if name != "README.md")
    first, last = lines[0], lines[-1]
    assert first and last and (first["files_done"], first["files"]) == ("0", "8")
    assert (last["percent"], last["files_done"], last["verified"]) == ("100.0", "8", "8")
    progress = json.loads((local / ".cache/metalserve-progress.json").read_text())
    assert (progress["phase"], progress["done"], progress["total"]) == ("verified", total, total)
    written = [result.stdout, result.stderr, *(p.read_text(errors="replace")
               for p in local.rglob("*") if p.is_file() and p.stat().st_size < 100_000)]  # fmt: skip
    assert not [text for text in written if "hf_progress_secret" in text]


def test_a_killed_download_rerun_fetches_only_the_unfinished_files_the_cut_one_from_its_bytes(
    tmp_path: Path,
) -> None:
    publish(tmp_path / "hub", REPO, tiny_moe_checkpoint(seed=0).path)
    local, log = tmp_path / "m", tmp_path / "requests"
    with running_mirror(tmp_path / "hub") as url:
        killed = _fetch(url, local, "--max-workers", "1", inject=DOWNLOAD_KILLED_MID_SHARD)
        before = whole_files(local)
        orphans = [p.stat().st_size for p in local.rglob("*.incomplete")]
        again = _fetch(url, local, "--max-workers", "1", inject=REQUESTS_LOGGED,
                       env={"REQUESTS_LOG": str(log)})  # fmt: skip

    assert killed.returncode == -signal.SIGKILL
    assert "model-00001-of-00002.safetensors" in before and SHARD not in before
    assert orphans == [65536], "the cut shard's bytes are kept"
    assert again.returncode == 0, again.stderr
    asked = dict(requests_logged(log))
    assert set(asked) == set(served()) - before
    assert asked.pop(SHARD) == "bytes=65536-" and set(asked.values()) <= {"-"}
    assert summary(again)["verified"] == len(served()) and whole_files(local) == set(served())
    assert not list(local.rglob("*.incomplete")), "the partial file became the shard"


def test_a_partial_file_a_run_finished_but_did_not_rename_is_put_in_place_without_a_request(
    endpoint: str, tmp_path: Path
) -> None:
    """Killed between its last byte and the rename (seen when the pool's other worker is
    terminated): the next run has nothing left to ask for, and asking from past the end would
    be refused (416)."""
    local, log = tmp_path / "m", tmp_path / "requests"
    assert _fetch(endpoint, local).returncode == 0
    whole = (local / SHARD).read_bytes()
    digest = hashlib.sha256(whole).hexdigest()
    (local / SHARD).rename(local / f".cache/huggingface/download/{SHARD}.{digest}.incomplete")
    (local / STAMP).unlink()
    again = _fetch(endpoint, local, inject=REQUESTS_LOGGED, env={"REQUESTS_LOG": str(log)})

    assert again.returncode == 0, again.stderr
    assert not log.exists() or SHARD not in log.read_text()
    assert (local / SHARD).read_bytes() == whole and not list(local.rglob("*.incomplete"))
    assert summary(again)["verified"] == len(served())


def test_the_free_space_asked_for_leaves_out_the_bytes_a_cut_run_already_holds(
    endpoint: str, tmp_path: Path
) -> None:
    local = tmp_path / "m"
    _fetch(endpoint, local, "--max-workers", "1", inject=DOWNLOAD_KILLED_MID_SHARD)
    (orphan,) = local.rglob("*.incomplete")
    short = _fetch(endpoint, local, "--headroom", "1e6")

    left = sum(size for name, size in served().items() if name not in whole_files(local))
    needed = int((left - orphan.stat().st_size) * 1e6)
    assert short.returncode == 2 and f"expected {needed} free bytes for {REPO}@" in short.stderr
    assert orphan.exists(), "refusing to start keeps what the cut run holds"


def test_bytes_a_cut_run_left_that_are_not_the_files_are_fetched_again_from_the_start(
    endpoint: str, tmp_path: Path
) -> None:
    """A partial file damaged since (or by a bad disk): the checksum of the whole catches it."""
    local, log = tmp_path / "m", tmp_path / "requests"
    killed = _fetch(endpoint, local, "--max-workers", "1", inject=DOWNLOAD_KILLED_MID_SHARD)
    (orphan,) = local.rglob("*.incomplete")
    orphan.write_bytes(bytes(65536))  # not the shard's first 64 KiB
    again = _fetch(endpoint, local, "--max-workers", "1", inject=REQUESTS_LOGGED,
                   env={"REQUESTS_LOG": str(log)})  # fmt: skip

    assert killed.returncode == -signal.SIGKILL
    assert again.returncode == 0, again.stderr
    assert [r for r in requests_logged(log) if r[0] == SHARD] == [[SHARD, "bytes=65536-"],
                                                                  [SHARD, "-"]]  # fmt: skip
    assert summary(again)["verified"] == len(served()) and whole_files(local) == set(served())


def test_a_worker_killed_mid_shard_is_one_line_and_the_rerun_fetches_only_the_unfinished_files(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The OOM killer takes one download worker: the fetcher says so and stops, the others'
    finished files stay."""
    publish(tmp_path / "hub", REPO, tiny_moe_checkpoint(seed=0).path)
    local = tmp_path / "m"
    with running_mirror(tmp_path / "hub", verbose=True) as url:
        killed = _fetch(url, local, "--max-workers", "2", inject=WORKER_KILLED_MID_SHARD)
        before = whole_files(local)
        capfd.readouterr()
        again = _fetch(url, local, "--max-workers", "2")
        fetched = GET.findall(capfd.readouterr().err)

    assert killed.returncode == 2, killed.stderr
    assert TRACEBACK not in killed.stderr and killed.stderr.count("\n") == 1, killed.stderr
    assert killed.stderr.startswith(
        f"error: {local}: expected every download worker to finish, found one killed"
    )
    # the Hub lists the repo's files by path, and they are fetched in that order: the shard is
    # the fifth, taken by a worker only once it finished what it took before (4 files between at
    # most 2 workers, the other one's may be cut short)
    assert SHARD not in before and len(before) >= 3, before
    assert not list(local.rglob("*.incomplete")), "partial files are removed"
    assert again.returncode == 0, again.stderr
    assert sorted(fetched) == sorted(set(served()) - before)
    assert summary(again)["verified"] == len(served())


def _running(pid: int) -> bool:
    """The process exists and is not a zombie (an orphan's reaper may be slow)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def test_the_files_download_in_max_workers_processes_and_a_killed_fetcher_takes_them_along(
    endpoint: str, tmp_path: Path
) -> None:
    """Two workers asked for: two processes, each holding a file (a direct stream costs little
    CPU, so their number is not the CPUs'); a kill -9 of the fetcher leaves none of them
    downloading into the folder."""
    pids = tmp_path / "workers"
    env = {**_env(endpoint), "STUCK_WORKERS": str(pids)}
    args = ["--repo", REPO, "--local-dir", str(tmp_path / "m"), "--max-workers", "2"]
    fetcher = subprocess.Popen(host_script_argv(FETCH_WEIGHTS, args, WORKERS_STUCK), env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 30
        while len(workers) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
            workers = {int(pid) for pid in pids.read_text().split()} if pids.exists() else set()
        time.sleep(1)  # a third would show by now
        workers = {int(pid) for pid in pids.read_text().split()}
        assert len(workers) == 2 and fetcher.pid not in workers
        assert fetcher.poll() is None
    finally:
        fetcher.kill()
        fetcher.wait()
    deadline = time.monotonic() + 10
    while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [pid for pid in workers if _running(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, "workers outlived the fetcher"


def test_a_gguf_repository_gives_every_part_of_the_chosen_split_and_nothing_else(
    tmp_path: Path,
) -> None:
    """Seed 000's 4090 path: a repository holding several quants, the chosen one in parts."""
    repo = tmp_path / "gguf-repo"
    parts = [f"Q4_K_M/GLM-Q4_K_M-0000{i}-of-00003.gguf" for i in range(1, 4)]
    others = ["Q8_0/GLM-Q8_0-00001-of-00002.gguf", "Q8_0/GLM-Q8_0-00002-of-00002.gguf",
              "GLM-Q2_K.gguf", "README.md"]  # fmt: skip
    for i, name in enumerate(parts + others):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_bytes(bytes([i]) * (1000 + i))
    publish(tmp_path / "hub", "acme/glm-gguf", repo)
    local = tmp_path / "m"
    with running_mirror(tmp_path / "hub") as url:
        result = _fetch(url, local, *selection(WeightFormat.GGUF, parts[0]), repo="acme/glm-gguf")
    assert result.returncode == 0, result.stderr
    got = sorted(p.relative_to(local).as_posix() for p in local.rglob("*.gguf"))
    assert got == parts and summary(result)["verified"] == 3


XET_STORED_SHARDS = (
    PARTIAL_WRITES
    + """
import huggingface_hub
import huggingface_hub.hf_api as hf_api

_list = hf_api.HfApi.list_repo_tree
_download = huggingface_hub.hf_hub_download
_named = set()

def _listed_as_xet(self, *args, **kwargs):
    # as the Hub lists a file it stores with Xet: with its xetHash
    for item in _list(self, *args, **kwargs):
        if item.path.endswith(".safetensors"):
            item.xet_hash = "0" * 64
        yield item

def _record(filename):
    with open(os.environ["DOWNLOADED_BY"], "a") as log:
        log.write(f"{filename} {os.getpid()}\\n")

def _recorded(repo_id, filename, **kwargs):
    _record(filename)
    return _download(repo_id, filename, **kwargs)

def _streamed(fd, data):
    # a worker's first write into .cache/huggingface/download/<file>.<uuid>.incomplete
    partial = _partial(fd)
    if partial and partial not in _named:
        _named.add(partial)
        _record(partial.split("/.cache/huggingface/download/", 1)[1].rsplit(".", 2)[0])
    return _write(fd, data)

hf_api.HfApi.list_repo_tree = _listed_as_xet
huggingface_hub.hf_hub_download = _recorded
os.write = _streamed
"""
)


def test_files_the_hub_stores_with_xet_are_fetched_by_the_fetcher_itself_the_rest_by_workers(
    endpoint: str, tmp_path: Path
) -> None:
    """hf_xet transfers in parallel itself: one of it per fetcher, not one per worker process."""
    log = tmp_path / "downloaded-by"
    env = {**_env(endpoint), "DOWNLOADED_BY": str(log)}
    argv = host_script_argv(FETCH_WEIGHTS, ["--repo", REPO, "--local-dir", str(tmp_path / "m"),
                                            "--max-workers", "4"], XET_STORED_SHARDS)  # fmt: skip
    fetcher = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)  # fmt: skip
    out, err = fetcher.communicate(timeout=120)

    assert fetcher.returncode == 0, err
    by = dict(line.split() for line in log.read_text().splitlines())
    xet = {name for name in served() if name.endswith(".safetensors")}
    assert set(by) == set(served()) and xet
    assert {int(by[name]) for name in xet} == {fetcher.pid}
    assert fetcher.pid not in {int(pid) for name, pid in by.items() if name not in xet}
    assert json.loads(out.splitlines()[-1])["verified"] == len(served())


WRONG_CHECKSUM = """
import huggingface_hub.hf_api as hf_api

_list = hf_api.HfApi.list_repo_tree

def _listed_wrong(self, *args, **kwargs):
    # the listing promises another sha256 for the shard than the bytes the mirror serves
    for item in _list(self, *args, **kwargs):
        if item.path == SHARD:
            item.lfs.sha256 = "0" * 64
        yield item

hf_api.HfApi.list_repo_tree = _listed_wrong
"""


def test_a_file_that_does_not_match_its_checksum_is_not_kept_and_is_named_in_one_line(
    endpoint: str, tmp_path: Path
) -> None:
    local = tmp_path / "m"
    bad = _fetch(endpoint, local, inject=f"SHARD = {SHARD!r}\n" + WRONG_CHECKSUM)

    assert bad.returncode == 2, bad.stderr
    assert TRACEBACK not in bad.stderr and bad.stderr.count("\n") == 1, bad.stderr
    assert "expected every file to match the Hub's checksum, found 1 that do not" in bad.stderr
    assert f"({SHARD}), not kept" in bad.stderr
    assert whole_files(local) == set(served()) - {SHARD}
    assert not list(local.rglob("*.incomplete")) and not (local / STAMP).exists()


def test_a_file_here_at_the_right_size_but_other_bytes_is_fetched_again(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A new revision whose shard kept its size: the bytes decide, not the size."""
    publish(tmp_path / "hub", REPO, tiny_moe_checkpoint(seed=0).path)
    local = tmp_path / "m"
    with running_mirror(tmp_path / "hub", verbose=True) as url:
        assert _fetch(url, local).returncode == 0
        original = (local / SHARD).read_bytes()
        (local / SHARD).write_bytes(bytes(len(original)))  # same size, other bytes
        (local / STAMP).unlink()  # as a new revision leaves it: no stamp for this commit
        capfd.readouterr()
        again = _fetch(url, local)
        fetched = GET.findall(capfd.readouterr().err)

    assert again.returncode == 0, again.stderr
    assert fetched == [SHARD]
    assert (local / SHARD).read_bytes() == original
    assert summary(again)["verified"] == len(served())


REQUESTS_LOGGED = """
import http.client, os

_request = http.client.HTTPConnection.request

def _logged(self, method, url, body=None, headers={}, **kwargs):
    # every file a worker asks for, and from which byte (its Range, or -)
    with open(os.environ["REQUESTS_LOG"], "a") as log:
        log.write(f"{url.rsplit('/', 1)[1]} {headers.get('Range', '-')}\\n")
    return _request(self, method, url, body, headers, **kwargs)

http.client.HTTPConnection.request = _logged
"""


def requests_logged(log: Path) -> list[list[str]]:
    """What ``REQUESTS_LOGGED`` wrote: [file, Range or -] per request."""
    return [line.split() for line in log.read_text().splitlines()]


CONNECTION_RESET_ONCE = (
    REQUESTS_LOGGED
    + """
_readinto = http.client.HTTPResponse.readinto
_cut = []

def _reset_once(self, buffer):
    # the first response of more than 64 KiB: 64 KiB arrive, then the peer resets the connection
    if not _cut and (self.length or 0) > 65536:
        _cut.append(self)
        return _readinto(self, memoryview(buffer)[:65536])
    if _cut and _cut[0] is self:
        raise ConnectionResetError(104, "Connection reset by peer")
    return _readinto(self, buffer)

http.client.HTTPResponse.readinto = _reset_once
"""
)


def test_a_connection_reset_mid_file_goes_on_from_where_it_stopped(
    endpoint: str, tmp_path: Path
) -> None:
    local, log = tmp_path / "m", tmp_path / "requests"
    run = _fetch(endpoint, local, "--max-workers", "1", inject=CONNECTION_RESET_ONCE,
                 env={"REQUESTS_LOG": str(log)})  # fmt: skip

    assert run.returncode == 0, run.stderr
    requests = requests_logged(log)
    again = [r for r in requests if r[1] != "-"]
    # one file asked for again, from the byte the cut left it at, and nothing else twice
    assert len(again) == 1 and again[0][1] == "bytes=65536-", requests
    assert served()[again[0][0]] > 65536
    assert len(requests) == len(served()) + 1
    assert summary(run)["verified"] == len(served())
    assert whole_files(local) == set(served())


def _fetcher_module() -> Any:
    """The fetcher's functions, for the tests of its HTTP parts alone."""
    spec = importlib.util.spec_from_file_location("fetch_weights_under_test", FETCH_WEIGHTS)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def _serving(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_a_redirect_to_another_host_never_carries_the_token_there() -> None:
    """The Hub answers an LFS file with a redirect to its CDN: the token stays with the Hub."""
    seen: dict[str, str | None] = {}

    class Redirecting(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            port = self.server.server_address[1]
            seen[f"{self.headers['Host'].split(':')[0]}{self.path}"] = self.headers["Authorization"]
            targets = {"/same": "/file", "/cdn": f"http://localhost:{port}/file?signed=1"}
            if self.path in targets:
                self.send_response(302)
                self.send_header("Location", targets[self.path])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"bytes")

        def log_message(self, *args: Any) -> None:
            pass

    fetcher = _fetcher_module()
    with _serving(Redirecting) as port:
        for path in ("/same", "/cdn"):
            response, start = fetcher._open(f"http://127.0.0.1:{port}{path}",
                                            {"Authorization": "Bearer hf_redirect_secret"}, 0)  # fmt: skip
            with response:
                assert (response.read(), start) == (b"bytes", 0)

    assert seen == {"127.0.0.1/same": "Bearer hf_redirect_secret",
                    "127.0.0.1/file": "Bearer hf_redirect_secret",
                    "127.0.0.1/cdn": "Bearer hf_redirect_secret",
                    "localhost/file?signed=1": None}  # fmt: skip


@pytest.mark.parametrize(
    ("origin", "target", "kept"),
    [
        ("http://10.0.0.5:8090/a", "http://10.0.0.5:8090/b", True),
        ("https://huggingface.co/a", "https://huggingface.co:443/b", True),
        ("http://huggingface.co/a", "https://huggingface.co/b", True),
        ("https://huggingface.co/a", "http://huggingface.co/b", False),
        ("https://huggingface.co/a", "https://cas-bridge.xethub.hf.co/b?X-Amz-Signature=1", False),
        ("http://10.0.0.5:8090/a", "http://10.0.0.5:8091/b", False),
    ],
)
def test_the_token_follows_a_redirect_only_to_its_own_origin_or_up_to_https(
    origin: str, target: str, kept: bool
) -> None:
    assert _fetcher_module().keeps_token(origin, target) is kept


@pytest.mark.parametrize(
    ("proxies", "url", "expected"),
    [
        ({}, "http://10.0.0.5:8090", False),
        ({"HTTP_PROXY": "http://proxy:3128"}, "http://10.0.0.5:8090", True),
        (
            {"HTTP_PROXY": "http://proxy:3128", "NO_PROXY": "10.0.0.5"},
            "http://10.0.0.5:8090",
            False,
        ),
        ({"HTTP_PROXY": "http://proxy:3128", "NO_PROXY": ".site"}, "http://hub.site:8090", False),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "http://10.0.0.5:8090", False),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "https://huggingface.co", True),
        ({"ALL_PROXY": "http://proxy:3128"}, "https://huggingface.co", True),
    ],
)
def test_files_go_through_huggingface_hub_where_the_environment_names_a_proxy(
    monkeypatch: pytest.MonkeyPatch, proxies: dict[str, str], url: str, expected: bool
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name, value in proxies.items():
        monkeypatch.setenv(name, value)
    assert _fetcher_module().proxied(url) is expected


def test_behind_a_proxy_every_file_comes_through_it_and_is_verified(
    endpoint: str, tmp_path: Path
) -> None:
    """huggingface_hub's httpx speaks to the proxy; the direct transfer would not."""
    asked: list[str] = []

    class Forwarding(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            asked.append(self.path)
            target = urlsplit(self.path)
            upstream = http.client.HTTPConnection(target.hostname or "", target.port, timeout=30)
            path = target.path + (f"?{target.query}" if target.query else "")
            upstream.request("GET", path, headers={k: v for k, v in self.headers.items()
                                                   if k.lower() not in ("host", "proxy-connection")})  # fmt: skip
            answer = upstream.getresponse()
            body = answer.read()
            self.send_response(answer.status)
            for name, value in answer.getheaders():
                if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            upstream.close()

        do_HEAD = do_GET  # noqa: N815 - http.server's name

        def log_message(self, *args: Any) -> None:
            pass

    local = tmp_path / "m"
    with _serving(Forwarding) as port:
        run = _fetch(
            endpoint, local, env={"HTTP_PROXY": f"http://127.0.0.1:{port}", "NO_PROXY": ""}
        )

    assert run.returncode == 0, run.stderr
    through = {unquote(urlsplit(url).path.rsplit("/", 1)[1]) for url in asked if "/resolve/" in url}
    assert through == set(served())
    assert summary(run)["verified"] == len(served()) and whole_files(local) == set(served())
