"""pyinfra facts about NVIDIA GPUs, the driver and the kernel: a command and a pure ``process()``.

Each fact parses one command's output into a frozen model. A host without an NVIDIA GPU (no
``nvidia-smi``, no ``/proc/driver/nvidia``) gets the empty value, never an error; a host whose
``nvidia-smi`` exists but cannot reach the driver says so in :attr:`GpuQuery.error`, which is what
re-provisioning looks for.

Example (in a deploy)::

    from roles.gpu_facts.facts import NvidiaGpus
    gpus = host.get_fact(NvidiaGpus)
    print(len(gpus.gpus), gpus.error)
"""

from __future__ import annotations

import csv
import json
import re
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pyinfra.api import FactBase

from metalserve.errors import ParseError
from metalserve.stack import BLACKLISTED_MODULES, NVIDIA_MODULES, KernelModuleFlavor


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# The exact query the GPU roles rely on; order matters, it is the CSV column order.
GPU_QUERY_FIELDS = ("name", "memory.total", "compute_cap", "pci.bus_id", "uuid", "driver_version")


_UNIFIED_MEMORY = "[N/A]"
"""nvidia-smi's ``memory.total`` on a GPU that shares the host's memory (GB10)."""


class Gpu(_Frozen):
    """One GPU as ``nvidia-smi --query-gpu`` reports it."""

    index: int
    name: str
    memory_mib: int | None = Field(
        description="None on unified memory, where nvidia-smi prints [N/A] (GB10 of DGX Spark: "
        "https://docs.nvidia.com/dgx/dgx-spark/known-issues.html)"
    )
    compute_capability: str
    pci_bus_id: str
    uuid: str
    driver_version: str


class GpuQuery(_Frozen):
    """The GPUs ``nvidia-smi`` sees, or what it said instead (``error``) when it could not answer."""

    gpus: tuple[Gpu, ...] = ()
    error: str | None = None


def parse_gpu_query(output: list[str]) -> GpuQuery:
    """Parse ``nvidia-smi --query-gpu=<GPU_QUERY_FIELDS> --format=csv,noheader,nounits``.

    A line that is not six CSV fields (``NVIDIA-SMI has failed…``, ``Failed to initialize NVML:
    Driver/library version mismatch``, ``No devices were found``) becomes the ``error``. A GPU
    without memory of its own (GB10 shares the host's) reports ``[N/A]``: no ``memory_mib`` then.

    Example::

        >>> q = parse_gpu_query(["NVIDIA H200, 143771, 9.0, 00000000:18:00.0, GPU-1, 580.105.08"])
        >>> (q.gpus[0].name, q.gpus[0].memory_mib, q.error)
        ('NVIDIA H200', 143771, None)
    """
    gpus: list[Gpu] = []
    problems: list[str] = []
    for line in (line for line in output if line.strip()):
        try:  # one line at a time: a stray quote or line break spoils that line only
            row = next(csv.reader([line], skipinitialspace=True))
        except csv.Error:
            problems.append(line.strip())
            continue
        memory_field = row[1].strip() if len(row) > 1 else ""
        if len(row) != len(GPU_QUERY_FIELDS) or not (
            re.fullmatch(r"[0-9]{1,12}", memory_field) or memory_field == _UNIFIED_MEMORY
        ):
            problems.append(", ".join(row).strip())
            continue
        name, memory, cc, bus, uuid, driver = (field.strip() for field in row)
        gpus.append(
            Gpu(
                index=len(gpus),
                name=name,
                memory_mib=None if memory == _UNIFIED_MEMORY else int(memory),
                compute_capability=cc,
                pci_bus_id=bus.lower(),
                uuid=uuid,
                driver_version=driver,
            )
        )
    return GpuQuery(gpus=tuple(gpus), error="; ".join(problems) or None)


