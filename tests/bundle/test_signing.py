"""The bundle's apt repository is signed with a key the build makes, and apt accepts it with
``signed-by`` that key, and refuses it under any other."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from metalserve.bundle.apt import _options, index_and_sign
from metalserve.bundle.signing import signing_key, stop_agent, verify_release
from metalserve.sandbox.system import run

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("gpg", "gpgv", "dpkg-deb", "dpkg-scanpackages", "apt-get")),
    reason="needs gpg, gpgv, dpkg-dev and apt (apt-get install gnupg dpkg-dev)",
)
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")


def _deb(folder: Path) -> None:
    """A minimal valid package, built with dpkg-deb."""
    tree = folder.parent / "pkg"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        "Package: metalserve-probe\nVersion: 1.0\nArchitecture: all\n"
        "Maintainer: test <t@example.invalid>\nDescription: a test package\n"
    )
    run(["dpkg-deb", "--build", "--root-owner-group", tree, folder / "metalserve-probe_1.0_all.deb"],
        what="build a test package", fix="install dpkg")  # fmt: skip


@pytest.fixture
def signed_repo(tmp_path: Path) -> tuple[Path, Path]:
    repo = tmp_path / "bundle" / "apt" / "debian12-amd64"
    repo.mkdir(parents=True)
    _deb(repo)
    key = signing_key(tmp_path / "gnupg")
    try:
        keyring = tmp_path / "bundle" / "keys" / "metalserve-bundle.gpg"
        key.export(keyring)
        index_and_sign(repo, key, "bookworm")
    finally:
        stop_agent(key.home)
    return repo, keyring


def test_the_release_is_signed_by_the_exported_key(signed_repo: tuple[Path, Path]) -> None:
    repo, keyring = signed_repo
    assert verify_release(repo, keyring) is None
    assert {"InRelease", "Release.gpg", "Packages", "Release"} <= {p.name for p in repo.iterdir()}


def test_an_edited_release_no_longer_verifies(signed_repo: tuple[Path, Path]) -> None:
    repo, keyring = signed_repo
    text = (repo / "InRelease").read_text()
    (repo / "InRelease").write_text(text.replace("Suite: bookworm", "Suite: trixie"))
    assert verify_release(repo, keyring) is not None


def test_the_key_is_made_once_and_kept(tmp_path: Path) -> None:
    first = signing_key(tmp_path / "gnupg")
    again = signing_key(tmp_path / "gnupg")
    stop_agent(first.home)
    assert first.fingerprint == again.fingerprint


def _apt_update(root: Path, line: str) -> int:
    for sub in ("lists/partial", "archives/partial", "preferences.d", "trusted.gpg.d"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "status").touch()
    (root / "sources.list").write_text(line)
    done = run(["apt-get", *_options(root, "amd64"), "-q", "update"], what="apt-get update",
               fix="", check=False)  # fmt: skip
    return done.returncode if "is not signed" not in done.stdout + done.stderr else 100


def test_apt_reads_the_repository_with_its_key_and_refuses_it_without(
    signed_repo: tuple[Path, Path], tmp_path: Path
) -> None:
    repo, keyring = signed_repo
    good = _apt_update(tmp_path / "apt-good", f"deb [signed-by={keyring}] file:{repo} ./\n")
    assert good == 0
    if DEBIAN_KEYRING.is_file():
        other = f"deb [signed-by={DEBIAN_KEYRING}] file:{repo} ./\n"
        assert _apt_update(tmp_path / "apt-other", other) != 0
