"""The NVIDIA driver at exactly the pinned version, from NVIDIA's apt repository (online or mirror).

install: headers for the running kernel (and its successors), ``cuda-keyring`` and the repository
line (not on DGX OS, which brings NVIDIA's repositories), nouveau/nova blacklisted inside the
initramfs, NVIDIA's pinning package for the exact driver version, then the driver packages, both
pinned and held. ``nvidia.ko`` comes from one source: precompiled module packages where the host has
them (DGX OS, Ubuntu's ``linux-modules-nvidia-*``), else DKMS; a host with both is refused.
configure: ``nvidia-persistenced`` enabled. activate: the new module loaded (in place, or by a
reboot where the old one will not let go), persistence on, then verified: every GPU the profile
promises, the pinned version and flavor loaded, no rival module.

Example (a deploy file)::

    from roles import base, nvidia_driver
    base.run_phases([nvidia_driver])
"""

from __future__ import annotations

import shlex
from typing import Any

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.facts.deb import DebArch, DebPackages
from pyinfra.facts.server import LinuxDistribution
from pyinfra.operations import python, server, systemd

from metalserve.plan import HostPlan
from metalserve.sources import SourceKind
from metalserve.stack import (
    KEYRING_DEB,
    KEYRING_PACKAGE,
    AptPin,
    Distro,
    KernelModuleFlavor,
    NvidiaPlan,
    distro_of,
    kernel_headers_packages,
    keyring_deb_url,
    module_blacklist_conf,
    packages_off_pin,
    repository_line,
    repository_list_path,
)
from roles.base import RoleError, say_once
from roles.gpu_facts.facts import (
    DgxOs,
    DgxRelease,
    GpuKernelModules,
    NvidiaGpus,
    NvidiaInstalledModule,
    NvidiaKernelHeaders,
    NvidiaKernelModules,
    NvidiaLoadedDriver,
    NvidiaSecureBoot,
    read_fact,
)
from roles.gpu_facts.verify import (
    check_gpus,
    check_loaded_driver,
    check_no_rival_modules,
    driver_drift,
)
from roles.nvidia_driver.common import (
    Check,
    container_kind,
    gpu_steps_skipped,
    install_missing,
    install_pinned,
    verify,
    write_file,
)

BLACKLIST_PATH = "/etc/modprobe.d/metalserve-nvidia-blacklist.conf"
KEYRING_TOOLS = ("ca-certificates", "curl")  # to fetch cuda-keyring over HTTPS
PERSISTENCED = "nvidia-persistenced"
APT_PURGE = "DEBIAN_FRONTEND=noninteractive apt-get purge -y --allow-change-held-packages"

# An 8-GPU HGX server spends minutes in firmware and memory training before SSH returns.
REBOOT_TIMEOUT_S = 1200


class DriverTarget:
    """What this host's driver must be, worked out once from the plan and the host's OS facts."""

    def __init__(self, nvidia: NvidiaPlan, on: Any = None) -> None:
        source = host if on is None else on
        distribution = source.get_fact(LinuxDistribution)
        self.distro: Distro = distro_of(
            distribution["name"] or "unknown", distribution["major"], distribution["minor"]
        )
        self.arch: str = source.get_fact(DebArch)
        self.nvidia = nvidia
        self.pins = nvidia.pins
        self.gpu_name = nvidia.gpu.name
        self.gpu_count = nvidia.gpu_count
        self.source = nvidia.apt
        self.flavor: KernelModuleFlavor = nvidia.flavor
        self.modules = nvidia.module_packages(read_fact(DebPackages, on=on))
        self.dgx_os: DgxOs | None = read_fact(DgxRelease, on=on)

    @property
    def pin(self) -> AptPin:
        return self.nvidia.driver_pin(
            self.distro, precompiled_modules=bool(self.modules.precompiled)
        )

    @property
    def lock(self) -> AptPin:
        """NVIDIA's pinning package: installed before the driver, so it governs that install."""
        return self.nvidia.driver_lock_pin

    @property
    def pins_in_order(self) -> tuple[AptPin, AptPin]:
        return (self.lock, self.pin)


