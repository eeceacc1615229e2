"""Sandbox hosts: a fresh root tree per host, booted with `systemd-nspawn -b` in its own netns."""

from __future__ import annotations

import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

from metalserve.layout import CCACHE_DIR
from metalserve.sandbox import relay
from metalserve.sandbox.cgroups import enter, host_cgroups
from metalserve.sandbox.errors import SandboxError
from metalserve.sandbox.layout import HostSlot, SandboxLayout
from metalserve.sandbox.network import NETNS_DIR, connect_in_netns
from metalserve.sandbox.procs import find_processes, start_daemon
from metalserve.sandbox.system import run

SSH_PORT = 22
_FIX = "run `metalserve sandbox down`, then `metalserve sandbox up` again"


def write_file(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def hosts_file(layout: SandboxLayout, slots: list[HostSlot]) -> str:
    """/etc/hosts for every host: all sandbox hosts and the controller, by name."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines.append(f"{layout.controller_ip}\t{layout.controller_netns}")
    lines += [f"{s.ip}\t{s.name}" for s in slots]
    return "\n".join(lines) + "\n"


def make_host_key(tree: Path, name: str) -> str:
    """Generate the host's own ed25519 SSH host key; return its public line for known_hosts."""
    key = tree / "etc/ssh/ssh_host_ed25519_key"
    key.unlink(missing_ok=True)
    run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{name}", "-f", key],
        what=f"generate the SSH host key of {name}",
        fix=_FIX,
    )
    key_type, blob = key.with_suffix(".pub").read_text().split()[:2]
    return f"{key_type} {blob}"


def prepare_tree(
    tree: Path, layout: SandboxLayout, slot: HostSlot, slots: list[HostSlot], authorized_key: str
) -> str:
    """Give an extracted tree its identity: hostname, hosts, SSH keys, no resolver. Returns its host key."""
    write_file(tree / "etc/hostname", f"{slot.name}\n")
    write_file(tree / "etc/hosts", hosts_file(layout, slots))
    # No resolver on an air-gapped site: an empty resolv.conf fails lookups at once instead of
    # hanging ~20 s on an unreachable server (measured with `getent hosts` on Debian 12).
    resolv = tree / "etc/resolv.conf"
    resolv.unlink(missing_ok=True)
    write_file(resolv, "# sandbox host: no DNS, like an air-gapped site\n")
    ssh_dir = tree / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    write_file(ssh_dir / "authorized_keys", authorized_key.strip() + "\n", 0o600)
    write_file(
        tree / "etc/ssh/sshd_config.d/metalserve-sandbox.conf",
        "HostKey /etc/ssh/ssh_host_ed25519_key\nPasswordAuthentication no\nUseDNS no\n",
    )
    write_file(tree / "etc/ccache.conf", f"cache_dir = {CCACHE_DIR}\n")
    (tree / CCACHE_DIR.lstrip("/")).mkdir(parents=True, exist_ok=True)
    return make_host_key(tree, slot.name)


def nspawn_argv(tree: Path, slot: HostSlot, ccache_dir: Path) -> list[str]:
    """The boot command of one host.

    `--register=no --keep-unit`: this control host's PID 1 is not systemd, so there is no
    machined to register with and no unit to move into (systemd-nspawn(1): --register,
    --keep-unit). `CAP_NET_ADMIN` lets the host load its own nftables table (metalserve's firewall
    role): the capability reaches only the network namespace the host was given, as
    `--private-network` would grant it (systemd-nspawn(1)).
    """
    return [
        "systemd-nspawn", "--quiet", "--boot", "--register=no", "--keep-unit",
        f"--directory={tree}", f"--machine={slot.name}",
        f"--network-namespace-path={NETNS_DIR / slot.netns}", "--capability=CAP_NET_ADMIN",
        f"--bind={ccache_dir}:{CCACHE_DIR}",
        "--resolv-conf=off", "--link-journal=no", "--console=read-only",
    ]  # fmt: skip


def boot(tree: Path, slot: HostSlot, ccache_dir: Path, log: Path) -> int:
    """Start the host in its own cgroup, in the background (it outlives this process); return nspawn's pid."""
    cgroups = host_cgroups(slot.name)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            nspawn_argv(tree, slot, ccache_dir),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            preexec_fn=lambda: enter(cgroups),
        )
    return proc.pid


