"""Op cases of the three roles that carry bundle contents with ``roles.push``: the apt repository
(packages), the wheelhouse (every venv) and the model snapshot (weights). Each is run as the op
cases run it (``tests.opcases``), with the push carried out for real by rsync into a folder of this
machine standing in for the host's root (``tests/fixtures/rsync/local_rsh.sh`` the remote shell):
the first run pushes the folder and checks what it sent against the manifest; the second run, with
the facts the first left, yields no command at all — rsync's dry run finds everything in place."""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

import tests.opcases as opcases
from metalserve.catalog.packages import PUSH
from metalserve.offline import BundleNeeds
from metalserve.sources import WHEELHOUSE_DIR, PythonSource, SourceKind
from roles.packages import BUNDLE_DIR, BUNDLE_KEY, SOURCE_LIST, source_line
from roles.push import PushCommand, rsync_argv, verify_command
from roles.weights import STAMP, bundle_sizes
from tests.bundle.conftest import CPU_HOST, fake_bundle, needs_of

RSH = Path(__file__).resolve().parents[1] / "fixtures" / "rsync" / "local_rsh.sh"
pytestmark = pytest.mark.skipif(shutil.which("rsync") is None, reason="no rsync on this machine")


@pytest.fixture
def host_root(tmp_path: Path) -> Iterator[Path]:
    """The host's filesystem: rsync's destination ``DEST`` lands in ``host_root/DEST``."""
    root = tmp_path / "host"
    render = opcases.render_command

    def render_and_push(command: Any, env: dict[str, str] | None = None) -> str:
        if isinstance(command, PushCommand):  # carried out here, as pyinfra would on the host
            assert command.execute(None, mock.Mock(), {})
        return render(command, env)

    with (
        mock.patch("roles.push.control_rsync", return_value="/usr/bin/rsync"),
        mock.patch("roles.push.ssh_command", return_value=str(RSH)),
        mock.patch("roles.push.remote_target", lambda _data, _name, dest: f"h:{root}{dest}/"),
        mock.patch.object(opcases, "render_command", render_and_push),
    ):
        yield root


def pushed(src: Path, host_root: Path, dest: str, delete: bool) -> str:
    """The push command as an op case shows it: rsync of the bundle folder to the host's dest."""
    return shlex.join(rsync_argv(str(src), f"h:{host_root}{dest}/", str(RSH), delete))


def checked(dest: str) -> list[str]:
    listing = f"{dest}.metalserve-sha256"
    return [f"upload <memory> -> {listing}", verify_command(dest, listing)]


def bundle(tmp_path: Path) -> tuple[Path, BundleNeeds]:
    root = tmp_path / "bundle"
    needs = needs_of({"node-1": CPU_HOST})
    fake_bundle(root, needs)
    return root, needs


def run(calls: list[Callable[[], Any]], root: Path, facts: dict[str, Any]) -> list[str]:
    data = {"metalserve": {**CPU_HOST, "sources": {"bundle": str(root)}}}
    return opcases.run_phases(calls, data, facts)


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


FRESH = {
    "server.Which": {"command=rsync": "/usr/bin/rsync"},
    "server.TmpDir": "/tmp",
    "files.File": {"*": None},
    "files.Directory": {"*": None},
    "files.Link": {"*": None},
    "files.FileContents": {"*": None},
}


def test_packages_push_the_hosts_repository_once(tmp_path: Path, host_root: Path) -> None:
    root, needs = bundle(tmp_path)
    repo = root / "apt" / "debian12-amd64"
    facts = {**FRESH, "server.LinuxDistribution": {"name": "Debian", "major": 12, "minor": None},
             "deb.DebArch": "amd64", "deb.DebPackages": {}}  # fmt: skip
    calls = opcases.role_calls(["roles.packages"], ["install"])
    first = run(calls, root, facts)
    at = first.index(pushed(repo, host_root, BUNDLE_DIR, delete=True))
    assert first[at + 1 : at + 3] == checked(BUNDLE_DIR)
    assert sorted(p.name for p in (host_root / BUNDLE_DIR.lstrip("/")).iterdir()) == sorted(
        p.name for p in repo.iterdir()
    )
    (distro,) = [i for i in needs.inputs if i.id == "apt/debian12-amd64/distro"]
    assert set(PUSH) <= set(distro.items)  # the host's rsync comes from the bundle
    installed = {name: ["1"] for name in (*distro.items, *PUSH)}
    key = (root / "keys" / "metalserve-bundle.gpg").read_bytes()
    again = {
        **facts,
        "deb.DebPackages": installed,
        "files.File": {f"path={BUNDLE_KEY}": {"mode": 644}, f"path={SOURCE_LIST}": {"mode": 644}},
        "files.Directory": {"*": {"mode": 755}},
        "files.Sha1File": {
            f"path={BUNDLE_KEY}": sha1(key),
            f"path={SOURCE_LIST}": sha1(source_line(root_source(root)).encode()),
        },
    }
    assert run(calls, root, again) == []


