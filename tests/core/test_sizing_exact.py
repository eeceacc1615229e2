"""Every figure sizing prints, computed here from its formula and public source.

Sources for the constants written out below (the tests do not read them back from metalserve):
- GPU memory: NVIDIA datasheets — H200 141 GB, H100 SXM 80 GB, RTX 4090 24 GB (decimal GB).
- ``--gpu-memory-utilization``: vLLM CacheConfig.gpu_memory_utilization, "the fraction of GPU
  memory to be used for the model executor" (vllm/config/cache.py); 0.92 is vLLM 0.33's default.
  SGLang ``--mem-fraction-static`` likewise; 0.88 is metalserve's assumption when unset.
- Runtime reserve: 2 GB per GPU outside the KV cache (activations, CUDA graphs, NCCL buffers;
  vLLM profiles it at start, 1-3 GB is typical) — kept out of the KV budget.
- llama.cpp ``--fit`` leaves 1 GiB free per GPU (common/arg.cpp ``--fit-target``); 8 GB of RAM is
  kept for the OS when weights are offloaded.
- GLM-5.2-FP8: 703.74 GiB of weights (Modal's GLM-5.2-FP8 post, explore.n1n.ai); GLM-5
  config.json: 78 layers, kv_lora_rank 512, qk_rope_head_dim 64, index_head_dim 128 (MLA + DSA
  indexer).
- GGUF size from a safetensors source: bytes × (quant bits / source bits); Q4_K_M 4.85 bits per
  weight, Q8_0 8.5 (llama.cpp tools/quantize README).
"""

from __future__ import annotations

import pytest

from metalserve.architecture import Architecture
from metalserve.catalog.checkpoints import (
    GLM45_AIR_FP8,
    GLM47_FP8,
    GLM52_BF16,
    GLM52_FP8,
    GLM52_Q4_K_M,
)
from metalserve.catalog.profiles import PROFILES
from metalserve.checkpoint import Checkpoint, Claim, WeightFormat
from metalserve.engines import LlamaCppSettings, SglangSettings, VllmSettings
from metalserve.sizing import (
    SizingRequest,
    audit_claims,
    gguf_bytes_from,
    request_for,
    size,
    smallest_setup,
)

GB = 10**9
GIB = 2**30
H200_GB, H100_GB, RTX4090_GB = 141, 80, 24
RUNTIME_RESERVE = 2 * GB
GLM52_FP8_WEIGHTS = int(703.74 * GIB)
GLM5_LAYERS = 78
GLM5_MLA_ELEMENTS = 512 + 64 + 128  # kv_lora_rank + qk_rope_head_dim + index_head_dim


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def test_the_catalogue_facts_these_figures_rest_on() -> None:
    assert PROFILES["h200-sxm-8"].gpu_memory_bytes == H200_GB * GB
    assert PROFILES["h100-sxm-4"].gpu_memory_bytes == H100_GB * GB
    assert PROFILES["rtx4090-4"].gpu_memory_bytes == RTX4090_GB * GB
    assert GLM52_FP8.weight_bytes == GLM52_FP8_WEIGHTS
    arch = GLM52_FP8.architecture
    assert arch is not None and arch.num_hidden_layers == GLM5_LAYERS
    assert arch.kv_elements_per_token_per_layer() == GLM5_MLA_ELEMENTS


@pytest.mark.parametrize(
    ("utilisation", "kv_dtype", "kv_bytes"),
    [(None, "fp8", 1), (0.95, "fp8", 1), (0.85, "fp8", 1), (None, None, 2), (0.95, "auto", 2)],
)
def test_glm52_fp8_on_8x_h200_every_figure(
    utilisation: float | None, kv_dtype: str | None, kv_bytes: int
) -> None:
    settings = VllmSettings(
        tensor_parallel_size=8, gpu_memory_utilization=utilisation, kv_cache_dtype=kv_dtype
    )
    report = size(request_for(PROFILES["h200-sxm-8"], GLM52_FP8, settings))
    fraction = utilisation or 0.92
    usable = int(H200_GB * GB * fraction)
    weights_per_gpu = ceil_div(GLM52_FP8_WEIGHTS, 8)
    kv_budget = usable - weights_per_gpu - RUNTIME_RESERVE
    kv_token = GLM5_MLA_ELEMENTS * GLM5_LAYERS * kv_bytes  # MLA: replicated on every TP rank
    assert report.gpus_used == 8
    assert report.gpu_memory_bytes == H200_GB * GB
    assert report.total_gpu_bytes == 8 * H200_GB * GB
    assert report.weight_bytes == GLM52_FP8_WEIGHTS
    assert report.weight_bytes_per_gpu == weights_per_gpu
    assert report.headroom_bytes == 8 * H200_GB * GB - GLM52_FP8_WEIGHTS
    assert report.weights_fraction == GLM52_FP8_WEIGHTS / (8 * H200_GB * GB)
    assert report.usable_bytes_per_gpu == usable
    assert report.kv_budget_bytes_per_gpu == kv_budget
    assert report.kv_bytes_per_token == kv_token
    assert report.kv_bytes_per_token_per_gpu == kv_token
    assert report.max_context_tokens == kv_budget // kv_token
    assert report.context_tokens == 4096  # max-model-len left to the engine
    assert report.cpu_offload_bytes == 0
    assert report.fits and report.reasons == ()


