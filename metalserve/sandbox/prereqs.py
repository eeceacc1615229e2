"""Tools and privileges the sandbox needs on the control host, checked before anything runs.

Example::

    >>> missing_message([PREREQUISITES[0]])
    'sandbox needs debootstrap (Debian package debootstrap); found it missing — fix: apt-get install -y debootstrap'
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence

from pydantic import BaseModel, ConfigDict

from metalserve.sandbox.errors import PrerequisiteError


class Prerequisite(BaseModel):
    """A command the sandbox runs, and the Debian package that provides it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: str
    package: str


PREREQUISITES: tuple[Prerequisite, ...] = (
    Prerequisite(command="debootstrap", package="debootstrap"),
    Prerequisite(command="systemd-nspawn", package="systemd-container"),
    Prerequisite(command="zstd", package="zstd"),
    Prerequisite(command="dpkg-scanpackages", package="dpkg-dev"),
    Prerequisite(command="ip", package="iproute2"),
    Prerequisite(command="ssh", package="openssh-client"),
    Prerequisite(command="ssh-keygen", package="openssh-client"),
    Prerequisite(command="tar", package="tar"),
)


def missing_message(missing: Sequence[Prerequisite]) -> str:
    """One line naming the missing commands and the single apt-get command that installs them."""
    commands = ", ".join(p.command for p in missing)
    packages = list(dict.fromkeys(p.package for p in missing))
    what = "it" if len(missing) == 1 else "them"
    pkg_list = ", ".join(packages)
    return (
        f"sandbox needs {commands} (Debian package{'s' if len(packages) > 1 else ''} {pkg_list}); "
        f"found {what} missing — fix: apt-get install -y {' '.join(packages)}"
    )


def not_root_message(uid: int) -> str:
    return (
        "sandbox needs root (it creates network namespaces and boots containers); "
        f"found uid {uid} — fix: run it as root, e.g. sudo metalserve sandbox up"
    )


def check_prerequisites(
    which: Callable[[str], str | None] | None = None,
    geteuid: Callable[[], int] | None = None,
) -> None:
    """Raise `PrerequisiteError` (exit code 2) unless we are root and every tool is on PATH."""
    uid = (geteuid or os.geteuid)()
    if uid != 0:
        raise PrerequisiteError(not_root_message(uid))
    find = which or shutil.which
    missing = [p for p in PREREQUISITES if find(p.command) is None]
    if missing:
        raise PrerequisiteError(missing_message(missing))


def prerequisites_problem() -> str | None:
    """The one-line reason the sandbox cannot run here, or None; for test skips."""
    try:
        check_prerequisites()
    except PrerequisiteError as err:
        return err.message
    return None
