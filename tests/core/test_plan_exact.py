"""The figures and fields of a plan, decided section by section, and each refusal.

Sources:
- llama.cpp CMake options: GGML_CUDA, CMAKE_CUDA_ARCHITECTURES (the GPU's SM, e.g. 120 for RTX
  PRO 6000 Blackwell, 90 for H100), GGML_RPC builds rpc-server (ggml/CMakeLists.txt).
- The layout (metalserve's own contract, README "Layout"): /opt/metalserve for code,
  /var/lib/metalserve for data, /etc/metalserve for configuration and credentials.
- huggingface_hub sends the token to whatever HF_ENDPOINT names (utils/_headers.py).
- llama.cpp rpc-server binds a numeric IPv4 address (tools/rpc/rpc-server.cpp).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from metalserve.catalog import pins
from metalserve.engines.llamacpp import RPC_SERVER
from metalserve.errors import MetalserveError, PlanError
from metalserve.plan import HostPlan, ipv4, plan_alone, plan_hosts
from metalserve.sources import SourceKind
from metalserve.spec import host_spec

CLIENTS = ["198.51.100.0/24"]
LLAMA = pins.LLAMA_CPP.version


def plan(host: str = "h1", **data: Any) -> HostPlan:
    return plan_alone(host_spec(host, {"access": {"clients": CLIENTS}, **data}))


def cpu_llamacpp(**data: Any) -> HostPlan:
    defaults: dict[str, Any] = {
        "profile": "sandbox-cpu",
        "model": {"repo_id": "org/tiny"},
        "engine": {"name": "llamacpp"},
    }
    return plan(**{**defaults, **data})


def digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


BASE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DGGML_NATIVE=OFF",
)


def test_a_cpu_llamacpp_build_plan() -> None:
    build = cpu_llamacpp().llamacpp
    assert build is not None
    assert build.cmake_flags == BASE_FLAGS
    assert build.cuda_archs == ()
    assert build.targets == ("llama-server", "llama-quantize")  # no split: no llama-gguf-split
    key = digest(LLAMA, list(BASE_FLAGS), None)  # no toolkit in a CPU build
    assert build.build_key == key
    assert build.prefix == f"/opt/metalserve/llama.cpp/{LLAMA}-{key}"
    assert build.current == "/opt/metalserve/llama.cpp/current"
    assert build.bin == "/opt/metalserve/llama.cpp/current/bin"
    assert build.source_tarball == f"/opt/metalserve/src/llama.cpp-{LLAMA}.tar.gz"
    assert build.version == LLAMA
    assert build.source.url == f"https://github.com/ggml-org/llama.cpp/archive/{LLAMA}.tar.gz"


def test_a_cuda_llamacpp_build_targets_the_profile_s_sm_and_its_toolkit() -> None:
    p = plan(profile="rtxpro6000-4", model={"repo_id": "org/m"}, engine={"name": "llamacpp"})
    build = p.llamacpp
    assert build is not None
    flags = (
        *BASE_FLAGS,
        "-DGGML_CUDA=ON",
        "-DCMAKE_CUDA_ARCHITECTURES=120",
        "-DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc",
    )
    assert build.cmake_flags == flags
    assert build.cuda_archs == ("120",)
    toolkit = host_spec(
        "h1",
        {"profile": "rtxpro6000-4", "model": {"repo_id": "org/m"}, "engine": {"name": "llamacpp"}},
    ).nvidia.pins.cuda_version
    assert toolkit
    assert build.build_key == digest(LLAMA, list(flags), toolkit)


def test_a_git_llamacpp_source_gets_upstream_s_remote_and_a_given_url_is_kept() -> None:
    git = cpu_llamacpp(sources={"llamacpp": {"kind": "git"}}).llamacpp
    assert git is not None and git.source.url == "https://github.com/ggml-org/llama.cpp.git"
    mirror = "https://mirror.example/llama.cpp.tar.gz"
    own = cpu_llamacpp(sources={"llamacpp": {"kind": "tarball", "url": mirror}}).llamacpp
    assert own is not None and own.source.url == mirror
    local = cpu_llamacpp(
        sources={"llamacpp": {"kind": "local", "path": "/srv/llama.tar.gz"}}
    ).llamacpp
    assert local is not None and local.source.url is None


def test_a_local_llamacpp_source_needs_its_path() -> None:
    with pytest.raises(PlanError) as exc:
        cpu_llamacpp(sources={"llamacpp": {"kind": "local"}})
    assert str(exc.value) == "host h1: metalserve.sources.llamacpp.path: required for kind local"


def test_llamacpp_from_safetensors_converts_then_quantises() -> None:
    p = cpu_llamacpp(engine={"name": "llamacpp", "quant": "Q8_0"})
    assert p.gguf is not None and p.weights is not None
    assert p.gguf.model_dir == "/var/lib/metalserve/models/org--tiny"
    assert p.gguf.quant == "Q8_0"
    assert p.gguf.f16_path == "/var/lib/metalserve/gguf/org--tiny-F16.gguf"
    assert p.gguf.out_path == "/var/lib/metalserve/gguf/org--tiny-Q8_0.gguf"
    assert p.gguf.converter_venv == f"/opt/metalserve/venvs/convert-{LLAMA}"
    assert p.gguf.converter_requirements == pins.converter_requirements()


def test_a_catalogue_gguf_is_served_as_it_is() -> None:
    p = plan(
        profile="rtx4090-4", model={"checkpoint": "glm52-Q4_K_M.gguf"}, engine={"name": "llamacpp"}
    )
    assert p.gguf is None
    assert p.service.exec_argv[:3] == (
        "/opt/metalserve/llama.cpp/current/bin/llama-server",
        "-m",
        "/var/lib/metalserve/gguf/glm52-Q4_K_M.gguf",
    )


def test_the_weights_section() -> None:
    p = plan(
        profile="h200-sxm-8",
        model={"checkpoint": "zai-org/GLM-5.2-FP8"},
        engine={"name": "vllm", "tensor_parallel_size": 8},
        secrets={"hf_token_file": "/root/hf"},
    )
    w = p.weights
    assert w is not None
    assert (w.repo_id, w.revision) == ("zai-org/GLM-5.2-FP8", "main")
    assert w.local_dir == "/var/lib/metalserve/models/zai-org--GLM-5.2-FP8"
    assert w.hub_venv == "/opt/metalserve/venvs/hub"
    assert w.hub_requirements == pins.hub_client_requirements()
    assert w.token_file == "/etc/metalserve/credentials/hf_token"
    assert w.expected_bytes == p.checkpoint.weight_bytes  # type: ignore[union-attr]
    assert w.source.kind is SourceKind.ONLINE
    no_token = cpu_llamacpp().weights
    assert no_token is not None and no_token.token_file is None and no_token.expected_bytes is None


def test_a_local_directory_is_a_bundle_named_after_its_folder() -> None:
    p = plan(
        profile="sandbox-cpu",
        model={"local_dir": "/srv/models/tiny-moe/"},
        engine={"name": "llamacpp"},
    )
    w = p.weights
    assert w is not None
    assert w.repo_id == "local/tiny-moe"
    assert (w.source.kind, w.source.path) == (SourceKind.BUNDLE, "/srv/models/tiny-moe/")
    assert w.local_dir == "/var/lib/metalserve/models/local--tiny-moe"


def test_the_token_stays_home_for_a_plain_http_mirror_unless_trusted() -> None:
    mirror = {"kind": "mirror", "endpoint": "http://10.0.0.5:8390"}
    p = cpu_llamacpp(sources={"weights": mirror}, secrets={"hf_token_file": "/root/hf"})
    assert p.weights is not None and p.weights.token_file is None
    assert "hf_token" not in [c.name for c in p.credentials]
    assert (
        "metalserve.secrets.hf_token_file: not sent to http://10.0.0.5:8390: huggingface_hub "
        "would send it in clear over plain HTTP — fix: an https:// mirror, or set "
        "sources.weights.trust_plain_http to why this link is private"
    ) in p.warnings
    trusted = cpu_llamacpp(
        sources={"weights": {**mirror, "trust_plain_http": "host-only link"}},
        secrets={"hf_token_file": "/root/hf"},
    )
    assert trusted.weights is not None
    assert trusted.weights.token_file == "/etc/metalserve/credentials/hf_token"
    assert not any("hf_token_file" in w for w in trusted.warnings)


def test_credentials_for_each_engine() -> None:
    llama = cpu_llamacpp(secrets={"api_key_file": "/root/key", "hf_token_file": "/root/hf"})
    assert [
        (c.name, c.local_path, c.host_path, c.form, c.generate, c.unit) for c in llama.credentials
    ] == [
        ("hf_token", "/root/hf", "/etc/metalserve/credentials/hf_token", "as_is", False, False),
        ("api_key", "/root/key", "/etc/metalserve/credentials/api_key", "as_is", False, True),
        (
            "api_key_header",
            "/root/key",
            "/etc/metalserve/credentials/api_key_header",
            "bearer_header",
            False,
            False,
        ),
    ]
    assert llama.service.credentials == (("api_key", "/etc/metalserve/credentials/api_key"),)
    sglang = plan(
        profile="h100-sxm-8",
        model={"checkpoint": "zai-org/GLM-4.7-FP8"},
        engine={"name": "sglang", "tp_size": 8},
    )
    key = f"~/.config/metalserve/keys/{sglang.cluster.name}.api_key"
    assert [(c.name, c.local_path, c.form, c.generate, c.unit) for c in sglang.credentials] == [
        ("api_key", key, "as_is", True, False),
        ("api_key_header", key, "bearer_header", True, False),
        ("sglang-api-key.yaml", key, "sglang_config", True, True),
    ]


def test_binding_every_interface_needs_client_networks() -> None:
    with pytest.raises(PlanError) as exc:
        plan_alone(
            host_spec(
                "h1",
                {
                    "profile": "sandbox-cpu",
                    "model": {"repo_id": "org/tiny"},
                    "engine": {"name": "llamacpp", "host": "0.0.0.0"},
                },
            )
        )
    assert str(exc.value) == (
        "host h1: metalserve.engine.host: 0.0.0.0 binds every interface, and "
        "metalserve.access.clients names no client network — fix: list the networks allowed to "
        'reach the engine (e.g. ["10.20.0.0/16"]), or bind one address'
    )


@pytest.mark.parametrize(
    ("host", "base"),
    [
        (None, "http://127.0.0.1:8080"),
        ("0.0.0.0", "http://127.0.0.1:8080"),
        ("10.1.2.3", "http://10.1.2.3:8080"),
        ("::1", "http://[::1]:8080"),
        ("::", "http://127.0.0.1:8080"),
    ],
)
def test_health_and_completion_urls_follow_the_bind_address(host: str | None, base: str) -> None:
    engine: dict[str, Any] = {"name": "llamacpp"}
    if host:
        engine["host"] = host
    s = cpu_llamacpp(engine=engine).service
    assert (s.health_url, s.completion_url) == (f"{base}/health", f"{base}/v1/completions")
    assert s.port == 8080


def test_the_service_section() -> None:
    p = plan(
        profile="h200-sxm-8",
        model={"checkpoint": "zai-org/GLM-5.2-FP8"},
        engine={"name": "vllm", "tensor_parallel_size": 8, "port": 8123},
        service={"keep_warm_minutes": 14, "health_timeout_s": 900, "user": "svc"},
    )
    s = p.service
    assert (s.name, s.unit_path, s.env_file) == (
        "metalserve-vllm",
        "/etc/systemd/system/metalserve-vllm.service",
        "/etc/metalserve/metalserve-vllm.env",
    )
    assert (s.user, s.port, s.health_timeout_s, s.keep_warm_minutes) == ("svc", 8123, 900, 14)
    assert s.health_url == "http://127.0.0.1:8123/health"
    assert s.secret_env == (("VLLM_API_KEY", "api_key"),)
    assert (s.restart, s.workers, s.worker_hosts, s.unsourced) == ("on-failure", (), (), ())
    assert s.served_model == "zai-org/GLM-5.2-FP8"
    assert p.engine.venv == "/opt/metalserve/venvs/vllm-0.33.0"
    assert p.engine.head is True


def test_the_served_name_is_the_engine_s_then_the_model_s_then_the_repo() -> None:
    base = {"profile": "h200-sxm-8", "model": {"checkpoint": "zai-org/GLM-5.2-FP8"}}
    own = plan(
        **base, engine={"name": "vllm", "tensor_parallel_size": 8, "served_model_name": "glm"}
    )
    assert own.service.served_model == own.engine.served_name == "glm"
    named = plan(
        profile="h200-sxm-8",
        model={"checkpoint": "zai-org/GLM-5.2-FP8", "served_name": "glm-fp8"},
        engine={"name": "vllm", "tensor_parallel_size": 8},
    )
    assert named.service.served_model == "glm-fp8"
    llama = cpu_llamacpp(model={"repo_id": "org/tiny", "served_name": "tiny"})
    assert llama.service.served_model == "tiny"


def test_the_environment_holds_nccl_then_the_hub_settings_then_the_site_s() -> None:
    p = plan(
        profile="h200-sxm-8",
        model={"checkpoint": "zai-org/GLM-5.2-FP8"},
        engine={"name": "vllm", "tensor_parallel_size": 8},
        env={"HF_HUB_OFFLINE": "0", "X": "1"},
    )
    assert p.environment == (
        ("NCCL_SOCKET_IFNAME", "lo"),
        ("NCCL_IB_DISABLE", "1"),
        ("NCCL_P2P_DISABLE", "0"),
        ("NCCL_P2P_LEVEL", "NVL"),
        ("HF_HOME", "/var/lib/metalserve/hf"),
        ("HF_HUB_OFFLINE", "0"),  # the site's value wins, in the hub settings' place
        # huggingface_hub's opt-out (constants.py), and vLLM's ("Usage Stats Collection" docs)
        ("HF_HUB_DISABLE_TELEMETRY", "1"),
        ("VLLM_NO_USAGE_STATS", "1"),
        ("DO_NOT_TRACK", "1"),
        ("X", "1"),
    )
    assert cpu_llamacpp().environment == ()  # llama.cpp reads a file, not the hub


def test_plan_warnings_for_a_setup_that_does_not_fit_name_the_smallest_that_does() -> None:
    p = plan(
        profile="h100-sxm-4",
        model={"checkpoint": "zai-org/GLM-5.2-FP8"},
        engine={"name": "vllm", "tensor_parallel_size": 4},
    )
    assert p.sizing is not None and not p.sizing.fits
    assert p.smallest_setup is not None
    assert p.smallest_setup.startswith(
        "h200-sxm-8 (TP 8 × PP 1 + EP): zai-org/GLM-5.2-FP8 on h200-sxm-8: fits"
    )
    fits = plan(
        profile="h200-sxm-8",
        model={"checkpoint": "zai-org/GLM-5.2-FP8"},
        engine={"name": "vllm", "tensor_parallel_size": 8},
    )
    assert fits.smallest_setup is None
    outside = cpu_llamacpp()
    assert outside.sizing is None
    assert "model outside the catalogue and not read: sizing skipped" in outside.warnings


def test_the_smallest_setup_for_llamacpp_is_the_fewest_gpus_that_hold_it() -> None:
    p = plan(
        profile="rtx4090-4", model={"checkpoint": "zai-org/GLM-5.2"}, engine={"name": "llamacpp"}
    )
    assert p.sizing is not None and not p.sizing.fits
    assert p.smallest_setup is not None
    assert p.smallest_setup.startswith("dgx-spark-3 (TP 1 × PP 1): zai-org/GLM-5.2 on dgx-spark-3")


@pytest.mark.parametrize(
    ("engine", "message"),
    [
        (
            {"name": "llamacpp", "tensor_split": [1, 1, 1]},
            "host h1: metalserve.engine.tensor_split: 3 entries but rtx4090-4 has 4 GPUs — fix: "
            "one per GPU",
        ),
    ],
)
def test_llamacpp_tensor_split_needs_one_entry_per_gpu(
    engine: dict[str, Any], message: str
) -> None:
    with pytest.raises(PlanError) as exc:
        plan(profile="rtx4090-4", model={"checkpoint": "glm52-Q4_K_M.gguf"}, engine=engine)
    assert str(exc.value) == message
    ok = plan(
        profile="rtx4090-4",
        model={"checkpoint": "glm52-Q4_K_M.gguf"},
        engine={"name": "llamacpp", "tensor_split": [1, 1, 1, 1]},
    )
    assert ok.engine.name == "llamacpp"


def test_a_gpu_engine_on_a_cpu_host_is_one_line() -> None:
    with pytest.raises(PlanError) as exc:
        plan(profile="sandbox-cpu", model={"repo_id": "a/b"}, engine={"name": "vllm"})
    assert str(exc.value) == (
        "host h1: metalserve.engine.name: vllm needs a GPU and sandbox-cpu has none — fix: use "
        "llamacpp"
    )


def test_data_parallel_counts_in_the_gpus_asked_for() -> None:
    with pytest.raises(PlanError) as exc:
        plan(
            profile="h100-sxm-4",
            model={"checkpoint": "zai-org/GLM-4.5-Air-FP8"},
            engine={"name": "vllm", "tensor_parallel_size": 2, "data_parallel_size": 4},
        )
    assert str(exc.value) == (
        "host h1: metalserve.engine: TP 2 × PP 1 × DP 4 = 8 GPUs but h100-sxm-4 has 4 — fix: "
        "lower the parallel sizes"
    )
    ok = plan(
        profile="h100-sxm-4",
        model={"checkpoint": "zai-org/GLM-4.5-Air-FP8"},
        engine={"name": "vllm", "tensor_parallel_size": 2, "data_parallel_size": 2},
    )
    assert ok.engine.name == "vllm"


IB_FABRIC = {"socket_ifname": "ib0", "ib_hca": ["mlx5_0"]}


def two_nodes(
    changes: dict[str, Any] | None = None,
    addresses: tuple[str, str] = ("10.1.0.1", "10.1.0.2"),
    **cluster: Any,
) -> list[HostPlan]:
    """The plans of a 2-node cluster: 8×H200 over InfiniBand unless ``changes`` say otherwise."""
    common = {
        "access": {"clients": CLIENTS},
        "profile": "h200-sxm-8x2-ib",
        "model": {"checkpoint": "zai-org/GLM-5.2"},
        "engine": {"name": "vllm", "tensor_parallel_size": 8, "pipeline_parallel_size": 2},
        "fabric": IB_FABRIC,
        **(changes or {}),
    }
    head, worker = addresses
    return plan_hosts(
        [
            host_spec("n1", {**common, "cluster": {**cluster, "node_rank": 0, "address": head}}),
            host_spec(
                "n2",
                {
                    **common,
                    "cluster": {**cluster, "node_rank": 1, "address": worker, "head_address": head},
                },
            ),
        ]
    )


def pair(engine: dict[str, Any], port: int = 29500) -> list[HostPlan]:
    return two_nodes({"engine": engine}, port=port)


def test_tensor_parallel_across_nodes_is_warned_about() -> None:
    head, _ = pair({"name": "vllm", "tensor_parallel_size": 16})
    assert (
        "TP 16 spans nodes (8 GPUs per node): every layer's all-reduce crosses the infiniband "
        "fabric, an order of magnitude slower than NVLink — TP within a node and PP or DP across "
        "nodes is usually faster"
    ) in head.warnings
    within, _ = pair({"name": "vllm", "tensor_parallel_size": 8, "pipeline_parallel_size": 2})
    assert not any("spans nodes" in w for w in within.warnings)


def test_data_parallel_ranks_must_split_evenly_over_the_nodes() -> None:
    with pytest.raises(MetalserveError) as exc:
        pair({"name": "vllm", "tensor_parallel_size": 1, "data_parallel_size": 3})
    assert str(exc.value) == (
        "host n1: metalserve.engine.data_parallel_size: 3 ranks do not split evenly over 2 "
        "nodes — fix: a multiple of 2"
    )
    head, _ = pair({"name": "vllm", "tensor_parallel_size": 8, "data_parallel_size": 2})
    assert head.engine.name == "vllm"


def test_the_cluster_port_cannot_be_the_api_port() -> None:
    with pytest.raises(PlanError) as exc:
        pair({"name": "vllm", "tensor_parallel_size": 8, "pipeline_parallel_size": 2}, port=8000)
    assert str(exc.value) == (
        "host n1: metalserve.cluster.port: 8000 is also the engine's API port; the head would "
        "bind it twice — fix: another cluster.port (default 29500)"
    )


def test_a_pair_s_environment_names_the_gloo_interface_and_the_firewall_opens_the_peer() -> None:
    head, worker = pair({"name": "vllm", "tensor_parallel_size": 8, "pipeline_parallel_size": 2})
    assert head.environment_dict()["GLOO_SOCKET_IFNAME"] == "ib0"
    assert head.firewall is not None and worker.firewall is not None
    assert head.fabric is not None and head.fabric.devices == ("mlx5_0",)
    assert head.diag is not None and head.diag.peers == ("10.1.0.1", "10.1.0.2")
    assert (head.diag.host, head.diag.multi_node) == ("n1", True)
    assert (head.engine.head, worker.engine.head) == (True, False)
    assert worker.service.health_url is None and worker.service.completion_url is None


@pytest.mark.parametrize(
    ("address", "ok"),
    [
        ("10.0.0.1", True),
        ("255.255.255.255", True),
        ("0.0.0.0", True),
        ("256.0.0.1", False),
        ("10.0.0", False),
        ("10.0.0.1.2", False),
        ("10.0.0.01", False),
        ("10.0.0.a", False),
        ("node-b", False),
        ("::1", False),
    ],
)
def test_ipv4_is_four_decimal_octets(address: str, ok: bool) -> None:
    assert ipv4(address) is ok


def test_llamacpp_rpc_cluster_plans_head_and_worker() -> None:
    from tests.core.shipped import sandbox_plans

    _, head, worker = sandbox_plans()
    assert head.llamacpp is not None and worker.llamacpp is not None
    assert head.llamacpp.cmake_flags == (*BASE_FLAGS, "-DGGML_RPC=ON", "-DGGML_RPC_RDMA=OFF")
    assert head.llamacpp.targets[-1] == RPC_SERVER
    assert worker.gguf is None and worker.weights is None
    assert worker.service.restart == "always"  # rpc-server exits 0 on a bad flag
    assert worker.service.health_url is None
    assert worker.service.port == head.cluster.port
    assert head.service.restart == "on-failure"
    assert head.service.workers == (f"{worker.node.address}:{head.cluster.port}",)
    assert head.service.worker_hosts == (worker.host,)
    assert worker.service.workers == () and worker.service.worker_hosts == ()
    assert worker.command == worker.service.exec_argv


def test_an_rpc_worker_named_by_host_name_is_refused() -> None:
    from metalserve.sandbox.demo import sandbox_cluster_data
    from tests.core.shipped import SANDBOX_APT, SANDBOX_CLIENTS, sandbox_inputs

    specs = [
        host_spec(
            f"w{rank}",
            sandbox_cluster_data(SANDBOX_APT, sandbox_inputs(), SANDBOX_CLIENTS, 2, rank, address),
        )
        for rank, address in enumerate(("10.77.0.11", "worker.example"))
    ]
    with pytest.raises(PlanError) as exc:
        plan_hosts(specs)
    assert str(exc.value).endswith(
        ": host w1: metalserve.cluster.address: llama.cpp's rpc-server binds a numeric IPv4 "
        "address, found 'worker.example' — fix: give the worker's IPv4 address on the cluster "
        "network"
    )


def test_no_firewall_where_the_site_s_own_rules() -> None:
    p = cpu_llamacpp(
        access={"clients": CLIENTS, "firewall": False, "firewall_off_reason": "site nft"}
    )
    assert p.firewall is None
    assert "nftables" not in p.packages.names
    on = cpu_llamacpp()
    assert on.firewall is not None


def test_a_roce_pair_gives_the_fabric_role_the_gid_index() -> None:
    roce = {"socket_ifname": "bond0", "ib_hca": ["mlx5_0"], "gid_index": 3, "traffic_class": 106}
    head, _ = two_nodes(
        {
            "profile": "h100-sxm-8x2-roce",
            "model": {"checkpoint": "zai-org/GLM-4.7-FP8"},
            "fabric": roce,
        }
    )
    assert head.fabric is not None and head.fabric.gid_index == 3


def test_a_cpu_host_has_no_nvidia_stack_fabric_or_diagnostic() -> None:
    p = cpu_llamacpp()
    assert (p.nvidia, p.fabric, p.diag) == (None, None, None)


def test_llamacpp_needs_a_gguf_or_a_repo_to_convert() -> None:
    from metalserve.catalog.checkpoints import GLM45_AIR_FP8

    spec = host_spec(
        "h1",
        {
            "access": {"clients": CLIENTS},
            "profile": "h100-sxm-4",
            "model": {"checkpoint": "zai-org/GLM-4.5-Air-FP8"},
            "engine": {"name": "llamacpp"},
        },
    )
    read = GLM45_AIR_FP8.model_copy(update={"repo_id": None})  # as the edge may read one
    with pytest.raises(PlanError) as exc:
        plan_alone(spec, read)
    assert str(exc.value) == (
        "host h1: metalserve.model: llama.cpp needs a GGUF or an HF repo to convert — fix: give "
        "model.repo_id"
    )


def test_the_command_names_the_model_as_the_inventory_typed_it() -> None:
    served = cpu_llamacpp(model={"repo_id": "org/tiny", "served_name": "tiny"})
    assert served.service.served_model == "tiny"
    vllm = plan(
        profile="h200-sxm-8",
        model={"checkpoint": "zai-org/GLM-5.2-FP8", "served_name": "glm"},
        engine={"name": "vllm", "tensor_parallel_size": 8},
    )
    assert vllm.command[:3] == ("vllm", "serve", "zai-org/GLM-5.2-FP8")
    repo = plan(
        profile="h200-sxm-8",
        model={"repo_id": "org/model", "served_name": "m"},
        engine={"name": "vllm", "tensor_parallel_size": 8},
    )
    assert repo.command[:3] == ("vllm", "serve", "org/model")


def test_the_firewall_of_each_node() -> None:
    head, worker = pair({"name": "vllm", "tensor_parallel_size": 8, "pipeline_parallel_size": 2})
    assert head.firewall is not None and worker.firewall is not None
    assert (head.firewall.serving_port, head.firewall.cluster_ports) == (8000, (29500,))
    assert (worker.firewall.serving_port, worker.firewall.cluster_ports) == (None, (29500,))
    assert head.firewall.peers_v4 == ("10.1.0.2/32",) and worker.firewall.peers_v4 == (
        "10.1.0.1/32",
    )
    assert head.firewall.clients_v4 == tuple(CLIENTS) and head.firewall.ssh_port == 22
    alone = cpu_llamacpp(access={"clients": CLIENTS, "ssh_port": 2222}).firewall
    assert alone is not None
    assert (alone.serving_port, alone.cluster_ports, alone.ssh_port) == (8080, (), 2222)


def test_the_rpc_worker_runs_the_built_rpc_server() -> None:
    from tests.core.shipped import sandbox_plans

    _, _, worker = sandbox_plans()
    assert worker.service.exec_argv[0] == f"/opt/metalserve/llama.cpp/current/bin/{RPC_SERVER}"


def test_a_gid_index_override_on_infiniband_reaches_no_fabric_check() -> None:
    head, _ = two_nodes({"nccl": {"NCCL_IB_GID_INDEX": "3"}})
    assert head.fabric is not None and head.fabric.gid_index is None


def test_a_peer_named_by_host_name_is_refused_naming_the_cluster() -> None:
    with pytest.raises(PlanError) as exc:
        two_nodes(addresses=("10.1.0.1", "n2.example"), name="c1")
    assert str(exc.value).startswith("cluster c1: metalserve.cluster.address 'n2.example': ")


def test_pipeline_stages_count_in_the_gpus_asked_for() -> None:
    with pytest.raises(PlanError) as exc:
        plan(
            profile="h200-sxm-8",
            model={"checkpoint": "zai-org/GLM-5.2-FP8"},
            engine={"name": "vllm", "tensor_parallel_size": 8, "pipeline_parallel_size": 2},
        )
    assert str(exc.value) == (
        "host h1: metalserve.engine: TP 8 × PP 2 = 16 GPUs but h200-sxm-8 has 8 — fix: lower "
        "the parallel sizes"
    )
    with pytest.raises(PlanError) as exc:
        plan(
            profile="h100-sxm-4",
            model={"checkpoint": "zai-org/GLM-4.5-Air-FP8"},
            engine={"name": "vllm", "tensor_parallel_size": 4, "data_parallel_size": 2},
        )
    assert str(exc.value).startswith("host h1: metalserve.engine: TP 4 × PP 1 × DP 2 = 8 GPUs")


def three_sparks(engine: dict[str, Any]) -> list[HostPlan]:
    """The plans of 3 DGX Sparks over RoCE (one GB10 each) serving GLM-4.5-Air."""
    fabric = {
        "socket_ifname": "enp1s0f0np0",
        "ib_hca": ["rocep1s0f0"],
        "gid_index": 3,
        "traffic_class": 106,
    }
    specs = [
        host_spec(
            f"s{rank}",
            {
                "access": {"clients": CLIENTS},
                "profile": "dgx-spark-3",
                "model": {"checkpoint": "zai-org/GLM-4.5-Air-FP8"},
                "engine": engine,
                "fabric": fabric,
                "cluster": {
                    "node_rank": rank,
                    "address": f"10.2.0.{rank + 1}",
                    "head_address": "10.2.0.1",
                },
            },
        )
        for rank in range(3)
    ]
    return plan_hosts(specs)


def test_two_data_parallel_ranks_do_not_split_over_three_nodes() -> None:
    with pytest.raises(PlanError) as exc:
        three_sparks({"name": "vllm", "data_parallel_size": 2})
    assert str(exc.value) == (
        "host s0: metalserve.engine.data_parallel_size: 2 ranks do not split evenly over 3 nodes "
        "— fix: a multiple of 3"
    )


@pytest.mark.parametrize(
    ("local_dir", "repo"), [("/srv/models/tinyX/", "local/tinyX"), ("tiny-moe", "local/tiny-moe")]
)
def test_a_local_directory_s_last_component_names_it(local_dir: str, repo: str) -> None:
    p = plan(profile="sandbox-cpu", model={"local_dir": local_dir}, engine={"name": "llamacpp"})
    assert p.weights is not None and p.weights.repo_id == repo


def test_the_llamacpp_command_reads_its_key_from_the_credentials() -> None:
    p = cpu_llamacpp()
    assert p.command[p.command.index("--api-key-file") + 1] == "%d/api_key"


def test_a_gpu_engine_without_weights_is_one_line() -> None:
    from metalserve.catalog.checkpoints import GLM45_AIR_FP8

    spec = host_spec(
        "h1",
        {
            "access": {"clients": CLIENTS},
            "profile": "h100-sxm-4",
            "model": {"checkpoint": "zai-org/GLM-4.5-Air-FP8"},
            "engine": {"name": "vllm", "tensor_parallel_size": 4},
        },
    )
    with pytest.raises(PlanError) as exc:
        plan_alone(spec, GLM45_AIR_FP8.model_copy(update={"repo_id": None}))
    assert str(exc.value) == (
        "host h1: metalserve.model: no model weights to serve — fix: set model.checkpoint or "
        "model.repo_id"
    )


def test_sglang_runs_from_its_own_venv() -> None:
    p = plan(
        profile="h100-sxm-8",
        model={"checkpoint": "zai-org/GLM-4.7-FP8"},
        engine={"name": "sglang", "tp_size": 8},
    )
    venv = p.engine.venv
    assert venv is not None and venv.startswith("/opt/metalserve/venvs/sglang-")
    assert p.service.exec_argv[:2] == (f"{venv}/bin/sglang", "serve")


def test_the_engine_binds_loopback_unless_told_otherwise() -> None:
    p = plan(
        profile="h200-sxm-8",
        model={"checkpoint": "zai-org/GLM-5.2-FP8"},
        engine={"name": "vllm", "tensor_parallel_size": 8},
    )
    argv = p.service.exec_argv
    assert argv[argv.index("--host") + 1] == "127.0.0.1"


def test_a_model_that_fits_no_catalogue_setup_says_so() -> None:
    from metalserve.catalog.checkpoints import GLM52_FP8

    spec = host_spec(
        "h1",
        {
            "access": {"clients": CLIENTS},
            "profile": "h200-sxm-8",
            "model": {"checkpoint": "zai-org/GLM-5.2-FP8"},
            "engine": {"name": "vllm", "tensor_parallel_size": 8},
        },
    )
    p = plan_alone(spec, GLM52_FP8.model_copy(update={"weight_bytes": 10**15}))
    assert p.smallest_setup == "no catalogue setup fits"


def test_a_vllm_cluster_may_name_its_nodes_when_the_site_firewalls() -> None:
    site = {"access": {"firewall": False, "firewall_off_reason": "site firewall"}}
    head, worker = two_nodes(site, addresses=("n1.example", "n2.example"))
    assert head.firewall is None and worker.node.address == "n2.example"


@pytest.mark.parametrize(
    "engine",
    [
        {
            "name": "vllm",
            "tensor_parallel_size": 8,
            "pipeline_parallel_size": 2,
            "enable_expert_parallel": True,
        },
        {"name": "sglang", "tp_size": 8, "pp_size": 2, "ep_size": 8},
    ],
)
def test_expert_parallelism_across_nodes_sets_the_channel_floor(engine: dict[str, Any]) -> None:
    head, _ = pair(engine)
    assert head.environment_dict()["NCCL_MIN_NCHANNELS"] == "16"
    plain, _ = pair({"name": "vllm", "tensor_parallel_size": 8, "pipeline_parallel_size": 2})
    assert "NCCL_MIN_NCHANNELS" not in plain.environment_dict()


def test_nccl_overrides_reach_the_environment() -> None:
    p = plan(
        profile="h200-sxm-8",
        model={"checkpoint": "zai-org/GLM-5.2-FP8"},
        engine={"name": "vllm", "tensor_parallel_size": 8},
        nccl={"NCCL_DEBUG": "WARN"},
    )
    assert p.environment_dict()["NCCL_DEBUG"] == "WARN"


def test_a_missing_fabric_value_is_one_line_naming_the_host() -> None:
    with pytest.raises(MetalserveError) as exc:
        two_nodes({"fabric": {}})
    assert str(exc.value).startswith(
        "host n1: metalserve.fabric.socket_ifname: required for multi-node hardware h200-sxm-8x2-ib"
    )


def test_the_unit_sandbox_is_made_for_this_node_s_gpus_and_fabric() -> None:
    from metalserve.hardening import Node, service_hardening
    from metalserve.layout import Layout

    def hardening_of(p: HostPlan, **node: Any) -> Any:
        return service_hardening(Node(host=p.host, **node), Layout.for_service(p.service.name), {})

    gpu = plan(
        profile="h200-sxm-8",
        model={"checkpoint": "zai-org/GLM-5.2-FP8"},
        engine={"name": "vllm", "tensor_parallel_size": 8},
    )
    assert gpu.service.hardening == hardening_of(gpu, gpu=True, rdma=False, engine="vllm")
    head, _ = pair({"name": "vllm", "tensor_parallel_size": 8, "pipeline_parallel_size": 2})
    assert head.service.hardening == hardening_of(head, gpu=True, rdma=True, engine="vllm")
    cpu = cpu_llamacpp()
    assert cpu.service.hardening == hardening_of(cpu, gpu=False, rdma=False, engine="llamacpp")


def test_packages_follow_the_engine_and_the_firewall() -> None:
    from metalserve.catalog.packages import FIREWALL, packages_for

    assert cpu_llamacpp().packages.names == packages_for("llamacpp") + FIREWALL
    vllm = plan(
        profile="h200-sxm-8",
        model={"checkpoint": "zai-org/GLM-5.2-FP8"},
        engine={"name": "vllm", "tensor_parallel_size": 8},
    )
    assert vllm.packages.names == packages_for("vllm") + FIREWALL


def test_a_catalogue_gguf_without_a_repository_is_flagged_as_unsourced() -> None:
    p = plan(
        profile="rtx4090-4", model={"checkpoint": "glm52-Q4_K_M.gguf"}, engine={"name": "llamacpp"}
    )
    path = "/var/lib/metalserve/gguf/glm52-Q4_K_M.gguf"
    why = (
        "metalserve.model.checkpoint: glm52-Q4_K_M.gguf is a GGUF with no repository, so no deploy "
        "step fetches it — fix: give model.repo_id and model.gguf_file (the repository holding it, "
        f"and its file), or copy it to {path} on the host"
    )
    assert p.service.unsourced == ((path, why),)
    assert why in p.warnings
    assert cpu_llamacpp().service.unsourced == ()  # converted from its repository


def test_engine_locks_are_the_release_s_for_the_node_s_architecture() -> None:
    from metalserve.catalog.engine_locks import locks_for

    h200 = plan(
        profile="h200-sxm-8",
        model={"checkpoint": "zai-org/GLM-5.2-FP8"},
        engine={"name": "vllm", "tensor_parallel_size": 8},
    )
    assert h200.engine.locks == locks_for("vllm", "0.33.0")  # the host's facts pick one
    spark = spark_head()
    assert spark.engine.locks == tuple(
        lock for lock in locks_for("vllm", "0.33.0") if lock.arch == "aarch64"
    )
    assert cpu_llamacpp().engine.locks == ()


def spark_head() -> HostPlan:
    return three_sparks({"name": "vllm", "pipeline_parallel_size": 3})[0]


def test_the_engine_parser_checks_the_unit_s_arguments_without_the_key_file() -> None:
    p = plan(
        profile="h100-sxm-8",
        model={"checkpoint": "zai-org/GLM-4.7-FP8"},
        engine={"name": "sglang", "tp_size": 8},
    )
    assert "--config" in p.service.exec_argv and "--config" not in p.engine.parser_args
    assert "--tp-size" in p.engine.parser_args
    assert cpu_llamacpp().engine.parser_args == ()


def test_preflight_of_a_single_node() -> None:
    p = plan(
        profile="h200-sxm-8",
        model={"checkpoint": "zai-org/GLM-5.2-FP8"},
        engine={"name": "vllm", "tensor_parallel_size": 8},
        preflight={"skip": {"secure-boot": "signed by the site's own MOK"}},
    )
    f = p.preflight
    assert f.skip == (("secure-boot", "signed by the site's own MOK"),)
    assert (f.pcie_p2p, f.socket_ifname, f.traffic_class) == (False, "lo", None)
    assert (f.cluster_address, f.port, f.reach, f.dials) == (None, None, (), "")
    pcie = plan(profile="rtxpro6000-4", model={"repo_id": "org/m"}, engine={"name": "llamacpp"})
    assert pcie.preflight.pcie_p2p is True
    assert cpu_llamacpp().preflight.pcie_p2p is False  # no GPU to pair
    assert one_pcie_gpu().preflight.pcie_p2p is False


def one_pcie_gpu() -> HostPlan:
    return plan(
        hardware={
            "gpu": "rtx-pro-6000",
            "gpus_per_node": 1,
            "nodes": 1,
            "interconnect": "pcie",
            "host_ram_gb": 64,
        },
        model={"repo_id": "org/m"},
        engine={"name": "llamacpp"},
    )


def test_preflight_of_a_roce_pair_dials_the_head_from_the_worker() -> None:
    roce = {"socket_ifname": "bond0", "ib_hca": ["mlx5_0"], "gid_index": 3, "traffic_class": 106}
    head, worker = two_nodes(
        {
            "profile": "h100-sxm-8x2-roce",
            "model": {"checkpoint": "zai-org/GLM-4.7-FP8"},
            "fabric": roce,
        }
    )
    assert (head.preflight.socket_ifname, head.preflight.traffic_class) == ("=bond0", 106)
    assert (head.preflight.cluster_address, head.preflight.port) == ("10.1.0.1", 29500)
    assert (worker.preflight.cluster_address, worker.preflight.port) == ("10.1.0.2", 29500)
    assert head.preflight.reach == () and worker.preflight.reach == (("n1", "10.1.0.1"),)
    assert head.preflight.dials == worker.preflight.dials == "each worker dials the head"


def test_preflight_of_nodes_named_by_host_name_has_no_address_to_look_for() -> None:
    site = {"access": {"firewall": False, "firewall_off_reason": "site firewall"}}
    head, worker = two_nodes(site, addresses=("n1.example", "n2.example"))
    assert head.preflight.cluster_address is None and worker.preflight.cluster_address is None
    assert worker.preflight.reach == (("n1", "n1.example"),)


def test_preflight_of_a_llamacpp_cluster_dials_the_workers_from_the_head() -> None:
    from tests.core.shipped import sandbox_plans

    _, head, worker = sandbox_plans()
    assert head.preflight.reach == ((worker.host, worker.node.address),)
    assert worker.preflight.reach == ()
    assert head.preflight.dials == "the head dials each worker's rpc-server"


def test_from_a_bundle_weights_and_nccl_tests_come_from_its_folders() -> None:
    from metalserve.diag.spec import NcclTestsSource

    bundled = plan(
        profile="h200-sxm-8",
        model={"checkpoint": "zai-org/GLM-5.2-FP8"},
        engine={"name": "vllm", "tensor_parallel_size": 8},
        sources={"bundle": "/srv/bundle"},
    )
    assert bundled.weights is not None
    assert (bundled.weights.source.kind, bundled.weights.source.path) == (
        SourceKind.BUNDLE,
        "/srv/bundle/models/zai-org--GLM-5.2-FP8",
    )
    assert bundled.diag is not None
    ref = NcclTestsSource().ref
    assert bundled.diag.source == NcclTestsSource(
        kind="local", ref=ref, path=f"/srv/bundle/sources/nccl-tests-{ref}.tar.gz"
    )
    online = plan(
        profile="h200-sxm-8",
        model={"checkpoint": "zai-org/GLM-5.2-FP8"},
        engine={"name": "vllm", "tensor_parallel_size": 8},
    )
    assert online.diag is not None and online.diag.source == NcclTestsSource()
    assert online.weights is not None and online.weights.source.kind is SourceKind.ONLINE
    # the bundle reaches the host with rsync (roles.push): the bundled host installs it
    assert "rsync" in bundled.packages.names and "rsync" not in online.packages.names
    own = NcclTestsSource(kind="local", ref=ref, path="/srv/nccl-tests.tar.gz")
    kept = plan(
        profile="h200-sxm-8",
        model={"checkpoint": "zai-org/GLM-5.2-FP8"},
        engine={"name": "vllm", "tensor_parallel_size": 8},
        sources={"bundle": "/srv/bundle"},
        diag={"source": own.model_dump(exclude_none=True)},
    )
    assert kept.diag is not None and kept.diag.source == own


def test_the_sglang_parser_arguments_name_the_served_model() -> None:
    p = plan(
        profile="h100-sxm-8",
        model={"checkpoint": "zai-org/GLM-4.7-FP8", "served_name": "glm47"},
        engine={"name": "sglang", "tp_size": 8},
    )
    args = p.engine.parser_args
    assert args[args.index("--served-model-name") + 1] == "glm47"
    assert args[args.index("--model-path") + 1] == "/var/lib/metalserve/models/zai-org--GLM-4.7-FP8"


def test_two_pcie_gpus_are_checked_for_p2p() -> None:
    p = plan(
        hardware={
            "gpu": "rtx-pro-6000",
            "gpus_per_node": 2,
            "nodes": 1,
            "interconnect": "pcie",
            "host_ram_gb": 64,
        },
        model={"repo_id": "org/m"},
        engine={"name": "llamacpp"},
    )
    assert p.preflight.pcie_p2p is True


def test_a_gguf_with_a_repository_or_a_safetensors_checkpoint_is_sourced() -> None:
    from metalserve.catalog.checkpoints import GLM52_Q4_K_M

    spec = host_spec(
        "h1",
        {
            "access": {"clients": CLIENTS},
            "profile": "rtx4090-4",
            "model": {"checkpoint": "glm52-Q4_K_M.gguf"},
            "engine": {"name": "llamacpp"},
        },
    )
    sourced = spec.model_copy(
        update={
            "model": spec.model.model_copy(
                update={"repo_id": "org/glm-gguf", "gguf_file": "glm52-Q4_K_M.gguf"}
            )
        }
    )
    with_repo = plan_alone(sourced, GLM52_Q4_K_M.model_copy(update={"repo_id": "org/glm-gguf"}))
    assert with_repo.service.unsourced == ()
    p = plan(
        profile="h100-sxm-4",
        model={"checkpoint": "zai-org/GLM-4.5-Air-FP8"},
        engine={"name": "llamacpp"},
    )
    assert p.service.unsourced == ()


def _h200_spec() -> Any:
    return host_spec(
        "h1",
        {
            "access": {"clients": CLIENTS},
            "profile": "h200-sxm-8",
            "model": {"checkpoint": "zai-org/GLM-5.2-FP8"},
            "engine": {"name": "vllm", "tensor_parallel_size": 8},
        },
    )


def test_a_release_without_locks_is_refused_in_one_line() -> None:
    # _engine_locks directly: every release the flag sets know has locks today
    from metalserve.catalog.profiles import PROFILES
    from metalserve.plan import _engine_locks

    spec = _h200_spec()
    unlocked = spec.engine.model_copy(update={"version": "9.9.9"})
    with pytest.raises(PlanError) as exc:
        _engine_locks(spec, unlocked, PROFILES["h200-sxm-8"])
    assert str(exc.value) == (
        "host h1: metalserve.engine.version: vllm 9.9.9 has no lock for any target — fix: pin a "
        "release with wheels for it and run scripts/lock_engines.py"
    )
    with pytest.raises(PlanError) as exc:
        _engine_locks(spec, unlocked, PROFILES["dgx-spark-3"])
    assert "vllm 9.9.9 has no lock for aarch64 — fix" in str(exc.value)


def test_a_driver_too_old_for_the_wheels_cuda_is_refused() -> None:
    from metalserve.catalog.engine_locks import locks_for
    from metalserve.catalog.profiles import PROFILES
    from metalserve.plan import _engine_locks

    spec = _h200_spec()
    old = spec.nvidia.pins.model_copy(update={"driver_version": "570.133.20"})
    spec = spec.model_copy(update={"nvidia": spec.nvidia.model_copy(update={"pins": old})})
    lock = next(lock for lock in locks_for("vllm", "0.33.0") if lock.sha256)
    with pytest.raises(PlanError) as exc:
        _engine_locks(spec, spec.engine, PROFILES["h200-sxm-8"])
    assert str(exc.value) == (
        f"host h1: metalserve.nvidia.pins.driver_version: vllm 0.33.0's wheels load the CUDA 13 "
        f"runtime ({lock.path}): CUDA 13 needs driver >= 580.65.06, found 570.133.20 — fix: pin a "
        "newer driver"
    )
    # the CUDA floor in that line: NVIDIA's CUDA 13.0 release notes, table 3 (>= 580.65.06)


def test_a_bundle_carries_the_nccl_tests_release_the_inventory_names() -> None:
    from metalserve.diag.spec import NcclTestsSource

    p = plan(
        profile="h200-sxm-8",
        model={"checkpoint": "zai-org/GLM-5.2-FP8"},
        engine={"name": "vllm", "tensor_parallel_size": 8},
        sources={"bundle": "/srv/bundle"},
        diag={"source": {"kind": "git", "ref": "v2.17.1"}},
    )
    assert p.diag is not None
    assert p.diag.source == NcclTestsSource(
        kind="local", ref="v2.17.1", path="/srv/bundle/sources/nccl-tests-v2.17.1.tar.gz"
    )


def _read_from(local_dir: str, quant_method: str | None) -> tuple[Any, Any]:
    """A llama.cpp host given a local checkpoint, and the checkpoint as the edge reads it there
    (metalserve.io.modelfiles: no repository, the quant_method of its config.json)."""
    from metalserve.checkpoint import Checkpoint, WeightFormat

    spec = host_spec("h1", {"access": {"clients": CLIENTS}, "profile": "sandbox-cpu",
                            "model": {"local_dir": local_dir}, "engine": {"name": "llamacpp"}})  # fmt: skip
    read = Checkpoint(id="Tiny", repo_id=None, family="llama", format=WeightFormat.SAFETENSORS,
                      weight_dtype=quant_method or "bfloat16", quant_method=quant_method,
                      weight_bytes=10**9, weight_bytes_source="test")  # fmt: skip
    return spec, read


def test_a_local_checkpoint_converted_for_llamacpp_is_sourced() -> None:
    p = plan_alone(*_read_from("/data/Tiny", None))
    assert p.gguf is not None and p.gguf.model_dir == "/var/lib/metalserve/models/local--Tiny"
    assert p.service.unsourced == ()
    assert not [w for w in p.warnings if "no deploy step fetches it" in w]


def test_a_checkpoint_llamacpp_cannot_convert_is_one_line_naming_the_host() -> None:
    with pytest.raises(PlanError) as exc:
        plan_alone(*_read_from("/data/Tiny", "hqq"))
    assert str(exc.value).startswith(
        "host h1: metalserve.model: expected a checkpoint llama.cpp can convert, found "
        "quant_method 'hqq' — fix: use the model's BF16 checkpoint or a GGUF repository"
    )


def test_the_llamacpp_head_s_flags_are_checked_against_the_pinned_release() -> None:
    # llama.cpp common/arg.cpp: --cache-type-k takes one of the ggml cache types; fp8 is none
    with pytest.raises(PlanError) as exc:
        cpu_llamacpp(engine={"name": "llamacpp", "cache_type_k": "fp8"})
    assert str(exc.value) == (
        f"host h1: metalserve.engine: llama.cpp {LLAMA} --cache-type-k has no value 'fp8' (valid: "
        "bf16, f16, f32, iq4_nl, q4_0, q4_1, q5_0, q5_1, q8_0)"
    )
