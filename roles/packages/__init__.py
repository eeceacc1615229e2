"""Debian packages the plan needs, from the plan's apt source.

Online hosts use their own apt sources. A mirror (sovereign site) or a bundle (files pushed from the
control host) becomes the *only* source apt reads for this install, so an air-gapped host never waits
on an unreachable archive.

Example::

    from roles import packages
    packages.install(plan)
"""

from __future__ import annotations

from io import StringIO

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import apt, files, server

from metalserve.plan import HostPlan
from metalserve.sources import AptSource, SourceKind

SOURCE_LIST = "/etc/apt/sources.list.d/metalserve.list"
BUNDLE_DIR = "/var/cache/metalserve/apt"


def source_line(source: AptSource) -> str:
    """The apt line for a flat repository (a directory with the debs and a Packages index)."""
    location = source.url if source.kind is SourceKind.MIRROR else f"file:{BUNDLE_DIR}"
    return f"deb [trusted=yes] {location} ./\n"


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
    if source.kind is SourceKind.BUNDLE:
        files.sync(
            name="Push the offline package bundle",
            src=str(source.path),
            dest=BUNDLE_DIR,
            delete=True,
        )
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
