"""pyinfra facts about RDMA ports (InfiniBand and RoCE), read straight from sysfs.

sysfs is there whether or not OFED's ``show_gids`` or ``ibstat`` are installed, and it is what those
tools read: ``/sys/class/infiniband/<dev>/ports/<n>/{link_layer,state,rate}`` and, per GID index,
``gids/<i>``, ``gid_attrs/types/<i>`` (``IB/RoCE v1`` or ``RoCE v2``), ``gid_attrs/ndevs/<i>``.
A host without RDMA devices gets an empty tuple.

Example (in a deploy)::

    ports = host.get_fact(RdmaPorts)
    index = ports[0].roce_v2_ipv4_gid_index()
"""

from __future__ import annotations

import ipaddress
import re

from pydantic import BaseModel, ConfigDict
from pyinfra.api import FactBase

from metalserve.errors import ParseError


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Gid(_Frozen):
    """One populated GID table entry of a port."""

    index: int
    gid: str
    type: str
    netdev: str | None = None

    @property
    def ipv4(self) -> str | None:
        """The IPv4 address of an IPv4-mapped GID (``…:ffff:c0a8:0606`` → ``192.168.6.6``)."""
        mapped = ipaddress.IPv6Address(self.gid).ipv4_mapped
        return str(mapped) if mapped else None


class RdmaPort(_Frozen):
    """One port of an RDMA device: its link layer, state, rate and GID table."""

    device: str
    port: int
    link_layer: str
    state: str
    rate_gbps: float
    rate: str
    gids: tuple[Gid, ...] = ()

    @property
    def active(self) -> bool:
        return self.state == "ACTIVE"

    @property
    def is_roce(self) -> bool:
        return self.link_layer == "Ethernet"

    def roce_v2_ipv4_gid_index(self) -> int | None:
        """The GID index NCCL should use on RoCE: the first RoCE v2 entry with an IPv4 address
        (a link-local or RoCE v1 entry gives "completion with error 12")."""
        for gid in sorted(self.gids, key=lambda g: g.index):
            if gid.type == "RoCE v2" and gid.ipv4 is not None:
                return gid.index
        return None


_ZERO_GID = "0000:0000:0000:0000:0000:0000:0000:0000"
_RATE = re.compile(r"^(?P<gbps>\d+(?:\.\d+)?) Gb/sec")


def _port(device: str, port: str, fields: dict[str, str], gids: list[Gid]) -> RdmaPort:
    rate = fields.get("rate", "")
    match = _RATE.match(rate)
    if match is None:
        raise ParseError(
            f"RDMA port {device}/{port}: expected a rate like '400 Gb/sec (4X NDR)', found "
            f"{rate!r} — fix: check /sys/class/infiniband/{device}/ports/{port}/rate"
        )
    # state reads "4: ACTIVE"; keep the name
    state = fields.get("state", "").partition(":")[2].strip() or fields.get("state", "")
    return RdmaPort(
        device=device,
        port=int(port),
        link_layer=fields.get("link_layer", ""),
        state=state,
        rate_gbps=float(match.group("gbps")),
        rate=rate,
        gids=tuple(gids),
    )


def parse_rdma_ports(output: list[str]) -> tuple[RdmaPort, ...]:
    """Parse the command's lines: ``port <dev> <n>``, then ``<attr> <value>`` and
    ``gid <index> <gid> <type>|<netdev>`` lines for that port.

    Example::

        >>> p = parse_rdma_ports(["port mlx5_0 1", "link_layer Ethernet", "state 4: ACTIVE",
        ...     "rate 400 Gb/sec (4X NDR)",
        ...     "gid 3 0000:0000:0000:0000:0000:ffff:0a00:0101 RoCE v2|ens1f0np0"])[0]
        >>> (p.active, p.rate_gbps, p.roce_v2_ipv4_gid_index(), p.gids[0].ipv4)
        (True, 400.0, 3, '10.0.1.1')
    """
    ports: list[RdmaPort] = []
    current: tuple[str, str] | None = None
    fields: dict[str, str] = {}
    gids: list[Gid] = []
    for raw in output:
        line = raw.strip()
        if not line:
            continue
        key, _, value = line.partition(" ")
        if key == "port":
            if current:
                ports.append(_port(*current, fields, gids))
            device, _, number = value.partition(" ")
            current, fields, gids = (device, number), {}, []
        elif key == "gid" and current:
            index, gid, rest = value.split(" ", 2)
            gid_type, _, netdev = rest.partition("|")
            if gid != _ZERO_GID:
                gids.append(Gid(index=int(index), gid=gid, type=gid_type, netdev=netdev or None))
        elif current:
            fields[key] = value
    if current:
        ports.append(_port(*current, fields, gids))
    return tuple(ports)


class RdmaPorts(FactBase[tuple[RdmaPort, ...]]):
    """Every RDMA port on the host with its link layer, state, rate and populated GIDs."""

    sysfs_root = "/sys/class/infiniband"

    @staticmethod
    def default() -> tuple[RdmaPort, ...]:
        return ()

    def command(self) -> str:
        return (
            f'for p in {self.sysfs_root}/*/ports/*; do [ -d "$p" ] || continue; '
            f'd=${{p#{self.sysfs_root}/}}; d=${{d%%/*}}; echo "port $d ${{p##*/}}"; '
            'for a in link_layer state rate; do echo "$a $(cat "$p/$a")"; done; '
            'for g in "$p"/gids/*; do i=${g##*/}; '
            't=$(cat "$p/gid_attrs/types/$i" 2>/dev/null) || continue; '
            'echo "gid $i $(cat "$g") $t|$(cat "$p/gid_attrs/ndevs/$i" 2>/dev/null)"; done; done'
        )

    def process(self, output: list[str]) -> tuple[RdmaPort, ...]:
        return parse_rdma_ports(output)


def parse_ofed_release(output: list[str]) -> str | None:
    """``ofed_info -s``'s one line without its trailing colon; ``None`` when the command is absent
    (the distribution's rdma-core alone).

    Example::

        >>> parse_ofed_release(["MLNX_OFED_LINUX-24.10-1.1.4.0:"]), parse_ofed_release([])
        ('MLNX_OFED_LINUX-24.10-1.1.4.0', None)
    """
    line = next((line.strip() for line in output if line.strip()), "")
    return line.rstrip(":") or None


class OfedRelease(FactBase[str | None]):
    """The MLNX_OFED or DOCA-OFED release installed (both ship ``ofed_info``), or ``None``.
    nvidia-peermem loads only against their peer-memory symbols, never the inbox ``ib_core``."""

    def command(self) -> str:
        return "ofed_info -s 2>/dev/null || true"

    def process(self, output: list[str]) -> str | None:
        return parse_ofed_release(output)
