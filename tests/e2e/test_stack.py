"""deploy/drivers.py for real on a sandbox host that stands in for an HGX H200 (Debian 12).

The host is a systemd-nspawn container with no GPU, and NVIDIA's repository is out of reach, so
the site repository carries stand-in packages under NVIDIA's names and versions (see
metalserve/sandbox/standins.py), each pinned one offered beside a newer release and, for the driver,
beside a newer branch; fabric manager and NSCQ provide their pre-R580 names only as virtual packages,
as NVIDIA's R580 repository does. What runs for real: the site repository, NVIDIA's pinning package
(a stand-in without its preferences file), the apt pins, the exact-version installs, the holds, the
blacklist file, and the CUDA/NCCL checks. What is skipped, and said: kernel headers, initramfs, module loading,
persistenced, fabric manager and nvidia-smi checks — a container's kernel is not its own.

Runs after test_serve.py (file order) on the second host, and puts it back as it found it.
"""

from __future__ import annotations

import runpy
from collections.abc import Iterator

import pytest
import testinfra

from metalserve.catalog.nvidia_stack import (
    NvidiaStackPins,
    fabricmanager_packages,
    fabricmanager_virtual_packages,
)
from metalserve.io.runner import DeployRun, run_pyinfra
from metalserve.sandbox import fileserver
from metalserve.sandbox.inventory import host_data
from metalserve.sandbox.layout import default_layout
from metalserve.sandbox.lifecycle import APT_SERVED_NAME
from metalserve.sandbox.recipe import RootfsRecipe
from metalserve.sandbox.standins import (
    NEWER_BRANCH_DRIVER,
    NEWER_DRIVER,
    stack_pins,
    standin_repo,
)
from metalserve.sandbox.state import SandboxState

pytestmark = pytest.mark.e2e

PINS = NvidiaStackPins()
PINNED = {pin.packages: pin.version for pin in stack_pins(PINS)}
ALL_PACKAGES = [name for names in PINNED for name in names]
SITE_ONLY = "-o Dir::Etc::sourcelist=sources.list.d/metalserve.list -o Dir::Etc::sourceparts=-"


@pytest.fixture(scope="module")
def stack_host(
    sandbox: SandboxState, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """(host name, inventory path): the last sandbox host, as an H200 node on the stand-in repo."""
    layout = default_layout()
    repo = standin_repo((layout.www_dir / APT_SERVED_NAME).resolve(), RootfsRecipe().suite)
    url = fileserver.serve_dir(layout, "apt-nvidia", repo)
    target = sandbox.hosts[-1]
    h200 = runpy.run_path("inventories/h200.py")["hosts"][0][1]["metalserve"]
    data = {
        **host_data(sandbox, target),
        "metalserve": {**h200, "sources": {"apt": {"kind": "mirror", "url": url}}},
    }
    data.pop("sandbox")
    inventory = tmp_path_factory.mktemp("stack") / "h200_sandbox.py"
    inventory.write_text(f"hosts = [({target.name!r}, {data!r})]\n")
    yield target.name, str(inventory)
    put_back(testinfra.get_host(f"paramiko://{target.name}", ssh_config=str(sandbox.ssh_config)))


def put_back(host: testinfra.host.Host) -> None:
    """The stand-in NVIDIA stack off the host again: unheld, purged, its pins and blacklist gone."""
    names = " ".join(ALL_PACKAGES)
    host.run(f"apt-mark unhold {names}; DEBIAN_FRONTEND=noninteractive apt-get purge -y {names}; "
             "rm -f /etc/apt/preferences.d/metalserve-* /etc/modprobe.d/metalserve-nvidia-blacklist.conf")  # fmt: skip


@pytest.fixture(scope="module")
def first_run(stack_host: tuple[str, str]) -> DeployRun:
    return run_pyinfra(stack_host[1], "deploy/drivers.py", on_line=print, timeout_s=900)


@pytest.fixture(scope="module")
def host(sandbox: SandboxState, stack_host: tuple[str, str]) -> testinfra.host.Host:
    return testinfra.get_host(f"paramiko://{stack_host[0]}", ssh_config=str(sandbox.ssh_config))


def test_the_stack_deploys_and_says_what_it_skipped(
    first_run: DeployRun, stack_host: tuple[str, str]
) -> None:
    assert first_run.returncode == 0, first_run.output[-3000:]
    assert first_run.totals.errors == 0
    name = stack_host[0]
    assert (
        f"[{name}] runs in a systemd-nspawn container: kernel headers, initramfs and module loading"
        in first_run.output
    )
    assert f"[{name}] sees no NVIDIA GPU in its container" in first_run.output


def test_every_package_sits_at_its_pin_though_a_newer_one_is_offered(
    first_run: DeployRun, host: testinfra.host.Host
) -> None:
    offered = host.run("apt-cache madison nvidia-driver-cuda").stdout
    assert NEWER_DRIVER in offered and NEWER_BRANCH_DRIVER in offered  # there to be refused
    for names, version in PINNED.items():
        for name in names:
            installed = host.run(f"dpkg-query -W -f '${{Version}}' {name}").stdout
            assert installed and installed.startswith(version.rstrip("*")), (name, installed)


def test_every_pinned_package_is_held(first_run: DeployRun, host: testinfra.host.Host) -> None:
    held = set(host.run("apt-mark showhold").stdout.split())
    assert set(ALL_PACKAGES) <= held


def test_an_unattended_upgrade_moves_nothing(
    first_run: DeployRun, host: testinfra.host.Host
) -> None:
    before = host.run(f"dpkg-query -W {' '.join(ALL_PACKAGES)}").stdout
    upgrade = host.run(f"DEBIAN_FRONTEND=noninteractive apt-get {SITE_ONLY} -y dist-upgrade")
    assert upgrade.rc == 0, upgrade.stderr
    assert host.run(f"dpkg-query -W {' '.join(ALL_PACKAGES)}").stdout == before


def test_fabric_manager_is_installed_under_its_r580_names_only(
    first_run: DeployRun, host: testinfra.host.Host
) -> None:
    for name in fabricmanager_packages(PINS):
        assert host.package(name).is_installed, name
    for virtual in fabricmanager_virtual_packages(PINS):
        assert not host.package(virtual).is_installed, virtual
        # as on NVIDIA's R580 repository (NVIDIA/gpu-driver-container#451): no version to pin
        at_pin = host.run(f"apt-get {SITE_ONLY} -s install {virtual}={PINS.driver_version}-1")
        assert at_pin.rc != 0 and "was not found" in at_pin.stderr, (virtual, at_pin.stderr)


def test_nouveau_and_nova_are_blacklisted(first_run: DeployRun, host: testinfra.host.Host) -> None:
    blacklist = host.file("/etc/modprobe.d/metalserve-nvidia-blacklist.conf")
    assert blacklist.exists and "blacklist nouveau" in blacklist.content_string


def test_a_second_run_changes_nothing(first_run: DeployRun, stack_host: tuple[str, str]) -> None:
    again = run_pyinfra(stack_host[1], "deploy/drivers.py", on_line=print, timeout_s=600)
    assert again.returncode == 0, again.output[-3000:]
    assert again.totals.changed == 0 and again.totals.errors == 0
