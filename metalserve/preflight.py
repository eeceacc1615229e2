"""Preflight: read-only checks of one host against its plan, and of a cluster's nodes against each
other, before a deploy, a re-provision or a diagnostic finds the problem the slow way.

Pure: the ``roles/preflight`` role reads the host's facts into :class:`HostFacts`, the plan's
promises into :class:`PreflightTarget`, and calls :func:`host_checks`; ``metalserve preflight
show`` diffs the nodes' :class:`NodeManifest` with :func:`cluster_checks`. Every result is PASS,
WARN, FAIL or SKIP with what was expected, what was found and the fix, one line each.

Example::

    >>> r = check_shm(DiskSpace(path="/dev/shm", avail_bytes=2**26, size_bytes=2**26))
    >>> r.verdict.value, r.found
    ('FAIL', '/dev/shm is 64 MiB')
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum

from pydantic import Field

from metalserve.hardware import Frozen
from metalserve.stack import KernelModuleFlavor

REPROVISION = "run deploy/reprovision.py"


class Verdict(StrEnum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    SKIP = "SKIP"


class CheckResult(Frozen):
    """One check's verdict: what was expected, what was found, and (unless it passed) the fix."""

    check: str
    verdict: Verdict
    expected: str
    found: str
    fix: str = ""


def _result(check: str, ok: bool, expected: str, found: str, fix: str, bad: Verdict) -> CheckResult:
    return CheckResult(
        check=check,
        verdict=Verdict.PASS if ok else bad,
        expected=expected,
        found=found,
        fix="" if ok else fix,
    )


def skipped(check: str, expected: str, why: str) -> CheckResult:
    return CheckResult(check=check, verdict=Verdict.SKIP, expected=expected, found=why)


class DiskSpace(Frozen):
    """``df`` of a path (or of its nearest existing parent) and, where the path exists, ``du``."""

    path: str = Field(description="the path asked about")
    avail_bytes: int
    size_bytes: int
    used_bytes: int | None = Field(default=None, description="bytes already under the path")


class HostFacts(Frozen):
    """What one host reports, as plain values (the role converts its facts into these)."""

    container: str | None = None
    kernel: str = Field(description="uname -r")
    headers_present: bool
    loaded_driver: str | None = None
    loaded_flavor: KernelModuleFlavor | None = None
    installed_driver: str | None = None
    installed_flavor: KernelModuleFlavor | None = None
    module_signer: str | None = None
    smi_driver_versions: tuple[str, ...] = Field(default=(), description="per GPU, nvidia-smi")
    smi_error: str | None = None
    held: frozenset[str] = frozenset()
    secure_boot: str = "unknown"
    rival_modules: tuple[str, ...] = ()
    persistence: Mapping[str, bool] = Field(default_factory=dict, description="bus id -> on")
    fabric_manager_active: bool | None = None
    fabric_pending: tuple[str, ...] = Field(default=(), description="GPUs not Completed/Success")
    fabric_gpus: int = Field(default=0, description="GPUs reporting a fabric state")
    shm: DiskSpace | None = None
    weights: DiskSpace | None = None
    roce_gid_indices: Mapping[str, int | None] = Field(
        default_factory=dict, description="HCA -> first RoCE v2 IPv4 GID index (None: none)"
    )


class PreflightTarget(Frozen):
    """What the plan promises this node (the role fills it from the plan's sections)."""

    gpu: bool = Field(description="the plan has an NVIDIA section")
    driver_version: str | None = None
    flavor: KernelModuleFlavor | None = None
    must_hold: tuple[str, ...] = Field(default=(), description="pinned packages that are held")
    precompiled_modules: bool = Field(default=False, description="nvidia.ko not built by DKMS")
    fabric_manager: bool = False
    nccl: bool = Field(default=False, description="NCCL runs here (a GPU node)")
    weights_bytes: int | None = None
    roce_devices: tuple[str, ...] = ()
    gid_index: int | None = None
    skip: Mapping[str, str] = Field(default_factory=dict, description="check -> the reason")


