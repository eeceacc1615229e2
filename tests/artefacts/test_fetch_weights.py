"""roles/weights/files/fetch_weights.py, the host-side weights step, against a real mirror."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from metalserve.artefacts.tinymodel import tiny_moe_checkpoint
from metalserve.mirror.hub import running_mirror
from metalserve.mirror.index import publish

SCRIPT = Path(__file__).resolve().parents[2] / "roles" / "weights" / "files" / "fetch_weights.py"
REPO = "metalserve/tiny-moe"


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[str]:
    publish(tmp_path / "hub", REPO, tiny_moe_checkpoint(seed=0).path)
    with running_mirror(tmp_path / "hub") as url:
        yield url


def _fetch(endpoint: str, local_dir: Path, *extra: str, token: Path | None = None,
           repo: str = REPO) -> subprocess.CompletedProcess[str]:  # fmt: skip
    env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    env.pop("HF_TOKEN", None)
    if token is not None:
        env["HF_TOKEN_PATH"] = str(token)
    command = [sys.executable, str(SCRIPT), "--repo", repo, "--local-dir", str(local_dir), *extra]
    return subprocess.run(command, env=env, capture_output=True, text=True, check=False)


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