def target(plan: HostPlan) -> DriverTarget | None:
    """The driver target, or ``None`` (and a note in the log) for a profile without a GPU."""
    if plan.nvidia is None:
        logger.info(f"{host.name}: profile {plan.profile.id} has no GPU; NVIDIA roles skipped")
        return None
    return DriverTarget(plan.nvidia)


def _refuse_unsigned_module_under_secure_boot() -> None:
    if not read_fact(NvidiaSecureBoot).enabled:
        return
    module = read_fact(NvidiaInstalledModule)
    if module is not None and module.signer:
        return
    found = "an unsigned nvidia.ko" if module else "no nvidia.ko yet"
    raise RoleError(
        f"host {host.name}: Secure Boot: expected it disabled or nvidia.ko signed by an enrolled "
        f"key, found Secure Boot enabled and {found} — fix: disable Secure Boot in the firmware, "
        "or enroll the DKMS signing key (mokutil --import) at the console, then run again"
    )


def _nvidia_repository(driver: DriverTarget) -> None:
    """NVIDIA's own repository, for online hosts: ``cuda-keyring`` and its repository line. DGX OS
    comes with NVIDIA's repositories; a second line for the same repository is not added there."""
    if driver.dgx_os is not None:
        say_once(
            f"runs {driver.dgx_os.name} {driver.dgx_os.version or ''}".rstrip()
            + ": NVIDIA's repositories come with it; no repository line added"
        )
        return
    keyring_missing = KEYRING_PACKAGE not in host.get_fact(DebPackages)
    if keyring_missing:
        url = keyring_deb_url(driver.distro, driver.arch)
        deb = f"/tmp/{KEYRING_DEB}"
        server.shell(
            name="Install NVIDIA's repository key (cuda-keyring)",
            commands=[
                f"curl -fsSL --retry 3 -o {shlex.quote(deb)} {shlex.quote(url)} && "
                f"dpkg -i {shlex.quote(deb)} && rm -f {shlex.quote(deb)}"
            ],
        )
    repository_changed = write_file(
        repository_list_path(driver.distro, driver.arch),
        repository_line(driver.distro, driver.arch),
        "NVIDIA apt repository",
    )
    if keyring_missing or repository_changed:
        server.shell(name="Read NVIDIA's repository index", commands=["apt-get update"])


def _one_module_source(driver: DriverTarget) -> bool:
    """Whether ``nvidia.ko`` comes from precompiled packages (said once); a host with precompiled
    and DKMS module packages both is refused: they fight over the same module and user space."""
    modules = driver.modules
    if modules.mixed:
        raise RoleError(
            f"host {host.name}: nvidia.ko: expected one source, found precompiled "
            f"{', '.join(modules.precompiled)} and DKMS {', '.join(modules.dkms)} — fix: "
            f"apt-get purge {' '.join(modules.dkms)} (keep the precompiled modules "
            "the OS ships), then run again"
        )
    if modules.precompiled:
        say_once(
            f"takes nvidia.ko from precompiled {', '.join(modules.precompiled)}: no DKMS package "
            f"added; the loaded module must be {driver.pins.driver_version}"
        )
    return bool(modules.precompiled)