NO_GPU = "no NVIDIA GPU in this node's plan"
IN_CONTAINER = "runs in a {kind} container: the kernel is the hardware host's"


def check_loaded_driver(target: PreflightTarget, facts: HostFacts) -> CheckResult:
    """The module in the kernel now is the pinned version and flavour."""
    name = "driver-loaded"
    expected = f"nvidia.ko {target.driver_version} ({target.flavor}) loaded"
    if facts.loaded_driver is None:
        found = "no NVIDIA module loaded"
    else:
        found = f"{facts.loaded_driver} ({facts.loaded_flavor}) loaded"
    ok = facts.loaded_driver == target.driver_version and facts.loaded_flavor == target.flavor
    return _result(name, ok, expected, found, REPROVISION, Verdict.FAIL)


def check_installed_module(target: PreflightTarget, facts: HostFacts) -> CheckResult:
    """The module the next load or boot takes is the pinned one (else a reboot changes drivers)."""
    expected = f"nvidia.ko {target.driver_version} ({target.flavor}) installed for the kernel"
    found = (
        f"{facts.installed_driver} ({facts.installed_flavor})"
        if facts.installed_driver
        else f"no nvidia.ko for {facts.kernel}"
    )
    ok = facts.installed_driver == target.driver_version and facts.installed_flavor == target.flavor
    return _result("driver-installed", ok, expected, found, REPROVISION, Verdict.FAIL)


def check_userspace(target: PreflightTarget, facts: HostFacts) -> CheckResult:
    """nvidia-smi (NVML, the user-space library) talks to the loaded module at the pinned version:
    a "Driver/library version mismatch" shows the library and the module apart."""
    expected = f"nvidia-smi answering with driver {target.driver_version} on every GPU"
    if facts.smi_error:
        return CheckResult(
            check="driver-userspace",
            verdict=Verdict.FAIL,
            expected=expected,
            found=f"nvidia-smi failing: {facts.smi_error}",
            fix=REPROVISION,
        )
    versions = sorted(set(facts.smi_driver_versions))
    found = f"driver {', '.join(versions)}" if versions else "no GPU answering"
    ok = versions == [target.driver_version]
    return _result("driver-userspace", ok, expected, found, REPROVISION, Verdict.FAIL)


def check_held(target: PreflightTarget, facts: HostFacts) -> CheckResult:
    """Every pinned NVIDIA/CUDA/NCCL package is ``apt-mark hold``-ed, so unattended-upgrades
    cannot move it under a running engine (operator pain point 2)."""
    unheld = [name for name in target.must_hold if name not in facts.held]
    return _result(
        "packages-held",
        not unheld,
        f"held: {', '.join(target.must_hold)}",
        f"not held: {', '.join(unheld)}" if unheld else "all held",
        f"apt-mark hold {' '.join(unheld)} (or run deploy/drivers.py)",
        Verdict.FAIL,
    )


def check_secure_boot(facts: HostFacts) -> CheckResult:
    """Secure Boot enabled refuses an unsigned nvidia.ko at the next load (pain point 3)."""
    expected = "Secure Boot off, or nvidia.ko signed by an enrolled key"
    if facts.secure_boot == "enabled":
        signed = facts.module_signer is not None
        found = (
            f"enabled, nvidia.ko signed by {facts.module_signer}"
            if signed
            else ("enabled, nvidia.ko unsigned")
        )
        return _result(
            "secure-boot",
            signed,
            expected,
            found,
            "disable Secure Boot in the firmware, or enroll the DKMS signing key (mokutil "
            "--import) at the console",
            Verdict.FAIL,
        )
    if facts.secure_boot == "unknown":
        return CheckResult(
            check="secure-boot",
            verdict=Verdict.WARN,
            expected=expected,
            found="state unknown (no mokutil, no SecureBoot EFI variable)",
            fix="apt-get install mokutil, then run preflight again",
        )
    return _result("secure-boot", True, expected, facts.secure_boot, "", Verdict.FAIL)