def test_the_issue_s_606k_tokens_is_the_fp8_kv_room_at_the_default_utilisation() -> None:
    settings = VllmSettings(tensor_parallel_size=8, kv_cache_dtype="fp8")
    report = size(request_for(PROFILES["h200-sxm-8"], GLM52_FP8, settings))
    expected = (int(141 * GB * 0.92) - ceil_div(GLM52_FP8_WEIGHTS, 8) - 2 * GB) // (704 * 78)
    assert report.max_context_tokens == expected
    assert round(expected / 1000) == 606
    assert report.summary() == (
        "zai-org/GLM-5.2-FP8 on h200-sxm-8: fits; weights 755.6 GB of 1,128.0 GB GPU memory "
        f"(67.0 % used, 372.4 GB left); KV room for {expected:,} tokens"
    )


def test_sglang_default_static_fraction_sizes_the_kv_budget() -> None:
    report = size(
        request_for(
            PROFILES["h200-sxm-8"], GLM52_FP8, SglangSettings(tp_size=8, context_length=8192)
        )
    )
    usable = int(H200_GB * GB * 0.88)
    assert report.usable_bytes_per_gpu == usable
    assert report.kv_budget_bytes_per_gpu == usable - ceil_div(GLM52_FP8_WEIGHTS, 8) - 2 * GB
    assert report.context_tokens == 8192
    assert report.kv_bytes_per_token_per_gpu == GLM5_MLA_ELEMENTS * GLM5_LAYERS * 2


def test_pipeline_stages_split_weights_and_layers_over_two_nodes() -> None:
    settings = VllmSettings(
        tensor_parallel_size=8, pipeline_parallel_size=2, kv_cache_dtype="fp8", max_model_len=65536
    )
    report = size(request_for(PROFILES["h200-sxm-8x2-ib"], GLM52_BF16, settings))
    gpus = 16
    weights_per_gpu = ceil_div(GLM52_BF16.weight_bytes, gpus)
    kv_budget = int(H200_GB * GB * 0.92) - weights_per_gpu - 2 * GB
    kv_token_gpu = GLM5_MLA_ELEMENTS * ceil_div(GLM5_LAYERS, 2)  # 39 layers per stage
    assert report.gpus_used == gpus
    assert report.total_gpu_bytes == gpus * H200_GB * GB
    assert report.weight_bytes_per_gpu == weights_per_gpu
    assert report.kv_bytes_per_token == GLM5_MLA_ELEMENTS * GLM5_LAYERS
    assert report.kv_bytes_per_token_per_gpu == kv_token_gpu
    assert report.max_context_tokens == kv_budget // kv_token_gpu
    assert report.context_tokens == 65536


def _gqa_checkpoint(kv_heads: int, weight_gb: int) -> Checkpoint:
    arch = Architecture(
        model_type="llama",
        num_hidden_layers=80,
        hidden_size=8192,
        num_attention_heads=64,
        num_key_value_heads=kv_heads,
        head_dim=128,
        vocab_size=128256,
    )
    return Checkpoint(
        id=f"test/gqa-{kv_heads}",
        repo_id=None,
        family="llama",
        format=WeightFormat.SAFETENSORS,
        weight_dtype="bf16",
        weight_bytes=weight_gb * GB,
        weight_bytes_source="test",
        architecture=arch,
    )