def install_steps(plan: HostPlan) -> None:
    """The install phase's operations, for composing into other flows (re-provisioning)."""
    driver = target(plan)
    if driver is None:
        return
    own_kernel = container_kind() is None
    precompiled = _one_module_source(driver)
    online = driver.source.kind is SourceKind.ONLINE
    headers: tuple[str, ...] = ()
    purpose = "repository tools"
    if own_kernel:
        _refuse_unsigned_module_under_secure_boot()
        if not precompiled:  # DKMS builds nvidia.ko against them
            release = read_fact(NvidiaKernelHeaders).release
            headers = kernel_headers_packages(driver.distro, release)
            purpose = f"kernel headers for {release}"
    online_tools = KEYRING_TOOLS if online and driver.dgx_os is None else ()
    install_missing((*headers, *online_tools), purpose, driver.source)
    if online:
        _nvidia_repository(driver)
    if (
        write_file(
            BLACKLIST_PATH, module_blacklist_conf(), "nouveau/nova blacklist", create_dir=True
        )
        and own_kernel
    ):
        server.shell(
            name="Rebuild every initramfs with the blacklist",
            commands=["update-initramfs -u -k all"],
        )
    # NVIDIA: "install the pinning package prior to installing the driver", so it governs
    # what the driver's install pulls in (SOURCES["driver_pinning"])
    stale = driver.nvidia.stale_driver_locks(read_fact(DebPackages))
    if stale:
        server.shell(
            name=f"Remove NVIDIA pinning packages of other drivers ({', '.join(stale)})",
            commands=[f"{APT_PURGE} {' '.join(stale)}"],
        )
    install_pinned(driver.lock, "nvidia-driver-pinning", driver.source)
    install_pinned(driver.pin, "nvidia-driver", driver.source)


@deploy("NVIDIA driver: packages")
def install(plan: HostPlan) -> None:
    install_steps(plan)


@deploy("NVIDIA driver: persistence daemon")
def configure(plan: HostPlan) -> None:
    if target(plan) is None or gpu_steps_skipped():
        return
    systemd.service(name=f"Enable {PERSISTENCED}", service=PERSISTENCED, running=None, enabled=True)


def reload_modules(modules: GpuKernelModules, why: str) -> None:
    """Bring the installed driver into the kernel: unload the old modules and load the new ones in
    place; where that fails (something still holds ``/dev/nvidia*``) or nouveau holds the GPU,
    reboot and wait for the host (pyinfra's ``server.reboot``)."""
    if modules.rivals:
        server.reboot(
            name=f"Reboot: {'/'.join(modules.rivals)} hold the GPU ({why})",
            reboot_timeout=REBOOT_TIMEOUT_S,
        )
        return
    swapped: dict[str, bool] = {}

    def swap_modules(state: Any, host: Any) -> bool:
        unload = f"modprobe -r {shlex.join(modules.nvidia)} && " if modules.nvidia else ""
        swapped["ok"] = bool(host.run_shell_command(f"{unload}modprobe -a nvidia nvidia_uvm")[0])
        return True  # a failed swap is not an error: the reboot below takes over

    python.call(name=f"Reload the NVIDIA modules in place ({why})", function=swap_modules)
    server.reboot(
        name="Reboot: the old NVIDIA modules would not unload",
        reboot_timeout=REBOOT_TIMEOUT_S,
        _if=lambda: not swapped.get("ok", False),
    )


def driver_check(driver: DriverTarget) -> Check:
    """Every promised GPU visible, the pinned driver and flavor loaded, no rival module."""

    def check(on: Any) -> list[str]:
        return [
            *check_gpus(read_fact(NvidiaGpus, on=on), driver.gpu_count, driver.gpu_name),
            *check_loaded_driver(
                read_fact(NvidiaLoadedDriver, on=on), driver.pins.driver_version, driver.flavor
            ),
            *check_no_rival_modules(read_fact(NvidiaKernelModules, on=on)),
        ]

    return check


@deploy("NVIDIA driver: load and verify")
def activate(plan: HostPlan) -> None:
    driver = target(plan)
    if driver is None or gpu_steps_skipped():
        return
    drift = driver_drift(
        driver.pins.driver_version,
        driver.flavor,
        read_fact(NvidiaInstalledModule),
        read_fact(NvidiaLoadedDriver),
    )
    installed = host.get_fact(DebPackages)
    packages_change = any(packages_off_pin(pin, installed) for pin in driver.pins_in_order)
    if drift.needs_reload and container_kind() is None:  # a container's check reports it instead
        reload_modules(read_fact(NvidiaKernelModules), drift.reason)
    systemd.service(name=f"Start {PERSISTENCED}", service=PERSISTENCED, running=True)
    verify(
        "nvidia_driver",
        f"{driver.gpu_count} × {driver.gpu_name} on driver {driver.pins.driver_version}",
        driver_check(driver),
        after_changes=drift.needs_reload or packages_change,
    )