def nspawn_pids(layout: SandboxLayout) -> list[int]:
    """Every systemd-nspawn booting a tree under this layout's machines dir, recorded or not."""
    prefix = f"--directory={layout.machines_dir}/"
    return find_processes(
        lambda argv: (
            bool(argv)
            and Path(argv[0]).name == "systemd-nspawn"
            and any(a.startswith(prefix) for a in argv)
        )
    )


def ssh_config_text(
    layout: SandboxLayout, slots: list[HostSlot], key: Path, known_hosts: Path
) -> str:
    """An ssh_config reaching each host through its loopback relay (for ssh, paramiko, pyinfra)."""
    blocks = []
    for s in slots:
        blocks.append(
            f"Host {s.name}\n"
            "  HostName 127.0.0.1\n"
            f"  Port {layout.ssh_port(s)}\n"
            f"  HostKeyAlias {s.name}\n"
            "  User root\n"
            f"  IdentityFile {shlex.quote(str(key))}\n"
            "  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {shlex.quote(str(known_hosts))}\n"
            "  StrictHostKeyChecking yes\n"
            "  LogLevel ERROR\n"
        )
    return "\n".join(blocks)


def known_hosts_line(layout: SandboxLayout, slot: HostSlot, host_key: str) -> str:
    """The host's key under its name, its address and its loopback relay (what paramiko looks up)."""
    return f"{slot.name},{slot.ip},[127.0.0.1]:{layout.ssh_port(slot)} {host_key}"


def start_relay(layout: SandboxLayout, slot: HostSlot, log: Path) -> int:
    """Start the loopback relay of ``slot`` (see ``relay.py``); return its pid once it listens."""
    argv = [
        sys.executable, str(Path(relay.__file__).resolve()),
        "--netns", f"/run/netns/{layout.controller_netns}",
        "--listen", str(layout.ssh_port(slot)), "--to", f"{slot.ip}:22",
    ]  # fmt: skip
    port = layout.ssh_port(slot)

    def listening() -> bool:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True

    return start_daemon(argv, log, f"ssh relay 127.0.0.1:{port} → {slot.name}", listening, 10)


def ssh_argv(ssh_config: Path, name: str, command: str, connect_timeout: int = 5) -> list[str]:
    """`ssh` to a sandbox host with the sandbox's config; the operator can run the same by hand."""
    return [
        "ssh", "-F", str(ssh_config), "-o", "BatchMode=yes",
        "-o", f"ConnectTimeout={connect_timeout}", name, command,
    ]  # fmt: skip


def ssh_run(
    ssh_config: Path, name: str, command: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ssh_argv(ssh_config, name, command),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(
            ssh_argv(ssh_config, name, command), 124, "", "timed out"
        )


def wait_for_sshd(
    layout: SandboxLayout, slot: HostSlot, nspawn_pid: int, log: Path, timeout: float
) -> None:
    """Block until the host's sshd answers with its banner, or fail with the boot log's last line."""
    from metalserve.sandbox.procs import alive

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(nspawn_pid):
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise SandboxError(
                f"boot {slot.name}: expected a running container; found it exited ({tail[0]}) — fix: read {log}"
            )
        try:
            with connect_in_netns(layout.controller_netns, slot.ip, SSH_PORT, timeout=1) as sock:
                if sock.recv(8).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SandboxError(
        f"boot {slot.name}: expected sshd on {slot.ip}:22 within {timeout:.0f} s; found none — fix: read {log}"
    )


def system_state(ssh_config: Path, name: str, wait: bool = False, timeout: float = 10) -> str:
    """`systemctl is-system-running` of a host (`--wait` blocks until boot settles), or why not."""
    cmd = "systemctl is-system-running --wait" if wait else "systemctl is-system-running"
    proc = ssh_run(ssh_config, name, cmd, timeout=timeout)
    state = proc.stdout.strip()
    if state:
        return state
    return f"unreachable ({(proc.stderr.strip().splitlines() or ['no output'])[-1]})"


def failed_units(ssh_config: Path, name: str) -> list[str]:
    proc = ssh_run(
        ssh_config, name, "systemctl list-units --failed --plain --no-legend", timeout=15
    )
    return [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]