@pytest.mark.parametrize(("kv_heads", "per_rank"), [(8, 1), (4, 1), (16, 2), (2, 1)])
def test_gqa_kv_per_gpu_keeps_at_least_one_kv_head_per_rank(kv_heads: int, per_rank: int) -> None:
    ckpt = _gqa_checkpoint(kv_heads, 140)
    report = size(request_for(PROFILES["h100-sxm-8"], ckpt, VllmSettings(tensor_parallel_size=8)))
    # K and V (2) · KV heads on this rank · head_dim · layers · BF16 bytes
    kv_token_gpu = 2 * per_rank * 128 * 80 * 2
    kv_budget = int(H100_GB * GB * 0.92) - ceil_div(140 * GB, 8) - 2 * GB
    assert report.kv_bytes_per_token == 2 * kv_heads * 128 * 80 * 2
    assert report.kv_bytes_per_token_per_gpu == kv_token_gpu
    assert report.max_context_tokens == kv_budget // kv_token_gpu


def test_weights_over_the_usable_memory_do_not_fit_and_say_by_how_much() -> None:
    report = size(
        request_for(PROFILES["h100-sxm-4"], GLM52_FP8, VllmSettings(tensor_parallel_size=4))
    )
    weights_per_gpu = ceil_div(GLM52_FP8_WEIGHTS, 4)
    usable = int(H100_GB * GB * 0.92)
    assert not report.fits
    assert report.kv_budget_bytes_per_gpu == 0  # never negative
    assert report.max_context_tokens == 0
    assert report.reasons == (
        f"weights need {weights_per_gpu / GB:,.1f} GB per GPU (755.6 GB over 4 GPUs) plus "
        f"2.0 GB runtime, but each NVIDIA H100 80GB HBM3 has {usable / GB:,.1f} GB usable "
        "(80.0 GB × 0.92)",
    )
    assert report.reasons[0].startswith("weights need 188.9 GB per GPU")


def test_weights_plus_runtime_exactly_at_the_usable_memory_still_fit() -> None:
    # 4 × (80 GB × 0.5 − 2 GB) of weights fill the usable memory exactly.
    weights = 4 * (int(H100_GB * GB * 0.5) - 2 * GB)
    ckpt = _gqa_checkpoint(8, 1).model_copy(update={"weight_bytes": weights})
    settings = VllmSettings(tensor_parallel_size=4, gpu_memory_utilization=0.5, max_model_len=1)
    report = size(request_for(PROFILES["h100-sxm-4"], ckpt, settings))
    assert report.kv_budget_bytes_per_gpu == 0 and report.max_context_tokens == 0
    assert not report.fits and report.reasons[0].startswith("KV cache holds 0 tokens")
    one_more = ckpt.model_copy(update={"weight_bytes": weights + 4})
    report = size(request_for(PROFILES["h100-sxm-4"], one_more, settings))
    assert report.reasons[0].startswith("weights need 38.0 GB per GPU")


