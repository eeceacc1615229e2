"""Wheelhouses for the two Python environments a host needs offline.

* ``converter``: what ``convert_hf_to_gguf.py`` imports (CPU torch, transformers, sentencepiece...).
* ``hub``: ``huggingface_hub`` for the weights step.

They are kept apart because transformers 4.57 wants ``huggingface_hub<1`` while the weights step
runs 2.4; each set is resolved on its own and written next to its requirements file, so a host
installs either with ``pip install --no-index --find-links DIR -r DIR/<set>.txt``.

Wheels are downloaded for the control host's own interpreter and platform: the hosts must run the
same CPython minor and a glibc at least as new (Debian 12 on both sides here; a cross-download
with ``pip download --platform manylinux_2_28_x86_64`` was seen to miss numpy 2.2.6).

Example::

    house = converter_wheelhouse()
    house.requirements("converter")   # .../wheelhouse/<key>/converter.txt
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from metalserve.artefacts.cache import ArtefactError, cached_build
from metalserve.artefacts.pins import CONVERTER_REQUIREMENTS, HUB_CLIENT_REQUIREMENTS

KIND = "wheelhouse"
WHEELHOUSE_SETS: dict[str, tuple[str, ...]] = {
    "converter": CONVERTER_REQUIREMENTS,
    "hub": HUB_CLIENT_REQUIREMENTS,
}


@dataclass(frozen=True)
class Wheelhouse:
    """A folder of wheels plus one ``<set>.txt`` requirements file per environment."""

    path: Path
    sets: tuple[str, ...]
    size: int
    python_tag: str

    def requirements(self, name: str) -> Path:
        if name not in self.sets:
            raise ArtefactError(
                f"wheelhouse {self.path}: expected a set in {list(self.sets)}, found {name!r} — "
                "fix: ask for one of those sets"
            )
        return self.path / f"{name}.txt"

    @property
    def wheels(self) -> list[Path]:
        return sorted(self.path.glob("*.whl"))


def interpreter_tag() -> str:
    """The interpreter and platform the wheels are for, e.g. ``cp311-linux_x86_64-glibc2.36``."""
    libc, libc_version = platform.libc_ver()
    return (
        f"cp{sys.version_info.major}{sys.version_info.minor}-"
        f"{sysconfig.get_platform().replace('-', '_')}-{libc}{libc_version}"
    )


def _pip_download(requirements: tuple[str, ...], into: Path) -> None:
    command = [
        sys.executable, "-m", "pip", "download", "--only-binary", ":all:",
        "--disable-pip-version-check", "--quiet", "-d", str(into), *requirements,
    ]  # fmt: skip
    _run_pip(command, " ".join(requirements))


def _run_pip(command: list[str], what: str) -> None:
    run = subprocess.run(command, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        last = (run.stderr.strip().splitlines() or ["no output"])[-1]
        raise ArtefactError(
            f"expected pip to download wheels for {what}, found exit "
            f"{run.returncode}: {last} — fix: check that PyPI (or your index mirror) is reachable"
        )


def _build(folder: Path) -> dict[str, object]:
    for name, requirements in WHEELHOUSE_SETS.items():
        _pip_download(requirements, folder)
        (folder / f"{name}.txt").write_text("".join(f"{line}\n" for line in requirements))
    non_wheels = sorted(p.name for p in folder.iterdir() if p.suffix not in {".whl", ".txt"})
    if non_wheels:
        raise ArtefactError(
            f"wheelhouse: expected only wheels, found {non_wheels} — fix: pin versions that ship "
            "wheels for this platform"
        )
    return {"sets": sorted(WHEELHOUSE_SETS), "python_tag": interpreter_tag()}


def converter_wheelhouse() -> Wheelhouse:
    """The wheels for the host's converter and hub environments, downloaded once and cached."""
    inputs = {"sets": WHEELHOUSE_SETS, "python_tag": interpreter_tag()}
    entry = cached_build(KIND, inputs, _build)
    return Wheelhouse(
        path=entry.path,
        sets=tuple(entry.manifest["sets"]),
        size=sum(int(f["size"]) for f in entry.manifest["files"].values()),
        python_tag=str(entry.manifest["python_tag"]),
    )


ENGINE_KIND = "engine-wheelhouse"


def engine_wheelhouse(lock: Path, base: Wheelhouse) -> Path:
    """Every wheel of an engine's lock (``locks/<engine>-<version>-py3.X-<arch>.txt``, hashes
    checked by pip) beside the converter and hub wheels of ``base``: one folder a host's venvs all
    install from. Downloaded once per lock and base, cached like the others; the lock must be for
    this interpreter, since pip fetches the wheels for the machine it runs on."""
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    wanted = f"py{sys.version_info.major}.{sys.version_info.minor}-{platform.machine()}"
    if wanted not in lock.name:
        raise ArtefactError(
            f"{lock.name}: expected a lock for this interpreter ({wanted}), found another target "
            "— fix: build the wheelhouse on a machine of the lock's Python and architecture"
        )

    def build(folder: Path) -> dict[str, object]:
        command = [
            sys.executable, "-m", "pip", "download", "--only-binary", ":all:", "--no-deps",
            "--require-hashes", "--disable-pip-version-check", "--quiet", "-d", str(folder),
            "-r", str(lock),
        ]  # fmt: skip
        _run_pip(command, lock.name)
        for wheel in base.path.glob("*.whl"):
            if not (folder / wheel.name).exists():
                os.link(wheel, folder / wheel.name)
        return {"lock": lock.name}

    entry = cached_build(ENGINE_KIND, {"lock_sha256": digest, "base": base.path.name}, build)
    return entry.path
