"""``metalserve bundle build``: everything an inventory's deploys take, fetched once on a connected
machine into one folder an operator carries to the site.

The inventory is planned as a deploy plans it; ``metalserve.offline.bundle_needs`` names the
inputs; each is resolved to files with their sizes (``--dry-run`` stops there and prints them);
then what is missing is fetched, the apt repositories are indexed and signed, and ``bundle.json``
is written last. A re-run fetches only files that are not already there at their size and sha256.

Example::

    needs, local = inventory_needs("inventories/h200.py")
    resolved = resolve_all(needs, local, BuildOptions())
    build(needs, resolved, Path("/srv/bundle"), BuildOptions())
"""

from __future__ import annotations

import shutil
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from metalserve.bundle import apt
from metalserve.bundle.fetch import (
    BundleError,
    Fetch,
    Progress,
    Resolved,
    Unreachable,
    download,
    human,
    open_url,
)
from metalserve.bundle.manifest import file_records, manifest_path, read_manifest, write_manifest
from metalserve.bundle.signing import default_home, signing_key, stop_agent
from metalserve.bundle.weights import HUB, resolve_weights
from metalserve.bundle.wheels import PYPI_SIMPLE, normalized, resolve_wheels, sized
from metalserve.io.inventory import load_hosts, plan_specs
from metalserve.offline import (
    BUNDLE_FORMAT,
    BundleInput,
    BundleManifest,
    BundleNeeds,
    InputRecord,
    bundle_needs,
)
from metalserve.sources import BundleLayout
from metalserve.spec import host_spec
from metalserve.target import Target

NCCL_TESTS_ARCHIVE = "https://github.com/NVIDIA/nccl-tests/archive/refs/tags/{ref}.tar.gz"
"""GitHub's tarball of a release tag of NVIDIA/nccl-tests (its top folder nccl-tests-<version>)."""
APT_INDEX_FILES = ("Packages", "Packages.gz", "Release", "InRelease", "Release.gpg")


@dataclass(frozen=True)
class BuildOptions:
    hub: str = HUB
    hub_token: str | None = field(default=None, repr=False)
    index: str = PYPI_SIMPLE
    signing_home: Path = field(default_factory=default_home)


def inventory_needs(inventory: str | Path) -> tuple[BundleNeeds, dict[str, Path]]:
    """What the inventory's deploys need, and the model folders on this machine by input id: a
    host's ``model.local_dir`` (its checkpoint on the control host) is bundled from there, whatever
    source its deploy takes the weights from (with ``sources.bundle``, that is the bundle itself)."""
    specs = [host_spec(name, data) for name, data in load_hosts(inventory).items()]
    plans = plan_specs(specs)
    local = {
        f"weights/{p.weights.repo_id}": Path(s.model.local_dir).expanduser()
        for p, s in zip(plans, specs, strict=True)
        if p.weights is not None and s.model.local_dir
    }
    return bundle_needs([(p, s.os) for p, s in zip(plans, specs, strict=True)]), local


def _llamacpp(need: BundleInput, index: str) -> Resolved:
    """llama.cpp's source of record is the llama-cpp-python sdist (``metalserve.artefacts``),
    trimmed here to its vendored tree."""
    from metalserve.artefacts.pins import LLAMACPP_SDIST

    sdist = Fetch(
        dest=need.dest,
        url=f"{index}/{normalized(LLAMACPP_SDIST.package)}/",
        sha256=LLAMACPP_SDIST.sdist_sha256,
    )
    origin = f"{index} ({LLAMACPP_SDIST.requirement} sdist, trimmed to its llama.cpp tree here)"
    name = f"{LLAMACPP_SDIST.package.replace('-', '_')}-{LLAMACPP_SDIST.version}.tar.gz"
    (found,) = sized([Fetch(dest=f"sources/{name}", url=sdist.url)], index)
    return Resolved(need, origin, (Fetch(dest=need.dest, url=sdist.url, size=found.size),))


def _nccl_tests(need: BundleInput) -> Resolved:
    url = NCCL_TESTS_ARCHIVE.format(ref=urllib.parse.quote(need.items[0]))
    try:
        with open_url(url, timeout=10) as response:
            length = response.headers.get("Content-Length")
    except Unreachable as error:
        return Resolved(need, url, problem=f"unreachable here: size unknown ({error})")
    size = int(length) if length and length.isdigit() else None
    return Resolved(need, url, (Fetch(dest=need.dest, url=url, size=size),))


def resolve_all(
    needs: BundleNeeds, local: dict[str, Path], options: BuildOptions, progress: Progress = print
) -> list[Resolved]:
    """Every input with its files and sizes, or why not from here; nothing is downloaded."""
    resolved: list[Resolved] = []
    for target in needs.targets:
        mine = [n for n in needs.inputs if n.kind == "apt" and n.target == target.name]
        if mine:
            progress(f"resolving the packages for {target.name} …")
            resolved += apt.resolve_target(target, mine)
    for need in needs.inputs:
        if need.kind == "wheels":
            progress(f"resolving {need.id} …")
            resolved.append(resolve_wheels(need, options.index))
        elif need.id == "source/llama.cpp":
            resolved.append(_llamacpp(need, options.index))
        elif need.id == "source/nccl-tests":
            resolved.append(_nccl_tests(need))
        elif need.kind == "weights":
            resolved.append(
                resolve_weights(need, options.hub, options.hub_token, local.get(need.id))
            )
    return resolved


