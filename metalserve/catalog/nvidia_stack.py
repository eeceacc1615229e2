"""The NVIDIA software stack a GPU host is pinned to: driver, fabric manager, CUDA, NCCL, fabric tools.

Every version and package name the GPU roles install is written here once, with where it comes from
(:data:`SOURCES`). The helpers turn the pins into what apt needs: package lists per distribution,
an apt preferences file, the packages to hold. Nothing here touches a host.

Example::

    >>> pins = NvidiaStackPins()
    >>> driver_packages(pins, Distro.UBUNTU_2404, KernelModuleFlavor.OPEN)[:2]
    ('nvidia-dkms-580-open', 'nvidia-kernel-common-580')
"""

from __future__ import annotations

import fnmatch
import re
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from metalserve.errors import PlanError
from metalserve.hardware import GpuModel
from metalserve.types import DebianVersion

__all__ = [
    "BLACKLISTED_MODULES",
    "FABRIC_PACKAGES",
    "NVIDIA_MODULES",
    "SOURCES",
    "AptPin",
    "Distro",
    "KernelModuleFlavor",
    "NvidiaStack",
    "NvidiaStackPins",
    "cuda_packages",
    "cuda_pin",
    "distro_of",
    "driver_packages",
    "driver_pin",
    "fabricmanager_packages",
    "fabricmanager_pin",
    "kernel_headers_packages",
    "keyring_deb_url",
    "module_blacklist_conf",
    "module_flavor",
    "nccl_packages",
    "nccl_pin",
    "packages_off_pin",
    "repository_line",
    "repository_list_path",
]


class Distro(StrEnum):
    """Distributions NVIDIA's CUDA apt repository serves, named as its URL path names them."""

    UBUNTU_2204 = "ubuntu2204"
    UBUNTU_2404 = "ubuntu2404"
    DEBIAN_12 = "debian12"

    @property
    def is_ubuntu(self) -> bool:
        return self.value.startswith("ubuntu")


class KernelModuleFlavor(StrEnum):
    """The two builds of ``nvidia.ko``: NVIDIA's open GPU kernel modules or the proprietary ones."""

    OPEN = "open"
    PROPRIETARY = "proprietary"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_DRIVER_VERSION = re.compile(r"^(\d{3})\.\d+(\.\d+)?$")


CUDA_MIN_DRIVER: dict[str, str] = {"13.0": "580.65.06"}
"""Oldest Linux driver for each CUDA toolkit (minor version compatibility aside); see SOURCES."""


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


class NvidiaStackPins(_Frozen):
    """The exact versions one host runs; every field's origin is in :data:`SOURCES`.

    Example::

        >>> NvidiaStackPins(driver_version="580.126.20").driver_branch
        580
    """

    driver_version: str = "580.105.08"
    cuda_version: str = "13.0"
    nccl_version: DebianVersion = "2.28.9-1+cuda13.0"

    @field_validator("driver_version")
    @classmethod
    def _driver_shape(cls, value: str) -> str:
        if not _DRIVER_VERSION.match(value):
            raise ValueError(f"driver version must look like 580.105.08 (got {value!r})")
        return value

    @model_validator(mode="after")
    def _driver_runs_the_toolkit(self) -> NvidiaStackPins:
        oldest = CUDA_MIN_DRIVER.get(self.cuda_version)
        if oldest is None:
            raise ValueError(
                f"CUDA {self.cuda_version} is not one metalserve knows the driver floor of "
                f"(known: {', '.join(CUDA_MIN_DRIVER)})"
            )
        if _version_key(self.driver_version) < _version_key(oldest):
            raise ValueError(
                f"driver {self.driver_version} is older than {oldest}, the oldest "
                f"that runs CUDA {self.cuda_version}"
            )
        if not self.nccl_version.endswith(f"+cuda{self.cuda_version}"):
            raise ValueError(
                f"NCCL {self.nccl_version} is not the build for CUDA {self.cuda_version} "
                f"(its version must end in +cuda{self.cuda_version})"
            )
        return self

    @property
    def driver_branch(self) -> int:
        return int(self.driver_version.split(".", 1)[0])

    @property
    def cuda_major(self) -> int:
        return int(self.cuda_version.split(".", 1)[0])

    @property
    def cuda_package_suffix(self) -> str:
        """``13.0`` → ``13-0``, as NVIDIA's package names spell toolkit versions."""
        return self.cuda_version.replace(".", "-")


