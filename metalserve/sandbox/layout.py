"""Names and addresses of a sandbox: pure functions of a `SandboxLayout` and a host count.

A sandbox is one controller network namespace holding a bridge, plus one namespace per host joined
to that bridge by a veth pair. Every name and address is derived here and nowhere else, so `up`,
`down`, `status`, the inventory and the tests all agree.

Example::

    >>> layout = SandboxLayout()
    >>> [h.name for h in layout.hosts(2)]
    ['ms-host1', 'ms-host2']
    >>> layout.hosts(2)[1].ip
    '10.77.0.12'
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from metalserve.sandbox.errors import SandboxError

# Linux caps interface names at 15 bytes (IFNAMSIZ 16 with the NUL); see `man 7 netdevice`.
IFNAME_MAX = 15
# Hosts start at .11 so .1-.10 stay free for controller-side services.
FIRST_HOST_OFFSET = 10
MAX_HOSTS = 64


SSH_PORT_BASE = 20000
"""Loopback ports 20000 + 100 × (second octet of the subnet mod 100) + host index (10.77 → 27701…)."""


class HostSlot(BaseModel):
    """Where one sandbox host lives: its names and its address."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    index: int = Field(ge=1)
    name: str
    netns: str
    veth: str
    ip: str
    prefixlen: int


class SandboxLayout(BaseModel):
    """Everything that names or addresses one sandbox; the default is the one `metalserve` uses.

    Tests make a second layout (another prefix, subnet, port and directory) so that a throwaway
    sandbox can be brought up and torn down beside the shared one.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    prefix: str = Field(default="ms", pattern=r"^[a-z][a-z0-9]{0,5}$")
    subnet: str = "10.77.0.0/24"
    http_port: int = Field(default=8080, ge=1, le=65535)
    run_dir: Path = Field(description="state file, keys, logs and the hosts' extracted root trees")

    @field_validator("subnet")
    @classmethod
    def _private_ipv4(cls, value: str) -> str:
        net = ipaddress.ip_network(value, strict=True)
        if not (isinstance(net, ipaddress.IPv4Network) and net.is_private):
            raise ValueError(f"subnet must be a private IPv4 network (got {value})")
        if net.num_addresses < FIRST_HOST_OFFSET + MAX_HOSTS + 2:
            raise ValueError(f"subnet {value} is too small for {MAX_HOSTS} hosts")
        return value

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    @property
    def controller_netns(self) -> str:
        return f"{self.prefix}-ctl"

    @property
    def bridge(self) -> str:
        return f"{self.prefix}-br"

    @property
    def controller_ip(self) -> str:
        return str(self.network.network_address + 1)

    @property
    def http_base_url(self) -> str:
        return f"http://{self.controller_ip}:{self.http_port}"

    @property
    def state_file(self) -> Path:
        return self.run_dir / "state.json"

    @property
    def machines_dir(self) -> Path:
        return self.run_dir / "machines"

    @property
    def log_dir(self) -> Path:
        """Boot and server logs; beside the run dir so they outlive `down` for a post-mortem."""
        return self.run_dir.with_name(f"{self.run_dir.name}-logs")

    @property
    def www_dir(self) -> Path:
        """Root of the controller's file server: one symlink per served directory."""
        return self.run_dir / "www"

    @property
    def host_name_pattern(self) -> re.Pattern[str]:
        return re.compile(rf"^{re.escape(self.prefix)}-host(\d+)$")

    def ssh_port(self, slot: HostSlot) -> int:
        """The loopback port that reaches ``slot``'s sshd (distinct per subnet, so a second test
        sandbox never collides with the shared one)."""
        return (
            SSH_PORT_BASE + 100 * (int(self.network.network_address.packed[1]) % 100) + slot.index
        )

    def host(self, index: int) -> HostSlot:
        """The slot of host number `index` (1-based).

        Example::

            >>> SandboxLayout(run_dir=Path("/x")).host(3).veth
            'ms-ve3'
        """
        if not 1 <= index <= MAX_HOSTS:
            raise SandboxError(
                f"sandbox host index must be 1-{MAX_HOSTS}; found {index} — fix: ask for fewer hosts"
            )
        name = f"{self.prefix}-host{index}"
        veth = f"{self.prefix}-ve{index}"
        assert len(name) <= IFNAME_MAX and len(veth) <= IFNAME_MAX
        return HostSlot(
            index=index,
            name=name,
            netns=name,
            veth=veth,
            ip=str(self.network.network_address + FIRST_HOST_OFFSET + index),
            prefixlen=self.network.prefixlen,
        )

    def hosts(self, count: int) -> list[HostSlot]:
        """The first `count` host slots; one clear error when `count` is out of range."""
        if not 1 <= count <= MAX_HOSTS:
            raise SandboxError(
                f"sandbox size must be 1-{MAX_HOSTS} hosts; found {count} — fix: pass -n between 1 and {MAX_HOSTS}"
            )
        return [self.host(i) for i in range(1, count + 1)]

    def owns_netns(self, name: str) -> bool:
        """Whether a network namespace name is one this layout creates (and so `down` removes)."""
        return name == self.controller_netns or bool(self.host_name_pattern.match(name))


def default_layout(env: dict[str, str] | None = None) -> SandboxLayout:
    """The layout `metalserve sandbox` and `inventories/sandbox.py` use.

    The run directory is `${METALSERVE_SANDBOX_DIR:-~/.local/state/metalserve/sandbox}`; it holds
    the hosts' extracted root trees, so it sits on disk rather than on a tmpfs.
    """
    import os

    env = dict(os.environ) if env is None else env
    run_dir = env.get("METALSERVE_SANDBOX_DIR") or str(
        Path(env.get("HOME", "/root")) / ".local/state/metalserve/sandbox"
    )
    return SandboxLayout(run_dir=Path(run_dir))
