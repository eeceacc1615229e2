"""Sliding-window layers cache at most ``sliding_window`` tokens each, so a model with them holds a
longer context in the same memory than every layer counted as full attention would.

Semantics of the config fields: transformers' model configurations (``layer_types`` with
``"sliding_attention"`` / ``"full_attention"``; Qwen2's ``use_sliding_window`` and
``max_window_layers``, layer ``i`` sliding when ``i >= max_window_layers``; Gemma 3's
``sliding_window_pattern``, every N-th layer global); vLLM allocates a window-bounded cache for such
layers (vllm/v1/kv_cache_interface.py ``SlidingWindowSpec``), llama.cpp a separate SWA cache
(src/llama-kv-cache-iswa.cpp). Expected values below are computed from

    cache(C) = bytes per token per layer × (full layers × C + sliding layers × min(C, window))
"""

from __future__ import annotations

import math

import pytest

from metalserve.architecture import architecture_from_config
from metalserve.catalog.profiles import PROFILES
from metalserve.checkpoint import Checkpoint, WeightFormat
from metalserve.engines import LlamaCppSettings, VllmSettings
from metalserve.engines.kvcache import kv_dtype_bytes
from metalserve.engines.llamacpp import QUANT_BITS_PER_WEIGHT
from metalserve.errors import SpecError
from metalserve.hardware import GB
from metalserve.sizing import (
    HOST_RESERVE,
    LLAMACPP_MARGIN_PER_GPU,
    RUNTIME_RESERVE_PER_GPU,
    request_for,
    size,
)

GPT_OSS_LIKE = {  # the shape of openai/gpt-oss-120b's config.json
    "model_type": "gpt_oss",
    "num_hidden_layers": 36,
    "hidden_size": 2880,
    "num_attention_heads": 64,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "vocab_size": 201088,
    "num_local_experts": 128,
    "num_experts_per_tok": 4,
    "max_position_embeddings": 131072,
    "sliding_window": 128,
    "layer_types": ["sliding_attention", "full_attention"] * 18,
}
GEMMA3_LIKE = {  # the shape of google/gemma-3-27b-it's text_config
    "architectures": ["Gemma3ForConditionalGeneration"],
    "text_config": {
        "model_type": "gemma3_text",
        "num_hidden_layers": 62,
        "hidden_size": 5376,
        "num_attention_heads": 32,
        "num_key_value_heads": 16,
        "head_dim": 128,
        "vocab_size": 262208,
        "max_position_embeddings": 131072,
        "sliding_window": 1024,
        "sliding_window_pattern": 6,
    },
}


def _full_twin(config: dict) -> dict:
    """The same shape with every layer full attention."""
    return {k: v for k, v in config.items() if k not in ("sliding_window", "layer_types")}


def _checkpoint(config: dict, weight_bytes: int) -> Checkpoint:
    arch = architecture_from_config(config)
    return Checkpoint(id="org/windowed", repo_id="org/windowed", family=arch.model_type,
                      format=WeightFormat.SAFETENSORS, weight_dtype="bf16",
                      weight_bytes=weight_bytes, weight_bytes_source="test",
                      architecture=arch)  # fmt: skip


def test_gpt_oss_like_alternating_layers_slide_every_other_one() -> None:
    arch = architecture_from_config(GPT_OSS_LIKE)
    assert arch.sliding_window == 128
    assert arch.sliding_layers == tuple(range(0, 36, 2))
    per_layer = 2 * 8 * 64 * 2  # K and V, 8 KV heads of 64, 2 bytes
    for tokens in (100, 128, 131072):
        expected = per_layer * (18 * tokens + 18 * min(tokens, 128))
        assert arch.kv_bytes_per_gpu(tokens, 2) == expected
    assert arch.kv_bytes_per_gpu(131072, 2) < arch.kv_bytes_per_token(2) * 131072


