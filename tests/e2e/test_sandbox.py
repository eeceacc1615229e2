"""The sandbox as a deploy sees it: real systemd hosts, real SSH, a private network, a local apt repo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from metalserve.layout import CCACHE_DIR
from metalserve.sandbox import down, serve_dir, up
from metalserve.sandbox.cgroups import find_host_cgroups
from metalserve.sandbox.layout import SandboxLayout, default_layout
from metalserve.sandbox.machines import failed_units, ssh_run, system_state
from metalserve.sandbox.network import list_netns
from metalserve.sandbox.procs import find_processes
from metalserve.sandbox.state import SandboxState
from metalserve.sandbox.system import mounts_under
from metalserve.sources import AptSource, SourceKind
from roles.packages import ONLY_SITE_SOURCE, SOURCE_LIST, source_line, update_command

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def on_host(state: SandboxState, name: str, command: str, timeout: float = 120) -> str:
    proc = ssh_run(state.ssh_config, name, command, timeout=timeout)
    assert proc.returncode == 0, (
        f"{name}: `{command}` exited {proc.returncode}: {proc.stderr.strip()}"
    )
    return proc.stdout


def pyinfra(*args: str) -> subprocess.CompletedProcess[str]:
    # The console script, not `python -m pyinfra`: run as a module, pyinfra 3.10 hangs while
    # connecting (pyinfra-dev/pyinfra#1143).
    return subprocess.run(
        [str(Path(sys.executable).parent / "pyinfra"), "-y", "inventories/sandbox.py", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_pyinfra_reads_a_fact_from_every_host_over_ssh(sandbox: SandboxState) -> None:
    proc = pyinfra("fact", "server.Hostname")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout + proc.stderr
    facts = json.loads(out[out.index("{") : out.rindex("}") + 1])
    assert facts == {h.name: h.name for h in sandbox.hosts}


def test_pyinfra_runs_a_command_on_every_host(sandbox: SandboxState) -> None:
    proc = pyinfra("exec", "--", "cat /etc/debian_version && id -un")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout + proc.stderr
    for host in sandbox.hosts:
        assert f"[{host.name}] 12." in out
        assert f"[{host.name}] root" in out


def test_every_host_boots_systemd_to_running(sandbox: SandboxState) -> None:
    for host in sandbox.hosts:
        state = system_state(sandbox.ssh_config, host.name)
        assert state == "running", (
            f"{host.name} is {state}; failed units: {failed_units(sandbox.ssh_config, host.name)}"
        )
        assert on_host(sandbox, host.name, "cat /proc/1/comm").strip() == "systemd"


def test_hosts_reach_each_other_and_the_controller(sandbox: SandboxState) -> None:
    first, *others = sandbox.hosts
    for peer in others:
        banner = on_host(
            sandbox,
            first.name,
            f"python3 -c \"import socket; print(socket.create_connection(('{peer.name}', 22), 5).recv(7).decode())\"",
        )
        assert banner.strip() == "SSH-2.0"
    index = on_host(
        sandbox,
        first.name,
        f"python3 -c \"import urllib.request as u; print(u.urlopen('{sandbox.apt_url}Release').read().decode())\"",
    )
    assert "Origin: metalserve-sandbox" in index


def test_hosts_have_no_route_outside_the_subnet(sandbox: SandboxState) -> None:
    for host in sandbox.hosts:
        assert "default" not in on_host(sandbox, host.name, "ip route show")
        proc = ssh_run(sandbox.ssh_config, host.name, "ip route get 192.0.2.1")
        assert proc.returncode != 0 and "unreachable" in proc.stderr.lower(), (
            proc.stdout + proc.stderr
        )
        reach = on_host(
            sandbox,
            host.name,
            "python3 -c \"import socket\ntry:\n socket.create_connection(('192.0.2.1', 80), 3); print('connected')\nexcept OSError as e: print(e.errno)\"",
        )
        assert reach.strip() == "101", (
            f"expected ENETUNREACH (101), got {reach!r}"
        )  # errno.ENETUNREACH


def test_apt_installs_from_the_local_repository_alone(sandbox: SandboxState) -> None:
    """With exactly the source line and apt options the packages role uses."""
    host = sandbox.hosts[0].name
    line = source_line(AptSource(kind=SourceKind.MIRROR, url=sandbox.apt_url)).strip()
    on_host(sandbox, host, f"echo '{line}' > {SOURCE_LIST}")
    on_host(sandbox, host, update_command())
    on_host(
        sandbox,
        host,
        f"DEBIAN_FRONTEND=noninteractive apt-get {ONLY_SITE_SOURCE} install -y --no-install-recommends ccache",
        timeout=300,
    )
    assert on_host(sandbox, host, "ccache --version").startswith("ccache version")


def test_ccache_is_shared_with_the_control_host(sandbox: SandboxState) -> None:
    for host in sandbox.hosts:
        on_host(sandbox, host.name, f"echo {host.name} > {CCACHE_DIR}/probe-{host.name}")
        assert (sandbox.ccache_dir / f"probe-{host.name}").read_text().strip() == host.name
        (sandbox.ccache_dir / f"probe-{host.name}").unlink()
        assert (
            on_host(sandbox, host.name, "cat /etc/ccache.conf").strip()
            == f"cache_dir = {CCACHE_DIR}"
        )


def test_a_registered_directory_is_served_to_the_hosts(
    sandbox: SandboxState, tmp_path: Path
) -> None:
    (tmp_path / "hello.txt").write_text("from the control host\n")
    url = serve_dir(default_layout(), "e2e-files", tmp_path)
    assert url == f"{sandbox.http_base_url}/e2e-files/"
    body = on_host(
        sandbox,
        sandbox.hosts[-1].name,
        f"python3 -c \"import urllib.request as u; print(u.urlopen('{url}hello.txt').read().decode(), end='')\"",
    )
    assert body == "from the control host\n"


def test_status_lists_each_host_with_its_system_state(sandbox: SandboxState) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "metalserve.sandbox.cli", "status"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [line.split("\t") for line in proc.stdout.splitlines()]
    assert rows == [[h.name, h.ip, "running"] for h in sandbox.hosts]


def _root_links() -> str:
    return subprocess.run(
        ["ip", "-o", "link", "show"], capture_output=True, text=True, check=True
    ).stdout


def test_down_leaves_nothing_behind(tmp_path: Path) -> None:
    """A second, throwaway sandbox beside the shared one: up, check it is real, down, check it is gone."""
    layout = SandboxLayout(
        prefix="mt", subnet="10.78.0.0/24", http_port=8081, run_dir=tmp_path / "mt"
    )
    links_before = _root_links()
    state = up(1, layout=layout, progress=lambda _: None)
    try:
        assert {"mt-ctl", "mt-host1"} <= set(list_netns())
        assert _root_links() == links_before, "the root network namespace is left untouched"
        assert on_host(state, "mt-host1", "hostname").strip() == "mt-host1"
        assert find_processes(lambda argv: any(str(layout.run_dir) in a for a in argv))
        assert find_host_cgroups(layout), "each host runs in a cgroup of its own"
    finally:
        down(layout, progress=lambda _: None)
    assert not [ns for ns in list_netns() if ns.startswith("mt-")]
    assert find_processes(lambda argv: any(str(layout.run_dir) in a for a in argv)) == []
    assert mounts_under(layout.run_dir) == []
    assert find_host_cgroups(layout) == []
    assert not layout.run_dir.exists()
    assert _root_links() == links_before