def test_a_context_longer_than_the_kv_room_names_both_figures() -> None:
    ckpt = GLM45_AIR_FP8  # 46 layers, 8 KV heads of 128 (glm4_moe config.json)
    kv_token_gpu = 2 * (8 // 4) * 128 * 46 * 2
    max_tokens = (int(H100_GB * GB * 0.92) - ceil_div(106 * GB, 4) - 2 * GB) // kv_token_gpu
    at_limit = VllmSettings(tensor_parallel_size=4, max_model_len=max_tokens)
    assert size(request_for(PROFILES["h100-sxm-4"], ckpt, at_limit)).fits
    over = VllmSettings(tensor_parallel_size=4, max_model_len=max_tokens + 1)
    report = size(request_for(PROFILES["h100-sxm-4"], ckpt, over))
    assert not report.fits
    assert report.reasons == (
        f"KV cache holds {max_tokens:,} tokens per sequence but the context is "
        f"{max_tokens + 1:,} ({kv_token_gpu:,} bytes per token per GPU) — lower max-model-len, "
        "use an FP8 KV cache or add GPUs",
    )


def test_more_gpus_than_the_profile_has_is_refused_with_both_counts() -> None:
    settings = VllmSettings(tensor_parallel_size=8, pipeline_parallel_size=2)
    report = size(request_for(PROFILES["h200-sxm-8"], GLM52_FP8, settings))
    assert report.reasons[0] == "TP 8 × PP 2 = 16 GPUs but h200-sxm-8 has 8"
    assert report.gpus_used == 16


def test_a_gpu_engine_on_a_host_without_gpu_says_use_llama_cpp() -> None:
    report = size(request_for(PROFILES["sandbox-cpu"], GLM45_AIR_FP8, VllmSettings()))
    assert not report.fits
    assert report.reasons[0] == "sandbox-cpu has no GPU; vllm needs one — use llama.cpp"
    assert report.max_context_tokens == 0 and report.usable_bytes_per_gpu == 0
    assert report.gpus_used == 1 and report.total_gpu_bytes == 0
    assert report.weights_fraction == float("inf")


def test_fp8_weights_need_fp8_hardware() -> None:
    report = size(
        request_for(PROFILES["rtx4090-4"], GLM45_AIR_FP8, VllmSettings(tensor_parallel_size=4))
    )
    assert (
        "zai-org/GLM-4.5-Air-FP8 is FP8 but NVIDIA GeForce RTX 4090 has no FP8 support"
        not in report.reasons
    )  # Ada has FP8 tensor cores
    no_fp8 = PROFILES["h100-sxm-4"].model_copy(
        update={"gpu": PROFILES["h100-sxm-4"].gpu.model_copy(update={"fp8": False})}  # type: ignore[union-attr]
    )
    report = size(request_for(no_fp8, GLM45_AIR_FP8, VllmSettings(tensor_parallel_size=4)))
    assert report.reasons == (
        "zai-org/GLM-4.5-Air-FP8 is FP8 but NVIDIA H100 80GB HBM3 has no FP8 support",
    )


def test_llamacpp_offloads_what_the_gpus_cannot_hold_to_ram() -> None:
    # the GLM 5.2 MoE guide: Q4_K_M GLM-5.2, ~220 GB, on 4×RTX 4090 + 128 GB RAM, f16 KV, 8k context.
    settings = LlamaCppSettings(ctx_size=8192)
    report = size(request_for(PROFILES["rtx4090-4"], GLM52_Q4_K_M, settings))
    vram_usable = 4 * RTX4090_GB * GB - 4 * GIB
    ram_usable = 128 * GB - 8 * GB
    kv_token = GLM5_MLA_ELEMENTS * GLM5_LAYERS * 2
    kv = kv_token * 8192
    weights = 220 * GB
    gpu_part = min(weights, vram_usable - kv)
    assert report.gpus_used == 4
    assert report.total_gpu_bytes == 4 * RTX4090_GB * GB
    assert report.weight_bytes == weights
    assert report.usable_bytes_per_gpu == vram_usable // 4
    assert report.weight_bytes_per_gpu == gpu_part // 4
    assert report.cpu_offload_bytes == weights - gpu_part
    assert report.kv_bytes_per_token == report.kv_bytes_per_token_per_gpu == kv_token
    assert report.kv_budget_bytes_per_gpu == 0
    assert report.headroom_bytes == 4 * RTX4090_GB * GB + 128 * GB - weights
    assert report.weights_fraction == weights / (4 * RTX4090_GB * GB + 128 * GB)
    free = vram_usable + ram_usable - weights - kv
    assert report.max_context_tokens == max(0, free + kv) // kv_token
    assert report.context_tokens == 8192
    assert not report.fits
    assert report.reasons == (
        f"weights 220.0 GB + KV {kv / GB:,.1f} GB exceed GPU {vram_usable / GB:,.1f} GB + RAM "
        "120.0 GB usable (after 8.0 GB for the OS); it could only run by paging weights from "
        "disk through mmap",
    )
    assert report.summary().endswith(
        f"; KV room for 0 tokens; {(weights - gpu_part) / GB:,.1f} GB offloaded to CPU RAM"
    )


def test_llamacpp_fitting_in_ram_and_vram_fits_with_an_exact_offload() -> None:
    profile = PROFILES["h100-sxm-4"]  # 4 × 80 GB, 1024 GB RAM
    settings = LlamaCppSettings(ctx_size=32768, cache_type_k="q8_0")
    report = size(request_for(profile, GLM52_Q4_K_M, settings))
    vram_usable = 4 * H100_GB * GB - 4 * GIB
    kv_token = GLM5_MLA_ELEMENTS * GLM5_LAYERS * 34 / 32  # q8_0: 32 values in 34 bytes
    kv = int(kv_token * 32768)
    gpu_part = min(220 * GB, vram_usable - kv)
    assert report.kv_bytes_per_token == kv_token
    assert report.cpu_offload_bytes == 220 * GB - gpu_part
    free = vram_usable + (1024 - 8) * GB - 220 * GB - kv
    assert report.max_context_tokens == int((free + kv) // kv_token)
    assert report.fits


@pytest.mark.parametrize(("layers", "fits"), [(31, True), (32, False), (78, False), (200, False)])
def test_llamacpp_gpu_layers_put_their_share_of_the_weights_on_the_gpus(
    layers: int, fits: bool
) -> None:
    profile = PROFILES["h100-sxm-4"]  # 4 × 80 GB, 1024 GB RAM
    weights = 780 * GB  # 10 GB per layer of 78
    ckpt = GLM52_Q4_K_M.model_copy(update={"weight_bytes": weights})
    settings = LlamaCppSettings(n_gpu_layers=layers, ctx_size=4096)
    report = size(request_for(profile, ckpt, settings))
    vram_usable = 4 * H100_GB * GB - 4 * GIB
    on_gpu = weights * min(layers, 78) // 78
    assert report.weight_bytes_per_gpu == min(on_gpu, vram_usable) // 4
    assert report.cpu_offload_bytes == weights - min(on_gpu, vram_usable)
    assert report.fits is fits
    if not fits:
        assert report.reasons == (
            f"--n-gpu-layers {layers} puts {min(layers, 78)} of 78 layers (~{on_gpu / GB:,.1f} "
            f"GB) on the GPUs, which hold {vram_usable / GB:,.1f} GB usable — lower it or leave it "
            "to llama.cpp's --fit",
        )


def test_llamacpp_on_a_cpu_host_runs_from_ram() -> None:
    tiny = _gqa_checkpoint(8, 1).model_copy(update={"format": WeightFormat.GGUF})
    report = size(request_for(PROFILES["sandbox-cpu"], tiny, LlamaCppSettings(n_gpu_layers=10)))
    assert report.gpus_used == 0
    assert report.weight_bytes_per_gpu == 0 and report.usable_bytes_per_gpu == 0
    assert report.cpu_offload_bytes == 1 * GB
    assert report.max_context_tokens == 0  # 4 GB of RAM is under the 8 GB OS reserve
    assert not report.fits


def test_gguf_size_from_safetensors_scales_by_bits_per_weight() -> None:
    assert gguf_bytes_from(GLM52_Q4_K_M, "Q8_0") == 220 * GB  # already a GGUF: its own size
    # Q4_K_M: 4.8944 bits per weight, the "bits/weight" row of llama.cpp 0c1e57098
    # tools/quantize/README.md; Q8_0: a block of 32 int8 weights and one fp16 scale, 34 bytes per
    # 32 weights = 8.5 bits (ggml/src/ggml-common.h block_q8_0). An FP8 checkpoint stores 8 bits.
    assert gguf_bytes_from(GLM52_FP8, "Q4_K_M") == int(GLM52_FP8_WEIGHTS * 4.8944 / 8)
    assert gguf_bytes_from(GLM52_FP8, "Q8_0") == int(GLM52_FP8_WEIGHTS * (34 * 8 / 32) / 8)
    mixed = GLM52_FP8.model_copy(update={"bits_per_weight": None})  # unknown: assume BF16
    assert gguf_bytes_from(mixed, "Q4_K_M") == int(GLM52_FP8_WEIGHTS * 4.8944 / 16)


def test_llamacpp_request_reads_the_settings_it_is_given() -> None:
    settings = LlamaCppSettings(n_gpu_layers=30, ctx_size=16384, cache_type_k="q4_0", quant="Q8_0")
    req = request_for(PROFILES["h100-sxm-4"], GLM52_FP8, settings)
    assert (req.engine, req.gpu_layers, req.context_tokens, req.kv_dtype) == (
        "llamacpp",
        30,
        16384,
        "q4_0",
    )
    assert req.weight_bytes_override == int(GLM52_FP8_WEIGHTS * 8.5 / 8)
    assert (req.tensor_parallel, req.pipeline_parallel) == (1, 1)
    auto = request_for(PROFILES["h100-sxm-4"], GLM52_FP8, LlamaCppSettings(n_gpu_layers="all"))
    assert auto.gpu_layers is None and auto.kv_dtype == "f16"


def test_vllm_request_reads_parallelism_utilisation_dtype_and_length() -> None:
    settings = VllmSettings(
        tensor_parallel_size=4,
        pipeline_parallel_size=2,
        gpu_memory_utilization=0.8,
        kv_cache_dtype="fp8_e5m2",
        max_model_len=1234,
    )
    req = request_for(PROFILES["h100-sxm-4"], GLM52_FP8, settings)
    assert (req.engine, req.tensor_parallel, req.pipeline_parallel) == ("vllm", 4, 2)
    assert (req.memory_fraction, req.kv_dtype, req.context_tokens) == (0.8, "fp8_e5m2", 1234)
    assert req.gpu_layers is None and req.weight_bytes_override is None


def test_smallest_setup_takes_the_fewest_gpus_first() -> None:
    # GLM-4.5-Air FP8 (106 GB) fits 3 DGX Sparks (3 × 128 GB, one GPU per node: PP 3).
    setup = smallest_setup(request_for(PROFILES["h100-sxm-4"], GLM45_AIR_FP8, VllmSettings()))
    assert setup is not None
    assert (setup.profile_id, setup.tensor_parallel, setup.pipeline_parallel) == (
        "dgx-spark-3",
        1,
        3,
    )
    assert setup.expert_parallel
    assert setup.describe().startswith("dgx-spark-3 (TP 1 × PP 3 + EP): zai-org/GLM-4.5-Air-FP8")


def test_smallest_setup_takes_the_least_memory_among_equal_gpu_counts() -> None:
    # GLM-4.7 FP8 (355 GB): no 3- or 4-GPU profile holds it (355 / 4 + 2 > 96 × 0.92); of the
    # 8-GPU ones 8×RTX PRO 6000 (768 GB + 1 TB RAM) has less memory than 8×H100 (640 + 2048).
    setup = smallest_setup(request_for(PROFILES["h100-sxm-4"], GLM47_FP8, VllmSettings()))
    assert setup is not None
    assert (setup.profile_id, setup.tensor_parallel, setup.pipeline_parallel) == (
        "rtxpro6000-8",
        8,
        1,
    )
    dense = GLM47_FP8.model_copy(
        update={"architecture": _gqa_checkpoint(8, 1).architecture, "needs_fp8": False}
    )
    setup = smallest_setup(request_for(PROFILES["h100-sxm-4"], dense, VllmSettings()))
    assert setup is not None and not setup.expert_parallel
    assert setup.describe().startswith("rtxpro6000-8 (TP 8 × PP 1): zai-org/GLM-4.7-FP8")


def test_smallest_setup_for_llamacpp_is_single_process_without_expert_parallelism() -> None:
    setup = smallest_setup(
        request_for(PROFILES["rtx4090-4"], GLM52_Q4_K_M, LlamaCppSettings(ctx_size=4096))
    )
    assert setup is not None
    assert (setup.tensor_parallel, setup.pipeline_parallel, setup.expert_parallel) == (1, 1, False)
    assert setup.describe().startswith(f"{setup.profile_id} (TP 1 × PP 1): glm52-Q4_K_M.gguf")


def test_smallest_setup_is_none_when_nothing_in_the_catalogue_fits() -> None:
    huge = GLM52_FP8.model_copy(update={"weight_bytes": 100_000 * GB})
    assert smallest_setup(request_for(PROFILES["h200-sxm-8"], huge, VllmSettings())) is None


def _claimed(weight_bytes: int, **claim: float | str) -> Checkpoint:
    return Checkpoint(
        id="test/ckpt",
        repo_id=None,
        family="test",
        format=WeightFormat.SAFETENSORS,
        weight_dtype="bf16",
        bits_per_weight=16,
        total_params=100 * 10**9,
        params_source="test",
        weight_bytes=weight_bytes,
        weight_bytes_source="test",
        claims=(Claim(source="src", statement="says so", **claim),),  # type: ignore[arg-type]
    )


def test_a_claim_within_15_percent_adds_up_and_one_beyond_does_not() -> None:
    # 100B parameters in BF16: 200 GB expected; 15 % either way is tolerated.
    assert audit_claims(_claimed(200 * GB, disk_gb=230)) == []
    assert audit_claims(_claimed(200 * GB, disk_gb=170)) == []
    assert audit_claims(_claimed(200 * GB, disk_gb=231)) == [
        "src gives ~231 GB on disk, but the weights are 200.0 GB"
    ]
    assert audit_claims(_claimed(200 * GB, vram_gb=169)) == [
        "src says 'says so': 169 GB of VRAM, but the weights alone are 200.0 GB"
    ]
    assert audit_claims(_claimed(200 * GB, total_params_b=115)) == []
    assert audit_claims(_claimed(200 * GB, total_params_b=116)) == [
        "src gives 116B total parameters; test/ckpt has 100B (test) — kept as distinct "
        "checkpoints, not merged"
    ]


def test_weights_that_do_not_match_parameters_times_precision_are_reported() -> None:
    assert audit_claims(_claimed(231 * GB)) == [
        "test/ckpt: 231.0 GB (test) implies 18.48 bits per weight for 100B parameters, but bf16 "
        "averages 16.0 — expect ~200.0 GB"
    ]
    assert audit_claims(_claimed(230 * GB)) == []


def test_a_minimum_profile_claim_is_sized_on_that_profile() -> None:
    fits = _claimed(200 * GB, minimum_profile="h100-sxm-4")
    assert audit_claims(fits) == []
    too_big = _claimed(400 * GB, minimum_profile="h100-sxm-4").model_copy(
        update={"total_params": 200 * 10**9}
    )
    assert audit_claims(too_big) == [
        "src says 4×H100 SXM, NVLink, no NVSwitch (HGX 4-GPU) is enough for test/ckpt, but "
        "400.0 GB of weights cannot fit in 320.0 GB of GPU memory: weights need 100.0 GB per GPU "
        "(400.0 GB over 4 GPUs) plus 2.0 GB runtime, but each NVIDIA H100 80GB HBM3 has 73.6 GB "
        "usable (80.0 GB × 0.92)"
    ]


def test_a_gguf_minimum_profile_claim_is_sized_for_llamacpp() -> None:
    findings = audit_claims(GLM52_Q4_K_M)
    assert any(
        " says 4×RTX 4090" in f and f.endswith("paging weights from disk through mmap")
        for f in findings
    )


def test_request_defaults_are_the_documented_ones() -> None:
    req = SizingRequest(profile=PROFILES["h200-sxm-8"], checkpoint=GLM52_FP8, engine="vllm")
    assert (req.tensor_parallel, req.pipeline_parallel, req.memory_fraction) == (1, 1, 0.92)
    assert (req.kv_dtype, req.context_tokens, req.gpu_layers) == (None, None, None)


def test_the_summary_says_plainly_when_it_does_not_fit() -> None:
    report = size(
        request_for(PROFILES["h100-sxm-4"], GLM52_FP8, VllmSettings(tensor_parallel_size=4))
    )
    assert report.summary().startswith("zai-org/GLM-5.2-FP8 on h100-sxm-4: does NOT fit; weights")


def _bare(weight_bytes: int) -> Checkpoint:
    """A GGUF whose shape is unknown: sizing can weigh it but not its KV cache."""
    return Checkpoint(
        id="test/bare.gguf",
        repo_id=None,
        family="test",
        format=WeightFormat.GGUF,
        weight_dtype="q4_k_m",
        weight_bytes=weight_bytes,
        weight_bytes_source="test",
    )


def test_llamacpp_weights_exactly_filling_gpu_and_ram_fit_and_one_byte_more_do_not() -> None:
    profile = PROFILES["h100-sxm-4"]  # 4 × 80 GB, 1024 GB RAM
    usable = 4 * H100_GB * GB - 4 * GIB + 1024 * GB - 8 * GB
    settings = LlamaCppSettings(ctx_size=8192)
    report = size(request_for(profile, _bare(usable), settings))
    assert report.fits
    assert report.kv_bytes_per_token is None and report.max_context_tokens is None
    assert report.cpu_offload_bytes == 1024 * GB - 8 * GB
    assert not size(request_for(profile, _bare(usable + 1), settings)).fits


def test_llamacpp_on_a_host_with_nothing_usable_fits_not_even_one_byte() -> None:
    # sandbox-cpu: no GPU, 4 GB of RAM under the 8 GB kept for the OS
    report = size(request_for(PROFILES["sandbox-cpu"], _bare(1), LlamaCppSettings()))
    assert not report.fits
    assert report.reasons[0].startswith("weights 0.0 GB + KV 0.0 GB exceed GPU 0.0 GB + RAM 0.0 GB")


def test_llamacpp_layers_exactly_filling_the_gpus_are_accepted() -> None:
    profile = PROFILES["h100-sxm-4"]
    vram_usable = 4 * H100_GB * GB - 4 * GIB
    ckpt = GLM52_Q4_K_M.model_copy(update={"weight_bytes": vram_usable})
    report = size(request_for(profile, ckpt, LlamaCppSettings(n_gpu_layers=78, ctx_size=4096)))
    assert report.reasons == () and report.cpu_offload_bytes == 0


def test_llamacpp_layer_share_is_whole_bytes() -> None:
    settings = LlamaCppSettings(n_gpu_layers=10, ctx_size=4096)
    report = size(request_for(PROFILES["h100-sxm-4"], GLM52_Q4_K_M, settings))
    on_gpu = 220 * GB * 10 // 78  # 28,205,128,205 bytes: 10 of 78 layers, rounded down
    assert report.cpu_offload_bytes == 220 * GB - on_gpu
    assert report.weight_bytes_per_gpu == on_gpu // 4


def test_llamacpp_context_of_a_kv_cache_under_one_byte_per_token() -> None:
    # one layer of a one-element MLA latent in q4_0 (18 bytes per 32 values): 0.5625 B per token
    tiny = Architecture(
        model_type="t",
        num_hidden_layers=1,
        hidden_size=1,
        num_attention_heads=1,
        num_key_value_heads=1,
        head_dim=1,
        vocab_size=1,
        kv_lora_rank=1,
    )
    ckpt = _bare(10 * GB).model_copy(update={"architecture": tiny})
    report = size(request_for(PROFILES["sandbox-cpu"], ckpt, LlamaCppSettings(cache_type_k="q4_0")))
    assert report.kv_bytes_per_token == 18 / 32
    assert report.max_context_tokens == 0


def test_smallest_setup_for_llamacpp_on_four_gpus_is_still_one_process() -> None:
    # 700 GB: over 3 Sparks' GPU + RAM (3 × 128 GB − 3 GiB + 120 GB), within 4×RTX PRO 6000 + 512 GB
    setup = smallest_setup(
        request_for(PROFILES["h100-sxm-4"], _bare(700 * GB), LlamaCppSettings(ctx_size=512))
    )
    assert setup is not None
    assert (setup.profile_id, setup.tensor_parallel, setup.pipeline_parallel) == (
        "rtxpro6000-4",
        1,
        1,
    )


def test_smallest_setup_sizes_each_profile_with_all_of_its_nodes() -> None:
    setup = smallest_setup(request_for(PROFILES["h100-sxm-4"], GLM45_AIR_FP8, VllmSettings()))
    assert setup is not None and setup.profile_id == "dgx-spark-3"
    assert setup.report.gpus_used == 3
    assert setup.report.weight_bytes_per_gpu == ceil_div(106 * GB, 3)


def test_a_vram_claim_close_to_the_weights_adds_up() -> None:
    assert audit_claims(_claimed(200 * GB, vram_gb=200)) == []
    assert audit_claims(_claimed(200 * GB, vram_gb=229)) == []


def test_parameter_counts_are_printed_rounded_to_whole_billions() -> None:
    ckpt = _claimed(4 * GB, total_params_b=3).model_copy(update={"total_params": 1_500_000_000})
    assert audit_claims(ckpt) == [
        "test/ckpt: 4.0 GB (test) implies 21.33 bits per weight for 2B parameters, but bf16 "
        "averages 16.0 — expect ~3.0 GB",
        "src gives 3B total parameters; test/ckpt has 2B (test) — kept as distinct checkpoints, "
        "not merged",
    ]


def test_a_minimum_profile_of_several_nodes_is_sized_over_all_of_them() -> None:
    # 200 GB over 3 DGX Sparks (TP 1 × PP 3): 66.7 GB + 2 GB of 128 GB × 0.92 each
    assert audit_claims(_claimed(200 * GB, minimum_profile="dgx-spark-3")) == []


def test_a_minimum_profile_without_gpu_is_refused_for_a_gpu_engine() -> None:
    (finding,) = audit_claims(_claimed(200 * GB, minimum_profile="sandbox-cpu"))
    assert finding.endswith(": sandbox-cpu has no GPU; vllm needs one — use llama.cpp")


def test_the_catalogue_audit_covers_every_checkpoint() -> None:
    from metalserve.catalog.checkpoints import CHECKPOINTS
    from metalserve.sizing import audit_catalogue

    assert audit_catalogue() == {cid: audit_claims(c) for cid, c in CHECKPOINTS.items()}
    assert audit_catalogue()["zai-org/GLM-4.5-Air-FP8"] == []