def test_gemma3_like_pattern_keeps_one_global_layer_in_six() -> None:
    arch = architecture_from_config(GEMMA3_LIKE)
    globals_ = [i for i in range(62) if (i + 1) % 6 == 0]  # 5, 11, …, 59
    assert len(globals_) == 10
    assert arch.sliding_layers == tuple(i for i in range(62) if i not in globals_)
    kinds = ["full_attention" if i in globals_ else "sliding_attention" for i in range(62)]
    spelled_out = {**GEMMA3_LIKE["text_config"], "layer_types": kinds}
    assert architecture_from_config(spelled_out).sliding_layers == arch.sliding_layers
    per_layer = 2 * 16 * 128 * 2
    assert arch.kv_bytes_per_gpu(32768, 2) == per_layer * (10 * 32768 + 52 * 1024)


def test_qwen2_style_window_counts_only_when_switched_on() -> None:
    qwen2 = {"model_type": "qwen2", "num_hidden_layers": 40, "hidden_size": 5120,
             "num_attention_heads": 40, "num_key_value_heads": 8, "vocab_size": 152064,
             "sliding_window": 131072, "max_window_layers": 28, "use_sliding_window": False}  # fmt: skip
    off = architecture_from_config(qwen2)
    assert not off.is_windowed and off.sliding_layers == () and off.sliding_window is None
    on = architecture_from_config({**qwen2, "use_sliding_window": True, "sliding_window": 4096})
    assert on.sliding_layers == tuple(range(28, 40))
    per_layer = 2 * 8 * 128 * 2
    assert on.kv_bytes_per_gpu(8192, 2) == per_layer * (28 * 8192 + 12 * 4096)


def test_a_bare_window_slides_every_layer_and_the_cache_stops_growing() -> None:
    mistral = {"model_type": "mistral", "num_hidden_layers": 32, "hidden_size": 4096,
               "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000,
               "max_position_embeddings": 32768, "sliding_window": 4096}  # fmt: skip
    arch = architecture_from_config(mistral)
    assert arch.sliding_layers == tuple(range(32))
    assert arch.kv_bytes_per_gpu(32768, 2) == arch.kv_bytes_per_gpu(4096, 2)
    ckpt = _checkpoint(mistral, 14_500_000_000)
    settings = VllmSettings(tensor_parallel_size=4)
    report = size(request_for(PROFILES["h100-sxm-4"], ckpt, settings))
    # the whole window fits many times over: the model's own limit is the longest context
    assert report.max_context_tokens == 32768


