"""The hosts of one deployment, validated together: which cluster each host is in, its rank, the head.

A host with single-node hardware is a cluster of one. Hosts of a multi-node setup form one cluster
per ``metalserve.cluster.name`` (or per hardware where no name is given). Ranks run 0..n-1, each
once; the head (rank 0) is a member; every node runs the same hardware, engine, model, pins and
NCCL settings, and meets at one rendezvous port. Errors are one line naming the hosts.

Example::

    clusters = clusters_of([host_spec("a", data_a), host_spec("b", data_b)])
    clusters[0].head.host, [n.host for n in clusters[0].workers]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from metalserve.errors import SpecError
from metalserve.hardware import Frozen, HardwareProfile
from metalserve.spec import HostSpec

DEFAULT_CLUSTER_PORT = 29500

SHARED_FIELDS = (
    "engine", "model", "nvidia", "nccl", "fabric", "sources", "diag", "secrets", "access",
)  # fmt: skip
"""What every node of a cluster must agree on: one engine, one model, one set of pins, one NCCL
matrix, one source of inputs, one diagnostic, one set of credentials."""


class ClusterNode(Frozen):
    host: str
    rank: int
    address: str


class Cluster(Frozen):
    """The decided shape of one deployment: its nodes in rank order and where they meet."""

    name: str
    hardware: HardwareProfile
    nodes: tuple[ClusterNode, ...]
    port: int

    @property
    def head(self) -> ClusterNode:
        return self.nodes[0]

    @property
    def workers(self) -> tuple[ClusterNode, ...]:
        return self.nodes[1:]

    @property
    def multi_node(self) -> bool:
        return len(self.nodes) > 1

    @property
    def start_order(self) -> tuple[tuple[str, ...], ...]:
        """Hosts in the order their engines start: every worker, then the head."""
        return (
            (tuple(n.host for n in self.workers), (self.head.host,))
            if self.workers
            else ((self.head.host,),)
        )

    def node(self, host: str) -> ClusterNode:
        return next(n for n in self.nodes if n.host == host)

    def peers_of(self, host: str) -> tuple[ClusterNode, ...]:
        return tuple(n for n in self.nodes if n.host != host)


def _name_of(spec: HostSpec) -> str:
    if spec.cluster is not None and spec.cluster.name:
        return spec.cluster.name
    hardware = spec.setup
    return hardware.id if hardware.multi_node else spec.host


def _address_of(spec: HostSpec) -> str:
    return (spec.cluster.address if spec.cluster else None) or spec.host


def _rank_of(spec: HostSpec) -> int:
    return spec.cluster.node_rank if spec.cluster else 0


def _first_difference(a: Any, b: Any, path: str) -> str:
    """The first dotted field where two dumped values differ, with both values."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{path}.{key}")
    return f"{path}: {a!r} vs {b!r}"


def _check_same(name: str, members: Sequence[HostSpec]) -> None:
    first = members[0]
    for other in members[1:]:
        if other.setup.composition != first.setup.composition:
            raise SpecError(
                f"cluster {name}: hosts {first.host} and {other.host} have different hardware "
                f"({first.setup.id} vs {other.setup.id}) — fix: one hardware per cluster"
            )
        for field in SHARED_FIELDS:
            mine = getattr(first, field)
            theirs = getattr(other, field)
            if mine != theirs:
                dump_a = mine.model_dump(mode="json") if hasattr(mine, "model_dump") else mine
                dump_b = theirs.model_dump(mode="json") if hasattr(theirs, "model_dump") else theirs
                diff = _first_difference(dump_a, dump_b, f"metalserve.{field}")
                raise SpecError(
                    f"cluster {name}: hosts {first.host} and {other.host} differ in {diff} — "
                    "fix: every node of a cluster runs the same engine, model, pins and settings"
                )
        port_a = first.cluster.port if first.cluster else DEFAULT_CLUSTER_PORT
        port_b = other.cluster.port if other.cluster else DEFAULT_CLUSTER_PORT
        if port_a != port_b:
            raise SpecError(
                f"cluster {name}: hosts {first.host} and {other.host} differ in "
                f"metalserve.cluster.port ({port_a} vs {port_b}) — fix: one rendezvous port"
            )


def _check_ranks(name: str, hardware: HardwareProfile, members: Sequence[HostSpec]) -> None:
    by_rank: dict[int, str] = {}
    for spec in members:
        rank = _rank_of(spec)
        if rank in by_rank:
            raise SpecError(
                f"cluster {name}: node_rank {rank} is given to both {by_rank[rank]} and "
                f"{spec.host} — fix: ranks 0..{hardware.nodes - 1}, each once"
            )
        if rank >= hardware.nodes:
            raise SpecError(
                f"cluster {name}: host {spec.host} has node_rank {rank} but {hardware.id} has "
                f"{hardware.nodes} nodes (ranks 0..{hardware.nodes - 1}) — fix: lower the rank"
            )
        by_rank[rank] = spec.host
    hosts = ", ".join(s.host for s in members)
    if 0 not in by_rank:
        raise SpecError(
            f"cluster {name}: no host has node_rank 0 (hosts: {hosts}) — fix: give the head "
            "node rank 0"
        )
    if len(members) != hardware.nodes:
        missing = sorted(set(range(hardware.nodes)) - set(by_rank))
        raise SpecError(
            f"cluster {name}: {hardware.id} has {hardware.nodes} nodes but the inventory lists "
            f"{len(members)} ({hosts}); rank(s) {', '.join(map(str, missing))} missing — fix: "
            "list every node with its metalserve.cluster.node_rank"
        )


def _check_head(name: str, members: Sequence[HostSpec]) -> None:
    head = next(s for s in members if _rank_of(s) == 0)
    head_address = _address_of(head)
    for spec in members:
        claimed = spec.cluster.head_address if spec.cluster else None
        if claimed is not None and claimed != head_address:
            raise SpecError(
                f"cluster {name}: host {spec.host} names head_address {claimed}, which is not "
                f"the address of rank 0 ({head.host}: {head_address}) — fix: set "
                f"metalserve.cluster.address on {head.host} to {claimed}, or drop head_address"
            )


def _cluster(name: str, members: Sequence[HostSpec]) -> Cluster:
    hardware = members[0].setup
    if hardware.multi_node and any(s.cluster is None for s in members):
        host = next(s.host for s in members if s.cluster is None)
        raise SpecError(
            f"host {host}: metalserve.cluster: required for multi-node hardware {hardware.id} — "
            "fix: set its node_rank (and address)"
        )
    _check_same(name, members)
    _check_ranks(name, hardware, members)
    _check_head(name, members)
    addresses: dict[str, str] = {}
    for spec in members:
        address = _address_of(spec)
        if address in addresses:
            raise SpecError(
                f"cluster {name}: hosts {addresses[address]} and {spec.host} share the address "
                f"{address} — fix: give each node its own metalserve.cluster.address"
            )
        addresses[address] = spec.host
    nodes = sorted(
        (ClusterNode(host=s.host, rank=_rank_of(s), address=_address_of(s)) for s in members),
        key=lambda n: n.rank,
    )
    port = members[0].cluster.port if members[0].cluster else DEFAULT_CLUSTER_PORT
    return Cluster(name=name, hardware=hardware, nodes=tuple(nodes), port=port)


def clusters_of(specs: Sequence[HostSpec]) -> list[Cluster]:
    """Every host's cluster, validated as a whole, in the order their first hosts appear."""
    groups: dict[str, list[HostSpec]] = {}
    for spec in specs:
        groups.setdefault(_name_of(spec), []).append(spec)
    return [_cluster(name, members) for name, members in groups.items()]
