"""Cache keys: a change in what an artefact is built from gives it a new name."""

from __future__ import annotations

from pathlib import Path

from metalserve.catalog.packages import FIREWALL, PUSH, packages_for
from metalserve.sandbox.recipe import APT_REPO, ROOTFS, AptRepoRecipe, CachePaths, RootfsRecipe


def test_the_rootfs_key_is_stable_and_ignores_package_order() -> None:
    reordered = RootfsRecipe(packages=tuple(reversed(ROOTFS.packages)))
    assert reordered.cache_key() == ROOTFS.cache_key()
    assert len(ROOTFS.cache_key()) == 16


def test_the_rootfs_key_changes_with_suite_and_packages() -> None:
    keys = {
        ROOTFS.cache_key(),
        RootfsRecipe(suite="trixie").cache_key(),
        RootfsRecipe(packages=(*ROOTFS.packages, "vim")).cache_key(),
        RootfsRecipe(variant="buildd").cache_key(),
    }
    assert len(keys) == 4


def test_the_mirror_does_not_change_the_rootfs_key() -> None:
    assert RootfsRecipe(mirror="http://mirror.example/debian").cache_key() == ROOTFS.cache_key()


def test_the_apt_repo_key_follows_its_packages_and_the_rootfs_it_was_resolved_against() -> None:
    assert AptRepoRecipe(packages=("cmake",)).cache_key(ROOTFS) != APT_REPO.cache_key(ROOTFS)
    assert APT_REPO.cache_key(RootfsRecipe(suite="trixie")) != APT_REPO.cache_key(ROOTFS)


def test_the_rootfs_is_minimal_and_build_tools_come_from_the_apt_repo() -> None:
    assert "build-essential" not in ROOTFS.packages
    expected = set(packages_for("llamacpp")) | set(FIREWALL) | set(PUSH) | {"python3-pip", "git"}
    assert expected == set(APT_REPO.packages)
    assert {"systemd", "openssh-server", "python3"} <= set(ROOTFS.packages)


def test_cache_paths_live_under_metalserve_cache() -> None:
    cache = CachePaths.from_env({"METALSERVE_CACHE": "/c", "HOME": "/h"})
    assert cache.rootfs_tarball(ROOTFS) == Path(
        f"/c/rootfs/bookworm-minbase-{ROOTFS.cache_key()}.tar.zst"
    )
    assert cache.apt_repo(APT_REPO, ROOTFS).parent == Path("/c/apt")
    assert cache.ccache_dir(APT_REPO, ROOTFS).parent == Path("/c/ccache")
    assert CachePaths.from_env({"HOME": "/h"}).root == Path("/h/.cache/metalserve")


def test_a_sandbox_made_before_a_package_joined_its_repository_is_not_taken_as_current() -> None:
    """The demo replaces such a sandbox: its hosts' apt repository lacks the new package (rsync
    joined it with the bundle push, and an old sandbox stopped the demo at "Unable to locate
    package rsync")."""
    cache = CachePaths(root=Path("/c"))
    tarball, ccache = cache.rootfs_tarball(ROOTFS), cache.ccache_dir(APT_REPO, ROOTFS)
    older = AptRepoRecipe(packages=tuple(p for p in APT_REPO.packages if p != "rsync"))

    assert "rsync" in APT_REPO.packages
    assert cache.made_from(tarball, ccache, ROOTFS, APT_REPO)
    assert not cache.made_from(tarball, cache.ccache_dir(older, ROOTFS), ROOTFS, APT_REPO)
    other_root = RootfsRecipe(suite="trixie")
    assert not cache.made_from(cache.rootfs_tarball(other_root), ccache, ROOTFS, APT_REPO)
