"""KV-cache bytes per token for each attention kind, computed here from the published formulas.

Sources:
- K and V per KV head per layer (2 · n_kv_heads · head_dim elements per token and layer): the
  transformer KV cache as vLLM allocates it (vllm/v1/kv_cache_interface.py FullAttentionSpec:
  ``2 * block_size * num_kv_heads * head_size * dtype_size``).
- MLA caches one compressed latent of ``kv_lora_rank`` plus the decoupled rope key of
  ``qk_rope_head_dim`` per token and layer, shared by all heads (DeepSeek-V2 paper §2.1.2, arXiv
  2405.04434; vLLM MLAAttentionSpec with num_kv_heads=1, head_size = kv_lora_rank + rope dim). DSA
  (DeepSeek-V3.2) adds an indexer key of ``index_head_dim`` per token and layer.
- Config fields are the Hugging Face ``config.json`` names (transformers LlamaConfig,
  DeepseekV3Config): a missing ``num_key_value_heads`` means MHA, a missing ``head_dim`` means
  hidden_size / num_attention_heads; ``num_nextn_predict_layers`` (MTP) are extra layers outside
  ``num_hidden_layers``.
"""

from __future__ import annotations

from typing import Any

import pytest

from metalserve.architecture import (
    AttentionKind,
    architecture_from_config,
    weight_bytes_from_index,
)
from metalserve.errors import SpecError

# meta-llama/Llama-2-7b-hf config.json (MHA: 32 heads, no separate KV heads field).
LLAMA2_7B: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "vocab_size": 32000,
    "max_position_embeddings": 4096,
}
# meta-llama/Meta-Llama-3-70B config.json (GQA: 64 query heads over 8 KV heads).
LLAMA3_70B: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 8192,
    "intermediate_size": 28672,
    "num_attention_heads": 64,
    "num_key_value_heads": 8,
    "num_hidden_layers": 80,
    "vocab_size": 128256,
    "max_position_embeddings": 8192,
}
# deepseek-ai/DeepSeek-V3 config.json, the fields sizing reads (MLA; 1 MTP layer outside the 61).
DEEPSEEK_V3: dict[str, Any] = {
    "architectures": ["DeepseekV3ForCausalLM"],
    "model_type": "deepseek_v3",
    "hidden_size": 7168,
    "intermediate_size": 18432,
    "moe_intermediate_size": 2048,
    "num_attention_heads": 128,
    "num_key_value_heads": 128,
    "num_hidden_layers": 61,
    "first_k_dense_replace": 3,
    "n_routed_experts": 256,
    "n_shared_experts": 1,
    "num_experts_per_tok": 8,
    "kv_lora_rank": 512,
    "q_lora_rank": 1536,
    "qk_rope_head_dim": 64,
    "qk_nope_head_dim": 128,
    "v_head_dim": 128,
    "num_nextn_predict_layers": 1,
    "vocab_size": 129280,
    "max_position_embeddings": 163840,
}


def test_mha_counts_k_and_v_for_every_head_of_every_layer() -> None:
    arch = architecture_from_config(LLAMA2_7B)
    head_dim = 4096 // 32  # hidden_size / num_attention_heads
    per_token = 2 * 32 * head_dim * 32  # K and V · heads · head_dim · layers
    assert arch.attention is AttentionKind.GQA and arch.num_key_value_heads == 32
    assert arch.head_dim == 128
    assert arch.kv_elements_per_token_per_layer() == 2 * 32 * 128
    # FP16: the well-known 0.5 MiB per token of Llama-2-7B.
    assert arch.kv_bytes_per_token(2) == per_token * 2 == 512 * 1024
    assert arch.kv_bytes_per_token_per_gpu(2, tp=1, pp=1) == per_token * 2
    assert arch.kv_bytes_per_token_per_gpu(2, tp=2, pp=1) == per_token * 2 / 2


