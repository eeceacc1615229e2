"""roles/weights/files/fetch_weights.py, the host-side weights step, against a real mirror."""

from __future__ import annotations

import json
import math
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from metalserve.artefacts.tinymodel import tiny_moe_checkpoint
from metalserve.mirror.hub import running_mirror
from metalserve.mirror.index import publish
from tests.faultkit import DOWNLOAD_FILLS_THE_DISK, FETCH_WEIGHTS, TRACEBACK, run_host_script

REPO = "metalserve/tiny-moe"
SHARD = "model-00002-of-00002.safetensors"


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[str]:
    publish(tmp_path / "hub", REPO, tiny_moe_checkpoint(seed=0).path)
    with running_mirror(tmp_path / "hub") as url:
        yield url


def _fetch(endpoint: str, local_dir: Path, *extra: str, token: Path | None = None,
           repo: str = REPO, inject: str = "") -> subprocess.CompletedProcess[str]:  # fmt: skip
    env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    env.pop("HF_TOKEN", None)
    if token is not None:
        env["HF_TOKEN_PATH"] = str(token)
    args = ["--repo", repo, "--local-dir", str(local_dir), *extra]
    return run_host_script(FETCH_WEIGHTS, args, env, inject)


def test_it_downloads_verifies_and_stamps_then_does_nothing_the_second_time(
    endpoint: str, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("hf_not_a_real_token\n")
    token.chmod(0o600)
    local = tmp_path / "models" / "tiny"

    first = _fetch(endpoint, local, token=token)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert (summary["changed"], summary["files"], summary["verified"]) == (True, 9, 9)
    stamp = json.loads((local / ".metalserve-weights.json").read_text())
    assert stamp["commit"] == summary["commit"]

    second = _fetch(endpoint, local, token=token)
    assert json.loads(second.stdout)["changed"] is False


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
    assert json.loads(fetched.stdout)["verified"] == 9


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
    assert json.loads(again.stdout)["changed"] is True
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

    assert json.loads(_fetch(endpoint, local).stdout)["changed"] is False
    assert not orphan.exists()