class NvidiaGpus(FactBase[GpuQuery]):
    """The GPUs the loaded driver serves (``nvidia-smi --query-gpu``)."""

    def requires_command(self, *args: Any, **kwargs: Any) -> str:
        return "nvidia-smi"

    @staticmethod
    def default() -> GpuQuery:
        return GpuQuery()

    def command(self) -> str:
        fields = ",".join(GPU_QUERY_FIELDS)
        # nvidia-smi prints its failures on stdout and exits non-zero; keep both as data.
        return (
            f"nvidia-smi --query-gpu={fields} --format=csv,noheader,nounits 2>&1 "
            '|| echo "nvidia-smi exited with status $?"'
        )

    def process(self, output: list[str]) -> GpuQuery:
        return parse_gpu_query(output)


class LoadedDriver(_Frozen):
    """The ``nvidia.ko`` running in the kernel now (not what is installed on disk)."""

    version: str
    flavor: KernelModuleFlavor


_NVRM = re.compile(
    r"^NVRM version: NVIDIA UNIX (?P<open>Open Kernel Module for \S+|\S+ Kernel Module)\s+"
    r"(?P<version>\d+\.\d+(?:\.\d+)?)\s"
)


def parse_loaded_driver(output: list[str]) -> LoadedDriver | None:
    """Parse ``/proc/driver/nvidia/version``; ``None`` when no NVIDIA module is loaded.

    Example::

        >>> parse_loaded_driver(["NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  "
        ...                      "565.57.01  Release Build  (dvs-builder@U16-A24-9-2)  Thu Oct 10"])
        LoadedDriver(version='565.57.01', flavor=<KernelModuleFlavor.OPEN: 'open'>)
    """
    for line in output:
        match = _NVRM.match(line.strip() + " ")
        if match:
            flavor = (
                KernelModuleFlavor.OPEN
                if match.group("open").startswith("Open")
                else KernelModuleFlavor.PROPRIETARY
            )
            return LoadedDriver(version=match.group("version"), flavor=flavor)
    if any(line.strip() for line in output):
        raise ParseError(
            "/proc/driver/nvidia/version: expected an 'NVRM version: NVIDIA UNIX …' line, found "
            f"{output[0].strip()!r} — fix: report this driver's version format"
        )
    return None


class NvidiaLoadedDriver(FactBase[LoadedDriver | None]):
    """Version and flavor of the loaded NVIDIA kernel module, or ``None``."""

    def command(self) -> str:
        return "cat /proc/driver/nvidia/version 2>/dev/null || true"

    def process(self, output: list[str]) -> LoadedDriver | None:
        return parse_loaded_driver(output)


class InstalledModule(_Frozen):
    """The ``nvidia.ko`` that the next load (or boot) of the running kernel would take."""

    version: str
    flavor: KernelModuleFlavor
    signer: str | None = None


_OPEN_LICENSE = "Dual MIT/GPL"


def parse_installed_module(output: list[str]) -> InstalledModule | None:
    """Parse ``key=value`` lines of ``modinfo -F`` fields; ``None`` when no nvidia.ko is installed.

    Example::

        >>> parse_installed_module(["version=580.105.08", "license=NVIDIA", "signer="]).flavor.value
        'proprietary'
    """
    fields = dict(line.strip().partition("=")[::2] for line in output if "=" in line)
    if not fields.get("version"):
        return None
    flavor = (
        KernelModuleFlavor.OPEN
        if fields.get("license") == _OPEN_LICENSE
        else KernelModuleFlavor.PROPRIETARY
    )
    return InstalledModule(
        version=fields["version"], flavor=flavor, signer=fields.get("signer") or None
    )


class NvidiaInstalledModule(FactBase[InstalledModule | None]):
    """``modinfo nvidia`` for the running kernel: version, open/proprietary (license), signer."""

    def requires_command(self, *args: Any, **kwargs: Any) -> str:
        return "modinfo"

    def command(self) -> str:
        return "; ".join(
            f'echo "{field}=$(modinfo -F {field} nvidia 2>/dev/null)"'
            for field in ("version", "license", "signer")
        )

    def process(self, output: list[str]) -> InstalledModule | None:
        return parse_installed_module(output)


