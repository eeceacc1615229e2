"""Running commands on the control host, with failures turned into one operator line."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from metalserve.sandbox.errors import SandboxError


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def run(
    argv: Sequence[str | Path],
    *,
    what: str,
    fix: str,
    timeout: float = 600,
    check: bool = True,
    input_text: str | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `argv`, capture its output, and raise one `SandboxError` line when it fails.

    Example::

        run(["ip", "netns", "add", "ms-ctl"], what="create netns ms-ctl",
            fix="run `metalserve sandbox down` and retry")
    """
    args = [str(a) for a in argv]
    try:
        proc = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input_text,
            check=False,
            cwd=cwd,
        )
    except subprocess.TimeoutExpired as err:
        raise SandboxError(
            f"{what}: expected to finish within {timeout:.0f} s; found it still running — fix: {fix}"
        ) from err
    if check and proc.returncode != 0:
        raise SandboxError(
            f"{what}: expected exit 0; found exit {proc.returncode} "
            f"({_last_line(proc.stderr or proc.stdout)}) — fix: {fix}"
        )
    return proc


def mounts_under(root: Path) -> list[str]:
    """Mount points at or under `root` in this mount namespace, outermost first."""
    prefix = str(root)
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return found


def remove_tree(root: Path) -> None:
    """Unmount whatever is mounted under `root` (innermost first), then delete it.

    A crashed debootstrap leaves /proc and /sys mounted inside its tree; deleting through those
    would walk the live kernel trees.
    """
    for point in reversed(mounts_under(root)):
        run(
            ["umount", "-l", point],
            what=f"unmount {point}",
            fix=f"unmount {point} by hand",
            check=False,
        )
    if mounts_under(root):
        raise SandboxError(
            f"remove {root}: expected no mounts under it; found {mounts_under(root)[0]} — fix: unmount it by hand"
        )
    if root.exists():
        shutil.rmtree(root)


@contextmanager
def staging_dir(final: Path) -> Iterator[Path]:
    """A scratch directory beside `final` for building it atomically; always removed afterwards.

    Build inside it, then `os.replace` the result onto `final`: an interrupted build leaves only
    a scratch directory that the next attempt deletes, never a half-made `final`.
    """
    work = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    remove_tree(work)
    work.mkdir(parents=True)
    try:
        yield work
    finally:
        remove_tree(work)
