"""The Hub mirror, driven by the real huggingface_hub client over 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from huggingface_hub import HfApi, RepoFile, snapshot_download
from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

from metalserve.artefacts.tinymodel import tiny_moe_checkpoint
from metalserve.mirror.hub import mirror_group, parse_bind, running_mirror
from metalserve.mirror.index import INDEX_FILE, MirrorError, publish

REPO = "metalserve/tiny-moe"


@pytest.fixture
def mirror_root(tmp_path: Path) -> Path:
    root = tmp_path / "hub"
    root.mkdir()
    publish(root, REPO, tiny_moe_checkpoint(seed=0).path)
    return root


@pytest.fixture
def endpoint(mirror_root: Path) -> Iterator[str]:
    with running_mirror(mirror_root) as url:
        yield url


def _download(endpoint: str, into: Path, revision: str | None = None) -> Path:
    return Path(
        snapshot_download(REPO, endpoint=endpoint, local_dir=into, token=False, revision=revision)
    )


def test_snapshot_download_fetches_every_file_and_checksums_verify(
    endpoint: str, tmp_path: Path
) -> None:
    local = _download(endpoint, tmp_path / "model")

    source = tiny_moe_checkpoint(seed=0).path
    served = sorted(p.name for p in source.iterdir() if p.name != "manifest.json")
    assert sorted(p.name for p in local.iterdir() if p.is_file()) == served
    for name in served:
        assert (local / name).read_bytes() == (source / name).read_bytes()
    check = HfApi(endpoint=endpoint).verify_repo_checksums(REPO, local_dir=local, token=False)
    assert (check.checked_count, check.mismatches, check.missing_paths) == (len(served), [], [])


def test_hf_cache_verify_passes_on_a_download_and_fails_on_a_tampered_one(
    endpoint: str, tmp_path: Path
) -> None:
    cache = tmp_path / "hf-cache"
    snapshot_download(REPO, endpoint=endpoint, cache_dir=cache, token=False)
    hf = [
        str(Path(sys.executable).parent / "hf"),
        "cache",
        "verify",
        REPO,
        "--cache-dir",
        str(cache),
    ]
    env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HUB_DISABLE_TELEMETRY": "1"}

    assert subprocess.run(hf, env=env, capture_output=True, check=False).returncode == 0

    (shard,) = cache.glob("models--*/snapshots/*/model-00002-of-00002.safetensors")
    shard.resolve().write_bytes(b"\0" * shard.stat().st_size)
    failed = subprocess.run(hf, env=env, capture_output=True, text=True, check=False)
    assert failed.returncode != 0
    assert "model-00002-of-00002.safetensors" in failed.stdout + failed.stderr


def test_weights_are_lfs_files_whose_etag_is_their_sha256(endpoint: str) -> None:
    source = tiny_moe_checkpoint(seed=0)
    tree = HfApi(endpoint=endpoint).list_repo_tree(REPO, recursive=True, token=False)
    by_path = {entry.path: entry for entry in tree if isinstance(entry, RepoFile)}
    shard = by_path["model-00001-of-00002.safetensors"]
    manifest = json.loads((source.path / "manifest.json").read_text())["files"]

    assert shard.lfs is not None
    assert shard.lfs.sha256 == manifest["model-00001-of-00002.safetensors"]["sha256"]
    assert by_path["config.json"].lfs is None


def test_a_range_request_returns_exactly_that_slice(endpoint: str, mirror_root: Path) -> None:
    info = HfApi(endpoint=endpoint).model_info(REPO, token=False)
    url = f"{endpoint}/{REPO}/resolve/{info.sha}/tokenizer.model"
    request = urllib.request.Request(url, headers={"Range": "bytes=100-199"})
    with urllib.request.urlopen(request) as response:
        body = response.read()
        status, content_range = response.status, response.headers["Content-Range"]

    whole = (mirror_root / REPO / "tokenizer.model").read_bytes()
    assert (status, body) == (206, whole[100:200])
    assert content_range == f"bytes 100-199/{len(whole)}"


def test_unknown_repos_and_revisions_raise_the_hub_clients_own_errors(
    endpoint: str, tmp_path: Path
) -> None:
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download("acme/absent", endpoint=endpoint, local_dir=tmp_path / "a", token=False)
    with pytest.raises(RevisionNotFoundError):
        _download(endpoint, tmp_path / "b", revision="v9")


def test_the_revision_changes_exactly_when_the_content_changes(
    mirror_root: Path, tmp_path: Path
) -> None:
    source = tiny_moe_checkpoint(seed=0).path
    first = publish(mirror_root, REPO, source).sha
    assert publish(mirror_root, REPO, source).sha == first

    edited = tmp_path / "edited"
    edited.mkdir()
    for path in source.iterdir():
        (edited / path.name).write_bytes(path.read_bytes())
    (edited / "README.md").write_text("changed\n")
    assert publish(mirror_root, REPO, edited).sha != first


def test_add_keeps_each_files_sha256_in_the_repos_own_index(mirror_root: Path) -> None:
    manifest = json.loads((tiny_moe_checkpoint(seed=0).path / "manifest.json").read_text())
    index = json.loads((mirror_root / REPO / INDEX_FILE).read_text())
    recorded = {entry["path"]: entry["sha256"] for entry in index["files"]}
    assert recorded == {name: item["sha256"] for name, item in manifest["files"].items()}


def test_cli_add_without_source_indexes_a_folder_copied_in_place(tmp_path: Path) -> None:
    """Large checkpoints are rsync'd into the mirror, then indexed where they lie."""
    hub, source = tmp_path / "hub", tiny_moe_checkpoint(seed=0).path
    shutil.copytree(
        source, hub / "acme" / "rsynced", ignore=shutil.ignore_patterns("manifest.json")
    )

    added = CliRunner().invoke(mirror_group, ["add", str(hub), "acme/rsynced"])

    assert added.exit_code == 0, added.output
    assert "acme/rsynced: 9 files, revision " in added.output
    with running_mirror(hub) as url:
        local = Path(snapshot_download("acme/rsynced", endpoint=url, local_dir=tmp_path / "dl",
                                       token=False))  # fmt: skip
    assert (local / "config.json").read_bytes() == (source / "config.json").read_bytes()


def test_a_second_download_into_the_same_folder_fetches_nothing(
    endpoint: str, tmp_path: Path
) -> None:
    local = _download(endpoint, tmp_path / "model")
    before = {p: p.stat().st_mtime_ns for p in local.iterdir() if p.is_file()}
    _download(endpoint, local)
    assert {p: p.stat().st_mtime_ns for p in local.iterdir() if p.is_file()} == before


@pytest.mark.parametrize("bind", ["8090", "localhost", "127.0.0.1:99999", ":80"])
def test_a_bad_bind_address_is_one_line_for_the_operator(bind: str) -> None:
    with pytest.raises(MirrorError, match="expected HOST:PORT"):
        parse_bind(bind)


def test_cli_add_then_serve_refuses_a_bad_bind_with_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    added = runner.invoke(
        mirror_group, ["add", str(tmp_path / "hub"), REPO, str(tiny_moe_checkpoint(0).path)]
    )
    assert added.exit_code == 0, added.output
    assert f"{REPO}: 9 files, revision " in added.output

    served = runner.invoke(mirror_group, ["serve", str(tmp_path / "hub"), "--bind", "nowhere"])
    assert served.exit_code == 2
    assert "expected HOST:PORT" in served.output
    assert "Traceback" not in served.output
