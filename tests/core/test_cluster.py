"""Hosts planned together as clusters: what is refused (one line naming the hosts, from the API and
from `metalserve check`), the shape decided for a valid cluster, and how each engine joins one.

Expected values come from the rules: ranks 0..n-1 each once, rank 0 is the head and starts last,
every node shares the rendezvous port and NCCL matrix; engine flags as the engines' own multi-node
docs spell them (vLLM 'Parallelism and Scaling' / 'Data Parallel Deployment', SGLang 'Multi-Node
Deployment', llama.cpp tools/rpc/README.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from metalserve.catalog.profiles import PROFILES
from metalserve.cli import main
from metalserve.cluster import clusters_of
from metalserve.errors import MetalserveError
from metalserve.plan import HostPlan, plan_alone, plan_hosts
from metalserve.spec import host_spec

Hosts = list[tuple[str, dict[str, Any]]]

IB_PRESET = "h200-sxm-8x2-ib"
NODES = PROFILES[IB_PRESET].nodes
GPUS_PER_NODE = PROFILES[IB_PRESET].gpus_per_node

IB_NODE: dict[str, Any] = {
    "profile": IB_PRESET,
    "model": {"checkpoint": "zai-org/GLM-5.2-FP8"},
    "engine": {"name": "vllm", "tensor_parallel_size": 8, "pipeline_parallel_size": 2},
    "fabric": {"socket_ifname": "ib0", "ib_hca": ["mlx5_0", "mlx5_1"]},
}

SPARK_NODE: dict[str, Any] = {
    "profile": "dgx-spark-3",
    "model": {"checkpoint": "zai-org/GLM-4.5-Air-FP8"},
    "engine": {"name": "vllm", "tensor_parallel_size": 1, "pipeline_parallel_size": 3},
    "fabric": {
        "socket_ifname": "enp1s0f0np0",
        "ib_hca": ["rocep1s0f0"],
        "gid_index": 3,
        "traffic_class": 106,
    },
}

CPU_CLUSTER: dict[str, Any] = {
    "hardware": {
        "gpu": None,
        "gpus_per_node": 0,
        "nodes": 2,
        "fabric": "ethernet",
        "host_ram_gb": 4,
    },
    "engine": {"name": "llamacpp", "host": "0.0.0.0", "port": 8080},
    "access": {"clients": ["198.51.100.0/24"]},
    "fabric": {"socket_ifname": "eth0"},
}


def address(rank: int) -> str:
    return f"10.0.0.{rank + 1}"


def node(host: str, rank: int, data: dict[str, Any] = IB_NODE, **cluster: Any) -> tuple[str, dict]:
    """One inventory host of a cluster, at ``address(rank)`` unless ``cluster`` says otherwise."""
    return host, {**data, "cluster": {"node_rank": rank, "address": address(rank), **cluster}}


def cluster_of(data: dict[str, Any], nodes: int = NODES, **cluster: Any) -> Hosts:
    return [node(f"node{rank}", rank, data, **cluster) for rank in range(nodes)]


def plans(hosts: Hosts) -> list[HostPlan]:
    return plan_hosts([host_spec(name, data) for name, data in hosts])


def by_rank(hosts: Hosts) -> tuple[HostPlan, list[HostPlan]]:
    """The head's plan and the workers' plans, by the rank each was given."""
    planned = sorted(plans(hosts), key=lambda p: p.node.rank)
    return planned[0], planned[1:]


def write_inventory(tmp_path: Path, hosts: Hosts) -> Path:
    path = tmp_path / "inventory.py"
    entries = [(name, {"metalserve": data}) for name, data in hosts]
    path.write_text(f"hosts = {entries!r}\n")
    return path


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def value(argv: tuple[str, ...] | list[str], option: str) -> str:
    """The value following ``option`` in ``argv`` (each option given once)."""
    assert argv.count(option) == 1, f"{option} appears {argv.count(option)} times in {argv}"
    return argv[list(argv).index(option) + 1]


# --- refused clusters: one line naming the hosts --------------------------------------------------

with_other_engine = {**IB_NODE, "engine": {**IB_NODE["engine"], "max_model_len": 4096}}
with_other_pins = {**IB_NODE, "nvidia": {"pins": {"driver_version": "580.126.20"}}}

INVALID: dict[str, tuple[Hosts, tuple[str, ...]]] = {
    "two hosts with the same node_rank": (
        [node("gpu-a", 0), node("gpu-b", 0, address="10.0.0.9")],
        ("gpu-a", "gpu-b", "node_rank 0"),
    ),
    "a rank past the node count": (
        [node("gpu-a", 0), node("gpu-b", NODES)],
        ("gpu-b", f"node_rank {NODES}"),
    ),
    "no rank 0": ([node("gpu-b", 1)], ("gpu-b", "node_rank 0")),
    "a node missing": ([node("gpu-a", 0)], ("gpu-a", "missing")),
    "head_address that is not rank 0's address": (
        [node("gpu-a", 0), node("gpu-b", 1, head_address="10.0.0.7")],
        ("gpu-a", "gpu-b", "head_address", "10.0.0.7", address(0)),
    ),
    "different engine settings": (
        [node("gpu-a", 0), node("gpu-b", 1, with_other_engine)],
        ("gpu-a", "gpu-b", "metalserve.engine.max_model_len"),
    ),
    "different nvidia pins": (
        [node("gpu-a", 0), node("gpu-b", 1, with_other_pins)],
        ("gpu-a", "gpu-b", "metalserve.nvidia.pins.driver_version", "580.126.20"),
    ),
    "different cluster.port": (
        [node("gpu-a", 0, port=29500), node("gpu-b", 1, port=29600)],
        ("gpu-a", "gpu-b", "metalserve.cluster.port"),
    ),
    "two nodes sharing an address": (
        [node("gpu-a", 0), node("gpu-b", 1, address=address(0))],
        ("gpu-a", "gpu-b", address(0)),
    ),
    "a multi-node host without a cluster block": (
        [("gpu-a", IB_NODE)],
        ("gpu-a", "metalserve.cluster"),
    ),
}


@pytest.mark.parametrize(("hosts", "words"), INVALID.values(), ids=INVALID.keys())
def test_an_invalid_cluster_is_refused_in_one_line_naming_the_hosts(
    hosts: Hosts, words: tuple[str, ...]
) -> None:
    with pytest.raises(MetalserveError) as refused:
        plans(hosts)
    message = str(refused.value)
    assert "\n" not in message
    for word in words:
        assert word in message, f"{word!r} not in: {message}"


@pytest.mark.parametrize(("hosts", "words"), INVALID.values(), ids=INVALID.keys())
def test_check_refuses_an_invalid_cluster_with_exit_2_and_one_line(
    tmp_path: Path, hosts: Hosts, words: tuple[str, ...]
) -> None:
    result = cli("check", str(write_inventory(tmp_path, hosts)))
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ")
    assert "Traceback" not in result.output
    for word in words:
        assert word in line, f"{word!r} not in: {line}"


def test_the_same_rules_hold_when_the_cluster_is_named() -> None:
    named = [node("gpu-a", 0, name="east"), node("gpu-b", 1, name="east", address=address(0))]
    with pytest.raises(MetalserveError) as refused:
        plans(named)
    message = str(refused.value)
    assert "east" in message and "gpu-a" in message and "gpu-b" in message


# --- a valid cluster ------------------------------------------------------------------------------


def test_a_valid_cluster_has_its_nodes_in_rank_order_and_rank_0_as_head() -> None:
    hosts = [
        node("spark-c", 2, SPARK_NODE),
        node("spark-a", 0, SPARK_NODE),
        node("spark-b", 1, SPARK_NODE),
    ]
    (cluster,) = clusters_of([host_spec(name, data) for name, data in hosts])
    assert [n.rank for n in cluster.nodes] == list(range(PROFILES["dgx-spark-3"].nodes))
    assert [n.host for n in cluster.nodes] == ["spark-a", "spark-b", "spark-c"]
    assert cluster.head.host == "spark-a" and cluster.head.rank == 0
    assert [n.address for n in cluster.nodes] == [address(0), address(1), address(2)]


def test_workers_start_before_the_head() -> None:
    hosts = [
        node("spark-c", 2, SPARK_NODE),
        node("spark-a", 0, SPARK_NODE),
        node("spark-b", 1, SPARK_NODE),
    ]
    (cluster,) = clusters_of([host_spec(name, data) for name, data in hosts])
    *before, last = cluster.start_order
    assert last == ("spark-a",)
    assert sorted(host for stage in before for host in stage) == ["spark-b", "spark-c"]


def test_every_node_gets_the_same_nccl_environment_and_rendezvous_port() -> None:
    planned = plans(cluster_of(SPARK_NODE, nodes=3, port=29611))
    assert len({p.host for p in planned}) == 3
    first = planned[0].nccl.as_dict()
    assert first, "a multi-node GPU cluster has an NCCL environment"
    for p in planned:
        assert p.nccl.as_dict() == first, p.host
        assert p.cluster.port == 29611
        assert value(p.service.exec_argv, "--master-port") == "29611"


def test_plan_prints_each_nodes_command_and_a_start_line_with_workers_first(
    tmp_path: Path,
) -> None:
    hosts = [node("gpu-head", 0), node("gpu-worker", 1)]
    result = cli("plan", str(write_inventory(tmp_path, hosts)))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    commands = [line for line in lines if line.startswith("command")]
    assert len(commands) == NODES
    assert "--node-rank 0" in commands[0] and "--node-rank 1" in commands[1]
    (start,) = [line for line in lines if line.startswith("start")]
    assert start.index("gpu-worker") < start.index("gpu-head")


def test_check_accepts_a_valid_cluster_and_names_each_nodes_rank(tmp_path: Path) -> None:
    result = cli("check", str(write_inventory(tmp_path, cluster_of(IB_NODE))))
    assert result.exit_code == 0, result.output
    for rank in range(NODES):
        assert f"node{rank}" in result.stdout and f"rank {rank}" in result.stdout


def test_a_rendezvous_port_equal_to_the_api_port_is_refused() -> None:
    data = {**IB_NODE, "engine": {**IB_NODE["engine"], "port": 8000}}
    with pytest.raises(MetalserveError, match="port"):
        plans(cluster_of(data, port=8000))


# --- engines ------------------------------------------------------------------------------------


def test_vllm_unit_serves_the_model_under_model_served_name() -> None:
    """Regression: the smoke test asks for model.served_name; the engine must serve that name."""
    p = plan_alone(
        host_spec(
            "gpu01",
            {
                "profile": "h200-sxm-8",
                "model": {"checkpoint": "zai-org/GLM-5.2-FP8", "served_name": "glm"},
                "engine": {"name": "vllm", "tensor_parallel_size": 8},
            },
        )
    )
    assert value(p.service.exec_argv, "--served-model-name") == "glm"
    assert p.service.served_model == "glm"


def test_vllm_multi_node_head_and_headless_workers() -> None:
    head, workers = by_rank(cluster_of(IB_NODE, port=29700))
    argv = head.service.exec_argv
    assert value(argv, "--nnodes") == str(NODES)
    assert value(argv, "--node-rank") == "0"
    assert value(argv, "--master-addr") == address(0)
    assert value(argv, "--master-port") == "29700"
    assert "--headless" not in argv
    assert head.service.health_url is not None
    for worker in workers:
        argv = worker.service.exec_argv
        assert "--headless" in argv
        assert value(argv, "--node-rank") == str(worker.node.rank)
        assert value(argv, "--nnodes") == str(NODES)
        assert value(argv, "--master-addr") == address(0)
        assert value(argv, "--master-port") == "29700"


def test_vllm_data_parallel_across_nodes_uses_the_dp_flags() -> None:
    dp = NODES  # one TP-8 replica per node
    data = {
        **IB_NODE,
        "engine": {"name": "vllm", "tensor_parallel_size": 8, "data_parallel_size": dp},
    }
    head, workers = by_rank(cluster_of(data, port=13345))
    local = dp // NODES  # vLLM docs: each node runs its share of the DP ranks
    argv = head.service.exec_argv
    assert value(argv, "--data-parallel-size") == str(dp)
    assert value(argv, "--data-parallel-size-local") == str(local)
    assert value(argv, "--data-parallel-address") == address(0)
    assert value(argv, "--data-parallel-rpc-port") == "13345"
    assert "--headless" not in argv
    assert argv.count("--data-parallel-start-rank") == 0 or (
        value(argv, "--data-parallel-start-rank") == "0"
    )
    for worker in workers:
        argv = worker.service.exec_argv
        assert "--headless" in argv
        assert value(argv, "--data-parallel-start-rank") == str(worker.node.rank * local)
        assert value(argv, "--data-parallel-size-local") == str(local)
        assert value(argv, "--data-parallel-address") == address(0)
        assert value(argv, "--data-parallel-rpc-port") == "13345"


def test_vllm_data_parallel_needing_more_gpus_than_the_cluster_has_is_refused() -> None:
    dp = 2 * NODES  # 2 replicas of TP 8 per node on 8-GPU nodes: twice the GPUs there are
    data = {
        **IB_NODE,
        "engine": {"name": "vllm", "tensor_parallel_size": 8, "data_parallel_size": dp},
    }
    with pytest.raises(MetalserveError, match="GPU"):
        plans(cluster_of(data))


def test_vllm_data_parallel_not_divisible_by_the_nodes_is_refused() -> None:
    dp = NODES + 1  # 3 replicas of TP 4 (12 of 16 GPUs) cannot split evenly over 2 nodes
    data = {
        **IB_NODE,
        "engine": {"name": "vllm", "tensor_parallel_size": 4, "data_parallel_size": dp},
    }
    with pytest.raises(MetalserveError, match="data_parallel_size"):
        plans(cluster_of(data))


def test_tensor_parallel_across_nodes_is_planned_with_a_warning() -> None:
    across = {**IB_NODE, "engine": {"name": "vllm", "tensor_parallel_size": NODES * GPUS_PER_NODE}}
    planned = plans(cluster_of(across))
    within = plans(cluster_of(IB_NODE))
    for p, q in zip(planned, within, strict=True):
        assert value(p.service.exec_argv, "--tensor-parallel-size") == str(NODES * GPUS_PER_NODE)
        extra = set(p.warnings) - set(q.warnings)
        assert any(str(NODES * GPUS_PER_NODE) in w for w in extra), p.warnings


def test_sglang_multi_node_gives_every_node_its_rank_and_the_heads_address() -> None:
    data = {**IB_NODE, "engine": {"name": "sglang", "tp_size": NODES * GPUS_PER_NODE}}
    head, workers = by_rank(cluster_of(data, port=5000))
    for p in (head, *workers):
        argv = p.service.exec_argv
        assert value(argv, "--nnodes") == str(NODES)
        assert value(argv, "--node-rank") == str(p.node.rank)
        assert value(argv, "--dist-init-addr") == f"{address(0)}:5000"


@pytest.mark.parametrize(
    "model",
    [{"repo_id": "org/tiny"}, {"checkpoint": "glm52-Q4_K_M.gguf"}],
    ids=["hf-repo", "gguf"],
)
def test_llamacpp_cpu_cluster_head_offloads_to_the_workers_rpc_server(model: dict) -> None:
    data = {**CPU_CLUSTER, "model": model}
    head, workers = by_rank(cluster_of(data, port=50052))
    assert head.service.exec_argv[0].rsplit("/", 1)[-1] == "llama-server"
    worker_endpoints = [f"{w.node.address}:50052" for w in workers]
    assert value(head.service.exec_argv, "--rpc").split(",") == worker_endpoints
    for worker in workers:
        argv = worker.service.exec_argv
        binary = argv[0].rsplit("/", 1)[-1]
        # tools/rpc's target: rpc-server, ggml-rpc-server in later releases
        assert binary.endswith("rpc-server"), argv
        assert worker.llamacpp is not None and binary in worker.llamacpp.targets
        assert argv[0] == f"{worker.llamacpp.bin}/{binary}"
        assert value(argv, "--host") == worker.node.address
        assert value(argv, "--port") == "50052"
        assert "-m" not in argv, "a worker reads no model file"
        assert worker.gguf is None, "a worker converts no GGUF"
    for p in (head, *workers):
        assert p.llamacpp is not None
        assert "-DGGML_RPC=ON" in p.llamacpp.cmake_flags
        assert any(t.endswith("rpc-server") for t in p.llamacpp.targets), p.llamacpp.targets


def test_llamacpp_head_converts_a_hf_repo_and_the_worker_does_not() -> None:
    head, (worker,) = by_rank(cluster_of({**CPU_CLUSTER, "model": {"repo_id": "org/tiny"}}))
    assert head.gguf is not None
    assert value(head.service.exec_argv, "-m") == head.gguf.out_path
    assert worker.gguf is None and worker.weights is None