class GpuTopology(_Frozen):
    """``nvidia-smi topo -m``: how every pair of devices (GPUs, NICs) is connected.

    Link codes: ``NV#`` (# bonded NVLinks, NVSwitch or direct), ``PIX``, ``PXB``, ``PHB``, ``NODE``,
    ``SYS`` (PCIe paths from nearest to farthest), ``X`` (self).
    """

    devices: tuple[str, ...] = ()
    links: dict[str, dict[str, str]] = {}
    numa_affinity: dict[str, str] = {}
    nic_names: dict[str, str] = {}

    @property
    def gpus(self) -> tuple[str, ...]:
        return tuple(device for device in self.devices if device.startswith("GPU"))

    def gpu_pair_links(self) -> list[str]:
        """The link of every unordered GPU pair."""
        gpus = self.gpus
        return [self.links[a][b] for i, a in enumerate(gpus) for b in gpus[i + 1 :]]

    @property
    def min_nvlinks(self) -> int:
        """Fewest NVLinks between any two GPUs; 0 when some pair talks over PCIe only."""
        counts = [int(link[2:]) if link.startswith("NV") else 0 for link in self.gpu_pair_links()]
        return min(counts, default=0)

    @property
    def worst_pcie_path(self) -> str | None:
        """The farthest PCIe path between two GPUs that have no NVLink, or ``None``."""
        order = ("PIX", "PXB", "PHB", "NODE", "SYS")
        paths = [link for link in self.gpu_pair_links() if link in order]
        return max(paths, key=order.index) if paths else None


_LINK = re.compile(r"^(X|NV\d+|PIX|PXB|PHB|NODE|SYS|SOC|PSB)$")


def parse_topology(output: list[str]) -> GpuTopology:
    """Parse ``nvidia-smi topo -m`` (tab- or space-separated; legend and NIC legend optional).

    Example::

        >>> t = parse_topology(["\\tGPU0\\tGPU1\\tCPU Affinity", "GPU0\\t X \\tNV18\\t0-55",
        ...                     "GPU1\\tNV18\\t X \\t0-55"])
        >>> t.min_nvlinks
        18
    """
    devices: list[str] = []
    links: dict[str, dict[str, str]] = {}
    numa: dict[str, str] = {}
    nic_names: dict[str, str] = {}
    for raw in output:
        line = raw.strip()
        if not line:
            continue
        tokens = line.split()
        if not devices:
            if tokens[0].startswith("GPU") and "X" not in tokens:
                columns = []
                for token in tokens:
                    if token in ("CPU", "NUMA"):
                        break
                    columns.append(token)
                devices = columns
            continue
        nic = re.match(r"^(NIC\d+):\s*(\S+)$", line)
        if nic:
            nic_names[nic.group(1)] = nic.group(2)
            continue
        if tokens[0] in devices and len(tokens) > len(devices):
            row = tokens[1 : 1 + len(devices)]
            if not all(_LINK.match(cell) for cell in row):
                raise ParseError(
                    f"nvidia-smi topo -m: expected link codes in row {tokens[0]}, found "
                    f"{' '.join(row)!r} — fix: report this nvidia-smi version's topo format"
                )
            links[tokens[0]] = dict(zip(devices, row, strict=True))
            rest = tokens[1 + len(devices) :]
            if tokens[0].startswith("GPU") and len(rest) >= 2:
                numa[tokens[0]] = rest[1]
    missing = [device for device in devices if device not in links]
    if devices and missing:
        raise ParseError(
            f"nvidia-smi topo -m: expected a row for every column, found none for "
            f"{', '.join(missing)} — fix: re-run the fact; the output was cut short"
        )
    return GpuTopology(devices=tuple(devices), links=links, numa_affinity=numa, nic_names=nic_names)


class NvidiaTopology(FactBase[GpuTopology]):
    """GPU/NIC connection matrix from ``nvidia-smi topo -m``."""

    def requires_command(self, *args: Any, **kwargs: Any) -> str:
        return "nvidia-smi"

    @staticmethod
    def default() -> GpuTopology:
        return GpuTopology()

    def command(self) -> str:
        return "nvidia-smi topo -m 2>/dev/null || true"

    def process(self, output: list[str]) -> GpuTopology:
        return parse_topology(output)


class NvidiaPciDevices(_Frozen):
    """NVIDIA devices on the PCI bus, whether or not a driver is bound to them."""

    gpus: tuple[str, ...] = ()
    nvswitches: tuple[str, ...] = ()
    device_ids: dict[str, str] = {}


