"""The node's nftables table: the serving port open to the inventory's client networks only, the
cluster's rendezvous ports open to the cluster's own nodes only, nothing else touched.

Pure: :func:`firewall_plan` decides, :meth:`FirewallPlan.nft_text` is the file ``nft -f`` loads.
The table is metalserve's own (``table inet metalserve``) and is replaced atomically in one
transaction; the site's other tables are never flushed, SSH is never dropped, and ports metalserve
does not open are left to the site (nftables wiki, "Atomic rule replacement"; nft(8)).

NCCL's bootstrap and socket transport use ephemeral ports that cannot be pinned (NVIDIA/nccl#388),
so traffic between nodes on other ports is left alone; RDMA (InfiniBand, RoCE v2) bypasses the
host's netfilter altogether and is isolated by the fabric (partition keys, VLANs).

Example::

    fw = firewall_plan(8000, ("10.20.0.0/16",), (29500,), ("10.0.0.2",), 22)
    print(fw.nft_text())
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from pydantic import Field

from metalserve.errors import PlanError
from metalserve.hardware import Frozen

TABLE = "metalserve"
NFT_PATH = "/etc/metalserve/firewall.nft"
UNIT = "metalserve-firewall"
ALL_INTERFACES = ("0.0.0.0", "::")


class FirewallPlan(Frozen):
    serving_port: int | None = Field(description="the engine's API port; None on a worker")
    clients_v4: tuple[str, ...]
    clients_v6: tuple[str, ...]
    cluster_ports: tuple[int, ...] = Field(description="rendezvous ports between the nodes")
    peers_v4: tuple[str, ...]
    peers_v6: tuple[str, ...]
    ssh_port: int

    def nft_text(self) -> str:
        """The whole file: the table created (so the delete cannot fail), deleted and defined
        again, in one transaction."""
        sets = [
            _set("clients_v4", "ipv4_addr", self.clients_v4),
            _set("clients_v6", "ipv6_addr", self.clients_v6),
            _set("peers_v4", "ipv4_addr", self.peers_v4),
            _set("peers_v6", "ipv6_addr", self.peers_v6),
        ]
        rules = [
            "ct state established,related accept",
            'iif "lo" accept',
            f"tcp dport {self.ssh_port} accept",
        ]
        if self.serving_port is not None:
            rules += _only_from(str(self.serving_port), "clients")
        if self.cluster_ports:
            ports = "{ " + ", ".join(str(p) for p in self.cluster_ports) + " }"
            rules += _only_from(ports, "peers")
        body = "\n".join(f"\t\t{rule}" for rule in rules)
        return (
            "# Written by metalserve (metalserve/firewall.py); do not edit: the next deploy "
            "replaces it.\n"
            f"table inet {TABLE}\n"
            f"delete table inet {TABLE}\n"
            f"table inet {TABLE} {{\n" + "".join(sets) + "\tchain input {\n"
            "\t\ttype filter hook input priority filter; policy accept;\n"
            f"{body}\n"
            "\t}\n"
            "}\n"
        )


def _set(name: str, kind: str, elements: tuple[str, ...]) -> str:
    items = f" elements = {{ {', '.join(elements)} }};" if elements else ""
    return f"\tset {name} {{ type {kind}; flags interval;{items} }}\n"


def _only_from(ports: str, who: str) -> list[str]:
    return [
        f"tcp dport {ports} ip saddr @{who}_v4 accept",
        f"tcp dport {ports} ip6 saddr @{who}_v6 accept",
        f"tcp dport {ports} drop",
    ]


def _split(networks: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    parsed = [ipaddress.ip_network(n, strict=False) for n in networks]
    v4 = tuple(dict.fromkeys(str(n) for n in parsed if n.version == 4))
    v6 = tuple(dict.fromkeys(str(n) for n in parsed if n.version == 6))
    return v4, v6


def _peer_networks(peers: Iterable[str], cluster: str) -> list[str]:
    networks = []
    for address in peers:
        try:
            networks.append(str(ipaddress.ip_address(address)))
        except ValueError:
            raise PlanError(
                f"cluster {cluster}: metalserve.cluster.address {address!r}: the firewall opens "
                "the rendezvous ports to the nodes' IP addresses — fix: give each node's IP "
                "address on the cluster network"
            ) from None
    return networks


def firewall_plan(
    serving_port: int | None,
    clients: Iterable[str],
    cluster_ports: Iterable[int],
    peers: Iterable[str],
    ssh_port: int,
    cluster: str = "",
) -> FirewallPlan:
    clients_v4, clients_v6 = _split(clients)
    peers_v4, peers_v6 = _split(_peer_networks(peers, cluster))
    return FirewallPlan(
        serving_port=serving_port,
        clients_v4=clients_v4,
        clients_v6=clients_v6,
        cluster_ports=tuple(sorted(set(cluster_ports))),
        peers_v4=peers_v4,
        peers_v6=peers_v6,
        ssh_port=ssh_port,
    )
