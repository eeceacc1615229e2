"""`up`, `down` and `status` of the sandbox: throwaway Debian 12 hosts booting real systemd."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from metalserve.sandbox import aptrepo, cgroups, fileserver, machines, network, procs
from metalserve.sandbox.errors import SandboxError
from metalserve.sandbox.layout import HostSlot, SandboxLayout, default_layout
from metalserve.sandbox.prereqs import check_prerequisites
from metalserve.sandbox.recipe import APT_REPO, ROOTFS, AptRepoRecipe, CachePaths, RootfsRecipe
from metalserve.sandbox.rootfs import Progress, build_rootfs, golden_tree, mount_overlay
from metalserve.sandbox.state import SandboxHostState, SandboxState, load_state, save_state
from metalserve.sandbox.system import remove_tree, run

BOOT_TIMEOUT_S = 120
SHUTDOWN_GRACE_S = 30
APT_SERVED_NAME = "apt"


def _quiet(_: str) -> None:
    pass


def _stage(progress: Progress, started: float, text: str) -> None:
    progress(f"[{time.monotonic() - started:6.1f} s] {text}")


def up(
    n: int = 2,
    layout: SandboxLayout | None = None,
    cache: CachePaths | None = None,
    rootfs: RootfsRecipe = ROOTFS,
    apt: AptRepoRecipe = APT_REPO,
    progress: Progress = print,
) -> SandboxState:
    """Bring up `n` hosts and the controller's services; return the state also written to disk.

    Anything half made is torn down again when a step fails, so a failed `up` leaves nothing.

    Example::

        state = up(2)
        print(state.hosts[0].name, state.hosts[0].ip, state.apt_url)
    """
    layout = layout or default_layout()
    cache = cache or CachePaths.from_env()
    check_prerequisites()
    slots = layout.hosts(n)
    _refuse_if_up(layout)
    started = time.monotonic()
    tarball = build_rootfs(rootfs, cache.rootfs_tarball(rootfs), progress)
    repo = aptrepo.build_apt_repo(apt, rootfs, tarball, cache.apt_repo(apt, rootfs), progress)
    ccache_dir = cache.ccache_dir(apt, rootfs)
    ccache_dir.mkdir(parents=True, exist_ok=True)
    _stage(progress, started, "caches ready")
    try:
        state = _bring_up(layout, slots, tarball, repo, ccache_dir, progress, started)
    except BaseException:
        progress("up failed: tearing down what was made")
        down(layout, progress=_quiet)
        raise
    _stage(progress, started, f"sandbox up: {n} host(s); state in {layout.state_file}")
    return state


def _refuse_if_up(layout: SandboxLayout) -> None:
    leftovers = [ns for ns in network.list_netns() if layout.owns_netns(ns)]
    if layout.state_file.exists() or leftovers or machines.nspawn_pids(layout):
        raise SandboxError(
            f"sandbox up: expected no sandbox under {layout.run_dir}; found one "
            f"({', '.join(leftovers) or 'state file or hosts'}) — fix: metalserve sandbox down"
        )


def _bring_up(
    layout: SandboxLayout,
    slots: list[HostSlot],
    tarball: Path,
    repo: Path,
    ccache_dir: Path,
    progress: Progress,
    started: float,
) -> SandboxState:
    run_dir = layout.run_dir
    logs = layout.log_dir
    remove_tree(logs)
    logs.mkdir(parents=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    run_dir.chmod(0o700)
    key = run_dir / "id_ed25519"
    run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "metalserve-sandbox", "-f", key],
        what="generate the sandbox SSH key",
        fix="check that ssh-keygen works, then retry",
    )
    authorized = key.with_suffix(".pub").read_text()

    network.create_controller(layout)
    for slot in slots:
        network.attach_host(layout, slot)
    _stage(
        progress,
        started,
        f"network: {layout.controller_netns} bridge {layout.subnet}, {len(slots)} veth pair(s)",
    )

    lower = golden_tree(tarball, progress)
    roots = {s.name: mount_overlay(lower, layout.machines_dir / s.name) for s in slots}
    host_keys = [machines.prepare_tree(roots[s.name], layout, s, slots, authorized) for s in slots]
    _stage(
        progress, started, f"rootfs: {len(slots)} fresh overlay root(s) under {layout.machines_dir}"
    )

    known_hosts = run_dir / "known_hosts"
    known_hosts.write_text(
        "".join(
            machines.known_hosts_line(layout, s, k) + "\n"
            for s, k in zip(slots, host_keys, strict=True)
        )
    )
    ssh_config = run_dir / "ssh_config"
    ssh_config.write_text(machines.ssh_config_text(layout, slots, key, known_hosts))
    for slot in slots:
        machines.start_relay(layout, slot, logs / f"{slot.name}-relay.log")

    server_pid = fileserver.start_server(layout, logs / "fileserver.log")
    apt_url = fileserver.serve_dir(layout, APT_SERVED_NAME, repo)
    _stage(progress, started, f"file server: {layout.http_base_url}/ (apt repo at {apt_url})")

    booted = [
        (
            slot,
            machines.boot(roots[slot.name], slot, ccache_dir, logs / f"{slot.name}.log"),
        )
        for slot in slots
    ]
    for slot, pid in booted:
        machines.wait_for_sshd(layout, slot, pid, logs / f"{slot.name}.log", BOOT_TIMEOUT_S)
    _stage(progress, started, "sshd answering on every host")

    state = SandboxState(
        prefix=layout.prefix,
        subnet=layout.subnet,
        controller_netns=layout.controller_netns,
        controller_ip=layout.controller_ip,
        hosts=tuple(
            SandboxHostState(
                name=s.name,
                ip=s.ip,
                netns=s.netns,
                machine_dir=layout.machines_dir / s.name,
                host_key_line=k,
            )
            for s, k in zip(slots, host_keys, strict=True)
        ),
        ssh_key=key,
        ssh_known_hosts=known_hosts,
        ssh_config=ssh_config,
        http_base_url=layout.http_base_url,
        http_server_pid=server_pid,
        served={APT_SERVED_NAME: apt_url},
        apt_url=apt_url,
        ccache_dir=ccache_dir,
        rootfs_tarball=tarball,
    )
    with ThreadPoolExecutor(max_workers=min(8, len(slots))) as pool:
        states = list(
            pool.map(
                lambda s: machines.system_state(
                    ssh_config, s.name, wait=True, timeout=BOOT_TIMEOUT_S
                ),
                slots,
            )
        )
    for slot, sys_state in zip(slots, states, strict=True):
        if sys_state not in ("running", "degraded"):
            raise SandboxError(
                f"boot {slot.name}: expected systemd 'running'; found '{sys_state}' — fix: read {logs / slot.name}.log"
            )
    save_state(layout.state_file, state)
    _stage(
        progress,
        started,
        "systemd: " + ", ".join(f"{s.name} {st}" for s, st in zip(slots, states, strict=True)),
    )
    return state


def down(layout: SandboxLayout | None = None, progress: Progress = print) -> None:
    """Stop every host and service of `layout` and remove its namespaces, mounts and trees.

    Works from what is on the machine, not only from the state file, so it also cleans up after
    a crashed `up` or a lost state file. Caches (rootfs, apt repo, ccache) are kept.
    """
    layout = layout or default_layout()
    check_prerequisites()
    started = time.monotonic()
    ours = [ns for ns in network.list_netns() if layout.owns_netns(ns)]

    hosts = machines.nspawn_pids(layout)
    procs.terminate(hosts, SHUTDOWN_GRACE_S)
    # Anything else still inside our namespaces (the file server, a stray shell, a relay).
    strays = sorted({pid for ns in ours for pid in network.netns_pids(ns)})
    strays += procs.find_processes(
        lambda argv: "http.server" in argv and str(layout.www_dir) in argv
    )
    procs.terminate(sorted(set(strays)), 5)

    for cgroup in cgroups.find_host_cgroups(layout):
        cgroups.remove_cgroup(cgroup)
    for ns in sorted(ours, key=lambda n: n == layout.controller_netns):
        network.delete_netns(ns)
    had_run_dir = layout.run_dir.exists()
    remove_tree(layout.run_dir)
    if not (hosts or ours or had_run_dir):
        progress("sandbox down: nothing was up")
        return
    progress(
        f"sandbox down in {time.monotonic() - started:.1f} s: stopped {len(hosts)} host(s), "
        f"removed {len(ours)} namespace(s) and {layout.run_dir} (caches and logs in {layout.log_dir} kept)"
    )


class HostStatus(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    ip: str
    system: str


def status(layout: SandboxLayout | None = None) -> list[HostStatus]:
    """Each host with its address and `systemctl is-system-running` answer."""
    layout = layout or default_layout()
    check_prerequisites()
    state = load_state(layout.state_file)
    with ThreadPoolExecutor(max_workers=min(8, len(state.hosts))) as pool:
        answers = list(
            pool.map(lambda h: machines.system_state(state.ssh_config, h.name), state.hosts)
        )
    return [
        HostStatus(name=h.name, ip=h.ip, system=a)
        for h, a in zip(state.hosts, answers, strict=True)
    ]
