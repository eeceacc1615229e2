"""The NVIDIA software stack a GPU host is pinned to: driver, fabric manager, CUDA, NCCL, fabric tools.

Every version and package name the GPU roles install is written here once, with where it comes from
(:data:`SOURCES`). The helpers turn the pins into what apt needs: package lists per distribution,
an apt preferences file, the packages to hold. Nothing here touches a host.

Example::

    >>> pins = NvidiaStackPins()
    >>> driver_packages(pins, Distro.UBUNTU_2404, KernelModuleFlavor.OPEN)[:2]
    ('nvidia-dkms-580-open', 'nvidia-kernel-common-580')
    >>> fabricmanager_packages(pins)
    ('nvidia-fabricmanager', 'libnvidia-nscq')
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
    "DMABUF_MIN_KERNEL",
    "FABRIC_PACKAGES",
    "KEYRING_PACKAGE",
    "NVIDIA_MODULES",
    "PACKAGE_NAMES",
    "SOURCES",
    "AptPin",
    "Distro",
    "GpuDirect",
    "GpuDirectRdma",
    "KernelModuleFlavor",
    "NvidiaStack",
    "NvidiaStackPins",
    "PackageName",
    "cuda_packages",
    "cuda_pin",
    "cuda_runtime_problem",
    "dkms_packages_installed",
    "distro_of",
    "driver_lock_pin",
    "driver_packages",
    "driver_pin",
    "fabricmanager_packages",
    "fabricmanager_pin",
    "fabricmanager_virtual_packages",
    "gpudirect_rdma",
    "kernel_headers_packages",
    "keyring_deb_url",
    "module_blacklist_conf",
    "module_flavor",
    "nccl_packages",
    "nccl_pin",
    "other_driver_pinning_packages",
    "packages_off_pin",
    "precompiled_module_packages",
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

CUDA_MAJOR_MIN_DRIVER: dict[int, str] = {12: "525.60.13", 13: CUDA_MIN_DRIVER["13.0"]}
"""Oldest Linux driver that runs every toolkit of a CUDA major, through minor version compatibility:
what a prebuilt wheel (torch's nvidia-cuda-runtime) asks of the host's driver; see SOURCES."""

FIRST_BRANCH = 580
"""The oldest driver branch whose package names this catalogue spells (SOURCES["fabricmanager"]:
R580 renamed fabric manager and NSCQ). Every toolkit's driver floor above is of this branch or later,
so every pin the catalogue accepts is (a test keeps it so)."""


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def cuda_runtime_problem(driver_version: str, cuda_major: int) -> str | None:
    """Why ``driver_version`` cannot run CUDA ``cuda_major`` wheels, or None when it can.

    Example::

        >>> cuda_runtime_problem("570.133.20", 13)
        'CUDA 13 needs driver >= 580.65.06, found 570.133.20'
    """
    oldest = CUDA_MAJOR_MIN_DRIVER.get(cuda_major)
    if oldest is None:
        known = ", ".join(str(m) for m in CUDA_MAJOR_MIN_DRIVER)
        return f"CUDA {cuda_major} has no driver floor metalserve knows (known: {known})"
    if _version_key(driver_version) < _version_key(oldest):
        return f"CUDA {cuda_major} needs driver >= {oldest}, found {driver_version}"
    return None


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
        "NVIDIA's Ubuntu repository carries it as 580.105.08-0ubuntu1 "
        "(cuda-drivers-580_580.105.08-0ubuntu1_arm64.deb in "
        "https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2404/sbsa/, as listed in public "
        "notes; not fetched from here). The pins accept any revision of the version (<version>-*)"
    ),
    "cuda_version": (
        "the vllm 0.33.0 wheel on PyPI (https://pypi.org/project/vllm/0.33.0/) links "
        "libcudart.so.13 (CUDA 13)"
    ),
    "CUDA_MIN_DRIVER": (
        "CUDA 13.0 release notes, table 'CUDA Toolkit and Corresponding Driver Versions': "
        "CUDA 13.0 GA needs >= 580.65.06 on Linux"
    ),
    "CUDA_MAJOR_MIN_DRIVER": (
        "CUDA 12.x release notes, table 'CUDA Toolkit and Minimum Required Driver Version for CUDA "
        "Minor Version Compatibility': CUDA 12.x >= 525.60.13 on Linux; CUDA Compatibility guide, "
        "'Minor Version Compatibility' (https://docs.nvidia.com/deploy/cuda-compatibility/"
        "minor-version-compatibility.html): CUDA 13.x >= 580, CUDA 12.x >= 525 — the first R580 "
        "driver being CUDA 13.0 GA's 580.65.06"
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
        "NVIDIA Driver Installation Guide, 'Ubuntu 590 package renames' table "
        "(https://docs.nvidia.com/datacenter/tesla/driver-installation-guide/recent-updates.html): "
        "the 580 branch's Ubuntu packages carry the branch in their name (nvidia-dkms-580-open, "
        "nvidia-dkms-580, libnvidia-compute-580, cuda-drivers-580; unversioned from 590 on). "
        "NVIDIA's repository revisions are -0ubuntu1 up to 580.105.08 and -1ubuntu1 from 580.126.09 "
        "(cuda-drivers-580_580.126.09-1ubuntu1 in the ubuntu2404/sbsa listing above; "
        "cuda-drivers-580=580.126.16-1ubuntu1 in dsx-ai-factory/infra-controller#5927)"
    ),
    "debian_driver_packages": (
        "NVIDIA Driver Installation Guide, Debian, 'Compute-only (headless) system': "
        "nvidia-driver-cuda with nvidia-kernel-open-dkms (open) or nvidia-kernel-dkms (proprietary); "
        "the Debian packages are unversioned, and cuda-drivers-580 depends on them with '>=' only "
        "(forums.developer.nvidia.com 'cuda-drivers-580 ... pulls in v590 components'), so the rest "
        "of the user space holds only through NVIDIA's pinning package (driver_pinning)"
    ),
    "driver_pinning": (
        "NVIDIA Driver Installation Guide, 'Recent Updates', 'Version locking packages for Ubuntu / "
        "Debian' (https://docs.nvidia.com/datacenter/tesla/driver-installation-guide/"
        "recent-updates.html): driver pinning packages lock a host to a branch or to one driver "
        "version, 'install the pinning package prior to installing the driver'. NVIDIA's own "
        "packaging spells the exact-version package nvidia-driver-pinning-${DRIVER_VERSION} and "
        "says what it does: it 'pins the whole driver tree to DRIVER_VERSION' and 'constrains the "
        "driver-versioned packages (fabricmanager, nscq, imex)' (NVIDIA/gpu-driver-container "
        "ubuntu26.04/install.sh and ubuntu26.04/README.md at commit 0c547950, still so at "
        "06a208ca; also kata-containers/kata-containers tools/osbuilder/rootfs-builder/nvidia/"
        "nvidia_chroot.sh at ffc87251, NVIDIA's GPU rootfs). That repository uses it on Ubuntu "
        "26.04 only, whose builds exclude 580; that 580 releases have it on Ubuntu 22.04/24.04 "
        "and Debian 12 is from public listings ('nvidia-driver-pinning-580.105.08 - APT driver "
        "pinning file for driver version 580.105.08' on debian12/x86_64; "
        "nvidia-driver-pinning-580.126.20_580.126.20-1 on ubuntu2404/x86_64; "
        "nvidia-driver-pinning-590.48.01=590.48.01-0ubuntu1 on ubuntu2404/sbsa in "
        "dsx-ai-factory/infra-controller#6049). It must be installed by an apt run of its own: "
        "installed in the same transaction as the driver, its pin is not active while apt resolves "
        "that transaction (NVIDIA/NemoClaw#8197, fixed in #8207). The apt preferences file it "
        "ships was not read from here (NVIDIA's repository is unreachable from this project's "
        "build machine), so metalserve's own pins (AptPin) hold every package it names as well"
    ),
    "fabricmanager": (
        "From branch 580 NVIDIA ships fabric manager and the NVSwitch query library as "
        "nvidia-fabricmanager and libnvidia-nscq: NVIDIA/gpu-driver-container "
        "ubuntu22.04/install.sh and ubuntu24.04/install.sh, commit 78fa4ac0 'add driver "
        "580.65.06' (DRIVER_BRANCH >= 580 → nvidia-fabricmanager=${DRIVER_VERSION}-1, "
        "libnvidia-nscq=${DRIVER_VERSION}-1; earlier branches nvidia-fabricmanager-<branch>), "
        "commit dc7857e8 (PR #451 'Fix: precompiled R580 package install error', the same for the "
        "precompiled images), commit feb891d6 ('=${DRIVER_VERSION}*': later Ubuntu builds carry "
        "-1ubuntu1, e.g. libnvidia-nscq / nvidia-fabricmanager 595.71.05-1ubuntu1 listed in PR "
        "#899), installed at the driver's version and held (ubuntu24.04/install.sh at 06a208ca). "
        "The Driver Installation Guide's 590 rename table lists libnvidia-nscq as 'no change'. "
        "Fabric Manager User Guide: fabric manager and driver must be the same version "
        "(NVIDIA/gpu-driver-container#735 for the mismatch failure). The Debian 12 names of the "
        "580 builds are not in any NVIDIA source read here; the same names are assumed"
    ),
    "fabricmanager_provides": (
        "nvidia-fabricmanager-580 is only a virtual package of nvidia-fabricmanager in NVIDIA's "
        "repository: apt's error quoted in NVIDIA/gpu-driver-container#451 ('Package "
        "nvidia-fabricmanager-580 is a virtual package provided by: nvidia-fabricmanager "
        "580.65.06-1'; \"Version '580.65.06-1' for 'nvidia-fabricmanager-580' was not found\"). "
        "Before 580 it was the other way round: nvidia-fabricmanager-<branch> and "
        "libnvidia-nscq-<branch> were the real packages, providing the bare names "
        "(NVIDIA/apt-packaging-fabric-manager and NVIDIA/apt-packaging-libnvidia-nscq "
        "debian/templates/control.in). libnvidia-nscq-580 as a virtual package of libnvidia-nscq "
        "is by analogy: NVIDIA's kata-containers rootfs moved from libnvidia-nscq-<branch> to "
        "libnvidia-nscq with the same change (kata-containers commit ffc87251)"
    ),
    "default_module_flavor": (
        "NVIDIA Driver Installation Guide, 'Kernel modules': the open GPU kernel modules are the "
        "recommended flavor for Turing and newer since R560; where they are required comes from "
        "GpuModel.open_kernel_modules_required in metalserve.catalog.gpus"
    ),
    "precompiled_modules": (
        "Ubuntu's precompiled, signed NVIDIA modules are the linux-modules-nvidia-<branch>-server"
        "[-open]-<kernel>, linux-objects-nvidia-… and linux-signatures-nvidia-<kernel> packages "
        "(NVIDIA/gpu-driver-container ubuntu22.04/precompiled/local-repo.sh). They are built for "
        "Canonical's user space (580.x.y-0ubuntu…), not NVIDIA's repository builds (580.x.y-1ubuntu1): "
        "a public DGX Spark install record reports Canonical's linux-modules-nvidia-580-open-… "
        "requiring a lower nvidia-kernel-common-580 than NVIDIA's, failing the transaction. So a "
        "host takes nvidia.ko from one source only: precompiled packages where installed, else DKMS"
    ),
    "dgx_os": (
        "DGX OS identifies itself in /etc/dgx-release (DGX_NAME, DGX_SWBUILD_VERSION, "
        "DGX_OTA_VERSION; read that way by public tooling such as ultralytics' is_dgx()). "
        "It comes with NVIDIA's repositories configured (DGX OS 7 User Guide, "
        "https://docs.nvidia.com/dgx/dgx-os-7-user-guide/), so metalserve adds no CUDA repository "
        "line there: inferred from the guide's install steps, not checked on a DGX OS host"
    ),
    "cuda_packages": "CUDA Installation Guide for Linux, 'Meta packages': cuda-toolkit-<major>-<minor>",
    "nccl_packages": "NCCL Installation Guide, 'Ubuntu': libnccl2 and libnccl-dev from the CUDA repository",
    "fabric_packages": (
        "Debian/Ubuntu archive packages rdma-core, ibverbs-utils, perftest, infiniband-diags; "
        "nvidia-peermem ships inside the driver since R470 (GPUDirect RDMA guide)"
    ),
    "gpudirect_rdma": (
        "GPU Operator, 'GPUDirect RDMA and GPUDirect Storage' "
        "(https://docs.nvidia.com/datacenter/cloud-native/gpu-operator/latest/gpu-operator-rdma.html): "
        "GPU memory is registered with the NIC through DMA-BUF or the legacy nvidia-peermem module, "
        "'NVIDIA recommends using the DMA-BUF'; DMA-BUF needs the open kernel modules. The kernel "
        "imports dma-buf into RDMA memory regions from Linux 5.12 (oneCCL 'Enabling OFI/verbs/dmabuf "
        "Support': kernel >= 5.12, rdma-core >= 34). nvidia-peermem's init returns -EINVAL unless "
        "built with NV_MLNX_IB_PEER_MEM_SYMBOLS_PRESENT, i.e. against MLNX_OFED/DOCA-OFED "
        "(NVIDIA/open-gpu-kernel-modules kernel-open/nvidia-peermem/nvidia-peermem.c at 0dd4d36d, "
        "nv_mem_client_init: '#else return -EINVAL'). NCCL (NVIDIA/nccl v2.28.9-1) offers an HCA "
        "GPU memory through nvidia-peermem when /sys/module/nvidia_peermem is loaded and through "
        "DMA-BUF when the HCA's kernel takes dma-buf (src/transport/net_ib.cc, "
        "ncclIbGetPhysProperties), uses DMA-BUF whenever both the GPU and the HCA support it "
        "(src/transport/net.cc, useDmaBuf), and logs 'DMA-BUF is available on GPU device %d' "
        "(src/init.cc), 'NET/%s : GPU Direct RDMA %s for HCA %d '%s'' (src/graph/topo.cc) and "
        "'/GDRDMA' on each network channel that uses it (src/transport/net.cc)"
    ),
    "blacklist": (
        "nouveau, and on newer kernels nova_core/nova_drm, bind the GPU first "
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


class PackageName(_Frozen):
    """One package name as NVIDIA's packaging spells it, and the :data:`SOURCES` key saying where
    that spelling comes from. ``template`` may hold ``{branch}``, ``{version}`` (the driver's) and
    ``{cuda}`` (``13-0``).

    Example::

        >>> PackageName(template="libnvidia-compute-{branch}", source="ubuntu_driver_packages").name(
        ...     NvidiaStackPins())
        'libnvidia-compute-580'
    """

    template: str
    source: str

    def name(self, pins: NvidiaStackPins) -> str:
        return self.template.format(
            branch=pins.driver_branch, version=pins.driver_version, cuda=pins.cuda_package_suffix
        )


def _names(source: str, *templates: str) -> tuple[PackageName, ...]:
    return tuple(PackageName(template=t, source=source) for t in templates)


UBUNTU_DKMS = {
    KernelModuleFlavor.OPEN: PackageName(
        template="nvidia-dkms-{branch}-open", source="ubuntu_driver_packages"
    ),
    KernelModuleFlavor.PROPRIETARY: PackageName(
        template="nvidia-dkms-{branch}", source="ubuntu_driver_packages"
    ),
}
UBUNTU_USER_SPACE = _names(
    "ubuntu_driver_packages",
    "nvidia-kernel-common-{branch}",
    "libnvidia-compute-{branch}",
    "nvidia-utils-{branch}",
    "nvidia-compute-utils-{branch}",
)
DEBIAN_DKMS = {
    KernelModuleFlavor.OPEN: PackageName(
        template="nvidia-kernel-open-dkms", source="debian_driver_packages"
    ),
    KernelModuleFlavor.PROPRIETARY: PackageName(
        template="nvidia-kernel-dkms", source="debian_driver_packages"
    ),
}
DEBIAN_USER_SPACE = _names(
    "debian_driver_packages", "nvidia-driver-cuda", "nvidia-persistenced", "libcuda1"
)
DRIVER_PINNING = PackageName(template="nvidia-driver-pinning-{version}", source="driver_pinning")
FABRIC_MANAGER = _names("fabricmanager", "nvidia-fabricmanager", "libnvidia-nscq")
FABRIC_MANAGER_PROVIDES = _names(
    "fabricmanager_provides", "nvidia-fabricmanager-{branch}", "libnvidia-nscq-{branch}"
)
CUDA_TOOLKIT = PackageName(template="cuda-toolkit-{cuda}", source="cuda_packages")
NCCL = _names("nccl_packages", "libnccl2", "libnccl-dev")
CUDA_KEYRING = PackageName(template="cuda-keyring", source="keyring")
KEYRING_PACKAGE = CUDA_KEYRING.template

PACKAGE_NAMES: tuple[PackageName, ...] = (
    *UBUNTU_DKMS.values(),
    *UBUNTU_USER_SPACE,
    *DEBIAN_DKMS.values(),
    *DEBIAN_USER_SPACE,
    DRIVER_PINNING,
    *FABRIC_MANAGER,
    *FABRIC_MANAGER_PROVIDES,
    CUDA_TOOLKIT,
    *NCCL,
    CUDA_KEYRING,
)
"""Every NVIDIA package name this catalogue can produce, each with its source."""

PRECOMPILED_MODULE_PREFIXES = (
    "linux-modules-nvidia-",
    "linux-objects-nvidia-",
    "linux-signatures-nvidia-",
)
"""Ubuntu's precompiled NVIDIA module packages, by name prefix (SOURCES["precompiled_modules"])."""


def driver_packages(
    pins: NvidiaStackPins,
    distro: Distro,
    flavor: KernelModuleFlavor,
    precompiled_modules: bool = False,
) -> tuple[str, ...]:
    """The headless compute driver: kernel module (DKMS), CUDA user libraries, ``nvidia-smi``,
    ``nvidia-persistenced``. No X11 or display packages on a serving host. Where the host already
    takes ``nvidia.ko`` from precompiled module packages, no DKMS package is added: one source of
    the module only.

    Example::

        >>> driver_packages(NvidiaStackPins(), Distro.DEBIAN_12, KernelModuleFlavor.OPEN)
        ('nvidia-kernel-open-dkms', 'nvidia-driver-cuda', 'nvidia-persistenced', 'libcuda1')
    """
    dkms, user_space = (
        (UBUNTU_DKMS[flavor], UBUNTU_USER_SPACE)
        if distro.is_ubuntu
        else (DEBIAN_DKMS[flavor], DEBIAN_USER_SPACE)
    )
    modules = () if precompiled_modules else (dkms,)
    return tuple(package.name(pins) for package in (*modules, *user_space))


def dkms_packages_installed(
    pins: NvidiaStackPins, installed: dict[str, list[str]]
) -> tuple[str, ...]:
    """The NVIDIA DKMS module packages (either flavor, any distribution) found installed."""
    candidates = (*UBUNTU_DKMS.values(), *DEBIAN_DKMS.values())
    return tuple(name for p in candidates if (name := p.name(pins)) in installed)


def precompiled_module_packages(installed: dict[str, list[str]]) -> tuple[str, ...]:
    """The precompiled NVIDIA module packages found installed (pyinfra's ``deb.DebPackages``).

    Example::

        >>> precompiled_module_packages({"linux-modules-nvidia-580-server-open-generic": ["1"],
        ...                              "bash": ["5.2"]})
        ('linux-modules-nvidia-580-server-open-generic',)
    """
    return tuple(sorted(name for name in installed if name.startswith(PRECOMPILED_MODULE_PREFIXES)))


def other_driver_pinning_packages(
    pins: NvidiaStackPins, installed: dict[str, list[str]]
) -> tuple[str, ...]:
    """NVIDIA pinning packages installed for any other driver or branch: each would hold apt to its
    own version beside the one pinned now, so they go when the pin moves.

    Example::

        >>> other_driver_pinning_packages(NvidiaStackPins(driver_version="580.126.20"),
        ...     {"nvidia-driver-pinning-580.105.08": ["580.105.08-1"],
        ...      "nvidia-driver-pinning-580.126.20": ["580.126.20-1"]})
        ('nvidia-driver-pinning-580.105.08',)
    """
    prefix = DRIVER_PINNING.template.split("{", 1)[0]
    current = DRIVER_PINNING.name(pins)
    return tuple(sorted(n for n in installed if n.startswith(prefix) and n != current))


def fabricmanager_packages(pins: NvidiaStackPins) -> tuple[str, ...]:
    """Fabric manager and the NVSwitch query library it needs: from branch 580 named without the
    branch, versioned exactly as the driver."""
    return tuple(package.name(pins) for package in FABRIC_MANAGER)


def fabricmanager_virtual_packages(pins: NvidiaStackPins) -> tuple[str, ...]:
    """The pre-580 names, which NVIDIA's R580 repository offers only as virtual packages: a pin or
    hold on them never takes hold."""
    return tuple(package.name(pins) for package in FABRIC_MANAGER_PROVIDES)


def cuda_packages(pins: NvidiaStackPins) -> tuple[str, ...]:
    """The CUDA toolkit meta package for exactly the pinned ``major.minor``."""
    return (CUDA_TOOLKIT.name(pins),)


def nccl_packages() -> tuple[str, ...]:
    """NCCL runtime and headers; their version is :attr:`NvidiaStackPins.nccl_version`."""
    return tuple(package.template for package in NCCL)


def kernel_headers_packages(distro: Distro, kernel_release: str) -> tuple[str, ...]:
    """Headers for the running kernel, plus the meta package that brings them for future kernels.

    DKMS builds ``nvidia.ko`` against these; a kernel that arrives without them boots without a
    driver.

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
    alone.

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


def driver_pin(
    pins: NvidiaStackPins,
    distro: Distro,
    flavor: KernelModuleFlavor,
    precompiled_modules: bool = False,
) -> AptPin:
    """The driver packages at exactly the pinned driver version (any Debian revision of it)."""
    return AptPin(
        packages=driver_packages(pins, distro, flavor, precompiled_modules),
        version=f"{pins.driver_version}-*",
    )


def driver_lock_pin(pins: NvidiaStackPins) -> AptPin:
    """NVIDIA's pinning package for exactly the pinned driver, installed (and held) before the
    driver: it locks the whole user space of the driver, including the packages metalserve does not
    name (on Debian, everything ``nvidia-driver-cuda`` pulls in).

    Example::

        >>> driver_lock_pin(NvidiaStackPins()).packages
        ('nvidia-driver-pinning-580.105.08',)
    """
    return AptPin(packages=(DRIVER_PINNING.name(pins),), version=f"{pins.driver_version}-*")


def fabricmanager_pin(pins: NvidiaStackPins) -> AptPin:
    """Fabric manager at the driver's exact version: a different one refuses to start."""
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


DMABUF_MIN_KERNEL = (5, 12)
"""The first Linux release that registers dma-buf memory with an RDMA NIC (SOURCES["gpudirect_rdma"])."""


class GpuDirectRdma(StrEnum):
    """How a NIC reaches GPU memory for NCCL across nodes (GPUDirect RDMA)."""

    DMABUF = "DMA-BUF"
    PEERMEM = "nvidia-peermem"
    OFF = "off"


class GpuDirect(_Frozen):
    """The GPUDirect RDMA path a node gets, and why (printed by the fabric role)."""

    path: GpuDirectRdma
    reason: str


def gpudirect_rdma(gpu: GpuModel, flavor: KernelModuleFlavor) -> GpuDirect:
    """DMA-BUF with the open kernel modules (NVIDIA's recommendation, no extra module); the legacy
    nvidia-peermem with the proprietary ones, which loads only against MLNX_OFED/DOCA-OFED (the
    fabric role checks that fact); off for a GPU a NIC cannot reach.

    Example::

        >>> from metalserve.catalog import gpus
        >>> gpudirect_rdma(gpus.H200_SXM, KernelModuleFlavor.OPEN).path.value
        'DMA-BUF'
        >>> gpudirect_rdma(gpus.H100_SXM, KernelModuleFlavor.PROPRIETARY).path.value
        'nvidia-peermem'
    """
    if not gpu.nvidia_peermem:
        return GpuDirect(
            path=GpuDirectRdma.OFF,
            reason=f"the catalogue lists no GPUDirect RDMA for {gpu.name} (metalserve/catalog/gpus.py)",
        )
    if flavor is KernelModuleFlavor.OPEN:
        kernel = ".".join(map(str, DMABUF_MIN_KERNEL))
        return GpuDirect(
            path=GpuDirectRdma.DMABUF,
            reason=(
                f"open kernel modules: NCCL registers GPU memory with the HCA through the kernel's "
                f"DMA-BUF (Linux >= {kernel}), NVIDIA's recommended path; nvidia-peermem is not "
                "loaded (it fails with 'Invalid argument' unless built against MLNX_OFED/DOCA-OFED)"
            ),
        )
    return GpuDirect(
        path=GpuDirectRdma.PEERMEM,
        reason=(
            "proprietary kernel modules offer no DMA-BUF: nvidia-peermem, which loads only where "
            "MLNX_OFED/DOCA-OFED provides the peer-memory symbols"
        ),
    )
