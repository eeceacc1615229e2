"""The real apt, pointed at a throwaway root: a flat repository of package stanzas, a dpkg status
of what is "installed", and preferences files. Answers what apt would choose or do (``-s``), so a
test can show a pin or a virtual package behaving as it would on a host, without a host.

Example::

    apt = AptRoot(tmp_path, offered=[stanza("libnccl2", "2.28.9-1+cuda13.0")])
    apt.candidate("libnccl2")
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

needs_apt = pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt (Debian/Ubuntu)")


def stanza(name: str, version: str, provides: tuple[str, ...] = (), depends: str = "") -> str:
    """One package as a repository index lists it (architecture ``all``: no host match needed)."""
    lines = [f"Package: {name}", f"Version: {version}", "Architecture: all"]
    if provides:
        lines.append(f"Provides: {', '.join(provides)}")
    if depends:
        lines.append(f"Depends: {depends}")
    return "\n".join([*lines, "Filename: x.deb", "Size: 1", "Description: t"]) + "\n\n"


def installed(entry: str) -> str:
    """A repository stanza turned into a dpkg status entry (installed at that version)."""
    return entry.replace("Filename: x.deb\nSize: 1\n", "Status: install ok installed\n")


class AptRoot:
    """apt with its own sources, status and preferences under ``root``; nothing on the host used."""

    def __init__(
        self,
        root: Path,
        offered: list[str],
        status: list[str] | None = None,
        preferences: list[str] | None = None,
    ) -> None:
        repo = root / "repo"
        for folder in (repo, root / "lists" / "partial", root / "cache" / "archives" / "partial"):
            folder.mkdir(parents=True)
        (root / "prefs.d").mkdir()
        (repo / "Packages").write_text("".join(offered))
        (root / "status").write_text("".join(status or []))
        (root / "sources.list").write_text(f"deb [trusted=yes] file:{repo} ./\n")
        for index, text in enumerate(preferences or []):
            (root / "prefs.d" / f"{index:02d}-pin").write_text(text)
        self.options = [
            f"-oDir::Etc::SourceList={root}/sources.list",
            f"-oDir::Etc::SourceParts={root}/none",
            f"-oDir::Etc::Preferences={root}/none",
            f"-oDir::Etc::PreferencesParts={root}/prefs.d",
            f"-oDir::State::Lists={root}/lists",
            f"-oDir::Cache={root}/cache",
            f"-oDir::State::status={root}/status",
            "-oDebug::NoLocking=1",
        ]
        subprocess.run(["apt-get", *self.options, "update"], check=True, capture_output=True)

    def candidate(self, package: str) -> str:
        """The version ``apt-get install`` would choose, ``(none)`` if none."""
        policy = subprocess.run(
            ["apt-cache", *self.options, "policy", package],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return next(
            (line.split()[1] for line in policy.splitlines() if "Candidate:" in line), "(none)"
        )

    def simulate(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``apt-get -s <args>``: what apt would do, and whether it would refuse."""
        return subprocess.run(
            ["apt-get", *self.options, "-s", "-y", *args], capture_output=True, text=True
        )