def check_rivals(facts: HostFacts) -> CheckResult:
    """nouveau / nova_core bound to the GPU keep nvidia.ko off it (pain point 5)."""
    return _result(
        "rival-modules",
        not facts.rival_modules,
        "no nouveau/nova loaded",
        f"{', '.join(facts.rival_modules)} loaded" if facts.rival_modules else "none loaded",
        "reboot so the blacklisted initramfs takes effect (deploy/drivers.py writes it)",
        Verdict.FAIL,
    )


def check_persistence(facts: HostFacts) -> CheckResult:
    """Persistence mode keeps the driver initialised between jobs; off, each CUDA start pays the
    GPU's initialisation again (https://docs.nvidia.com/deploy/driver-persistence/index.html)."""
    off = sorted(bus for bus, on in facts.persistence.items() if not on)
    if not facts.persistence:
        return skipped("persistence-mode", "persistence mode on", "no GPU answering nvidia-smi")
    return _result(
        "persistence-mode",
        not off,
        "persistence mode on for every GPU",
        f"off on {', '.join(off)}" if off else f"on for {len(facts.persistence)} GPUs",
        "systemctl enable --now nvidia-persistenced",
        Verdict.WARN,
    )


def check_fabric_manager(facts: HostFacts) -> CheckResult:
    """On NVSwitch systems: fabric manager runs and every GPU has joined the NVLink fabric;
    otherwise CUDA fails with "system not yet initialized"."""
    expected = "nvidia-fabricmanager active, every GPU's fabric state Completed/Success"
    if not facts.fabric_manager_active:
        found = "nvidia-fabricmanager not active"
    elif facts.fabric_pending or not facts.fabric_gpus:
        found = f"pending: {', '.join(facts.fabric_pending) or 'no GPU reporting'}"
    else:
        found = f"active, {facts.fabric_gpus} GPUs Completed"
    ok = bool(facts.fabric_manager_active) and facts.fabric_gpus > 0 and not facts.fabric_pending
    return _result(
        "fabric-manager",
        ok,
        expected,
        found,
        "journalctl -u nvidia-fabricmanager; its version must equal the driver's "
        "(deploy/drivers.py)",
        Verdict.FAIL,
    )


def check_headers(target: PreflightTarget, facts: HostFacts) -> CheckResult:
    """DKMS rebuilds nvidia.ko for a new kernel only where that kernel's headers are installed."""
    expected = f"headers for {facts.kernel}"
    if target.precompiled_modules:
        return skipped("kernel-headers", expected, "nvidia.ko comes precompiled, not from DKMS")
    return _result(
        "kernel-headers",
        facts.headers_present,
        expected,
        "present" if facts.headers_present else "missing",
        f"apt-get install linux-headers-{facts.kernel} (deploy/drivers.py does)",
        Verdict.FAIL,
    )


SHM_MIN_BYTES = 1 << 30
"""NCCL's troubleshooting guide raises Docker's 64 MiB ``/dev/shm`` with ``--shm-size=1g``: NCCL
and the engines' worker processes exchange buffers there
(https://docs.nvidia.com/deeplearning/nccl/user-guide/docs/troubleshooting.html#docker)."""


def _human(size: int) -> str:
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20)):
        if size >= 1 << shift:
            return f"{size / (1 << shift):.3g} {unit}"
    return f"{size} B"


def check_shm(shm: DiskSpace | None) -> CheckResult:
    expected = f"/dev/shm of at least {_human(SHM_MIN_BYTES)}"
    if shm is None:
        return CheckResult(
            check="shm-size",
            verdict=Verdict.FAIL,
            expected=expected,
            found="no /dev/shm",
            fix="mount a tmpfs on /dev/shm",
        )
    return _result(
        "shm-size",
        shm.size_bytes >= SHM_MIN_BYTES,
        expected,
        f"/dev/shm is {_human(shm.size_bytes)}",
        "mount -o remount,size=50% /dev/shm (in a container: --shm-size or --ipc=host)",
        Verdict.FAIL,
    )