def test_gqa_counts_k_and_v_for_the_kv_heads_only() -> None:
    arch = architecture_from_config(LLAMA3_70B)
    per_token_fp16 = 2 * 8 * (8192 // 64) * 80 * 2
    assert per_token_fp16 == 327_680  # 320 KiB per token
    assert arch.kv_bytes_per_token(2) == per_token_fp16
    assert arch.kv_bytes_per_token(1) == per_token_fp16 / 2  # FP8 cache: one byte per element


@pytest.mark.parametrize(
    ("tp", "pp", "ranks_sharing", "layers_on_gpu"),
    [
        (1, 1, 1, 80),
        (2, 1, 2, 80),
        (4, 1, 4, 80),
        (8, 1, 8, 80),
        # 16 ranks, 8 KV heads: vLLM replicates each KV head so every rank keeps one.
        (16, 1, 8, 80),
        (32, 1, 8, 80),
        (8, 2, 8, 40),
        # pipeline stages take ceil(80 / 3) = 27 layers at most
        (1, 3, 1, 27),
        (4, 3, 4, 27),
    ],
)
def test_gqa_heads_split_over_tensor_ranks_down_to_one_per_rank_and_layers_over_stages(
    tp: int, pp: int, ranks_sharing: int, layers_on_gpu: int
) -> None:
    arch = architecture_from_config(LLAMA3_70B)
    kv_heads_per_rank = 8 // ranks_sharing
    expected = 2 * kv_heads_per_rank * 128 * layers_on_gpu * 2
    assert arch.kv_bytes_per_token_per_gpu(2, tp=tp, pp=pp) == expected


def test_mla_caches_the_latent_and_the_rope_key_once_per_layer() -> None:
    arch = architecture_from_config(DEEPSEEK_V3)
    assert arch.attention is AttentionKind.MLA
    per_layer = 512 + 64  # kv_lora_rank + qk_rope_head_dim
    assert arch.kv_elements_per_token_per_layer() == per_layer
    # 61 layers; the MTP layer (num_nextn_predict_layers) is not among them.
    assert arch.kv_bytes_per_token(2) == per_layer * 61 * 2 == 70_272
    assert arch.kv_bytes_per_token(1) == 35_136


@pytest.mark.parametrize(
    ("tp", "pp", "layers_on_gpu"), [(1, 1, 61), (8, 1, 61), (16, 1, 61), (8, 2, 31), (4, 4, 16)]
)
def test_mla_latent_is_replicated_over_tensor_ranks_and_split_over_stages(
    tp: int, pp: int, layers_on_gpu: int
) -> None:
    arch = architecture_from_config(DEEPSEEK_V3)
    assert arch.kv_bytes_per_token_per_gpu(1, tp=tp, pp=pp) == (512 + 64) * layers_on_gpu


def test_dsa_adds_the_indexer_key_to_the_mla_cache() -> None:
    # deepseek-ai/DeepSeek-V3.2-Exp config.json: index_head_dim 128 on top of the V3 layout.
    arch = architecture_from_config({**DEEPSEEK_V3, "index_head_dim": 128})
    assert arch.kv_elements_per_token_per_layer() == 512 + 64 + 128
    assert arch.kv_bytes_per_token(1) == (512 + 64 + 128) * 61


def test_mtp_layers_do_not_add_to_the_kv_cache() -> None:
    with_mtp = architecture_from_config({**DEEPSEEK_V3, "num_nextn_predict_layers": 3})
    without = architecture_from_config({**DEEPSEEK_V3, "num_nextn_predict_layers": 0})
    assert with_mtp.num_nextn_predict_layers == 3
    assert with_mtp.kv_bytes_per_token(1) == without.kv_bytes_per_token(1) == 576 * 61


def test_mla_is_decided_by_kv_lora_rank_not_by_q_lora_rank() -> None:
    # deepseek-ai/DeepSeek-V2-Lite: q_lora_rank null (queries not compressed), KV latent 512.
    lite = architecture_from_config({**DEEPSEEK_V3, "q_lora_rank": None, "num_hidden_layers": 27})
    assert lite.attention is AttentionKind.MLA
    assert lite.kv_bytes_per_token(2) == (512 + 64) * 27 * 2
    # A compressed query with no KV latent is ordinary attention over the KV heads.
    no_latent = {k: v for k, v in DEEPSEEK_V3.items() if k != "kv_lora_rank"}
    gqa = architecture_from_config({**no_latent, "num_key_value_heads": 8, "head_dim": 128})
    assert gqa.attention is AttentionKind.GQA
    assert gqa.kv_bytes_per_token(2) == 2 * 8 * 128 * 61 * 2


def test_config_fields_are_read_under_their_hugging_face_names() -> None:
    arch = architecture_from_config(DEEPSEEK_V3)
    assert arch.model_type == "deepseek_v3"
    assert arch.architectures == ("DeepseekV3ForCausalLM",)
    assert (arch.num_hidden_layers, arch.hidden_size, arch.num_attention_heads) == (61, 7168, 128)
    assert (arch.num_key_value_heads, arch.head_dim, arch.vocab_size) == (128, 7168 // 128, 129280)
    assert (arch.intermediate_size, arch.moe_intermediate_size) == (18432, 2048)
    assert (arch.num_experts, arch.num_shared_experts, arch.experts_per_token) == (256, 1, 8)
    assert (arch.first_k_dense_replace, arch.kv_lora_rank, arch.q_lora_rank) == (3, 512, 1536)
    assert (arch.qk_rope_head_dim, arch.index_head_dim) == (64, None)
    assert (arch.num_nextn_predict_layers, arch.max_position_embeddings) == (1, 163840)
    assert arch.is_moe and not arch.tie_word_embeddings
    dense = architecture_from_config({**LLAMA2_7B, "tie_word_embeddings": True})
    assert not dense.is_moe and dense.num_experts == 0 and dense.tie_word_embeddings
    assert (dense.num_shared_experts, dense.experts_per_token, dense.first_k_dense_replace) == (
        0,
        0,
        0,
    )
    assert (dense.num_nextn_predict_layers, dense.kv_lora_rank) == (0, None)


@pytest.mark.parametrize("key", ["n_routed_experts", "num_local_experts", "num_experts"])
def test_routed_experts_are_read_under_each_family_s_name(key: str) -> None:
    # DeepSeek: n_routed_experts; Mixtral: num_local_experts; Qwen3-MoE: num_experts.
    arch = architecture_from_config({**LLAMA2_7B, key: 64})
    assert arch.num_experts == 64 and arch.is_moe


def test_an_explicit_head_dim_wins_over_hidden_over_heads() -> None:
    # Qwen3-8B config.json: hidden 4096, 32 heads, 8 KV heads, head_dim 128 stated.
    # Gemma-style head_dim that differs from hidden/heads: 3072 / 16 = 192, but head_dim 256.
    arch = architecture_from_config(
        {**LLAMA2_7B, "hidden_size": 3072, "num_attention_heads": 16, "head_dim": 256}
    )
    assert arch.head_dim == 256
    assert arch.kv_bytes_per_token(2) == 2 * 16 * 256 * 32 * 2


def test_a_multimodal_config_is_read_from_its_text_config() -> None:
    config = {
        "architectures": ["Llama4ForConditionalGeneration"],
        "model_type": "llama4",
        "vision_config": {"hidden_size": 1408},
        "text_config": {**LLAMA3_70B, "architectures": ["Ignored"], "model_type": "llama4_text"},
    }
    arch = architecture_from_config(config)
    assert arch.architectures == ("Llama4ForConditionalGeneration",)
    assert arch.model_type == "llama4_text"
    assert arch.kv_bytes_per_token(2) == 327_680


def test_model_type_defaults_to_unknown() -> None:
    config = {k: v for k, v in LLAMA2_7B.items() if k not in ("model_type", "architectures")}
    arch = architecture_from_config(config)
    assert arch.model_type == "unknown" and arch.architectures == ()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ([], "config.json: expected a JSON object"),
        (
            {k: v for k, v in LLAMA2_7B.items() if k != "hidden_size"},
            "config.json: hidden_size is missing — is this a decoder LLM config?",
        ),
        (
            {k: v for k, v in LLAMA2_7B.items() if k != "num_hidden_layers"},
            "config.json: num_hidden_layers is missing — is this a decoder LLM config?",
        ),
        (
            {k: v for k, v in LLAMA2_7B.items() if k != "vocab_size"},
            "config.json: vocab_size is missing — is this a decoder LLM config?",
        ),
        (
            {**LLAMA2_7B, "num_attention_heads": 0},
            "config.json: hidden_size and num_attention_heads must be positive",
        ),
        (
            {**LLAMA2_7B, "hidden_size": -4096},
            "config.json: hidden_size and num_attention_heads must be positive",
        ),
        (
            {**LLAMA2_7B, "num_key_value_heads": "8"},
            "config.json: num_key_value_heads must be an integer (got '8')",
        ),
        (
            {**LLAMA2_7B, "num_hidden_layers": True},
            "config.json: num_hidden_layers must be an integer (got True)",
        ),
        (
            {**LLAMA2_7B, "architectures": "LlamaForCausalLM"},
            "config.json: architectures must be a list of class names",
        ),
        (
            {**LLAMA2_7B, "architectures": ["LlamaForCausalLM", 7]},
            "config.json: architectures must be a list of class names",
        ),
        ({**LLAMA2_7B, "model_type": 7}, "config.json: model_type must be a string"),
        (
            {**LLAMA2_7B, "num_hidden_layers": 0},
            "config.json: num_hidden_layers: Input should be greater than 0",
        ),
    ],
)
def test_an_unusable_config_is_one_line_naming_the_field(config: Any, message: str) -> None:
    with pytest.raises(SpecError) as exc:
        architecture_from_config(config)
    assert str(exc.value) == message