@pytest.mark.parametrize("null", [{"sliding_window": None}, {}])
def test_a_model_without_a_window_keeps_one_cost_per_token(null: dict) -> None:
    config = {**_full_twin(GPT_OSS_LIKE), **null}
    arch = architecture_from_config(config)
    assert not arch.is_windowed
    ckpt = _checkpoint(config, 65 * GB)
    report = size(request_for(PROFILES["h100-sxm-4"], ckpt, VllmSettings(tensor_parallel_size=4)))
    per_gpu = 2 * 8 * 64 // 4 * kv_dtype_bytes(None) * 36  # GQA heads split over 4 ranks
    assert report.kv_bytes_per_token_per_gpu == per_gpu
    assert report.max_context_tokens == int(report.kv_budget_bytes_per_gpu // per_gpu)


def test_vllm_max_context_of_a_windowed_model_grows_with_the_bounded_cache() -> None:
    weights = 65 * GB
    settings = VllmSettings(tensor_parallel_size=4, max_model_len=131072)
    windowed = size(request_for(PROFILES["h100-sxm-4"], _checkpoint(GPT_OSS_LIKE, weights),
                                settings))  # fmt: skip
    full = size(request_for(PROFILES["h100-sxm-4"], _checkpoint(_full_twin(GPT_OSS_LIKE), weights),
                            settings))  # fmt: skip
    budget = int(80 * GB * 0.92) - math.ceil(weights / 4) - RUNTIME_RESERVE_PER_GPU
    per_layer = 2 * 8 * 64 // 4 * kv_dtype_bytes(None)  # per GPU: 8 KV heads over 4 ranks
    assert windowed.kv_budget_bytes_per_gpu == full.kv_budget_bytes_per_gpu == budget
    assert full.max_context_tokens == int(budget // (per_layer * 36))
    assert windowed.max_context_tokens == int((budget - per_layer * 18 * 128) // (per_layer * 18))
    assert windowed.max_context_tokens > 1.99 * full.max_context_tokens
    cache = per_layer * (18 * 131072 + 18 * 128)
    assert windowed.kv_bytes_per_token_per_gpu == cache / 131072


def test_pipeline_stages_take_their_own_share_of_windowed_layers() -> None:
    arch = architecture_from_config(GPT_OSS_LIKE)
    per_layer = 2 * 8 * 64 * 2
    # PP 4: layers 0-8, 9-17, 18-26, 27-35; the first and third hold 5 sliding + 4 full, the
    # others 4 sliding + 5 full: the fullest GPU is one of those
    assert arch.kv_bytes_per_gpu(1000, 2, tp=1, pp=4) == per_layer * (5 * 1000 + 4 * 128)
    budget = 10**9
    assert arch.max_tokens_per_gpu(budget, 2, tp=1, pp=4) == min(
        int((budget - per_layer * 5 * 128) // (per_layer * 4)),  # 4 full + 5 sliding
        int((budget - per_layer * 4 * 128) // (per_layer * 5)),  # 5 full + 4 sliding
    )


def test_a_budget_inside_the_window_is_shared_by_every_layer() -> None:
    arch = architecture_from_config(GEMMA3_LIKE)
    per_layer = 2 * 16 * 128 * 2
    budget = per_layer * 62 * 500 + 7  # 500 tokens on every layer, short of the 1024 window
    assert arch.max_tokens_per_gpu(budget, 2) == 500


def test_llamacpp_max_context_of_a_windowed_model_grows_too() -> None:
    weights = 20 * GB
    settings = LlamaCppSettings(ctx_size=8192)
    gemma = size(request_for(PROFILES["rtx4090-4"], _checkpoint(GEMMA3_LIKE, weights), settings))
    full_config = {**GEMMA3_LIKE["text_config"]}
    del full_config["sliding_window"]
    full = size(request_for(PROFILES["rtx4090-4"], _checkpoint(full_config, weights), settings))
    per_layer = 2 * 16 * 128 * 2  # llama.cpp's f16 cache, the whole model on one budget
    assert gemma.kv_bytes_per_token == per_layer * (10 * 8192 + 52 * 1024) / 8192
    assert full.kv_bytes_per_token == per_layer * 62
    assert gemma.max_context_tokens is not None and full.max_context_tokens is not None
    budget = full.max_context_tokens * per_layer * 62  # within one token's cache of the budget
    assert gemma.max_context_tokens >= (budget - per_layer * 52 * 1024) // (per_layer * 10)
    assert gemma.max_context_tokens > 5 * full.max_context_tokens
    # exactly: the room left beside the converted GGUF (the bf16 checkpoint at Q4_K_M's bits) in
    # GPU memory less llama.cpp's margin and in RAM less the host's reserve, 10 full layers
    # growing once the 52 sliding ones hold their 1024 tokens
    rtx = PROFILES["rtx4090-4"]
    gguf = int(weights * QUANT_BITS_PER_WEIGHT["Q4_K_M"] / 16)
    room = (rtx.total_gpu_memory_bytes - rtx.total_gpus * LLAMACPP_MARGIN_PER_GPU
            + int(rtx.host_ram_gb * GB) - HOST_RESERVE - gguf)  # fmt: skip
    assert gemma.max_context_tokens == (room - per_layer * 52 * 1024) // (per_layer * 10)


def test_layer_types_of_another_length_is_one_line() -> None:
    config = {**GPT_OSS_LIKE, "layer_types": ["sliding_attention"] * 3}
    with pytest.raises(
        SpecError, match=r"layer_types must list one attention kind per layer \(36\)"
    ):
        architecture_from_config(config)
