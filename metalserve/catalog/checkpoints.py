"""The checkpoints of the published guides (``metalserve.catalog.guides``), each fact with its source.

The guides disagree: the GLM 5.2 MoE guide gives GLM-5.2 744B total parameters, the NVFP4 post gives
469B. They are kept as distinct checkpoints (the 469B one matches the pruned "REAP-469B" variant the
NVFP4 post mentions) rather than silently picking one; ``metalserve.sizing.audit_claims`` reports where
a claim does not add up.
"""

from __future__ import annotations

from metalserve.architecture import Architecture
from metalserve.catalog.guides import GLM52_GUIDE, MODAL_POST, NVFP4_POST
from metalserve.checkpoint import Checkpoint, Claim, WeightFormat
from metalserve.errors import SpecError
from metalserve.hardware import GB, GIB

GLM5_ARCHITECTURE = Architecture(
    model_type="glm_moe_dsa",
    architectures=("GlmMoeDsaForCausalLM",),
    num_hidden_layers=78,
    first_k_dense_replace=3,
    hidden_size=6144,
    intermediate_size=12288,
    moe_intermediate_size=2048,
    num_experts=256,
    num_shared_experts=1,
    experts_per_token=8,
    num_attention_heads=64,
    num_key_value_heads=64,
    # MLA: the cache holds kv_lora_rank latents plus the rope key per token and layer. The rope and
    # value head sizes follow the DeepSeek-V3 MLA layout GLM-5 runs through (vLLM deepseek_v32).
    kv_lora_rank=512,
    q_lora_rank=2048,
    qk_rope_head_dim=64,
    head_dim=192,
    index_head_dim=128,
    vocab_size=154880,
    num_nextn_predict_layers=1,
    max_position_embeddings=202752,
)
_GLM5_REPORT = "GLM-5 technical report (table quoted at https://glennklockwood.com/garden/GLM-5)"
_GLM5_SOURCE = (
    f"{_GLM5_REPORT}; "
    "GlmMoeDsaConfig defaults for zai-org/GLM-5 (huggingface/transformers "
    "src/transformers/models/glm_moe_dsa/configuration_glm_moe_dsa.py); rope/index "
    "head sizes from the DeepSeek-V3.2 layout vLLM uses for GLM-5"
)

_GUIDE_TABLE = f"{GLM52_GUIDE}, GPU sizing table"
_NVFP4_CARD = f"{NVFP4_POST}, NVIDIA model card figures"
_MODAL = f"{MODAL_POST}, 8x H200"

GLM52_BF16 = Checkpoint(
    id="zai-org/GLM-5.2",
    repo_id="zai-org/GLM-5.2",
    family="glm-5",
    format=WeightFormat.SAFETENSORS,
    weight_dtype="bf16",
    bits_per_weight=16,
    total_params=744 * 10**9,
    active_params=40 * 10**9,
    params_source=f"{_GUIDE_TABLE}; {_GLM5_REPORT}: 744B/40B",
    weight_bytes=744 * 10**9 * 2,
    weight_bytes_source="derived: 744B parameters × 2 bytes (BF16)",
    architecture=GLM5_ARCHITECTURE,
    claims=(
        Claim(
            source=_GUIDE_TABLE,
            statement="FP16: disk ~1.4 TB, VRAM (total) ~744 GB, minimum 8×H200",
            disk_gb=1400,
            vram_gb=744,
            minimum_profile="h200-sxm-8",
        ),
        Claim(
            source=_MODAL,
            statement="BF16 would require over 1.5 TB of VRAM: impossible on a single node",
            vram_gb=1500,
        ),
    ),
)

GLM52_FP8 = Checkpoint(
    id="zai-org/GLM-5.2-FP8",
    repo_id="zai-org/GLM-5.2-FP8",
    family="glm-5",
    format=WeightFormat.SAFETENSORS,
    weight_dtype="fp8",
    bits_per_weight=8,
    total_params=744 * 10**9,
    active_params=40 * 10**9,
    params_source=f"{_GUIDE_TABLE}; {_GLM5_REPORT}",
    weight_bytes=int(703.74 * GIB),
    weight_bytes_source=f"{_MODAL}: 'a massive 703.74 GiB FP8 checkpoint'",
    architecture=GLM5_ARCHITECTURE,
    needs_fp8=True,
    claims=(
        Claim(
            source=_GUIDE_TABLE,
            statement="FP8: disk ~744 GB, VRAM (total) ~372 GB, minimum 4×H100 (80GB each)",
            disk_gb=744,
            vram_gb=372,
            minimum_profile="h100-sxm-4",
        ),
        Claim(
            source=_MODAL,
            statement="fits comfortably within the 1.1 TB of aggregate VRAM of an 8x H200 node",
            minimum_profile="h200-sxm-8",
        ),
    ),
)

