"""The plan: what a deploy will do, computed from the spec alone."""

from __future__ import annotations

import pytest

from metalserve.errors import MetalserveError, PlanError
from metalserve.plan import plan_alone, plan_hosts
from metalserve.spec import host_spec


def plan(**data: object):  # noqa: ANN201
    return plan_alone(host_spec("h1", data))


def test_vllm_unit_serves_the_verified_local_copy_under_the_repo_id() -> None:
    p = plan(
        profile="h200-sxm-8",
        model={"checkpoint": "zai-org/GLM-5.2-FP8"},
        engine={"name": "vllm", "tensor_parallel_size": 8},
    )
    assert p.command[:3] == ("vllm", "serve", "zai-org/GLM-5.2-FP8")
    argv = p.service.exec_argv
    assert argv[:3] == (
        "/opt/metalserve/venvs/vllm-0.33.0/bin/vllm",
        "serve",
        "/var/lib/metalserve/models/zai-org--GLM-5.2-FP8",
    )
    assert argv[argv.index("--served-model-name") + 1] == "zai-org/GLM-5.2-FP8"
    assert p.service.served_model == "zai-org/GLM-5.2-FP8"
    assert p.environment_dict()["HF_HUB_OFFLINE"] == "1"
    assert p.engine.requirements == ("vllm==0.33.0",)


def test_multi_node_workers_are_headless_and_only_the_head_is_health_checked() -> None:
    common = {
        "profile": "h200-sxm-8x2-ib",
        "model": {"checkpoint": "zai-org/GLM-5.2"},
        "engine": {"name": "vllm", "tensor_parallel_size": 8, "pipeline_parallel_size": 2},
        "fabric": {"socket_ifname": "ib0", "ib_hca": ["mlx5_0"]},
    }
    head, worker = plan_hosts(
        [
            host_spec("h1", {**common, "cluster": {"node_rank": 0, "address": "10.1.0.1"}}),
            host_spec(
                "h2",
                {
                    **common,
                    "cluster": {"node_rank": 1, "address": "10.1.0.2", "head_address": "10.1.0.1"},
                },
            ),
        ]
    )
    assert "--headless" not in head.command and "--headless" in worker.command
    assert worker.command[worker.command.index("--node-rank") + 1] == "1"
    assert head.service.health_url and worker.service.health_url is None
    assert head.environment_dict()["GLOO_SOCKET_IFNAME"] == "ib0"


def test_multi_node_without_cluster_data_is_refused() -> None:
    with pytest.raises(MetalserveError, match="metalserve.cluster: required"):
        plan(
            profile="h200-sxm-8x2-ib",
            model={"checkpoint": "zai-org/GLM-5.2"},
            engine={"name": "vllm", "tensor_parallel_size": 8, "pipeline_parallel_size": 2},
            fabric={"socket_ifname": "ib0", "ib_hca": ["mlx5_0"]},
        )


def test_more_gpus_than_the_profile_has_is_refused() -> None:
    with pytest.raises(PlanError, match="TP 8 × PP 1 = 8 GPUs but h100-sxm-4 has 4"):
        plan(
            profile="h100-sxm-4",
            model={"checkpoint": "zai-org/GLM-4.5-Air-FP8"},
            engine={"name": "vllm", "tensor_parallel_size": 8},
        )


def test_a_gpu_engine_on_a_cpu_host_is_refused() -> None:
    with pytest.raises(PlanError, match="needs a GPU"):
        plan(profile="sandbox-cpu", model={"repo_id": "a/b"}, engine={"name": "vllm"})


def test_llamacpp_from_safetensors_plans_build_conversion_and_quantization() -> None:
    p = plan(profile="sandbox-cpu", model={"repo_id": "org/tiny"}, engine={"name": "llamacpp"})
    assert p.llamacpp is not None and p.gguf is not None
    assert "-DLLAMA_USE_PREBUILT_UI=OFF" in p.llamacpp.cmake_flags
    assert not any("CUDA" in f for f in p.llamacpp.cmake_flags)
    assert p.gguf.out_path.endswith("org--tiny-Q4_K_M.gguf")
    assert p.service.exec_argv[:3] == (
        "/opt/metalserve/llama.cpp/current/bin/llama-server",
        "-m",
        p.gguf.out_path,
    )


def test_llamacpp_cuda_build_targets_only_the_profiles_arch() -> None:
    p = plan(profile="rtxpro6000-4", model={"repo_id": "org/m"}, engine={"name": "llamacpp"})
    assert p.llamacpp is not None
    assert "-DCMAKE_CUDA_ARCHITECTURES=120" in p.llamacpp.cmake_flags


def test_api_key_is_a_credential_never_an_argument() -> None:
    p = plan(
        profile="sandbox-cpu",
        model={"repo_id": "org/tiny"},
        engine={"name": "llamacpp"},
        secrets={"api_key_file": "/root/key"},
    )
    assert ("api_key", "/etc/metalserve/credentials/api_key") in p.service.credentials
    assert "--api-key" not in p.service.exec_argv
    assert "%d/api_key" in p.service.exec_argv


def test_sglang_reads_its_key_from_a_config_credential_never_from_argv() -> None:
    p = plan(
        profile="h100-sxm-8",
        model={"checkpoint": "zai-org/GLM-4.7-FP8"},
        engine={"name": "sglang", "tp_size": 8},
        secrets={"api_key_file": "/root/key"},
    )
    argv = p.service.exec_argv
    assert "--api-key" not in argv
    # sglang/srt/utils/server_args_config_parser.py: --config FILE.yaml, merged inside the process
    assert argv[argv.index("--config") + 1] == "%d/sglang-api-key.yaml"
    assert ("sglang-api-key.yaml", "/etc/metalserve/credentials/sglang-api-key.yaml") in (
        p.service.credentials
    )
    config = next(c for c in p.credentials if c.name == "sglang-api-key.yaml")
    assert config.local_path == "/root/key" and config.form == "sglang_config"


def test_a_value_the_pinned_engine_rejects_is_refused_at_plan_time() -> None:
    with pytest.raises(
        PlanError, match=r"host h1: metalserve.engine: SGLang 0.5.23 --kv-cache-dtype"
    ):
        plan(
            profile="h100-sxm-8",
            model={"checkpoint": "zai-org/GLM-4.7-FP8"},
            engine={"name": "sglang", "tp_size": 8, "kv_cache_dtype": "fp8"},
        )


def test_an_engine_version_without_a_derived_flag_set_is_refused() -> None:
    with pytest.raises(PlanError, match="pinned: 0.33.0"):
        plan(
            profile="h200-sxm-8",
            model={"checkpoint": "zai-org/GLM-5.2-FP8"},
            engine={"name": "vllm", "version": "0.30.0", "tensor_parallel_size": 8},
        )