def dry_run_lines(needs: BundleNeeds, resolved: Sequence[Resolved]) -> list[str]:
    """One line per input (kind, id, files, size, source), then the known total."""
    lines = [f"note     {note}" for note in needs.notes]
    for item in resolved:
        need = item.need
        if item.problem:
            lines.append(f"{need.kind:8} {need.id}: {item.problem}")
            continue
        unknown = f", {item.unknown_sizes} of unknown size" if item.unknown_sizes else ""
        lines.append(
            f"{need.kind:8} {need.id}: {len(item.fetches)} files, "
            f"{human(item.known_bytes)}{unknown} from {item.origin}"
        )
    unique = {f.dest: f for i in resolved for f in i.fetches}  # a wheel two sets share, once
    known = sum(f.size for f in unique.values() if f.size is not None)
    unsized = [i for i in resolved if i.problem or i.unknown_sizes]
    tail = f"; size unknown for {len(unsized)} input(s)" if unsized else ""
    lines.append(f"total    {human(known)} known over {len(unique)} files{tail}")
    return lines


def _fetch_one(item: Resolved, fetch: Fetch, root: Path, known: dict[str, str]) -> None:
    if item.need.id == "source/llama.cpp":
        from metalserve.artefacts.cache import sha256_file
        from metalserve.artefacts.llamacpp import llamacpp_source

        source = llamacpp_source()
        target = root / fetch.dest
        if not target.is_file() or sha256_file(target) != source.sha256:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source.tarball, target)
        return
    download(fetch, root, known, item.extra.get("headers"))


def _fetch(
    resolved: Sequence[Resolved], root: Path, known: dict[str, str], progress: Progress
) -> None:
    for item in resolved:
        if item.problem:
            continue
        progress(f"fetching {item.need.id}: {len(item.fetches)} files, {human(item.known_bytes)}")
        for fetch in item.fetches:
            _fetch_one(item, fetch, root, known)


def _prune(resolved: Sequence[Resolved], root: Path) -> None:
    """Files left in a fully resolved input's folder by an earlier build (an older pin)."""
    folders: dict[str, list[Resolved]] = {}
    for item in resolved:
        if (root / item.need.dest).is_dir() or item.need.kind in ("apt", "wheels"):
            folders.setdefault(item.need.dest, []).append(item)
    for dest, items in folders.items():
        if any(i.problem for i in items) or not (root / dest).is_dir():
            continue
        wanted = {f.dest for i in items for f in i.fetches}
        wanted |= {f"{dest}/{name}" for name in APT_INDEX_FILES}
        for path in sorted((root / dest).rglob("*")):
            if path.is_file() and path.relative_to(root).as_posix() not in wanted:
                path.unlink()


def _index(
    needs: BundleNeeds, resolved: Sequence[Resolved], root: Path, options: BuildOptions
) -> str | None:
    """Index and sign every apt repository that has packages; the key's fingerprint."""
    targets = {i.need.target for i in resolved if i.need.kind == "apt" and i.fetches}
    if not targets:
        return None
    key = signing_key(options.signing_home)
    try:
        key.export(root / BundleLayout().key)
        for target in needs.targets:
            if target.name in targets:
                apt.index_and_sign(
                    root / BundleLayout().apt_repo(target.name), key, target.facts.suite
                )
    finally:
        stop_agent(key.home)
    return key.fingerprint


def _records(
    needs: BundleNeeds, resolved: Sequence[Resolved], old: BundleManifest | None
) -> list[InputRecord]:
    """The inputs fetched now, and those fetched earlier that could not be resolved this time."""
    made = {
        i.need.id: InputRecord(
            id=i.need.id,
            kind=i.need.kind,
            items=i.need.items,
            origin=i.origin,
            files=tuple(sorted({f.dest for f in i.fetches})),
        )  # fmt: skip
        for i in resolved
        if not i.problem
    }
    for need in needs.inputs:
        earlier = old.input(need.id) if old else None
        if need.id not in made and earlier is not None:
            made[need.id] = earlier
    return [made[n.id] for n in needs.inputs if n.id in made]


def _index_files(root: Path, targets: Iterable[Target]) -> list[str]:
    names = []
    for target in targets:
        repo = BundleLayout().apt_repo(target.name)
        names += [f"{repo}/{n}" for n in APT_INDEX_FILES if (root / repo / n).is_file()]
    return names


def build(
    needs: BundleNeeds,
    resolved: Sequence[Resolved],
    root: Path,
    options: BuildOptions,
    progress: Progress = print,
) -> BundleManifest:
    """Fetch what is missing, index and sign, write the manifest; returns it."""
    root.mkdir(parents=True, exist_ok=True)
    old = read_manifest(root) if manifest_path(root).is_file() else None
    known = {name: rec.sha256 for name, rec in (old.files.items() if old else ())}
    _fetch(resolved, root, known, progress)
    _prune(resolved, root)
    fingerprint = _index(needs, resolved, root, options) or (old.key_fingerprint if old else None)
    records = _records(needs, resolved, old)
    names = [f for r in records for f in r.files] + _index_files(root, needs.targets)
    if (root / BundleLayout().key).is_file():
        names.append(BundleLayout().key)
    manifest = BundleManifest(
        format=BUNDLE_FORMAT,
        hosts=needs.hosts,
        pins=needs.pins,
        key_fingerprint=fingerprint,
        inputs=tuple(records),
        files=file_records(root, names, dict(old.files) if old else {}),
    )
    write_manifest(root, manifest)
    return manifest


def unbuilt(resolved: Sequence[Resolved]) -> list[str]:
    return [f"{i.need.id}: {i.problem}" for i in resolved if i.problem]


__all__ = [
    "BuildOptions",
    "BundleError",
    "build",
    "dry_run_lines",
    "inventory_needs",
    "resolve_all",
]