SOURCES: dict[str, str] = {
    "driver_version": (
        "580.105.08, a 580 production-branch data-center driver: "
        "https://www.nvidia.com/en-gb/drivers/details/257620/ (cited in LibreELEC/LibreELEC.tv#10657); "
        "installed as nvidia-fabricmanager-580=580.105.08-1 on Ubuntu 24.04 in public install notes"
    ),
    "cuda_version": "docs/engine-facts: the vLLM 0.33 wheel links libcudart.so.13 (CUDA 13)",
    "CUDA_MIN_DRIVER": (
        "CUDA 13.0 release notes, table 'CUDA Toolkit and Corresponding Driver Versions': "
        "CUDA 13.0 GA needs >= 580.65.06 on Linux"
    ),
    "nccl_version": (
        "libnccl2=2.28.9-1+cuda13.0 and libnccl-dev=2.28.9-1+cuda13.0 as installed from the CUDA "
        "repository in public Dockerfiles; NCCL banner 'NCCL version 2.28.9+cuda13.0'"
    ),
    "keyring": (
        "NVIDIA Driver Installation Guide, 'Network repository installation': "
        "https://developer.download.nvidia.com/compute/cuda/repos/<distro>/<arch>/"
        "cuda-keyring_1.1-1_all.deb, which installs /usr/share/keyrings/cuda-archive-keyring.gpg"
    ),
    "ubuntu_driver_packages": (
        "NVIDIA Driver Installation Guide, 'Ubuntu 590 package renames' table: the 580 branch's "
        "Ubuntu packages carry the branch in their name (nvidia-dkms-580-open, nvidia-dkms-580, "
        "libnvidia-compute-580, cuda-drivers-580; unversioned from 590 on)"
    ),
    "debian_driver_packages": (
        "NVIDIA Driver Installation Guide, Debian, 'Compute-only (headless) system': "
        "nvidia-driver-cuda with nvidia-kernel-open-dkms (open) or nvidia-kernel-dkms (proprietary); "
        "the Debian packages are unversioned, and cuda-drivers-580 depends on them with '>=' only "
        "(forums.developer.nvidia.com 'cuda-drivers-580 ... pulls in v590 components'), so the "
        "branch holds only through the version pins written here"
    ),
    "fabricmanager": (
        "Fabric Manager User Guide: the fabric manager and the driver must be the same version; "
        "package nvidia-fabricmanager-<branch> with libnvidia-nscq-<branch> on Ubuntu and Debian "
        "alike: NVIDIA/apt-packaging-fabric-manager and NVIDIA/apt-packaging-libnvidia-nscq READMEs "
        "('Debian: apt-get install cuda-drivers-fabricmanager-XXX' which depends on "
        "nvidia-fabricmanager-XXX; 'Debian: apt-get install libnvidia-nscq-XXX'); "
        "NVIDIA/gpu-driver-container#735 for the mismatch failure"
    ),
    "default_module_flavor": (
        "NVIDIA Driver Installation Guide, 'Kernel modules': the open GPU kernel modules are the "
        "recommended flavor for Turing and newer since R560; where they are required comes from "
        "GpuModel.open_kernel_modules_required in metalserve.catalog.gpus"
    ),
    "cuda_packages": "CUDA Installation Guide for Linux, 'Meta packages': cuda-toolkit-<major>-<minor>",
    "nccl_packages": "NCCL Installation Guide, 'Ubuntu': libnccl2 and libnccl-dev from the CUDA repository",
    "fabric_packages": (
        "Debian/Ubuntu archive packages rdma-core, ibverbs-utils, perftest, infiniband-diags; "
        "nvidia-peermem ships inside the driver since R470 (GPUDirect RDMA guide)"
    ),
    "blacklist": (
        "operator pain point 5: nouveau, and on newer kernels nova_core/nova_drm, bind the GPU first "
        "unless blacklisted inside the initramfs (NVIDIA/ansible-role-nvidia-driver#44, "
        "beclab/Olares#3963)"
    ),
}
"""Where each fact in this module comes from, keyed by pin field or helper topic."""

