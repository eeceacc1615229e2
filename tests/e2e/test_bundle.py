"""Zero egress, proven: the sandbox serve deploy from an offline bundle alone, every packet a host
sends out of the site counted, and ``bundle verify`` naming a truncated and an altered file.

A sandbox of its own (layout ``mz``, 10.81.0.0/24), beside the shared one, booted fresh: its
hosts' inventory takes every input from the bundle (``"sources": {"bundle": DIR}``), the Hub mirror
is not started, and the controller's apt file server, though up, must not be asked. The bundle is
made with ``metalserve bundle build`` for that inventory (apt packages from Debian's archive, the
wheels as this machine's pip finds them, the llama.cpp source and the checkpoint the sandbox serves
otherwise) and cached under ``$METALSERVE_CACHE/e2e-bundle/<key>``, the key hashing what the
inventory needs, so a warm run builds nothing. How the packets are counted: ``tests/e2e/egress.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from metalserve.artefacts.cache import cache_key, cache_root, cached_build
from metalserve.bundle.build import inventory_needs
from metalserve.bundle.manifest import read_manifest
from metalserve.io.runner import DeployRun, run_pyinfra
from metalserve.offline import BUNDLE_FORMAT
from metalserve.sandbox.demo import SERVE, SandboxInputs, completion, prepare_inputs
from metalserve.sandbox.inventory import inventory_hosts
from metalserve.sandbox.layout import SandboxLayout
from metalserve.sandbox.state import SandboxState
from metalserve.sources import BundleLayout
from tests.e2e import egress
from tests.e2e.ownsandbox import own_sandbox

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        os.environ.get("METALSERVE_E2E_BUNDLE") == "0",
        reason="the bundle run is switched off: METALSERVE_E2E_BUNDLE=0",
    ),
]

REPO = Path(__file__).resolve().parents[2]
HOSTS = 2
KIND = "e2e-bundle"
DEPLOY_TIMEOUT_S = 40 * 60
BUILD_TIMEOUT_S = 30 * 60


@dataclass
class Site:
    layout: SandboxLayout
    state: SandboxState
    inputs: SandboxInputs
    workdir: Path

    def inventory(self, name: str, bundle: Path) -> Path:
        path = self.workdir / name
        path.write_text(f"hosts = {inventory_hosts(self.state, self.inputs, bundle)!r}\n")
        return path


def metalserve(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "metalserve.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    workdir = tmp_path_factory.mktemp("bundle")
    layout = SandboxLayout(prefix="mz", subnet="10.81.0.0/24", http_port=8084,
                           run_dir=workdir / "mz")  # fmt: skip
    with own_sandbox(layout, HOSTS) as state:
        # the inputs only: no Hub mirror is started, the bundle is the one source
        yield Site(layout, state, prepare_inputs(layout.run_dir, progress=print), workdir)


@pytest.fixture(scope="module")
def bundle(site: Site) -> Path:
    """The bundle for the site's inventory, built once per key by the operator's command."""
    needs, _ = inventory_needs(site.inventory("needs.py", site.workdir / "unused"))
    inputs = {
        "needs": needs.model_dump(mode="json"),
        "format": BUNDLE_FORMAT,
        "checkpoint": str(site.inputs.checkpoint),
        "llamacpp": site.inputs.llamacpp_sha256,
    }
    root = cache_root() / KIND / cache_key(inputs) / "bundle"
    inventory = site.inventory("inventory.py", root)

    def build(folder: Path) -> dict[str, object]:
        started = time.monotonic()
        run = metalserve("bundle", "build", str(inventory), "--out", str(folder / "bundle"),
                         timeout=BUILD_TIMEOUT_S)  # fmt: skip
        assert run.returncode == 0, f"{run.stdout}\n{run.stderr[-3000:]}"
        print(f"[bundle e2e] bundle built in {time.monotonic() - started:.0f} s: {run.stdout}")
        return {}

    entry = cached_build(KIND, inputs, build)
    assert entry.path / "bundle" == root
    return root


@pytest.fixture(scope="module")
def watched(site: Site, bundle: Path) -> dict[str, egress.Counts]:
    """The counters in place on every host, shown to count one attempt of each kind; returns
    each host's counts once the probes are done."""
    egress.watch(site.state)
    counts = {}
    for host in site.state.hosts:
        before = egress.read(host.netns)
        egress.probe(site.state, host.name, site.layout.http_port)
        counts[host.name] = egress.read(host.netns)
        seen = counts[host.name] - before
        assert seen.outside >= 2 and seen.dns >= 1 and seen.site >= 1, (host.name, seen)
    return counts


