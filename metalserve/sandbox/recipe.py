"""What the sandbox is built from, and the cache keys derived from it (pure).

A cached artefact is named by a hash of everything it was built from, so changing the suite, a
package list or the recipe version builds a new one instead of reusing a stale one.

Example::

    >>> ROOTFS.cache_key() == RootfsRecipe().cache_key()
    True
    >>> ROOTFS.cache_key() != RootfsRecipe(packages=("systemd",)).cache_key()
    True
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from metalserve.catalog.packages import FIREWALL, PUSH, RELEASES, packages_for
from metalserve.sandbox.errors import SandboxError

# Bump when the build steps change in a way the fields below do not show.
RECIPE_VERSION = 1
KEY_LENGTH = 16


def _digest(parts: dict[str, object]) -> str:
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:KEY_LENGTH]


class RootfsRecipe(BaseModel):
    """The golden Debian root tree every host starts from.

    Minimal on purpose: build tools are not pre-baked, the deploy installs them from the local
    apt repository, as it would on an air-gapped site. Package set: what a booted systemd host
    reached by SSH needs (debootstrap --variant=minbase --include=..., 323 MB on Debian 12).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    suite: str = "bookworm"
    variant: str = "minbase"
    arch: str = "amd64"
    mirror: str = "http://deb.debian.org/debian"
    packages: tuple[str, ...] = (
        "systemd",
        "systemd-sysv",
        "dbus",
        "openssh-server",
        "python3",
        "iproute2",
        "sudo",
        "ca-certificates",
    )

    def cache_key(self) -> str:
        return _digest(
            {
                "suite": self.suite,
                "variant": self.variant,
                "arch": self.arch,
                "packages": sorted(self.packages),
                "recipe": RECIPE_VERSION,
            }
        )

    def tarball_name(self) -> str:
        return f"{self.suite}-{self.variant}-{self.cache_key()}.tar.zst"

    @property
    def host_os(self) -> dict[str, str]:
        """``metalserve.os`` of a host booted from this tree, so a bundle is built for its release
        and architecture only.

        >>> ROOTFS.host_os
        {'release': 'debian12', 'arch': 'amd64'}
        """
        for release, facts in RELEASES.items():
            if facts.suite == self.suite:
                return {"release": release, "arch": self.arch}
        raise SandboxError(
            f"rootfs suite: expected one of {sorted(f.suite for f in RELEASES.values())}, found "
            f"{self.suite!r} — fix: build the sandbox from a release metalserve supports"
        )


# Beyond what the llama.cpp serve path installs (the core's catalogue): git for a git llama.cpp
# source, pip for ad-hoc checks on a host.
OPERATOR_EXTRAS: tuple[str, ...] = ("python3-pip", "git")


class AptRepoRecipe(BaseModel):
    """The local flat apt repository hosts use as their only package source.

    Holds the .debs the llama.cpp path needs (and rsync: the demo's wheelhouse and source are
    bundle sources, pushed with ``roles.push``), with their dependencies (and recommends, so that a
    plain `apt-get install` resolves too) resolved against the golden rootfs.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    packages: tuple[str, ...] = tuple(
        dict.fromkeys((*packages_for("llamacpp"), *FIREWALL, *PUSH, *OPERATOR_EXTRAS))
    )

    def cache_key(self, rootfs: RootfsRecipe) -> str:
        return _digest(
            {
                "rootfs": rootfs.cache_key(),
                "packages": sorted(self.packages),
                "recipe": RECIPE_VERSION,
            }
        )

    def ccache_key(self, rootfs: RootfsRecipe) -> str:
        """Key of the shared ccache dir: the compiler comes from this repository, so they share it."""
        return self.cache_key(rootfs)


ROOTFS = RootfsRecipe()
APT_REPO = AptRepoRecipe()


class CachePaths(BaseModel):
    """Where cached artefacts live under `${METALSERVE_CACHE:-~/.cache/metalserve}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    root: Path

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> CachePaths:
        env = dict(os.environ) if env is None else env
        root = env.get("METALSERVE_CACHE") or str(
            Path(env.get("HOME", "/root")) / ".cache/metalserve"
        )
        return cls(root=Path(root))

    def rootfs_tarball(self, recipe: RootfsRecipe) -> Path:
        return self.root / "rootfs" / recipe.tarball_name()

    def apt_repo(self, repo: AptRepoRecipe, rootfs: RootfsRecipe) -> Path:
        return self.root / "apt" / f"{rootfs.suite}-{repo.cache_key(rootfs)}"

    def ccache_dir(self, repo: AptRepoRecipe, rootfs: RootfsRecipe) -> Path:
        return self.root / "ccache" / f"{rootfs.suite}-{repo.ccache_key(rootfs)}"

    def made_from(
        self, rootfs_tarball: Path, ccache_dir: Path, rootfs: RootfsRecipe, repo: AptRepoRecipe
    ) -> bool:
        """A sandbox whose state names these paths was made from these recipes: its root tree
        and its apt repository (keyed like its ccache) are today's. One made before a package
        joined the repository would stop a deploy at "Unable to locate package"."""
        return (rootfs_tarball, ccache_dir) == (
            self.rootfs_tarball(rootfs),
            self.ccache_dir(repo, rootfs),
        )