def check_weights_space(target: PreflightTarget, space: DiskSpace | None) -> CheckResult:
    """Room for what is still to download where the weights go (pain point 16: a full disk hours
    into a download)."""
    name = "weights-space"
    if target.weights_bytes is None or space is None:
        return skipped(name, "room for the weights", "the checkpoint's size is not known")
    present = space.used_bytes or 0
    needed = max(target.weights_bytes - present, 0)
    return _result(
        name,
        space.avail_bytes >= needed,
        f"{_human(needed)} free under {space.path} "
        f"({_human(target.weights_bytes)} checkpoint, {_human(present)} there)",
        f"{_human(space.avail_bytes)} free",
        f"free {_human(needed - space.avail_bytes)} under {space.path}, or move the weights to a "
        "larger volume",
        Verdict.FAIL,
    )


def check_gid_index(target: PreflightTarget, facts: HostFacts) -> CheckResult:
    """Every RoCE HCA NCCL uses has its first RoCE v2 IPv4 GID at the plan's
    ``NCCL_IB_GID_INDEX``; another index gives "completion with error 12" (pain point 10)."""
    expected = f"RoCE v2 IPv4 GID at index {target.gid_index} on {', '.join(target.roce_devices)}"
    found_by_device = {d: facts.roce_gid_indices.get(d) for d in target.roce_devices}
    wrong = {d: i for d, i in found_by_device.items() if i != target.gid_index}
    found = ", ".join(
        f"{d}: {'none' if i is None else i}" for d, i in sorted(found_by_device.items())
    )
    return _result(
        "roce-gid-index",
        not wrong,
        expected,
        found,
        "give each HCA's netdev its IPv4 address, or set fabric.gid_index to the index found",
        Verdict.FAIL,
    )


def _opted_out(result: CheckResult, skip: Mapping[str, str]) -> CheckResult:
    """A check the inventory opted out of, with its reason; its finding is still shown."""
    reason = skip.get(result.check)
    if reason is None or result.verdict is Verdict.PASS:
        return result
    return result.model_copy(
        update={
            "verdict": Verdict.SKIP,
            "found": f"{result.found} (opted out: {reason})",
            "fix": "",
        }
    )


def _gpu_checks(target: PreflightTarget, facts: HostFacts) -> list[CheckResult]:
    in_container = IN_CONTAINER.format(kind=facts.container) if facts.container else None
    kernel_checks = [
        ("driver-installed", check_installed_module),
        ("kernel-headers", check_headers),
        ("secure-boot", lambda t, f: check_secure_boot(f)),
        ("rival-modules", lambda t, f: check_rivals(f)),
    ]
    results = [check_loaded_driver(target, facts), check_userspace(target, facts)]
    for name, check in kernel_checks:
        if in_container:
            results.append(skipped(name, GPU_CHECKS[name], in_container))
        else:
            results.append(check(target, facts))
    results.append(check_held(target, facts))
    results.append(check_persistence(facts))
    if target.fabric_manager:
        results.append(check_fabric_manager(facts))
    else:
        results.append(
            skipped("fabric-manager", GPU_CHECKS["fabric-manager"], "no NVSwitch in this node")
        )
    return results


GPU_CHECKS = {
    "driver-loaded": "the pinned nvidia.ko loaded",
    "driver-userspace": "nvidia-smi answering at the pinned driver",
    "driver-installed": "the pinned nvidia.ko installed",
    "kernel-headers": "headers for the running kernel",
    "secure-boot": "Secure Boot off or nvidia.ko signed",
    "rival-modules": "no nouveau/nova loaded",
    "packages-held": "the pinned packages held",
    "persistence-mode": "persistence mode on",
    "fabric-manager": "fabric manager and NVLink fabric up",
}
CHECKS = (*GPU_CHECKS, "shm-size", "weights-space", "roce-gid-index")
"""Every check's name, as ``metalserve.preflight.skip`` names them."""