def test_weight_bytes_come_from_the_index_total_size() -> None:
    # model.safetensors.index.json as huggingface_hub writes it.
    assert weight_bytes_from_index({"metadata": {"total_size": 13_476_839_424}}) == 13_476_839_424
    assert weight_bytes_from_index({"metadata": {"total_size": 1.5e9}}) == 1_500_000_000


@pytest.mark.parametrize(
    "index",
    [
        {},
        {"metadata": None},
        {"metadata": {}},
        {"metadata": {"total_size": 0}},
        {"metadata": {"total_size": -1}},
        {"metadata": {"total_size": True}},
        {"metadata": {"total_size": "1000"}},
    ],
)
def test_an_index_without_a_positive_total_size_is_one_line(index: Any) -> None:
    with pytest.raises(SpecError) as exc:
        weight_bytes_from_index(index)
    assert str(exc.value) == (
        "model.safetensors.index.json: metadata.total_size is missing or not a positive number"
    )


def test_an_index_that_is_not_an_object_is_one_line() -> None:
    with pytest.raises(SpecError) as exc:
        weight_bytes_from_index([1, 2])
    assert str(exc.value) == "model.safetensors.index.json: expected a JSON object"


def test_the_smallest_valid_shapes_are_read() -> None:
    # one head of one dimension: tiny test models (e.g. hf-internal-testing tiny configs)
    tiny = architecture_from_config({**LLAMA2_7B, "hidden_size": 1, "num_attention_heads": 1})
    assert (tiny.hidden_size, tiny.num_attention_heads, tiny.head_dim) == (1, 1, 1)
    assert weight_bytes_from_index({"metadata": {"total_size": 1}}) == 1


def test_head_dim_is_the_integer_quotient_and_at_least_one() -> None:
    odd = architecture_from_config({**LLAMA2_7B, "hidden_size": 100, "num_attention_heads": 3})
    assert odd.head_dim == 100 // 3 == 33
    narrow = architecture_from_config({**LLAMA2_7B, "hidden_size": 2, "num_attention_heads": 4})
    assert narrow.head_dim == 1


def test_a_zero_hidden_size_is_refused_as_not_positive() -> None:
    with pytest.raises(SpecError) as exc:
        architecture_from_config({**LLAMA2_7B, "hidden_size": 0})
    assert str(exc.value) == "config.json: hidden_size and num_attention_heads must be positive"