GLM52_NVFP4 = Checkpoint(
    id="nvidia/GLM-5.2-NVFP4",
    repo_id="nvidia/GLM-5.2-NVFP4",
    family="glm-5",
    format=WeightFormat.SAFETENSORS,
    weight_dtype="nvfp4-mixed",
    bits_per_weight=None,
    total_params=469 * 10**9,
    params_source=f"{_NVFP4_CARD}: '469B parameters' (the GLM 5.2 MoE guide says 744B: kept distinct)",
    weight_bytes=465 * GB,
    weight_bytes_source=f"{_NVFP4_CARD}: 'NVFP4-mixed checkpoint size of approximately 465 GB'",
    architecture=GLM5_ARCHITECTURE,
    needs_nvfp4=True,
    claims=(
        Claim(
            source=_NVFP4_CARD,
            statement="465 GB on 8x 96 GB = 768 GB leaves roughly 303 GB; VRAM utilization ~60.5%",
            vram_gb=465,
            minimum_profile="rtxpro6000-8",
        ),
        Claim(
            source=_GUIDE_TABLE, statement="GLM 5.2 has 744B total parameters", total_params_b=744
        ),
    ),
)

GLM52_Q4_K_M = Checkpoint(
    id="glm52-Q4_K_M.gguf",
    repo_id=None,
    family="glm-5",
    format=WeightFormat.GGUF,
    weight_dtype="q4_k_m",
    bits_per_weight=4.85,
    total_params=744 * 10**9,
    params_source=_GUIDE_TABLE,
    weight_bytes=220 * GB,
    weight_bytes_source=f"{_GUIDE_TABLE}: 'Download Q4_K_M GGUF (~220 GB)'",
    architecture=GLM5_ARCHITECTURE,
    claims=(
        Claim(
            source=_GUIDE_TABLE,
            statement="Q4_K_M GGUF: ~220 GB, 4×RTX 4090 (24GB each) + 128GB RAM, model loads",
            disk_gb=220,
            vram_gb=220,
            minimum_profile="rtx4090-4",
        ),
    ),
)
"""Q4_K_M averages about 4.85 bits per weight (llama.cpp tools/quantize README, 7B-8B models)."""

_GLM45_SOURCE = (
    "NVIDIA-NeMo/Megatron-Bridge docs/models/llm/glm45.md; Glm4MoeConfig (huggingface/transformers "
    "src/transformers/models/glm4_moe/configuration_glm4_moe.py)"
)


def _glm45_architecture(
    layers: int, dense: int, hidden: int, inter: int, moe_inter: int, experts: int
) -> Architecture:
    return Architecture(
        model_type="glm4_moe",
        architectures=("Glm4MoeForCausalLM",),
        num_hidden_layers=layers,
        first_k_dense_replace=dense,
        hidden_size=hidden,
        intermediate_size=inter,
        moe_intermediate_size=moe_inter,
        num_experts=experts,
        num_shared_experts=1,
        experts_per_token=8,
        num_attention_heads=96,
        num_key_value_heads=8,
        head_dim=128,
        vocab_size=151552,
        num_nextn_predict_layers=1,
    )


GLM47_FP8 = Checkpoint(
    id="zai-org/GLM-4.7-FP8",
    repo_id="zai-org/GLM-4.7-FP8",
    family="glm-4.5",
    format=WeightFormat.SAFETENSORS,
    weight_dtype="fp8",
    bits_per_weight=8,
    total_params=355 * 10**9,
    active_params=32 * 10**9,
    params_source=f"{_GLM45_SOURCE}: 355B / 32B",
    weight_bytes=355 * GB,
    weight_bytes_source="derived: 355B parameters × 1 byte (FP8); not measured",
    architecture=_glm45_architecture(92, 3, 5120, 12288, 1536, 160),
    needs_fp8=True,
)

GLM45_AIR_FP8 = Checkpoint(
    id="zai-org/GLM-4.5-Air-FP8",
    repo_id="zai-org/GLM-4.5-Air-FP8",
    family="glm-4.5",
    format=WeightFormat.SAFETENSORS,
    weight_dtype="fp8",
    bits_per_weight=8,
    total_params=106 * 10**9,
    active_params=12 * 10**9,
    params_source=f"{_GLM45_SOURCE}: 106B / 12B",
    weight_bytes=106 * GB,
    weight_bytes_source="derived: 106B parameters × 1 byte (FP8); not measured",
    architecture=_glm45_architecture(46, 1, 4096, 10944, 1408, 128),
    needs_fp8=True,
)

CHECKPOINTS: dict[str, Checkpoint] = {
    c.id: c for c in (GLM52_BF16, GLM52_FP8, GLM52_NVFP4, GLM52_Q4_K_M, GLM47_FP8, GLM45_AIR_FP8)
}


def checkpoint(checkpoint_id: str) -> Checkpoint:
    try:
        return CHECKPOINTS[checkpoint_id]
    except KeyError:
        known = ", ".join(sorted(CHECKPOINTS))
        raise SpecError(
            f"unknown checkpoint {checkpoint_id!r} (catalogue: {known}); for another model give "
            "metalserve.model.local_dir or metalserve.model.repo_id"
        ) from None
