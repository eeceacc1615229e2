"""Golden: every engine command of the published guides (``metalserve.catalog.guides``, copied
under ``tests/fixtures/seeds``) is reproduced flag for flag from typed settings."""

from __future__ import annotations

import json

import pytest

from metalserve.engines import LlamaCppSettings, SglangSettings, VllmSettings
from tests.core.seedcmd import options, positionals, seed_argv

CASES = {
    "000-vllm.txt": (
        VllmSettings(
            trust_remote_code=True,
            tensor_parallel_size=8,
            gpu_memory_utilization=0.90,
            max_model_len=32000,
            max_num_seqs=16,
            kv_cache_dtype="fp8",
            enable_prefix_caching=True,
            max_num_batched_tokens=65536,
            host="0.0.0.0",
            port=8000,
        ),
        lambda s: s.argv("zai-org/GLM-5.2-FP8"),
    ),
    "003-vllm.txt": (
        VllmSettings(
            tensor_parallel_size=8,
            enable_expert_parallel=True,
            reasoning_parser="glm45",
            tool_call_parser="glm47",
            enable_auto_tool_choice=True,
            kv_cache_dtype="fp8_e4m3",
            served_model_name="glm-5.2-nvfp4",
        ),
        lambda s: s.argv("nvidia/GLM-5.2-NVFP4"),
    ),
    "004-vllm.py-list.txt": (
        VllmSettings(
            served_model_name="glm-5.2-fp8",
            host="0.0.0.0",
            port=8000,
            tensor_parallel_size=8,
            kv_cache_dtype="fp8",
            max_model_len=131072,
            gpu_memory_utilization=0.92,
            trust_remote_code=True,
            speculative_config={"method": "mtp", "num_speculative_tokens": 5},
            safetensors_load_strategy="prefetch",
            enable_prefix_caching=True,
            enforce_eager=True,
        ),
        lambda s: s.argv("zai-org/GLM-5.2-FP8"),
    ),
    "000-sglang.txt": (
        SglangSettings(
            entrypoint="launch_server",
            trust_remote_code=True,
            tp_size=8,
            mem_fraction_static=0.90,
            context_length=32000,
            enable_mixed_chunk=True,
            host="0.0.0.0",
            port=8000,
        ),
        lambda s: s.argv("zai-org/GLM-5.2-FP8"),
    ),
    "000-llama-server.txt": (
        LlamaCppSettings(
            n_gpu_layers=48, tensor_split=[24, 24, 24, 24], ctx_size=8192, host="0.0.0.0", port=8000
        ),
        lambda s: s.argv("glm52-Q4_K_M.gguf", ("./llama.cpp/build/bin/llama-server",)),
    ),
}


@pytest.mark.parametrize("seed", sorted(CASES))
def test_builder_reproduces_the_seed_command_flag_for_flag(seed: str) -> None:
    settings, build = CASES[seed]
    expected, got = seed_argv(seed), build(settings)
    assert positionals(got) == positionals(expected)
    assert options(got) == options(expected)
    assert len(got) == len(expected), "same number of words: no flag added or dropped"


def test_speculative_config_is_one_json_word() -> None:
    argv = CASES["004-vllm.py-list.txt"][1](CASES["004-vllm.py-list.txt"][0])
    word = argv[argv.index("--speculative-config") + 1]
    assert json.loads(word) == {"method": "mtp", "num_speculative_tokens": 5}


def test_unset_settings_leave_the_engine_defaults_alone() -> None:
    assert VllmSettings().argv("m") == ["vllm", "serve", "m"]
    assert LlamaCppSettings().argv("m.gguf") == ["llama-server", "-m", "m.gguf"]


def test_prefix_caching_can_be_switched_off_explicitly() -> None:
    assert "--no-enable-prefix-caching" in VllmSettings(enable_prefix_caching=False).argv("m")


def test_auto_tool_choice_without_a_parser_is_refused_before_the_engine_starts() -> None:
    with pytest.raises(ValueError, match="tool_call_parser"):
        VllmSettings(enable_auto_tool_choice=True)
