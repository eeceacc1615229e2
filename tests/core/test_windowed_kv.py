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

from metalserve.architecture import Architecture, architecture_from_config
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


# --- the config fields, at their edges -------------------------------------------------------

MISTRAL_LIKE = {"model_type": "mistral", "num_hidden_layers": 32, "hidden_size": 4096,
                "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000,
                "max_position_embeddings": 32768}  # fmt: skip
MISTRAL_LAYER = 2 * 8 * 128 * 2  # K and V, 8 KV heads of 4096 / 32, BF16


def test_a_window_of_no_tokens_is_no_window() -> None:
    # llama.cpp reads the same field as n_swa, "the size of the sliding window (0 - no SWA)"
    # (src/llama-hparams.h): every layer keeps every token
    arch = architecture_from_config({**MISTRAL_LIKE, "sliding_window": 0})
    assert not arch.is_windowed and arch.sliding_window is None and arch.sliding_layers == ()
    assert arch.kv_bytes_per_gpu(8192, 2) == MISTRAL_LAYER * 32 * 8192


def test_a_one_token_window_keeps_one_token_per_layer() -> None:
    arch = architecture_from_config({**MISTRAL_LIKE, "sliding_window": 1})
    assert arch.sliding_window == 1 and arch.sliding_layers == tuple(range(32))
    assert arch.kv_bytes_per_gpu(8192, 2) == MISTRAL_LAYER * 32 * 1


def test_a_one_layer_model_slides_its_one_layer() -> None:
    arch = architecture_from_config({**MISTRAL_LIKE, "num_hidden_layers": 1, "sliding_window": 64})
    assert arch.sliding_layers == (0,)
    assert arch.kv_bytes_per_gpu(8192, 2) == MISTRAL_LAYER * 64


def test_no_layers_is_refused_for_the_layer_count_not_for_the_layer_types() -> None:
    config = {**MISTRAL_LIKE, "num_hidden_layers": 0, "sliding_window": 64,
              "layer_types": ["sliding_attention", "full_attention"]}  # fmt: skip
    with pytest.raises(SpecError) as caught:
        architecture_from_config(config)
    assert str(caught.value) == "config.json: num_hidden_layers: Input should be greater than 0"


QWEN2_ON = {"model_type": "qwen2", "num_hidden_layers": 40, "hidden_size": 5120,
            "num_attention_heads": 40, "num_key_value_heads": 8, "vocab_size": 152064,
            "sliding_window": 4096, "use_sliding_window": True}  # fmt: skip


def test_qwen2_max_window_layers_counts_the_leading_full_layers() -> None:
    # configuration_qwen2.py: "sliding_attention" if i >= max_window_layers
    every = architecture_from_config({**QWEN2_ON, "max_window_layers": 0})
    assert every.sliding_layers == tuple(range(40)) and every.sliding_window == 4096
    none = architecture_from_config({**QWEN2_ON, "max_window_layers": 40})
    assert none.sliding_layers == () and none.sliding_window is None and not none.is_windowed


def test_qwen2_window_without_max_window_layers_is_one_line() -> None:
    # transformers fills in the model class's default (Qwen2Config: 28), which config.json lacks
    with pytest.raises(SpecError) as caught:
        architecture_from_config(QWEN2_ON)
    assert str(caught.value) == (
        "config.json: use_sliding_window is true but max_window_layers is missing — fix: add it "
        "(the number of leading full-attention layers, as the model's config has it)"
    )


def test_a_pattern_of_one_makes_every_layer_global() -> None:
    # configuration_gemma3.py: layer i slides when bool((i + 1) % pattern); (i + 1) % 1 is 0
    config = {**GEMMA3_LIKE["text_config"], "sliding_window_pattern": 1}
    arch = architecture_from_config(config)
    assert arch.sliding_layers == () and arch.sliding_window is None and not arch.is_windowed
    assert arch.kv_bytes_per_gpu(32768, 2) == 2 * 16 * 128 * 2 * 62 * 32768


def test_a_pattern_of_zero_names_no_global_layer_and_the_bare_window_holds() -> None:
    config = {**GEMMA3_LIKE["text_config"], "sliding_window_pattern": 0}
    arch = architecture_from_config(config)  # not a division by zero
    assert arch.sliding_layers == tuple(range(62)) and arch.sliding_window == 1024


# --- pipeline stages and budgets, at their edges ------------------------------------------------