ONLINE_REPOSITORY_BASE = "https://developer.download.nvidia.com/compute/cuda/repos"
KEYRING_DEB = "cuda-keyring_1.1-1_all.deb"
KEYRING_PATH = "/usr/share/keyrings/cuda-archive-keyring.gpg"

NVIDIA_MODULES = ("nvidia_peermem", "nvidia_drm", "nvidia_modeset", "nvidia_uvm", "nvidia")
"""NVIDIA's kernel modules, in the order they can be unloaded (users before what they use)."""

BLACKLISTED_MODULES = ("nouveau", "nova_core", "nova_drm")
"""Open-source drivers that would take the GPU before ``nvidia.ko`` does."""

FABRIC_PACKAGES = ("rdma-core", "ibverbs-utils", "perftest", "infiniband-diags")
"""Distribution packages for RDMA: verbs, ``ib_write_bw``, ``ibstat``; not pinned (distro-owned)."""


class NvidiaStack(_Frozen):
    """The inventory's say over the NVIDIA stack (``metalserve.nvidia`` in host data): the pins, and
    the kernel module flavor where the GPU leaves the choice open.

    Example (host data)::

        "nvidia": {"pins": {"driver_version": "580.126.20"}, "module_flavor": "proprietary"}
    """

    pins: NvidiaStackPins = NvidiaStackPins()
    module_flavor: KernelModuleFlavor | None = None


def module_flavor(gpu: GpuModel, requested: KernelModuleFlavor | None = None) -> KernelModuleFlavor:
    """The kernel module flavor for this GPU: open where the catalogue says it is required
    (Blackwell, GB10), else what the inventory chose, open by default (NVIDIA's advice since R560).

    Example::

        >>> from metalserve.catalog import gpus
        >>> module_flavor(gpus.RTX_PRO_6000).value
        'open'
        >>> module_flavor(gpus.RTX_4090, KernelModuleFlavor.PROPRIETARY).value
        'proprietary'
    """
    if gpu.open_kernel_modules_required and requested is KernelModuleFlavor.PROPRIETARY:
        raise PlanError(
            f"GPU kernel modules: expected open for {gpu.name}, found proprietary requested — "
            "fix: set metalserve.nvidia.module_flavor to open or leave it unset"
        )
    return requested or KernelModuleFlavor.OPEN


def distro_of(name: str, major: int | None, minor: int | None) -> Distro:
    """The repository distribution for pyinfra's ``server.LinuxDistribution`` fact values.

    Example::

        >>> distro_of("Ubuntu", 24, 4).value
        'ubuntu2404'
        >>> distro_of("Debian", 12, None).value
        'debian12'
    """
    known: dict[tuple[str, int | None, int | None], Distro] = {
        ("ubuntu", 22, 4): Distro.UBUNTU_2204,
        ("ubuntu", 24, 4): Distro.UBUNTU_2404,
        ("debian", 12, None): Distro.DEBIAN_12,
        ("debian", 12, 0): Distro.DEBIAN_12,
    }
    found = known.get((name.lower(), major, minor))
    if found is None:
        raise PlanError(
            f"NVIDIA stack: expected Ubuntu 22.04, Ubuntu 24.04 or Debian 12, found {name} "
            f"{major}.{minor} — fix: install a supported distribution on this GPU host"
        )
    return found


