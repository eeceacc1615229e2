"""Steps every NVIDIA role shares: write a file only when it differs, install a pin and hold it,
verify at the end.

Each step reads its facts first (``files.Sha1File``, ``deb.DebPackages``, held packages), so a
second run yields no command. Used by the driver, fabric manager, CUDA, NCCL and fabric roles.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Callable
from io import StringIO
from typing import Any

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.files import Sha1File
from pyinfra.operations import files, python, server

from metalserve.plan import HostPlan
from metalserve.sources import AptSource, SourceKind
from metalserve.stack import AptPin, NvidiaPlan, packages_off_pin
from roles.base import RoleError, say_once
from roles.gpu_facts.facts import ContainerKind, NvidiaGpus, NvidiaHeldPackages, read_fact
from roles.gpu_facts.verify import VerificationError
from roles.packages import ONLY_SITE_SOURCE, update_command

APT_INSTALL_ONLINE = (
    "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "
    "--allow-downgrades --allow-change-held-packages "
    "-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold"
)
"""One apt-get install for every role: non-interactive, keeps local config files, may move a held
or newer package onto its pin."""


def file_matches(path: str, content: str) -> bool:
    """The file on the host has exactly ``content`` (``False`` when it is missing)."""
    return host.get_fact(Sha1File, path=path) == hashlib.sha1(content.encode()).hexdigest()


def write_file(
    path: str, content: str, purpose: str, mode: str = "644", create_dir: bool = False
) -> bool:
    """Upload ``content`` to ``path`` unless it is already there; says whether it will change.
    ``create_dir`` for a folder a minimal image may lack (``/etc/modprobe.d`` comes with kmod);
    ``/etc/apt/*.d`` come with apt itself."""
    if file_matches(path, content):
        return False
    files.put(
        name=f"Write {purpose} ({path})",
        src=StringIO(content),
        dest=path,
        mode=mode,
        create_remote_dir=create_dir,
    )
    return True


def apt_install(packages: tuple[str, ...] | list[str], source: AptSource, purpose: str) -> None:
    """One ``apt-get install``. On a mirror or bundle site it reads the site's flat repository
    only (the one ``roles.packages`` configures, which carries the NVIDIA packages too), after
    refreshing its index; online it reads the host's sources, NVIDIA's repository among them."""
    if source.kind is SourceKind.ONLINE:
        commands = [f"{APT_INSTALL_ONLINE} {shlex.join(packages)}"]
    else:
        commands = [
            update_command(),
            f"{APT_INSTALL_ONLINE} {ONLY_SITE_SOURCE} {shlex.join(packages)}",
        ]
    server.shell(name=f"Install {purpose}", commands=commands)


def install_missing(packages: tuple[str, ...], purpose: str, source: AptSource) -> bool:
    """Install the named packages that are not installed at all (any version will do)."""
    installed = read_fact(DebPackages)
    missing = [name for name in packages if name not in installed]
    if missing:
        apt_install(missing, source, purpose)
    return bool(missing)


def install_pinned(pin: AptPin, label: str, source: AptSource) -> bool:
    """Pin ``pin``'s packages to its version (apt preferences), install them there and hold them.

    Returns whether the packages themselves will change (what a reload or rebuild depends on).
    """
    write_file(
        f"/etc/apt/preferences.d/metalserve-{label}",
        pin.preferences(),
        f"apt pin for {label} {pin.version}",
    )
    off_pin = packages_off_pin(pin, read_fact(DebPackages))
    if off_pin:
        apt_install(
            pin.packages, source, f"{label} {pin.version} ({', '.join(off_pin)} off the pin)"
        )
    held = read_fact(NvidiaHeldPackages)
    unheld = [name for name in pin.packages if name not in held]
    if unheld:
        server.shell(
            name=f"Hold {label} against unattended upgrades",
            commands=[f"apt-mark hold {shlex.join(unheld)}"],
        )
    return bool(off_pin)


def container_kind() -> str | None:
    """The container this host runs in, or ``None`` where the kernel is its own. In a container the
    kernel — its headers, initramfs and modules — belongs to the hardware host."""
    kind: str | None = read_fact(ContainerKind)
    if kind is not None:
        say_once(
            f"runs in a {kind} container: kernel headers, initramfs and module loading are the "
            "hardware host's — skipped"
        )
    return kind


def gpu_steps_skipped() -> bool:
    """In a container that sees no NVIDIA GPU, the GPU daemons (persistenced, fabric manager) and
    the ``nvidia-smi`` checks have nothing to act on: skipped, and said. On a host with its own
    kernel nothing is skipped, so a GPU gone missing there fails verification."""
    if container_kind() is None or read_fact(NvidiaGpus).gpus:
        return False
    say_once(
        "sees no NVIDIA GPU in its container: nvidia-persistenced, fabric manager and the "
        "nvidia-smi checks skipped; repository, pins, holds and blacklist applied"
    )
    return True


Check = Callable[[Any], list[str]]
"""Reads facts from the host it is given and returns the problems found (one line each)."""


def verify(slug: str, what: str, check: Check, after_changes: bool) -> None:
    """Run ``check`` now, from the facts already read, when this run changes nothing; otherwise as
    the last step, once the changes are made. Problems fail the host with one line each."""
    if not after_changes:
        problems = check(host)
        if problems:
            raise RoleError(str(VerificationError.for_host(host.name, problems)))
        return

    def run_check(state: Any, host: Any) -> bool:
        problems = check(host)
        if problems:
            host.log_styled(str(VerificationError.for_host(host.name, problems)), fg="red")
        return not problems

    run_check.__name__ = f"verify_{slug}"
    python.call(name=f"Verify {what}", function=run_check)


def verify_pinned(pin: AptPin, slug: str, what: str, check: Check) -> None:
    """:func:`verify`, after the changes when ``pin``'s packages are about to move."""
    verify(slug, what, check, after_changes=bool(packages_off_pin(pin, read_fact(DebPackages))))


def pinned_role(
    pin_of: Callable[[NvidiaPlan], AptPin],
    label: str,
    what: Callable[[NvidiaPlan], str],
    problems: Callable[[NvidiaPlan, Any], list[str]],
) -> tuple[Any, Any]:
    """``install`` and ``activate`` of a role that is one pinned package set plus a check (the CUDA
    toolkit, NCCL): install pins, installs and holds it; activate verifies it. GPU hosts only."""

    @deploy(f"{label}: packages")
    def install(plan: HostPlan) -> None:
        if plan.nvidia is not None:
            install_pinned(pin_of(plan.nvidia), label, plan.nvidia.apt)

    @deploy(f"{label}: verify")
    def activate(plan: HostPlan) -> None:
        nvidia = plan.nvidia
        if nvidia is None:
            return
        verify_pinned(
            pin_of(nvidia), label.replace("-", "_"), what(nvidia), lambda on: problems(nvidia, on)
        )

    return install, activate