def host_checks(target: PreflightTarget, facts: HostFacts) -> tuple[CheckResult, ...]:
    """Every check on one host, in a fixed order; each names itself once."""
    if target.gpu:
        results = _gpu_checks(target, facts)
    else:
        results = [skipped(name, expected, NO_GPU) for name, expected in GPU_CHECKS.items()]
    if target.nccl:
        results.append(check_shm(facts.shm))
    else:
        results.append(skipped("shm-size", "/dev/shm for NCCL", "NCCL does not run on this node"))
    results.append(check_weights_space(target, facts.weights))
    if target.gid_index is not None and target.roce_devices:
        results.append(check_gid_index(target, facts))
    else:
        results.append(skipped("roce-gid-index", "RoCE GID index", "no RoCE fabric in the plan"))
    return tuple(_opted_out(result, target.skip) for result in results)


def failed(results: Iterable[CheckResult]) -> tuple[CheckResult, ...]:
    return tuple(r for r in results if r.verdict is Verdict.FAIL)


class NodeManifest(Frozen):
    """The versions one node runs, to compare across a cluster's nodes (``None``: not there)."""

    kernel: str
    driver: str | None = None
    fabric_manager: str | None = None
    cuda: str | None = None
    nccl: str | None = None
    engine: str = Field(description="the engine and version the plan installs")
    gid_index: str | None = Field(default=None, description="HCA:index, as found, per RoCE HCA")


MANIFEST_FIELDS = ("kernel", "driver", "fabric_manager", "cuda", "nccl", "engine", "gid_index")

_DRIFT_FIX = {
    "kernel": "boot every node into the same kernel (apt-mark hold linux-image-*)",
    "gid_index": "give every node's HCAs the same addressing, so NCCL_IB_GID_INDEX fits all",
}


class HostReport(Frozen):
    """One host's preflight, as written to the control host and read by ``preflight show``."""

    host: str
    cluster: str
    results: tuple[CheckResult, ...]
    manifest: NodeManifest


def cluster_checks(reports: Iterable[HostReport]) -> tuple[CheckResult, ...]:
    """Per cluster of several nodes: each manifest field equal on every node. A field that differs
    is one FAIL naming every node's value."""
    clusters: dict[str, list[HostReport]] = {}
    for report in reports:
        clusters.setdefault(report.cluster, []).append(report)
    results: list[CheckResult] = []
    for name, members in sorted(clusters.items()):
        if len(members) < 2:
            continue
        for field in MANIFEST_FIELDS:
            values = {r.host: getattr(r.manifest, field) for r in members}
            found = "; ".join(f"{h}: {v or 'none'}" for h, v in sorted(values.items()))
            results.append(
                _result(
                    f"{name}: {field} equal",
                    len(set(values.values())) == 1,
                    f"one {field} on every node of {name}",
                    found,
                    _DRIFT_FIX.get(field, REPROVISION + " (it brings every node to the pins)"),
                    Verdict.FAIL,
                )
            )
    return tuple(results)


def table_text(reports: Iterable[HostReport]) -> str:
    """Every host's checks, then the cross-node checks, one row each; what is not a PASS gets its
    expected value and fix on the next line, indented. Ends with the count per verdict."""
    reports = sorted(reports, key=lambda r: (r.cluster, r.host))
    rows = [(r.host, result) for r in reports for result in r.results]
    rows += [("(cluster)", result) for result in cluster_checks(reports)]
    width = max((len(host) for host, _ in rows), default=4)
    check_width = max((len(result.check) for _, result in rows), default=5)
    lines = []
    for host, result in rows:
        lines.append(
            f"{host:<{width}}  {result.check:<{check_width}}  {result.verdict.value:<4}  "
            f"{result.found}"
        )
        if result.verdict in (Verdict.FAIL, Verdict.WARN):
            lines.append(f"{'':<{width}}    expected {result.expected} — fix: {result.fix}")
    counts = {v: sum(1 for _, r in rows if r.verdict is v) for v in Verdict}
    lines.append(", ".join(f"{n} {v.value}" for v, n in counts.items()))
    return "\n".join(lines) + "\n"


def any_failed(reports: Iterable[HostReport]) -> bool:
    reports = list(reports)
    every = [r for report in reports for r in report.results] + list(cluster_checks(reports))
    return bool(failed(every))