def driver_packages(
    pins: NvidiaStackPins, distro: Distro, flavor: KernelModuleFlavor
) -> tuple[str, ...]:
    """The headless compute driver: kernel module (DKMS), CUDA user libraries, ``nvidia-smi``,
    ``nvidia-persistenced``. No X11 or display packages on a serving host.
    """
    branch = pins.driver_branch
    if distro.is_ubuntu:
        dkms = (
            f"nvidia-dkms-{branch}-open"
            if flavor is KernelModuleFlavor.OPEN
            else f"nvidia-dkms-{branch}"
        )
        return (
            dkms,
            f"nvidia-kernel-common-{branch}",
            f"libnvidia-compute-{branch}",
            f"nvidia-utils-{branch}",
            f"nvidia-compute-utils-{branch}",
        )
    dkms = "nvidia-kernel-open-dkms" if flavor is KernelModuleFlavor.OPEN else "nvidia-kernel-dkms"
    return (dkms, "nvidia-driver-cuda", "nvidia-persistenced", "libcuda1")


def fabricmanager_packages(pins: NvidiaStackPins) -> tuple[str, ...]:
    """Fabric manager and the NVSwitch query library it needs, named for the driver branch."""
    branch = pins.driver_branch
    return (f"nvidia-fabricmanager-{branch}", f"libnvidia-nscq-{branch}")


def cuda_packages(pins: NvidiaStackPins) -> tuple[str, ...]:
    """The CUDA toolkit meta package for exactly the pinned ``major.minor``."""
    return (f"cuda-toolkit-{pins.cuda_package_suffix}",)


def nccl_packages() -> tuple[str, ...]:
    """NCCL runtime and headers; their version is :attr:`NvidiaStackPins.nccl_version`."""
    return ("libnccl2", "libnccl-dev")


def kernel_headers_packages(distro: Distro, kernel_release: str) -> tuple[str, ...]:
    """Headers for the running kernel, plus the meta package that brings them for future kernels.

    DKMS builds ``nvidia.ko`` against these; a kernel that arrives without them boots without a
    driver (operator pain point 1).

    Example::

        >>> kernel_headers_packages(Distro.DEBIAN_12, "6.1.0-28-cloud-amd64")
        ('linux-headers-6.1.0-28-cloud-amd64', 'linux-headers-cloud-amd64')
        >>> kernel_headers_packages(Distro.UBUNTU_2404, "6.8.0-51-generic")
        ('linux-headers-6.8.0-51-generic', 'linux-headers-generic')
    """
    pattern = r"^\d+\.\d+\.\d+-\d+-(?P<flavor>[a-z0-9-]+)$"
    match = re.match(pattern, kernel_release)
    if match is None:
        raise PlanError(
            f"kernel headers: expected a {distro.value} kernel release like 6.8.0-51-generic, "
            f"found {kernel_release!r} — fix: boot a distribution kernel so DKMS can build nvidia.ko"
        )
    return (f"linux-headers-{kernel_release}", f"linux-headers-{match.group('flavor')}")


def _repository_arch(deb_arch: str) -> str:
    arches = {"amd64": "x86_64", "arm64": "sbsa"}
    if deb_arch not in arches:
        raise PlanError(
            f"NVIDIA repository: expected a host architecture of amd64 or arm64, found {deb_arch!r} "
            "— fix: use a supported host"
        )
    return arches[deb_arch]


def _repository_url(distro: Distro, deb_arch: str) -> str:
    return f"{ONLINE_REPOSITORY_BASE}/{distro.value}/{_repository_arch(deb_arch)}/"


def keyring_deb_url(distro: Distro, deb_arch: str) -> str:
    """Where ``cuda-keyring`` is fetched from on an online host.

    Example::

        >>> keyring_deb_url(Distro.UBUNTU_2204, "amd64")
        'https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2204/x86_64/cuda-keyring_1.1-1_all.deb'
    """
    return _repository_url(distro, deb_arch) + KEYRING_DEB


def repository_list_path(distro: Distro, deb_arch: str) -> str:
    """The apt list ``cuda-keyring`` installs; we write the same file, so online there is no diff."""
    return f"/etc/apt/sources.list.d/cuda-{distro.value}-{_repository_arch(deb_arch)}.list"