def root_source(root: Path) -> Any:
    from metalserve.sources import AptSource

    return AptSource(kind=SourceKind.BUNDLE, path=str(root))


def test_a_fresh_host_gets_the_repository_by_files_sync_and_rsync_from_it(
    tmp_path: Path, host_root: Path
) -> None:
    root, _ = bundle(tmp_path)
    facts = {**FRESH, "server.Which": {"command=rsync": None},
             "server.LinuxDistribution": {"name": "Debian", "major": 12, "minor": None},
             "deb.DebArch": "amd64", "deb.DebPackages": {}, "files.Sha1File": {"*": None},
             "files.FindInFile": {"*": []}, "files.FindFiles": {"*": []},
             "files.FindLinks": {"*": []}, "files.FindDirectories": {"*": []}}  # fmt: skip
    first = run(opcases.role_calls(["roles.packages"], ["install"]), root, facts)
    inrelease = root / "apt" / "debian12-amd64" / "InRelease"
    assert f"upload {inrelease} -> {BUNDLE_DIR}/InRelease" in first
    assert not any(line.startswith("rsync ") for line in first)
    install = next(line for line in first if "apt-get" in line and " install " in line)
    assert all(name in install.split() for name in PUSH)


def test_the_wheelhouse_goes_once_and_a_rebuilt_venv_pushes_nothing(
    tmp_path: Path, host_root: Path
) -> None:
    from roles.venv import ensure_venv

    root, _ = bundle(tmp_path)
    source = PythonSource(kind=SourceKind.BUNDLE, wheelhouse=str(root / "wheels"))
    venv, requirements = "/opt/metalserve/venvs/hub", ("huggingface_hub==2.4.0",)
    calls = [lambda: ensure_venv(venv, requirements, source)]
    first = run(calls, root, FRESH)
    assert first[0] == pushed(root / "wheels", host_root, WHEELHOUSE_DIR, delete=True)
    assert first[1:3] == checked(WHEELHOUSE_DIR)
    assert len(first) == 4 and first[3].startswith(f"rm -rf {venv} && python3 -m venv")
    # an install cut short (no venv stamp): the venv is built again, the wheels are in place
    assert run(calls, root, FRESH) == first[3:]
    stamped = {**FRESH, "files.FileContents": {f"path={venv}/.metalserve-requirements":
                                               list(requirements)}}  # fmt: skip
    assert run(calls, root, stamped) == []


def test_weights_go_once_and_a_shard_cut_short_goes_again_alone(
    tmp_path: Path, host_root: Path
) -> None:
    root, _ = bundle(tmp_path)
    snapshot = root / "models" / "metalserve--tiny-moe"
    local_dir = "/var/lib/metalserve/models/metalserve--tiny-moe"
    calls = opcases.role_calls(["roles.weights"], ["install"])
    first = run(calls, root, {**FRESH, "roles.sizes.FileSizes": {"*": {}}})
    assert first[:3] == [pushed(snapshot, host_root, local_dir, delete=False), *checked(local_dir)]
    assert f"upload <memory> -> {local_dir}/{STAMP}" in first[3:]
    on_host = host_root / local_dir.lstrip("/")
    sizes = bundle_sizes(snapshot)
    assert {p.name: p.stat().st_size for p in on_host.iterdir()} == sizes
    stamp = {"repo": "metalserve/tiny-moe", "revision": "main", "commit": "bundle", "sizes": sizes}
    stamped = {
        **FRESH,
        "files.FileContents": {f"path={local_dir}/{STAMP}": json.dumps(stamp).splitlines()},
        "roles.sizes.FileSizes": {f"path={local_dir}": sizes},
    }
    assert run(calls, root, stamped) == []
    (shard,) = sizes
    (on_host / shard).write_bytes(b"cut")
    cut = {**stamped, "roles.sizes.FileSizes": {f"path={local_dir}": {shard: 3}},
           "files.Sha1File": {"*": None}}  # fmt: skip
    again = run(calls, root, cut)
    assert again[0] == pushed(snapshot, host_root, local_dir, delete=False)
    assert (on_host / shard).read_bytes() == (snapshot / shard).read_bytes()
