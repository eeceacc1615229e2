from __future__ import annotations

from pathlib import Path

import pytest

from metalserve.bundle.manifest import file_records, write_manifest
from metalserve.io.inventory import plan_specs
from metalserve.offline import (
    BUNDLE_FORMAT,
    BundleManifest,
    BundleNeeds,
    InputRecord,
    bundle_needs,
)
from metalserve.sources import BundleLayout
from metalserve.spec import host_spec

CPU_HOST = {
    "profile": "sandbox-cpu",
    "os": {"release": "debian12", "arch": "amd64"},
    "model": {"repo_id": "metalserve/tiny-moe"},
    "engine": {"name": "llamacpp", "port": 8080},
}


@pytest.fixture(autouse=True)
def private_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own empty cache and signing-key folder."""
    monkeypatch.setenv("METALSERVE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("METALSERVE_SIGNING_HOME", str(tmp_path / "gnupg"))


def needs_of(hosts: dict[str, dict]) -> BundleNeeds:
    specs = [host_spec(name, data) for name, data in hosts.items()]
    return bundle_needs(list(zip(plan_specs(specs), [s.os for s in specs], strict=True)))


def write_inventory(path: Path, hosts: dict[str, dict]) -> Path:
    entries = ", ".join(f"({name!r}, {{'metalserve': {data!r}}})" for name, data in hosts.items())
    path.write_text(f"hosts = [{entries}]\n")
    return path


def fake_bundle(
    root: Path, needs: BundleNeeds, pins: dict[str, str] | None = None, marker: bool = True
) -> BundleManifest:
    """A bundle holding one small file per needed input (and a marker InRelease per release,
    unlisted): enough for the manifest checks, nothing a host could install."""
    records, names = [], []
    for need in needs.inputs:
        name = (
            need.dest if need.kind == "source" else f"{need.dest}/{need.id.replace('/', '_')}.bin"
        )
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"{need.id} for a test\n")
        names.append(name)
        records.append(
            InputRecord(id=need.id, kind=need.kind, items=need.items, origin="test", files=(name,))
        )
    layout = BundleLayout()
    for target in needs.targets if marker else ():
        (root / layout.apt_repo(target.name) / "InRelease").write_text("not signed: a test\n")
    (root / layout.key).parent.mkdir(parents=True, exist_ok=True)
    (root / layout.key).write_bytes(b"a test key\n")
    names.append(layout.key)
    manifest = BundleManifest(
        format=BUNDLE_FORMAT,
        hosts=needs.hosts,
        pins=needs.pins if pins is None else pins,
        key_fingerprint=None,
        inputs=tuple(records),
        files=file_records(root, names, {}),
    )
    write_manifest(root, manifest)
    return manifest