@pytest.fixture(scope="module")
def deployed(site: Site, bundle: Path, watched: dict[str, egress.Counts]) -> DeployRun:
    run = run_pyinfra(str(site.workdir / "inventory.py"), SERVE, on_line=print,
                      timeout_s=DEPLOY_TIMEOUT_S)  # fmt: skip
    print(f"[bundle e2e] deploy from the bundle took {run.elapsed:.0f} s")
    return run


def test_the_bundle_verifies_for_the_sandbox_inventory(site: Site, bundle: Path) -> None:
    run = metalserve("bundle", "verify", str(bundle), "--inventory",
                     str(site.workdir / "inventory.py"))  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    manifest = read_manifest(bundle)
    assert run.stdout.startswith(f"{bundle}: ok, {len(manifest.files)} files")
    assert {h.host for h in manifest.hosts} == {h.name for h in site.state.hosts}


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _replace(path: Path, data: bytes) -> None:
    """A new file at ``path`` (the cached bundle's own file, hard-linked, stays as it was)."""
    path.unlink()
    path.write_bytes(data)


def test_verify_names_a_truncated_file_and_an_altered_one(bundle: Path, tmp_path: Path) -> None:
    copy = tmp_path / "carried"
    shutil.copytree(bundle, copy, copy_function=_link_or_copy)
    manifest = read_manifest(bundle)
    tarball = BundleLayout().llamacpp_tarball
    deb = sorted(name for name in manifest.files if name.endswith(".deb"))[0]
    _replace(copy / tarball, (bundle / tarball).read_bytes()[:-1000])
    flipped = bytearray((bundle / deb).read_bytes())
    flipped[len(flipped) // 2] ^= 0x01  # one bit, same size
    _replace(copy / deb, bytes(flipped))

    run = metalserve("bundle", "verify", str(copy))
    assert run.returncode == 1
    assert run.stdout.splitlines() == [
        f"{copy}: {deb}: altered: its sha256 differs from the manifest's",
        f"{copy}: {tarball}: truncated or grown: {manifest.files[tarball].size - 1000} bytes, "
        f"the manifest says {manifest.files[tarball].size}",
    ]
    assert (bundle / deb).read_bytes() != bytes(flipped), "the cached bundle is untouched"


def test_the_deploy_from_the_bundle_alone_serves(site: Site, deployed: DeployRun) -> None:
    assert deployed.returncode == 0, deployed.output[-3000:]
    assert deployed.totals.errors == 0
    for host in site.state.hosts:
        text = completion(site.state.controller_netns, f"http://{host.ip}:8080/v1/completions",
                          site.inputs.api_key_file, site.inputs.repo_id)  # fmt: skip
        assert isinstance(text, str) and text, host.name


def test_no_host_sent_a_packet_out_of_the_site_or_asked_it_for_anything(
    site: Site, deployed: DeployRun, watched: dict[str, egress.Counts]
) -> None:
    during = {h.name: egress.read(h.netns) - watched[h.name] for h in site.state.hosts}
    print(f"[bundle e2e] counted during the deploy: {during}")
    assert deployed.returncode == 0, "counts of a deploy that did not finish prove nothing"
    assert during == {h.name: egress.Counts(outside=0, dns=0, site=0) for h in site.state.hosts}