_PCI_LINE = re.compile(r"^(?P<slot>\S+) (?P<cls>[0-9a-f]{4}): 10de:(?P<device>[0-9a-f]{4})\b")
_GPU_CLASSES = ("0300", "0302")  # VGA-compatible and 3D controllers
_NVSWITCH_CLASS = "0680"  # "Bridge: other", how NVSwitches enumerate


def parse_pci_devices(output: list[str]) -> NvidiaPciDevices:
    """Parse ``lspci -Dn -d 10de:`` (``0000:18:00.0 0302: 10de:2335 (rev a1)``).

    Example::

        >>> parse_pci_devices(["0000:05:00.0 0680: 10de:22a3 (rev a1)"]).nvswitches
        ('0000:05:00.0',)
    """
    gpus: list[str] = []
    switches: list[str] = []
    ids: dict[str, str] = {}
    for line in output:
        match = _PCI_LINE.match(line.strip().lower())
        if not match:
            continue
        slot = match.group("slot")
        ids[slot] = match.group("device")
        if match.group("cls") in _GPU_CLASSES:
            gpus.append(slot)
        elif match.group("cls") == _NVSWITCH_CLASS:
            switches.append(slot)
    return NvidiaPciDevices(gpus=tuple(gpus), nvswitches=tuple(switches), device_ids=ids)


class NvidiaPci(FactBase[NvidiaPciDevices]):
    """GPUs and NVSwitches seen on PCI: true before any driver is installed."""

    def requires_command(self, *args: Any, **kwargs: Any) -> str:
        return "lspci"

    @staticmethod
    def default() -> NvidiaPciDevices:
        return NvidiaPciDevices()

    def command(self) -> str:
        return "lspci -Dn -d 10de: || true"

    def process(self, output: list[str]) -> NvidiaPciDevices:
        return parse_pci_devices(output)


class LoadedModule(_Frozen):
    """One line of ``/proc/modules``."""

    refcount: int
    used_by: tuple[str, ...] = ()


class GpuKernelModules(_Frozen):
    """The NVIDIA modules and their rivals (nouveau, nova) that are loaded now."""

    loaded: dict[str, LoadedModule] = {}

    @property
    def rivals(self) -> tuple[str, ...]:
        """Loaded modules that would keep ``nvidia.ko`` off the GPU."""
        return tuple(name for name in BLACKLISTED_MODULES if name in self.loaded)

    @property
    def nvidia(self) -> tuple[str, ...]:
        """Loaded NVIDIA modules in unload order."""
        return tuple(name for name in NVIDIA_MODULES if name in self.loaded)


def parse_proc_modules(output: list[str]) -> GpuKernelModules:
    """Parse ``/proc/modules`` lines (``name size refcount users state address``), keeping only the
    NVIDIA modules and their rivals.

    Example::

        >>> m = parse_proc_modules(["nvidia_uvm 1507328 0 - Live 0x0 (PO)",
        ...                         "nouveau 2744320 1 - Live 0x0"])
        >>> m.rivals, m.nvidia
        (('nouveau',), ('nvidia_uvm',))
    """
    wanted = set(BLACKLISTED_MODULES) | set(NVIDIA_MODULES)
    loaded: dict[str, LoadedModule] = {}
    for line in output:
        parts = line.split()
        if len(parts) < 4 or parts[0] not in wanted:
            continue
        users = tuple(user for user in parts[3].split(",") if user and user != "-")
        loaded[parts[0]] = LoadedModule(refcount=int(parts[2]), used_by=users)
    return GpuKernelModules(loaded=loaded)


class NvidiaKernelModules(FactBase[GpuKernelModules]):
    """Which NVIDIA modules, and which nouveau/nova modules, are loaded (with use counts)."""

    @staticmethod
    def default() -> GpuKernelModules:
        return GpuKernelModules()

    def command(self) -> str:
        return "cat /proc/modules 2>/dev/null || true"

    def process(self, output: list[str]) -> GpuKernelModules:
        return parse_proc_modules(output)


class KernelHeaders(_Frozen):
    """The running kernel and whether DKMS can build modules for it."""

    release: str
    present: bool


