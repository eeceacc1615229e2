"""The NVIDIA stack pins and what apt is told: package names per distribution, the module flavor
rule, the version preferences and holds."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from metalserve.catalog import gpus
from metalserve.catalog import nvidia_stack as ns
from metalserve.catalog.nvidia_stack import Distro, KernelModuleFlavor, NvidiaStackPins
from metalserve.errors import PlanError
from metalserve.hardware import GpuModel
from tests.aptsim import AptRoot, installed, needs_apt, stanza

PINS = NvidiaStackPins()


def test_every_pin_names_its_source() -> None:
    assert set(NvidiaStackPins.model_fields) <= set(ns.SOURCES)
    assert all(source.strip() for source in ns.SOURCES.values())


def test_default_pins_are_the_580_branch_with_cuda_13() -> None:
    assert PINS.driver_branch == 580
    assert (PINS.cuda_major, PINS.cuda_package_suffix) == (13, "13-0")


def test_every_toolkit_floor_is_of_a_branch_whose_names_the_catalogue_spells() -> None:
    # Fabric manager and NSCQ dropped the branch from their names in R580: a toolkit admitting an
    # older driver would need the old names too.
    for floor in ns.CUDA_MIN_DRIVER.values():
        assert int(floor.split(".")[0]) >= ns.FIRST_BRANCH, floor


def test_a_driver_too_old_for_the_toolkit_is_refused() -> None:
    with pytest.raises(ValidationError, match="older than 580.65.06"):
        NvidiaStackPins(driver_version="570.195.03")


def test_a_toolkit_without_a_known_driver_floor_is_refused() -> None:
    with pytest.raises(ValidationError, match="CUDA 12.9 is not one metalserve knows"):
        NvidiaStackPins(cuda_version="12.9", nccl_version="2.27.3-1+cuda12.9")


def test_nccl_must_be_the_build_for_the_pinned_cuda() -> None:
    with pytest.raises(ValidationError, match=r"must end in \+cuda13.0"):
        NvidiaStackPins(nccl_version="2.27.3-1+cuda12.9")


@pytest.mark.parametrize(
    ("gpu", "flavor"),
    [
        (gpus.RTX_PRO_6000, KernelModuleFlavor.OPEN),
        (gpus.GB10, KernelModuleFlavor.OPEN),
        (gpus.H200_SXM, KernelModuleFlavor.OPEN),  # either runs; open unless asked otherwise
    ],
)
def test_open_is_the_default_module(gpu: GpuModel, flavor: KernelModuleFlavor) -> None:
    assert ns.module_flavor(gpu) is flavor


def test_proprietary_may_be_chosen_where_the_gpu_runs_either() -> None:
    chosen = ns.module_flavor(gpus.RTX_4090, KernelModuleFlavor.PROPRIETARY)
    assert chosen is KernelModuleFlavor.PROPRIETARY


def test_proprietary_on_blackwell_is_an_operator_error_in_one_line() -> None:
    with pytest.raises(PlanError) as error:
        ns.module_flavor(gpus.RTX_PRO_6000, KernelModuleFlavor.PROPRIETARY)
    message = str(error.value)
    assert "\n" not in message
    assert "expected open" in message and "found proprietary" in message and "fix:" in message


@pytest.mark.parametrize(
    ("name", "major", "minor", "distro"),
    [
        ("Ubuntu", 22, 4, Distro.UBUNTU_2204),
        ("Ubuntu", 24, 4, Distro.UBUNTU_2404),
        ("Debian", 12, None, Distro.DEBIAN_12),
    ],
)
def test_supported_distributions(name: str, major: int, minor: int | None, distro: Distro) -> None:
    assert ns.distro_of(name, major, minor) is distro


def test_other_distributions_are_refused_with_what_is_supported() -> None:
    with pytest.raises(
        PlanError, match="expected Ubuntu 22.04, Ubuntu 24.04 or Debian 12, found Ubuntu 20.4"
    ):
        ns.distro_of("Ubuntu", 20, 4)


def test_installed_packages_off_the_pin() -> None:
    pin = ns.driver_pin(PINS, Distro.UBUNTU_2404, KernelModuleFlavor.OPEN)
    on_host = {name: ["580.105.08-0ubuntu1"] for name in pin.packages}
    assert ns.packages_off_pin(pin, on_host) == ()
    on_host["libnvidia-compute-580"] = ["580.126.20-1ubuntu1"]
    del on_host["nvidia-utils-580"]
    assert ns.packages_off_pin(pin, on_host) == ("libnvidia-compute-580", "nvidia-utils-580")


@pytest.mark.parametrize(
    ("distro", "flavor", "expected"),
    [
        (
            Distro.UBUNTU_2204,
            KernelModuleFlavor.OPEN,
            (
                "nvidia-dkms-580-open",
                "nvidia-kernel-common-580",
                "libnvidia-compute-580",
                "nvidia-utils-580",
                "nvidia-compute-utils-580",
            ),
        ),
        (
            Distro.UBUNTU_2404,
            KernelModuleFlavor.PROPRIETARY,
            (
                "nvidia-dkms-580",
                "nvidia-kernel-common-580",
                "libnvidia-compute-580",
                "nvidia-utils-580",
                "nvidia-compute-utils-580",
            ),
        ),
        (
            Distro.DEBIAN_12,
            KernelModuleFlavor.OPEN,
            ("nvidia-kernel-open-dkms", "nvidia-driver-cuda", "nvidia-persistenced", "libcuda1"),
        ),
        (
            Distro.DEBIAN_12,
            KernelModuleFlavor.PROPRIETARY,
            ("nvidia-kernel-dkms", "nvidia-driver-cuda", "nvidia-persistenced", "libcuda1"),
        ),
    ],
)
def test_headless_driver_packages_per_distribution(
    distro: Distro, flavor: KernelModuleFlavor, expected: tuple[str, ...]
) -> None:
    assert ns.driver_packages(PINS, distro, flavor) == expected


def test_fabric_manager_has_r580_names_at_the_drivers_exact_version() -> None:
    pin = ns.fabricmanager_pin(NvidiaStackPins(driver_version="580.126.20"))
    assert pin.packages == ("nvidia-fabricmanager", "libnvidia-nscq")
    assert pin.version == "580.126.20-*"
    assert ns.fabricmanager_virtual_packages(PINS) == (
        "nvidia-fabricmanager-580",
        "libnvidia-nscq-580",
    )
    assert ns.driver_pin(PINS, Distro.DEBIAN_12, KernelModuleFlavor.OPEN).version == "580.105.08-*"


def test_nvidias_pinning_package_for_the_exact_driver_version() -> None:
    lock = ns.driver_lock_pin(NvidiaStackPins(driver_version="580.126.20"))
    assert lock == ns.AptPin(packages=("nvidia-driver-pinning-580.126.20",), version="580.126.20-*")


@pytest.mark.parametrize("distro", list(Distro))
def test_precompiled_modules_mean_no_dkms_package(distro: Distro) -> None:
    with_dkms = ns.driver_packages(PINS, distro, KernelModuleFlavor.OPEN)
    without = ns.driver_packages(PINS, distro, KernelModuleFlavor.OPEN, precompiled_modules=True)
    assert without == with_dkms[1:]
    assert all("dkms" not in name for name in without)


def test_module_packages_found_installed() -> None:
    on_host = {
        "linux-modules-nvidia-580-server-open-6.8.0-51-generic": ["6.8.0-51.52"],
        "linux-signatures-nvidia-6.8.0-51-generic": ["6.8.0-51.52"],
        "nvidia-dkms-580-open": ["580.105.08-0ubuntu1"],
        "bash": ["5.2.21-2ubuntu4"],
    }
    assert ns.precompiled_module_packages(on_host) == (
        "linux-modules-nvidia-580-server-open-6.8.0-51-generic",
        "linux-signatures-nvidia-6.8.0-51-generic",
    )
    assert ns.dkms_packages_installed(PINS, on_host) == ("nvidia-dkms-580-open",)


@pytest.mark.parametrize(
    ("gpu", "flavor", "path"),
    [
        (gpus.H200_SXM, KernelModuleFlavor.OPEN, ns.GpuDirectRdma.DMABUF),
        (gpus.H100_SXM, KernelModuleFlavor.PROPRIETARY, ns.GpuDirectRdma.PEERMEM),
        (gpus.RTX_4090, KernelModuleFlavor.OPEN, ns.GpuDirectRdma.OFF),
    ],
)
def test_gpudirect_rdma_path_follows_the_module_flavour(
    gpu: GpuModel, flavor: KernelModuleFlavor, path: ns.GpuDirectRdma
) -> None:
    decided = ns.gpudirect_rdma(gpu, flavor)
    assert decided.path is path
    assert decided.reason and "\n" not in decided.reason


def test_toolkit_and_nccl_pins() -> None:
    assert ns.cuda_pin(PINS) == ns.AptPin(packages=("cuda-toolkit-13-0",), version="13.0.*")
    assert ns.nccl_pin(PINS) == ns.AptPin(
        packages=("libnccl2", "libnccl-dev"), version="2.28.9-1+cuda13.0"
    )


def test_preferences_prefer_the_pin_and_refuse_every_other_version() -> None:
    text = ns.nccl_pin(PINS).preferences()
    stanzas = [block for block in text.split("\n\n") if "Package:" in block]
    assert stanzas == [
        "# Written by metalserve (metalserve/catalog/nvidia_stack.py); do not edit.\n"
        "Package: libnccl2 libnccl-dev\nPin: version 2.28.9-1+cuda13.0\nPin-Priority: 1001",
        "Package: libnccl2 libnccl-dev\nPin: version *\nPin-Priority: -1\n",
    ]


@pytest.mark.parametrize(
    ("distro", "release", "expected"),
    [
        (
            Distro.UBUNTU_2204,
            "5.15.0-126-generic",
            ("linux-headers-5.15.0-126-generic", "linux-headers-generic"),
        ),
        (
            Distro.UBUNTU_2404,
            "6.8.0-1021-nvidia",
            ("linux-headers-6.8.0-1021-nvidia", "linux-headers-nvidia"),
        ),
        (
            Distro.DEBIAN_12,
            "6.1.0-28-amd64",
            ("linux-headers-6.1.0-28-amd64", "linux-headers-amd64"),
        ),
    ],
)
def test_headers_for_the_running_kernel_and_the_next_ones(
    distro: Distro, release: str, expected: tuple[str, str]
) -> None:
    assert ns.kernel_headers_packages(distro, release) == expected


def test_a_custom_kernel_cannot_get_headers_from_apt() -> None:
    with pytest.raises(PlanError, match="expected a debian12 kernel release"):
        ns.kernel_headers_packages(Distro.DEBIAN_12, "6.18.44-fc-v782")  # this machine's kernel


def test_nvidia_repository_and_keyring_per_distribution_and_architecture() -> None:
    assert ns.repository_line(Distro.UBUNTU_2404, "amd64") == (
        "deb [signed-by=/usr/share/keyrings/cuda-archive-keyring.gpg] "
        "https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2404/x86_64/ /\n"
    )
    assert ns.keyring_deb_url(Distro.UBUNTU_2404, "arm64") == (
        "https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2404/sbsa/"
        "cuda-keyring_1.1-1_all.deb"
    )
    assert ns.repository_list_path(Distro.DEBIAN_12, "amd64") == (
        "/etc/apt/sources.list.d/cuda-debian12-x86_64.list"
    )


def test_unsupported_architecture_is_refused() -> None:
    with pytest.raises(PlanError, match="amd64 or arm64, found 'ppc64el'"):
        ns.keyring_deb_url(Distro.DEBIAN_12, "ppc64el")


def test_blacklist_keeps_nouveau_and_nova_off() -> None:
    lines = ns.module_blacklist_conf().splitlines()
    assert {"blacklist nouveau", "blacklist nova_core", "blacklist nova_drm"} <= set(lines)
    assert "options nouveau modeset=0" in lines


def _apt_candidate(tmp_path: Path, pin: ns.AptPin, available: list[str], on_host: str = "") -> str:
    """Ask the real apt which version of the pin's first package it would install, from a local
    repository offering ``available`` (and, optionally, ``on_host`` already installed)."""
    package = pin.packages[0]
    apt = AptRoot(
        tmp_path,
        offered=[stanza(package, version) for version in available],
        status=[installed(stanza(package, on_host))] if on_host else [],
        preferences=[pin.preferences()],
    )
    return apt.candidate(package)


@needs_apt
def test_apt_installs_the_pinned_nccl_although_a_newer_one_is_offered(tmp_path: Path) -> None:
    offered = ["2.28.9-1+cuda13.0", "2.29.2-1+cuda13.0", "2.28.9-1+cuda12.9"]
    assert _apt_candidate(tmp_path, ns.nccl_pin(PINS), offered) == "2.28.9-1+cuda13.0"


@needs_apt
@pytest.mark.parametrize("revision", ["1", "0ubuntu1", "1ubuntu1"])
def test_apt_keeps_the_exact_driver_whatever_the_repository_revision(
    tmp_path: Path, revision: str
) -> None:
    pin = ns.driver_pin(PINS, Distro.DEBIAN_12, KernelModuleFlavor.OPEN)
    offered = [f"580.105.08-{revision}", "580.126.20-1", "590.44.01-1"]
    assert _apt_candidate(tmp_path, pin, offered) == f"580.105.08-{revision}"


@needs_apt
def test_apt_moves_a_drifted_driver_back_to_the_pin(tmp_path: Path) -> None:
    pin = ns.driver_pin(PINS, Distro.UBUNTU_2404, KernelModuleFlavor.OPEN)
    # NVIDIA's Ubuntu revisions: -0ubuntu1 up to 580.105.08, -1ubuntu1 from 580.126.09 (SOURCES)
    offered = ["580.105.08-0ubuntu1", "580.126.20-1ubuntu1"]
    candidate = _apt_candidate(tmp_path, pin, offered, on_host="580.126.20-1ubuntu1")
    assert candidate == "580.105.08-0ubuntu1"


@needs_apt
def test_without_a_pinned_version_on_offer_apt_installs_nothing(tmp_path: Path) -> None:
    assert _apt_candidate(tmp_path, ns.cuda_pin(PINS), ["13.1.0-1", "12.9.1-1"]) == "(none)"
