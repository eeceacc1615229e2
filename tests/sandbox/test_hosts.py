"""What each host is given before it boots, and how it is reached: pure renderings."""

from __future__ import annotations

import hashlib
from pathlib import Path

from metalserve.layout import CCACHE_DIR
from metalserve.sandbox.aptrepo import release_text
from metalserve.sandbox.layout import SandboxLayout
from metalserve.sandbox.machines import (
    hosts_file,
    known_hosts_line,
    nspawn_argv,
    ssh_argv,
    ssh_config_text,
)

LAYOUT = SandboxLayout(run_dir=Path("/srv/sbx"))
SLOTS = LAYOUT.hosts(2)


def test_hosts_know_each_other_and_the_controller_by_name() -> None:
    text = hosts_file(LAYOUT, SLOTS)
    assert "10.77.0.1\tms-ctl" in text.splitlines()
    assert "10.77.0.11\tms-host1" in text.splitlines()
    assert "10.77.0.12\tms-host2" in text.splitlines()


def test_ssh_reaches_each_host_through_its_loopback_relay_with_a_pinned_host_key() -> None:
    text = ssh_config_text(LAYOUT, SLOTS, Path("/srv/sbx/id_ed25519"), Path("/srv/sbx/known_hosts"))
    block = text.split("\n\n")[1]
    assert block.startswith("Host ms-host2\n  HostName 127.0.0.1\n  Port 27702\n")
    assert "  HostKeyAlias ms-host2" in block and "ProxyCommand" not in block
    assert block.rstrip().endswith("LogLevel ERROR")
    assert "  StrictHostKeyChecking yes" in block
    assert "  UserKnownHostsFile /srv/sbx/known_hosts" in block
    assert "  IdentityFile /srv/sbx/id_ed25519" in block


def test_known_hosts_names_the_host_by_name_and_address() -> None:
    assert (
        known_hosts_line(LAYOUT, SLOTS[0], "ssh-ed25519 AAAAC3")
        == "ms-host1,10.77.0.11,[127.0.0.1]:27701 ssh-ed25519 AAAAC3"
    )


def test_hosts_boot_systemd_in_their_own_namespace_with_the_shared_ccache() -> None:
    argv = nspawn_argv(Path("/srv/sbx/machines/ms-host1/root"), SLOTS[0], Path("/c/ccache/k"))
    assert argv[0] == "systemd-nspawn"
    assert {"--boot", "--register=no", "--keep-unit"} <= set(argv)
    assert "--network-namespace-path=/run/netns/ms-host1" in argv
    assert f"--bind=/c/ccache/k:{CCACHE_DIR}" in argv
    assert "--machine=ms-host1" in argv


def test_ssh_commands_use_the_sandbox_config_and_never_prompt() -> None:
    argv = ssh_argv(Path("/srv/sbx/ssh_config"), "ms-host1", "true")
    assert argv[:3] == ["ssh", "-F", "/srv/sbx/ssh_config"]
    assert "BatchMode=yes" in argv
    assert argv[-2:] == ["ms-host1", "true"]


def test_the_release_file_carries_the_index_checksums(tmp_path: Path) -> None:
    (tmp_path / "Packages").write_text("Package: ccache\n")
    (tmp_path / "Packages.gz").write_bytes(b"gz")
    text = release_text(tmp_path, "bookworm", now=0)
    assert "Date: Thu, 01 Jan 1970 00:00:00 GMT" in text
    digest = hashlib.sha256(b"Package: ccache\n").hexdigest()
    assert f" {digest} 16 Packages" in text.splitlines()
    assert f" {hashlib.sha256(b'gz').hexdigest()} 2 Packages.gz" in text.splitlines()