def parse_kernel_headers(output: list[str]) -> KernelHeaders:
    """Parse two lines: ``uname -r`` and ``present``/``missing``.

    Example::

        >>> parse_kernel_headers(["6.8.0-51-generic", "missing"])
        KernelHeaders(release='6.8.0-51-generic', present=False)
    """
    lines = [line.strip() for line in output if line.strip()]
    if len(lines) != 2 or lines[1] not in ("present", "missing"):
        raise ParseError(
            f"kernel headers: expected the kernel release and present/missing, found {lines!r} — "
            "fix: check that uname works on the host"
        )
    return KernelHeaders(release=lines[0], present=lines[1] == "present")


class NvidiaKernelHeaders(FactBase[KernelHeaders]):
    """Running kernel release, and whether its build tree (headers) is installed."""

    def command(self) -> str:
        return (
            'r=$(uname -r); echo "$r"; '
            'if [ -e "/lib/modules/$r/build/Makefile" ]; then echo present; else echo missing; fi'
        )

    def process(self, output: list[str]) -> KernelHeaders:
        return parse_kernel_headers(output)


class SecureBootState(_Frozen):
    """Secure Boot as firmware reports it: ``enabled``, ``disabled``, ``unsupported``, ``unknown``."""

    state: str
    detail: str = ""

    @property
    def enabled(self) -> bool:
        return self.state == "enabled"


_EFIVAR = "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"


def parse_secure_boot(output: list[str]) -> SecureBootState:
    """Parse ``mokutil --sb-state`` or, without mokutil, the SecureBoot EFI variable's last byte.

    Example::

        >>> parse_secure_boot(["SecureBoot enabled"]).enabled
        True
        >>> parse_secure_boot(["This system doesn't support Secure Boot"]).state
        'unsupported'
    """
    text = " ".join(line.strip() for line in output if line.strip())
    lowered = text.lower()
    if lowered.startswith("efivar"):
        state = "enabled" if lowered.split()[-1] == "1" else "disabled"
    elif "secureboot enabled" in lowered:
        state = "enabled"
    elif "secureboot disabled" in lowered:
        state = "disabled"
    elif "doesn't support" in lowered or "not supported" in lowered or lowered == "legacy-bios":
        state = "unsupported"
    else:
        state = "unknown"
    return SecureBootState(state=state, detail=text)


class NvidiaSecureBoot(FactBase[SecureBootState]):
    """Secure Boot state: an enabled one rejects unsigned DKMS modules."""

    def command(self) -> str:
        return (
            "if command -v mokutil >/dev/null 2>&1; then mokutil --sb-state 2>&1 || true; "
            f'elif [ -r {_EFIVAR} ]; then echo "efivar $(od -An -t u1 {_EFIVAR} | '
            "awk '{print $NF}')\"; "
            "elif [ -d /sys/firmware/efi ]; then echo unknown-efi; else echo legacy-bios; fi"
        )

    def process(self, output: list[str]) -> SecureBootState:
        return parse_secure_boot(output)


class CudaToolkit(_Frozen):
    path: str
    version: str


class CudaToolkits(_Frozen):
    """CUDA toolkits under ``/usr/local`` and the one ``/usr/local/cuda`` points to."""

    toolkits: tuple[CudaToolkit, ...] = ()
    default_path: str | None = None

    @property
    def default_version(self) -> str | None:
        return next((t.version for t in self.toolkits if t.path == self.default_path), None)


_NVCC_RELEASE = re.compile(r"release (\d+\.\d+), V\d+")


