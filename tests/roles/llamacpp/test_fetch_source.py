"""The llama.cpp source fetch, run for real against a local git repository and file URLs.

The pin is a short commit id; a git server will not fetch an abbreviated id by name, so the
fetch must resolve it locally and export exactly that commit's tree.
"""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

from metalserve.io.modelfiles import checkpoint_for_spec
from metalserve.plan import LlamaCppBuildPlan, plan_alone
from metalserve.sources import LlamaCppSource
from metalserve.spec import host_spec
from roles.llamacpp import fetch_command


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def _repository(tmp_path: Path) -> tuple[Path, str]:
    """A repository whose pinned commit is the older of two; returns it and the pin."""
    repo = tmp_path / "llama.cpp"
    repo.mkdir()
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "t@example.invalid")
    _git(repo, "config", "user.name", "t")
    (repo / "VERSION").write_text("pinned\n")
    _git(repo, "add", "VERSION")
    _git(repo, "commit", "-q", "-m", "pinned")
    pin = _git(repo, "rev-parse", "--short=9", "HEAD")
    (repo / "VERSION").write_text("newer\n")
    _git(repo, "commit", "-q", "-am", "newer")
    return repo, pin


def _build(tmp_path: Path, source: LlamaCppSource, version: str) -> LlamaCppBuildPlan:
    spec = host_spec(
        "h",
        {
            "profile": "sandbox-cpu",
            "model": {"repo_id": "local/tiny"},
            "engine": {"name": "llamacpp"},
        },
    )
    plan = plan_alone(spec, checkpoint_for_spec(spec))
    assert plan.llamacpp is not None
    return plan.llamacpp.model_copy(
        update={
            "source": source,
            "version": version,
            "source_tarball": str(tmp_path / "src" / f"llama.cpp-{version}.tar.gz"),
        }
    )


def test_a_git_source_exports_exactly_the_pinned_short_commit(tmp_path: Path) -> None:
    repo, pin = _repository(tmp_path)
    build = _build(tmp_path, LlamaCppSource(kind="git", url=f"file://{repo}"), pin)
    subprocess.run(["sh", "-c", fetch_command(build)], check=True, capture_output=True)
    with tarfile.open(build.source_tarball) as tar:
        names = tar.getnames()
        version = tar.extractfile("llama.cpp/VERSION")
        assert version is not None and version.read() == b"pinned\n"
    assert not any("/.git" in name for name in names)
    assert not Path(build.source_tarball + ".partial").exists()


def test_a_source_without_url_fetches_upstream_at_the_pin() -> None:
    spec = host_spec(
        "h",
        {
            "profile": "rtxpro6000-4",
            "model": {"repo_id": "zai-org/GLM-4.5-Air"},
            "engine": {"name": "llamacpp", "quant": "Q4_K_M"},
        },
    )
    build = plan_alone(spec, checkpoint_for_spec(spec)).llamacpp
    assert build is not None
    assert (
        build.source.url == f"https://github.com/ggml-org/llama.cpp/archive/{build.version}.tar.gz"
    )
    assert "None" not in fetch_command(build)
