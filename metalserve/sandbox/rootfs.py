"""The golden Debian root tree: built once with debootstrap, cached as `.tar.zst`, extracted per host."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from metalserve.sandbox.errors import SandboxError
from metalserve.sandbox.recipe import RootfsRecipe
from metalserve.sandbox.system import run, staging_dir

Progress = Callable[[str], None]

# Host keys, machine id and apt leftovers are per host or per build: never baked into the tarball.
_SCRUB = (
    "etc/ssh/ssh_host_*",
    "var/cache/apt/archives/*.deb",
    "var/lib/apt/lists/*_Packages",
    "var/lib/apt/lists/*_InRelease",
)


def build_rootfs(recipe: RootfsRecipe, tarball: Path, progress: Progress = print) -> Path:
    """Return the cached tarball for `recipe`, running debootstrap first when it is not cached.

    Atomic: the tree is built and packed under temporary names and renamed last, so an
    interrupted build is never taken as a cached one.
    """
    if tarball.is_file():
        progress(f"rootfs: cached {tarball}")
        return tarball
    tarball.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    progress(f"rootfs: debootstrap {recipe.suite} ({recipe.variant}; a few minutes, once)")
    with staging_dir(tarball) as work:
        tree = work / "tree"
        run(
            [
                "debootstrap",
                f"--variant={recipe.variant}",
                f"--arch={recipe.arch}",
                f"--include={','.join(recipe.packages)}",
                recipe.suite,
                tree,
                recipe.mirror,
            ],
            what=f"debootstrap {recipe.suite} from {recipe.mirror}",
            fix="check that the Debian mirror is reachable, then retry",
            timeout=1800,
        )
        _scrub(tree)
        pack_tree(tree, work / tarball.name)
        os.replace(work / tarball.name, tarball)
    progress(f"rootfs: built {tarball} in {time.monotonic() - started:.1f} s")
    return tarball


def _scrub(tree: Path) -> None:
    for pattern in _SCRUB:
        for path in tree.glob(pattern):
            path.unlink()
    # An empty machine-id makes systemd treat each boot as a first boot with a fresh id.
    (tree / "etc/machine-id").write_text("")


def pack_tree(tree: Path, tarball: Path) -> None:
    """tar | zstd, keeping numeric owners, so extraction needs no user database."""
    with open(tarball, "wb") as out:
        tar = subprocess.Popen(
            ["tar", "-C", str(tree), "--numeric-owner", "--xattrs", "-cf", "-", "."],
            stdout=subprocess.PIPE,
        )
        assert tar.stdout is not None
        zstd = subprocess.run(
            ["zstd", "-q", "-3", "-T0"], stdin=tar.stdout, stdout=out, check=False
        )
        tar.stdout.close()
        if tar.wait() != 0 or zstd.returncode != 0:
            raise SandboxError(
                f"pack {tree}: expected tar and zstd to succeed; found exit {tar.returncode}/{zstd.returncode} "
                "— fix: check free disk space, then retry"
            )


def extract_tree(tarball: Path, dest: Path) -> None:
    """A fresh copy of the golden tree at `dest` (which must not exist yet)."""
    dest.mkdir(parents=True)
    zstd = subprocess.Popen(["zstd", "-q", "-dc", str(tarball)], stdout=subprocess.PIPE)
    assert zstd.stdout is not None
    tar = subprocess.run(
        ["tar", "-C", str(dest), "--numeric-owner", "--xattrs", "-xf", "-"],
        stdin=zstd.stdout,
        check=False,
        capture_output=True,
    )
    zstd.stdout.close()
    if zstd.wait() != 0 or tar.returncode != 0:
        raise SandboxError(
            f"extract {tarball}: expected zstd and tar to succeed; found exit {zstd.returncode}/{tar.returncode} "
            f"— fix: delete {tarball} so it is rebuilt, then retry"
        )


def golden_tree(tarball: Path, progress: Progress = print) -> Path:
    """The tarball extracted once beside it, read-only by convention: every host's overlay lower layer.

    Hosts never write here (their changes land in their own upper layer), so one extraction
    serves every `up` of the same tarball. Atomic: extracted under a temporary name, renamed last.
    """
    tree = tarball.with_name(tarball.name.removesuffix(".tar.zst") + ".tree")
    if tree.is_dir():
        return tree
    started = time.monotonic()
    with staging_dir(tree) as work:
        extract_tree(tarball, work / "tree")
        os.replace(work / "tree", tree)
    progress(f"rootfs: extracted {tree} in {time.monotonic() - started:.1f} s (once per tarball)")
    return tree


def mount_overlay(lower: Path, machine_dir: Path) -> Path:
    """A fresh copy-on-write root for one host: `lower` below, the host's own upper dir on top.

    Returns the merged root. Each host starts from the untouched golden tree and its writes stay
    in `machine_dir/upper`, so `down` deletes only what the host changed.
    """
    upper, work, root = machine_dir / "upper", machine_dir / "work", machine_dir / "root"
    for path in (upper, work, root):
        path.mkdir(parents=True)
    run(
        [
            "mount",
            "-t",
            "overlay",
            "overlay",
            "-o",
            f"lowerdir={lower},upperdir={upper},workdir={work}",
            root,
        ],
        what=f"mount the root of {machine_dir.name}",
        fix="check that the kernel supports overlayfs (modprobe overlay), then retry",
    )
    return root
