"""The offline llama.cpp source: the tree vendored in the llama-cpp-python sdist, trimmed.

The sdist on PyPI carries a full llama.cpp tree (``vendor/llama.cpp``: CMake project,
``convert_hf_to_gguf.py``, ``gguf-py``, ``tools/server``...). PyPI is reachable from sites that
cannot reach GitHub, and its sha256 is pinned, so it is our llama.cpp source of record.

Example::

    source = llamacpp_source()
    source.tarball      # .../llamacpp-source/<key>/llama.cpp-0c1e57098.tar.gz
    source.sha256       # what the llamacpp role checks on the host before unpacking
"""

from __future__ import annotations

import gzip
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from metalserve.artefacts.cache import ArtefactError, cached_build, sha256_file
from metalserve.artefacts.pins import LLAMACPP_SDIST, LlamaCppSdistPin

KIND = "llamacpp-source"
_TRIM_FORMAT = 2  # bump when the trimmed bytes change (2: mtimes zeroed)
"""Bumped whenever :func:`keep_in_source` changes, so old cache entries are not reused."""

_DROPPED_DIRS = frozenset(
    {".git", ".github", ".devops", "docs", "media", "benches", ".gemini", ".pi"}
)
_DROPPED_SUFFIXES = (".gguf", ".gguf.inp", ".gguf.out")


@dataclass(frozen=True)
class LlamaCppSource:
    """A trimmed llama.cpp source tarball whose single top folder is :attr:`top_dir`."""

    tarball: Path
    sha256: str
    size: int
    version: str
    commit: str

    @property
    def top_dir(self) -> str:
        return f"llama.cpp-{self.commit}"


def keep_in_source(relative: PurePosixPath) -> bool:
    """Whether a path of the vendored tree is needed to build and convert.

    >>> keep_in_source(PurePosixPath("tools/server/server.cpp"))
    True
    >>> keep_in_source(PurePosixPath("models/ggml-vocab-gpt-2.gguf"))
    False
    >>> keep_in_source(PurePosixPath("docs/build.md"))
    False
    """
    if relative.parts and relative.parts[0] in _DROPPED_DIRS:
        return False
    return not (relative.parts[:1] == ("models",) and relative.name.endswith(_DROPPED_SUFFIXES))


def _download_sdist(pin: LlamaCppSdistPin, into: Path) -> Path:
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", pin.package,
        "--disable-pip-version-check", "--quiet", pin.requirement, "-d", str(into),
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, check=False)
    sdists = sorted(into.glob("*.tar.gz"))
    if run.returncode != 0 or len(sdists) != 1:
        last = (run.stderr.strip().splitlines() or ["no output"])[-1]
        raise ArtefactError(
            f"expected pip to download the {pin.requirement} sdist, found exit {run.returncode}: "
            f"{last} — fix: check that PyPI is reachable, or put the sdist in pip's find-links"
        )
    found = sha256_file(sdists[0])
    if found != pin.sdist_sha256:
        raise ArtefactError(
            f"{sdists[0].name}: expected sha256 {pin.sdist_sha256}, found {found} — fix: the index "
            "served a different file; check the mirror, or update the pin after reviewing it"
        )
    return sdists[0]


def _normalised(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0  # extraction leaves directory mtimes at "now"
    info.mode = 0o755 if info.isdir() or info.mode & 0o100 else 0o644
    return info


def write_trimmed_tarball(vendored_tree: Path, top_dir: str, out: Path) -> None:
    """Write ``vendored_tree`` as ``out`` (tar.gz) under ``top_dir``, trimmed and reproducible.

    Entries are sorted, owners, mtimes and the gzip timestamp are zeroed: the same tree gives the same bytes.
    """
    paths = sorted(
        path
        for path in vendored_tree.rglob("*")
        if keep_in_source(PurePosixPath(path.relative_to(vendored_tree).as_posix()))
        and (path.is_file() or path.is_dir())
        and not path.is_symlink()
    )
    with (
        out.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for path in paths:
            name = f"{top_dir}/{path.relative_to(vendored_tree).as_posix()}"
            tar.add(path, arcname=name, recursive=False, filter=_normalised)


def _build(pin: LlamaCppSdistPin, folder: Path) -> dict[str, str]:
    with tempfile.TemporaryDirectory(prefix="metalserve-sdist-") as scratch:
        sdist = _download_sdist(pin, Path(scratch) / "download")
        unpacked = Path(scratch) / "unpacked"
        with tarfile.open(sdist) as archive:
            archive.extractall(unpacked, filter="data")
        (root,) = unpacked.iterdir()
        vendored = root / "vendor" / "llama.cpp"
        changelog = (root / "CHANGELOG.md").read_text(errors="replace")
        if f"llama.cpp@{pin.llamacpp_commit}" not in changelog:
            raise ArtefactError(
                f"{sdist.name}: expected CHANGELOG.md to name llama.cpp@{pin.llamacpp_commit}, "
                "found another commit — fix: update the pinned llama.cpp commit with the sdist"
            )
        if not (vendored / "convert_hf_to_gguf.py").is_file():
            raise ArtefactError(
                f"{sdist.name}: expected vendor/llama.cpp/convert_hf_to_gguf.py, found none — "
                "fix: pin an sdist that vendors the llama.cpp tree"
            )
        top_dir = f"llama.cpp-{pin.llamacpp_commit}"
        write_trimmed_tarball(vendored, top_dir, folder / f"{top_dir}.tar.gz")
    return {"version": pin.version, "commit": pin.llamacpp_commit, "top_dir": top_dir}


def llamacpp_source(pin: LlamaCppSdistPin = LLAMACPP_SDIST) -> LlamaCppSource:
    """The trimmed llama.cpp tarball for ``pin``, built once and then read from the cache."""
    inputs = {
        "sdist": pin.requirement,
        "sdist_sha256": pin.sdist_sha256,
        "commit": pin.llamacpp_commit,
        "trim_format": _TRIM_FORMAT,
    }
    entry = cached_build(KIND, inputs, lambda folder: _build(pin, folder))
    name = f"{entry.manifest['top_dir']}.tar.gz"
    return LlamaCppSource(
        tarball=entry.file(name),
        sha256=entry.sha256(name),
        size=int(entry.manifest["files"][name]["size"]),
        version=str(entry.manifest["version"]),
        commit=str(entry.manifest["commit"]),
    )
