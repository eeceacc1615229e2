"""A cgroup of its own for every sandbox host.

With `--keep-unit` and no systemd as PID 1, systemd-nspawn puts the container into a `payload`
child of the cgroup it was *started in*. Hosts started from one process would share that cgroup,
so one host's systemd would manage (and kill) another's units: seen here as
`systemd-remount-fs.service: Failed to attach to cgroup ... No such file or directory` (219/CGROUP)
when 8 hosts booted together. Starting each nspawn in its own cgroup keeps the hosts apart.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from metalserve.sandbox.layout import SandboxLayout

# How deep `down` looks for host cgroups left by an earlier `up` (their parent is our own cgroup).
_SEARCH_DEPTH = 4


def _hierarchies() -> dict[str, Path]:
    """Mount points of the hierarchies systemd tracks processes in: `name=systemd` and cgroup2."""
    found: dict[str, Path] = {}
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            left, right = line.split(" - ", 1)
            fstype, _source, options = right.split()[:3]
            point = Path(left.split()[4])
            if fstype == "cgroup2":
                found.setdefault("", point)
            elif fstype == "cgroup" and "name=systemd" in options.split(","):
                found["name=systemd"] = point
    return found


def _own_paths() -> dict[str, str]:
    """This process's cgroup path in each hierarchy, keyed like `_hierarchies` ('' for cgroup2)."""
    paths = {}
    with open("/proc/self/cgroup", encoding="utf-8") as fh:
        for line in fh:
            _id, controllers, path = line.rstrip("\n").split(":", 2)
            paths[controllers] = path
    return paths


def host_cgroups(name: str) -> list[Path]:
    """The cgroup directories host `name` runs in, one per tracked hierarchy (created if missing)."""
    own = _own_paths()
    dirs = []
    for key, mount in _hierarchies().items():
        if key not in own:
            continue
        cgroup = mount / own[key].lstrip("/") / name
        cgroup.mkdir(exist_ok=True)
        dirs.append(cgroup)
    return dirs


def enter(cgroups: list[Path]) -> None:
    """Move the calling process into `cgroups` (used between fork and exec of nspawn)."""
    for cgroup in cgroups:
        with open(cgroup / "cgroup.procs", "w", encoding="ascii") as fh:
            fh.write(str(os.getpid()))


def find_host_cgroups(layout: SandboxLayout) -> list[Path]:
    """Host cgroups of `layout` anywhere near the top of the tracked hierarchies."""
    found = []
    for mount in _hierarchies().values():
        base_depth = len(mount.parts)
        for root, dirs, _files in os.walk(mount):
            here = Path(root)
            if layout.host_name_pattern.match(here.name):
                found.append(here)
                dirs.clear()
            elif len(here.parts) - base_depth >= _SEARCH_DEPTH:
                dirs.clear()
    return found


def remove_cgroup(cgroup: Path) -> None:
    """Remove an empty cgroup and the sub-cgroups its systemd made (a cgroup dir is removed with rmdir)."""
    for root, _dirs, _files in os.walk(cgroup, topdown=False):
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(root)
