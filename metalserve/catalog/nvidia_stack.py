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

import re
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from metalserve.errors import PlanError

__all__ = [
    "BLACKLISTED_MODULES",
    "FABRIC_PACKAGES",
    "NVIDIA_MODULES",
    "SOURCES",
    "AptSource",
    "Distro",
    "KernelModuleFlavor",
    "NvidiaStackPins",
    "AptPin",
    "cuda_packages",
    "cuda_pin",
    "driver_packages",
    "driver_pin",
    "fabricmanager_needed",
    "fabricmanager_packages",
    "fabricmanager_pin",
    "kernel_headers_packages",
    "keyring_deb_url",
    "module_blacklist_conf",
    "module_flavor",
    "nccl_packages",
    "nccl_pin",
    "repository_line",
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


class NvidiaStackPins(_Frozen):
    """The exact versions one host runs; every field's origin is in :data:`SOURCES`.

    Example::

        >>> NvidiaStackPins(driver_version="580.126.20").driver_branch
        580
    """

    driver_version: str = "580.105.08"
    cuda_version: str = "13.0"
    cuda_min_driver: str = "580.65.06"
    nccl_version: str = "2.28.9-1+cuda13.0"

    @field_validator("driver_version", "cuda_min_driver")
    @classmethod
    def _driver_shape(cls, value: str) -> str:
        if not _DRIVER_VERSION.match(value):
            raise ValueError(f"driver version must look like 580.105.08 (got {value!r})")
        return value

    @model_validator(mode="after")
    def _driver_runs_the_toolkit(self) -> NvidiaStackPins:
        if _version_key(self.driver_version) < _version_key(self.cuda_min_driver):
            raise ValueError(
                f"driver {self.driver_version} is older than {self.cuda_min_driver}, the oldest "
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
    "cuda_min_driver": (
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
        "package nvidia-fabricmanager-<branch> with libnvidia-nscq-<branch> (CUDA repository "
        "listings; NVIDIA/gpu-driver-container#735 for the mismatch failure)"
    ),
    "open_modules": (
        "NVIDIA Driver Installation Guide, 'Kernel modules': Blackwell and Grace Hopper GPUs need the "
        "open kernel modules; Maxwell, Pascal and Volta need the proprietary ones; Turing to Hopper "
        "run either (open recommended since R560)"
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

# Compute capability bounds of the open-module rule (see SOURCES["open_modules"]).
_FIRST_OPEN_ONLY_CC = (10, 0)  # Blackwell data centre (B200 10.0, GB10 12.1, RTX PRO 6000 12.0)
_FIRST_OPEN_CAPABLE_CC = (7, 5)  # Turing


class AptSource(_Frozen):
    """Where NVIDIA's CUDA repository is read from: NVIDIA online, a mirror, or an offline bundle.

    ``base`` replaces ``https://developer.download.nvidia.com/compute/cuda/repos``; a mirror or
    bundle keeps NVIDIA's layout below it (``<distro>/<arch>/``), so the keyring and signatures are
    the same in all three modes.
    """

    base: str = ONLINE_REPOSITORY_BASE

    @field_validator("base")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^(https?|file):/", value):
            raise ValueError(f"repository base must be an http(s):// or file:/ URL (got {value!r})")
        return value.rstrip("/")


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def _cc_key(compute_capability: str) -> tuple[int, int]:
    major, _, minor = compute_capability.partition(".")
    return int(major), int(minor or 0)


def module_flavor(
    compute_capabilities: list[str] | tuple[str, ...],
    requested: KernelModuleFlavor | None = None,
) -> KernelModuleFlavor:
    """The kernel module flavor for these GPUs: forced where the hardware decides, else chosen.

    Example::

        >>> module_flavor(["12.0"]).value
        'open'
        >>> module_flavor(["8.9"], KernelModuleFlavor.PROPRIETARY).value
        'proprietary'
    """
    if not compute_capabilities:
        raise PlanError(
            "GPU kernel modules: expected at least one GPU, found none — fix: "
            "name the hardware profile of this host"
        )
    keys = [_cc_key(cc) for cc in compute_capabilities]
    needs_open = any(key >= _FIRST_OPEN_ONLY_CC for key in keys)
    needs_proprietary = any(key < _FIRST_OPEN_CAPABLE_CC for key in keys)
    if needs_open and needs_proprietary:
        raise PlanError(
            "GPU kernel modules: expected GPUs that share one module flavor, found Blackwell "
            "(open only) beside pre-Turing (proprietary only) — fix: split them across hosts"
        )
    forced = (
        KernelModuleFlavor.OPEN
        if needs_open
        else KernelModuleFlavor.PROPRIETARY
        if needs_proprietary
        else None
    )
    if forced is not None and requested is not None and requested != forced:
        raise PlanError(
            f"GPU kernel modules: expected {forced.value} for compute capability "
            f"{', '.join(sorted(set(compute_capabilities)))}, found {requested.value} requested — "
            f"fix: set the module flavor to {forced.value} or leave it unset"
        )
    return forced or requested or KernelModuleFlavor.OPEN


def fabricmanager_needed(has_nvswitch: bool) -> bool:
    """Fabric manager runs only where NVSwitches join the GPUs (HGX H100/H200/B200 boards).

    Example::

        >>> fabricmanager_needed(False)
        False
    """
    return has_nvswitch


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


def _repository_url(source: AptSource, distro: Distro, deb_arch: str) -> str:
    return f"{source.base}/{distro.value}/{_repository_arch(deb_arch)}/"


def keyring_deb_url(source: AptSource, distro: Distro, deb_arch: str) -> str:
    """Where ``cuda-keyring`` is fetched from: the same layout online, on a mirror or in a bundle.

    Example::

        >>> keyring_deb_url(AptSource(), Distro.UBUNTU_2204, "amd64")
        'https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2204/x86_64/cuda-keyring_1.1-1_all.deb'
    """
    return _repository_url(source, distro, deb_arch) + KEYRING_DEB


def repository_line(source: AptSource, distro: Distro, deb_arch: str) -> str:
    """The one-line apt source for NVIDIA's repository, signed by the cuda-keyring key.

    Online this is the line ``cuda-keyring`` writes itself; for a mirror only the URL differs.
    """
    return f"deb [signed-by={KEYRING_PATH}] {_repository_url(source, distro, deb_arch)} /\n"


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


def module_blacklist_conf() -> str:
    """``/etc/modprobe.d`` content keeping nouveau and nova off the GPUs (also in the initramfs)."""
    lines = ["# Written by metalserve: nvidia.ko must be the first driver to bind the GPUs."]
    lines += [f"blacklist {name}" for name in BLACKLISTED_MODULES]
    lines.append("options nouveau modeset=0")
    return "\n".join(lines) + "\n"
