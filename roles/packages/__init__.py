"""Debian packages the plan needs, from the plan's apt source.

Online hosts use their own apt sources. A mirror (sovereign site) or a bundle (files pushed from the
control host) becomes the *only* source apt reads for this install, so an air-gapped host never waits
on an unreachable archive. From a bundle, the repository for the host's own release and architecture
is pushed with the bundle's public key (``roles.push``: rsync over SSH; on a host without rsync
yet, files.sync, and rsync is installed from it), and apt checks its signature (``signed-by``).

Example::

    from roles import packages
    packages.install(plan)
"""

from __future__ import annotations

from io import StringIO
from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.deb import DebArch, DebPackages
from pyinfra.facts.server import LinuxDistribution
from pyinfra.operations import apt, files, server

from metalserve.plan import HostPlan
from metalserve.sources import AptSource, BundleLayout, SourceKind
from metalserve.stack import distro_of
from roles.base import RoleError
from roles.push import push

SOURCE_LIST = "/etc/apt/sources.list.d/metalserve.list"
BUNDLE_DIR = "/var/cache/metalserve/apt"
BUNDLE_KEY = "/etc/apt/keyrings/metalserve-bundle.gpg"
"""Where the bundle's public key is kept on the host (the folder apt 2.4+ documents for local
keys, sources.list(5)); the bundle's source line names it in ``signed-by``."""


def source_line(source: AptSource) -> str:
    """The apt line for a flat repository (a directory with the debs and a Packages index): a
    bundle's is checked against the bundle's key; a mirror's is trusted as the site serves it."""
    if source.kind is SourceKind.BUNDLE:
        return f"deb [signed-by={BUNDLE_KEY}] file:{BUNDLE_DIR} ./\n"
    return f"deb [trusted=yes] {source.url} ./\n"


def host_target() -> str:
    """This host's release and architecture as a bundle names its repositories: debian12-amd64."""
    distribution = host.get_fact(LinuxDistribution)
    distro = distro_of(
        distribution["name"] or "unknown", distribution["major"], distribution["minor"]
    )
    return f"{distro.value}-{host.get_fact(DebArch)}"


def _push_bundle(bundle: BundleLayout) -> None:
    """The bundle's repository for this host and its key; refused before any change when the
    bundle has none for this host's release."""
    target = host_target()
    repo = Path(bundle.apt_repo(target)).expanduser()
    if not (repo / "InRelease").is_file():
        raise RoleError(
            f"host {host.name}: bundle {bundle.root}: expected a signed package repository for "
            f"{target} (this host's release), found none — fix: set metalserve.os to it and run "
            "metalserve bundle build again"
        )
    files.put(
        name="Trust the bundle's signing key for its repository",
        src=str(Path(bundle.key).expanduser()),
        dest=BUNDLE_KEY,
        mode="644",
        create_remote_dir=True,
    )
    push(
        name=f"Push the offline package repository for {target}",
        src=str(repo),
        dest=BUNDLE_DIR,
        delete=True,
    )


ONLY_SITE_SOURCE = (
    "-o Dir::Etc::sourcelist=sources.list.d/metalserve.list -o Dir::Etc::sourceparts=-"
)
"""apt options that make the metalserve list the only one apt reads (update and install alike)."""


def update_command() -> str:
    return f"apt-get update -qq {ONLY_SITE_SOURCE} -o APT::Get::List-Cleanup=0"


def missing_packages(plan: HostPlan) -> list[str]:
    installed = host.get_fact(DebPackages) or {}
    return [name for name in plan.packages.names if name not in installed]


@deploy("Packages: install")
def install(plan: HostPlan) -> None:
    source = plan.packages.apt
    if source.bundle is not None:
        _push_bundle(source.bundle)
    if source.kind is not SourceKind.ONLINE:
        files.put(
            name="Use the site package source",
            src=StringIO(source_line(source)),
            dest=SOURCE_LIST,
            mode="644",
        )
    missing = missing_packages(plan)
    if not missing:
        return
    if source.kind is SourceKind.ONLINE:
        apt.update(name="Refresh apt lists")
    else:
        server.shell(
            name="Refresh apt lists from the site source only", commands=[update_command()]
        )
    apt.packages(
        name=f"Install {', '.join(missing)}",
        packages=missing,
        no_recommends=True,
        update=False,
        extra_install_args=None if source.kind is SourceKind.ONLINE else ONLY_SITE_SOURCE,
    )