def parse_cuda_toolkits(output: list[str]) -> CudaToolkits:
    """Parse blocks ``==> <dir>`` followed by its ``version.json`` or ``nvcc --version``, and a final
    ``==> default <dir>`` line. ``version.json`` gives the toolkit release (``13.0.2``); ``nvcc``
    only its ``major.minor`` (its own ``V13.0.88`` is the compiler's version, not the toolkit's).

    Example::

        >>> parse_cuda_toolkits(["==> /usr/local/cuda-13.0",
        ...     "Cuda compilation tools, release 13.0, V13.0.88", "==> default /usr/local/cuda-13.0"]
        ... ).default_version
        '13.0'
    """
    blocks: dict[str, list[str]] = {}
    default: str | None = None
    current: str | None = None
    for line in output:
        if line.startswith("==> default"):
            default = line.removeprefix("==> default").strip() or None
            current = None
        elif line.startswith("==> "):
            current = line.removeprefix("==> ").strip().rstrip("/")
            blocks[current] = []
        elif current is not None:
            blocks[current].append(line)
    toolkits = []
    for path, lines in blocks.items():
        text = "\n".join(lines)
        version: str | None = None
        if text.lstrip().startswith("{"):
            try:
                version = json.loads(text).get("cuda", {}).get("version")
            except (json.JSONDecodeError, AttributeError):
                version = None  # unreadable: counted as no toolkit, which the check reports
        else:
            match = _NVCC_RELEASE.search(text)
            version = match.group(1) if match else None
        if version:
            toolkits.append(CudaToolkit(path=path, version=version))
    return CudaToolkits(toolkits=tuple(toolkits), default_path=default)


class NvidiaCudaToolkits(FactBase[CudaToolkits]):
    """Installed CUDA toolkits: ``version.json`` where the toolkit ships one, else ``nvcc``."""

    @staticmethod
    def default() -> CudaToolkits:
        return CudaToolkits()

    def command(self) -> str:
        return (
            'for d in /usr/local/cuda-*; do [ -d "$d" ] || continue; echo "==> $d"; '
            'if [ -f "$d/version.json" ]; then cat "$d/version.json"; echo; '
            'elif [ -x "$d/bin/nvcc" ]; then "$d/bin/nvcc" --version; fi; done; '
            'echo "==> default $(readlink -f /usr/local/cuda 2>/dev/null)"'
        )

    def process(self, output: list[str]) -> CudaToolkits:
        return parse_cuda_toolkits(output)


_NCCL_LIB = re.compile(r"libnccl\.so\.(\d+\.\d+\.\d+)$")


def parse_nccl_libraries(output: list[str]) -> dict[str, str]:
    """Map each ``libnccl.so.X.Y.Z`` path to its version ``X.Y.Z``.

    Example::

        >>> parse_nccl_libraries(["/usr/lib/x86_64-linux-gnu/libnccl.so.2.28.9"])
        {'/usr/lib/x86_64-linux-gnu/libnccl.so.2.28.9': '2.28.9'}
    """
    found: dict[str, str] = {}
    for line in output:
        match = _NCCL_LIB.search(line.strip())
        if match:
            found[line.strip()] = match.group(1)
    return found


class NvidiaNcclLibraries(FactBase[dict[str, str]]):
    """NCCL shared libraries in the system library directories, path → version."""

    default = dict

    def command(self) -> str:
        return "ls -1 /usr/lib/*-linux-gnu/libnccl.so.2.* /usr/local/lib/libnccl.so.2.* 2>/dev/null || true"

    def process(self, output: list[str]) -> dict[str, str]:
        return parse_nccl_libraries(output)


class FabricState(_Frozen):
    """One GPU's NVLink fabric registration (``nvidia-smi -q``: Fabric → State, Status)."""

    state: str
    status: str = "N/A"

    @property
    def completed(self) -> bool:
        return self.state == "Completed" and self.status == "Success"


def parse_fabric_states(output: list[str]) -> dict[str, FabricState]:
    """Parse ``GPU <bus id>`` headers and the ``State``/``Status`` lines under ``Fabric``.

    Example::

        >>> parse_fabric_states(["GPU 00000000:18:00.0", "        State : Completed",
        ...                      "        Status : Success"])["00000000:18:00.0"].completed
        True
    """
    states: dict[str, dict[str, str]] = {}
    gpu: str | None = None
    for line in output:
        if line.startswith("GPU "):
            gpu = line.split()[1].lower()
            states[gpu] = {}
        elif gpu is not None and ":" in line:
            key, _, value = line.partition(":")
            if key.strip() in ("State", "Status"):
                states[gpu][key.strip().lower()] = value.strip()
    return {
        bus: FabricState(state=fields.get("state", "N/A"), status=fields.get("status", "N/A"))
        for bus, fields in states.items()
    }


