"""The local flat apt repository: .debs fetched once on the control host, served to the hosts.

Dependencies are resolved by apt itself inside a scratch copy of the golden rootfs (nspawn
without `-b` shares the control host's network), so the repository holds exactly what a host
booted from that rootfs needs. `dpkg-scanpackages` indexes it; a `Release` file with checksums
makes it a repository apt accepts with `[trusted=yes]`.
"""

from __future__ import annotations

import email.utils
import gzip
import hashlib
import os
import shutil
import time
from pathlib import Path

from metalserve.sandbox.errors import SandboxError
from metalserve.sandbox.recipe import AptRepoRecipe, RootfsRecipe
from metalserve.sandbox.rootfs import Progress, extract_tree
from metalserve.sandbox.system import run, staging_dir

INDEX_FILES = ("Packages", "Packages.gz")


SANDBOX_ORIGIN = ("metalserve-sandbox", "packages for metalserve sandbox hosts (no internet)")


def release_text(
    repo: Path,
    suite: str,
    now: float | None = None,
    origin: tuple[str, str] = SANDBOX_ORIGIN,
) -> str:
    """A flat repository's Release file: what apt checks the index files against. ``origin``:
    its Origin/Label and its Description."""
    name, description = origin
    lines = [
        f"Origin: {name}",
        f"Label: {name}",
        f"Suite: {suite}",
        f"Codename: {suite}",
        f"Date: {email.utils.formatdate(now, usegmt=True)}",
        f"Description: {description}",
        "SHA256:",
    ]
    for name in INDEX_FILES:
        data = (repo / name).read_bytes()
        lines.append(f" {hashlib.sha256(data).hexdigest()} {len(data)} {name}")
    return "\n".join(lines) + "\n"


def index_flat_repo(repo: Path, suite: str, origin: tuple[str, str] = SANDBOX_ORIGIN) -> None:
    """Write the ``Packages``, ``Packages.gz`` and ``Release`` files of the .debs in ``repo``
    (every version of a package kept, so apt pins have something to choose between)."""
    index = run(
        ["dpkg-scanpackages", "--multiversion", ".", "/dev/null"],
        what="index the local apt repository",
        fix="install dpkg-dev, then retry",
        timeout=300,
        cwd=repo,
    ).stdout
    (repo / "Packages").write_text(index)
    (repo / "Packages.gz").write_bytes(gzip.compress(index.encode(), mtime=0))
    (repo / "Release").write_text(release_text(repo, suite, origin=origin))


def build_apt_repo(
    recipe: AptRepoRecipe,
    rootfs: RootfsRecipe,
    tarball: Path,
    repo: Path,
    progress: Progress = print,
) -> Path:
    """Return the cached repository for `recipe`, downloading and indexing it first if needed."""
    if (repo / "Release").is_file():
        progress(f"apt repo: cached {repo}")
        return repo
    started = time.monotonic()
    progress(f"apt repo: downloading {', '.join(recipe.packages)} with dependencies (once)")
    repo.parent.mkdir(parents=True, exist_ok=True)
    with staging_dir(repo) as work:
        tree, debs, out = work / "tree", work / "debs", work / repo.name
        extract_tree(tarball, tree)
        debs.mkdir()
        out.mkdir()
        packages = " ".join(recipe.packages)
        run(
            [
                "systemd-nspawn", "--quiet", "--register=no", "--keep-unit",
                f"--directory={tree}", "--resolv-conf=copy-host", "--pipe",
                f"--bind={debs}:/var/cache/apt/archives",
                "--", "sh", "-ec",
                f"apt-get -q update && apt-get -q -y install --download-only {packages}",
            ],
            what="download packages for the local apt repository",
            fix="check that the Debian mirror is reachable from this machine, then retry",
            timeout=1800,
        )  # fmt: skip
        fetched = sorted(debs.glob("*.deb"))
        if not fetched:
            raise SandboxError(
                f"apt repo: expected .debs for {packages}; found none downloaded — fix: check the mirror, then retry"
            )
        for deb in fetched:
            shutil.move(deb, out / deb.name)
        index_flat_repo(out, rootfs.suite)
        os.replace(out, repo)
    size = sum(p.stat().st_size for p in repo.iterdir()) / 1e6
    progress(
        f"apt repo: {len(fetched)} packages, {size:.0f} MB in {time.monotonic() - started:.1f} s"
    )
    return repo