SMALL = {"model_type": "t", "num_hidden_layers": 4, "hidden_size": 64, "num_attention_heads": 4,
         "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 100, "sliding_window": 128}  # fmt: skip
SMALL_LAYER = 2 * 2 * 16 * 2  # K and V, 2 KV heads of 16, BF16
FULL, SLIDING = "full_attention", "sliding_attention"


def test_pipeline_stages_are_contiguous_runs_of_layers() -> None:
    # PP 2 over [sliding, full, full, sliding]: layers 0-1 and 2-3, one full layer each (the two
    # full layers together, 1-2, are no stage)
    arch = architecture_from_config({**SMALL, "layer_types": [SLIDING, FULL, FULL, SLIDING]})
    assert arch.kv_bytes_per_gpu(1000, 2, pp=2) == SMALL_LAYER * (1 * 1000 + 1 * 128)


def test_the_longest_context_is_the_one_the_tightest_stage_holds() -> None:
    # PP 2 over [full, full, full, sliding]: the first stage's two full layers fill first
    arch = architecture_from_config({**SMALL, "layer_types": [FULL, FULL, FULL, SLIDING]})
    budget = 10**6
    first = budget // (SMALL_LAYER * 2)
    second = (budget - SMALL_LAYER * 128) // SMALL_LAYER  # 1 full + 1 sliding, past the window
    assert first < second
    assert arch.max_tokens_per_gpu(budget, 2, pp=2) == first


def test_a_budget_that_exactly_holds_every_window_holds_any_context() -> None:
    arch = architecture_from_config(SMALL)  # a bare window: every layer slides
    window_cache = SMALL_LAYER * 4 * 128
    assert arch.kv_bytes_per_gpu(10**6, 2) == window_cache
    assert arch.max_tokens_per_gpu(window_cache, 2) is None  # the cache stops growing in budget
    assert arch.max_tokens_per_gpu(window_cache - 1, 2) == 127


# --- what sizing reports for a windowed model --------------------------------------------------


def test_vllm_windowed_figures_with_pipeline_stages_and_an_fp8_cache() -> None:
    weights, context = 65 * GB, 131072
    settings = VllmSettings(tensor_parallel_size=2, pipeline_parallel_size=2,
                            kv_cache_dtype="fp8", max_model_len=context)  # fmt: skip
    report = size(request_for(PROFILES["h100-sxm-4"], _checkpoint(GPT_OSS_LIKE, weights), settings))
    model_layer = 2 * 8 * 64 * 1  # K and V, 8 KV heads of 64, one FP8 byte each
    gpu_layer = model_layer // 2  # the 8 KV heads split over 2 tensor ranks
    # PP 2: layers 0-17 and 18-35 on their own GPUs, 9 sliding + 9 full each
    budget = int(80 * GB * 0.92) - math.ceil(weights / 4) - RUNTIME_RESERVE_PER_GPU
    assert report.kv_budget_bytes_per_gpu == budget
    assert report.kv_bytes_per_token == model_layer * (18 * context + 18 * 128) / context
    assert report.kv_bytes_per_token_per_gpu == gpu_layer * (9 * context + 9 * 128) / context
    assert report.max_context_tokens == (budget - gpu_layer * 9 * 128) // (gpu_layer * 9)


def test_llamacpp_windowed_context_is_the_whole_model_on_gpu_and_ram_less_the_weights() -> None:
    weights = 20 * GB  # a GGUF, served as it is
    gguf = _checkpoint(GEMMA3_LIKE, weights).model_copy(update={"format": WeightFormat.GGUF})
    report = size(request_for(PROFILES["rtx4090-4"], gguf, LlamaCppSettings(ctx_size=8192)))
    # 4 × 24 GB, 1 GiB left free on each by llama.cpp's --fit; 128 GB of RAM, 8 GB for the OS
    budget = 4 * 24 * GB - 4 * 2**30 + 128 * GB - 8 * GB - weights
    per_layer = 2 * 16 * 128 * 2  # one process holds every KV head of every layer, f16
    assert per_layer * 62 * 1024 < budget  # past the window: the 10 global layers take the rest
    assert report.max_context_tokens == (budget - per_layer * 52 * 1024) // (per_layer * 10)


def test_a_windowed_model_that_does_not_fit_has_room_for_no_context() -> None:
    # one layer of a one-element MLA latent in q4_0 (0.5625 B per token), a one-token window: its
    # whole cache is under a byte, yet a host with no usable memory holds none of it
    tiny = Architecture(model_type="t", num_hidden_layers=1, hidden_size=1, num_attention_heads=1,
                        num_key_value_heads=1, head_dim=1, vocab_size=1, kv_lora_rank=1,
                        sliding_window=1, sliding_layers=(0,), max_position_embeddings=4096)  # fmt: skip
    ckpt = _checkpoint(MISTRAL_LIKE, GB).model_copy(update={"architecture": tiny})
    report = size(request_for(PROFILES["sandbox-cpu"], ckpt, LlamaCppSettings(cache_type_k="q4_0")))
    assert not report.fits
    assert report.max_context_tokens == 0