def repository_line(distro: Distro, deb_arch: str) -> str:
    """The one-line apt source for NVIDIA's repository, signed by the cuda-keyring key: the line
    ``cuda-keyring`` writes itself. (A mirror or bundle site serves the NVIDIA packages from its own
    flat repository instead; see ``roles.packages``.)"""
    return f"deb [signed-by={KEYRING_PATH}] {_repository_url(distro, deb_arch)} /\n"


class AptPin(_Frozen):
    """Packages held at one version: apt prefers it (1001, even as a downgrade) and refuses every
    other version (-1); the same packages are ``apt-mark hold``-ed so unattended-upgrades leaves them
    alone (operator pain point 2).

    Example::

        >>> print(cuda_pin(NvidiaStackPins()).preferences(), end="")
        # Written by metalserve (metalserve/catalog/nvidia_stack.py); do not edit.
        Package: cuda-toolkit-13-0
        Pin: version 13.0.*
        Pin-Priority: 1001
        <BLANKLINE>
        Package: cuda-toolkit-13-0
        Pin: version *
        Pin-Priority: -1
    """

    packages: tuple[str, ...]
    version: str

    def preferences(self) -> str:
        """The ``/etc/apt/preferences.d`` file. apt takes the first matching record, so the pinned
        version's record comes before the catch-all."""
        names = " ".join(self.packages)
        return (
            "# Written by metalserve (metalserve/catalog/nvidia_stack.py); do not edit.\n"
            f"Package: {names}\nPin: version {self.version}\nPin-Priority: 1001\n\n"
            f"Package: {names}\nPin: version *\nPin-Priority: -1\n"
        )


def driver_pin(pins: NvidiaStackPins, distro: Distro, flavor: KernelModuleFlavor) -> AptPin:
    """The driver packages at exactly the pinned driver version (any Debian revision of it)."""
    return AptPin(
        packages=driver_packages(pins, distro, flavor), version=f"{pins.driver_version}-*"
    )


def fabricmanager_pin(pins: NvidiaStackPins) -> AptPin:
    """Fabric manager at the driver's exact version: a different one refuses to start (pain point 4)."""
    return AptPin(packages=fabricmanager_packages(pins), version=f"{pins.driver_version}-*")


def cuda_pin(pins: NvidiaStackPins) -> AptPin:
    """The toolkit at the pinned ``major.minor``; update releases of that minor are allowed."""
    return AptPin(packages=cuda_packages(pins), version=f"{pins.cuda_version}.*")


def nccl_pin(pins: NvidiaStackPins) -> AptPin:
    """NCCL at the exact pinned build, which names the CUDA it was built for."""
    return AptPin(packages=nccl_packages(), version=pins.nccl_version)


def packages_off_pin(pin: AptPin, installed: dict[str, list[str]]) -> tuple[str, ...]:
    """The pin's packages that are missing or at another version, given pyinfra's ``deb.DebPackages``
    fact (name → installed versions).

    Example::

        >>> pin = AptPin(packages=("libnccl2", "libnccl-dev"), version="2.28.9-1+cuda13.0")
        >>> packages_off_pin(pin, {"libnccl2": ["2.28.9-1+cuda13.0"], "libnccl-dev": ["2.27.7-1"]})
        ('libnccl-dev',)
    """
    return tuple(
        name
        for name in pin.packages
        if not any(fnmatch.fnmatchcase(v, pin.version) for v in installed.get(name, []))
    )


def module_blacklist_conf() -> str:
    """``/etc/modprobe.d`` content keeping nouveau and nova off the GPUs (also in the initramfs)."""
    lines = ["# Written by metalserve: nvidia.ko must be the first driver to bind the GPUs."]
    lines += [f"blacklist {name}" for name in BLACKLISTED_MODULES]
    lines.append("options nouveau modeset=0")
    return "\n".join(lines) + "\n"