class NvidiaFabricStates(FactBase[dict[str, FabricState]]):
    """Per-GPU fabric state; ``Completed``/``Success`` on NVSwitch systems once fabric manager ran."""

    default = dict

    def requires_command(self, *args: Any, **kwargs: Any) -> str:
        return "nvidia-smi"

    def command(self) -> str:
        return (
            "nvidia-smi -q 2>/dev/null | awk '/^GPU /{print; next} /^    Fabric$/{f=1; next} "
            "f && /^        /{print; next} {f=0}' || true"
        )

    def process(self, output: list[str]) -> dict[str, FabricState]:
        return parse_fabric_states(output)


def parse_container_kind(output: list[str]) -> str | None:
    """``systemd-detect-virt --container``'s answer; ``None`` for ``none`` (bare metal or a VM).

    Example::

        >>> parse_container_kind(["systemd-nspawn"]), parse_container_kind(["none"])
        ('systemd-nspawn', None)
    """
    kind = next((line.strip() for line in output if line.strip()), "none")
    return None if kind == "none" else kind


class ContainerKind(FactBase[str | None]):
    """The container this host runs in (``systemd-nspawn``, ``lxc``, ``docker``, …), or ``None``
    where the kernel is the host's own (bare metal, a VM). A container cannot load modules."""

    def command(self) -> str:
        return "systemd-detect-virt --container 2>/dev/null || true"

    def process(self, output: list[str]) -> str | None:
        return parse_container_kind(output)


class DgxOs(_Frozen):
    """DGX OS, as ``/etc/dgx-release`` names it."""

    name: str
    version: str | None = None


def parse_dgx_release(output: list[str]) -> DgxOs | None:
    """Parse ``/etc/dgx-release`` (shell ``KEY="value"`` lines); ``None`` when the file is absent.

    Example::

        >>> parse_dgx_release(['DGX_NAME="DGX Server"', 'DGX_SWBUILD_VERSION="7.1.0"'])
        DgxOs(name='DGX Server', version='7.1.0')
    """
    fields: dict[str, str] = {}
    for line in output:
        key, sep, value = line.strip().partition("=")
        if sep and key.startswith("DGX_"):
            fields[key] = value.strip().strip('"')
    if not fields:
        return None
    version = fields.get("DGX_OTA_VERSION") or fields.get("DGX_SWBUILD_VERSION")
    return DgxOs(
        name=fields.get("DGX_PRETTY_NAME") or fields.get("DGX_NAME") or "DGX OS", version=version
    )


class DgxRelease(FactBase[DgxOs | None]):
    """DGX OS (from ``/etc/dgx-release``), or ``None`` on any other distribution. DGX OS brings
    NVIDIA's repositories and its own packaging of the driver."""

    def command(self) -> str:
        return "cat /etc/dgx-release 2>/dev/null || true"

    def process(self, output: list[str]) -> DgxOs | None:
        return parse_dgx_release(output)


class NvidiaHeldPackages(FactBase[frozenset[str]]):
    """Packages marked ``apt-mark hold`` (which unattended-upgrades will not touch)."""

    def requires_command(self, *args: Any, **kwargs: Any) -> str:
        return "apt-mark"

    @staticmethod
    def default() -> frozenset[str]:
        return frozenset()

    def command(self) -> str:
        return "apt-mark showhold"

    def process(self, output: list[str]) -> frozenset[str]:
        return frozenset(line.strip() for line in output if line.strip())


def read_fact(fact: type[FactBase[Any]], on: Any = None, **kwargs: Any) -> Any:
    """``host.get_fact`` validated into the fact's declared type, on the current host or ``on``.

    A live host returns the parsed model already; operation cases give the same value as JSON, so
    roles see one type either way.

    Example::

        query: GpuQuery = read_fact(NvidiaGpus)
    """
    from pyinfra import host

    source = host if on is None else on
    return _adapter(fact).validate_python(source.get_fact(fact, **kwargs))


def _adapter(fact: type[FactBase[Any]]) -> TypeAdapter[Any]:
    """The declared value type of ``FactBase[T]``; ``Any`` for facts that declare none."""
    bases = [b for b in getattr(fact, "__orig_bases__", ()) if get_origin(b) is FactBase]
    return TypeAdapter(get_args(bases[0])[0] if bases else Any)
